"""The ``optuna-kshot`` command line: ``train``, ``search``, ``export``, ``run`` (all three in one) and
``dashboard`` (optuna-dashboard on a storage, with training curves, notes and artifacts).

Heavy imports (torch, optuna) happen inside the handlers so that ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .defaults import CALIB_BATCHES, KSHOT_K, SIMPLEX_EVERY

__all__ = ["main", "build_parser"]

SAMPLERS = ("nsga2", "tpe", "random")


class UsageError(ValueError):
    """Bad command-line input; reported as one line with exit status 2."""


# ------------------------------------------------------------------------------------------------ options
def _add_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads to use: intra-op threads for training, scoring threads for a search "
                        "(default: $OMP_NUM_THREADS if set, else every core)")
    p.add_argument("--data", default="default",
                   help="'default' (built-in Fashion-MNIST subset), 'fashion-mnist[:DIR]' (Debian idx files), "
                        "'cifar10:DIR' and other torchvision sets from a directory, or 'package.module:function' "
                        "returning your own (train, val[, test]) datasets (default: %(default)s)")
    p.add_argument("--model", default=None,
                   help="your own model with choices: 'package.module:function' returning the nn.Module (or "
                        "(module, example_input)); replaces --space. search/export take it from the checkpoint "
                        "when it was trained with one")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: cuda if available)")
    p.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", default="layerwise", choices=("layerwise", "macro", "nb201"),
                   help="built-in search space (default: %(default)s)")
    p.add_argument("--width-mult", type=float, default=0.5,
                   help="width multiplier of chain spaces (default: %(default)s)")
    p.add_argument("--widths", default=None,
                   help="per-layer width choices for channel search, e.g. 0.5,0.75,1.0 (layerwise space)")
    p.add_argument("--channels", type=int, default=8, help="NAS-Bench-201 channels C (default: %(default)s)")
    p.add_argument("--cells", type=int, default=1, help="NAS-Bench-201 cells per stage N (default: %(default)s)")
    p.add_argument("--supernet", default="oneshot",
                   help="supernet kind: oneshot, kshot or fewshot (default: %(default)s)")
    p.add_argument("--k", type=int, default=KSHOT_K, help="K-shot: weight copies per op (default: %(default)s)")
    p.add_argument("--simplex-every", type=int, default=SIMPLEX_EVERY,
                   help="K-shot: a simplex-net step after every this many supernet steps; 1 alternates them, "
                        "larger is cheaper (default: %(default)s)")
    p.add_argument("--split", default="enn",
                   help="few-shot: 'enn' (by effective number of nonlinearities) or 'op:CHOICE' such as op:layer0 "
                        "(default: %(default)s)")
    p.add_argument("--enn-thresholds", default=None,
                   help="few-shot by ENN: comma-separated group boundaries, e.g. 8,12 (default: per space)")
    p.add_argument("--fewshot-width", type=float, default=None,
                   help="few-shot: width ratio of each sub-supernet (default: about 1/number of groups)")
    p.add_argument("--stabilizer", action="store_true",
                   help="SCARLET: skips run a learnable 1x1 stabilizer in training and scoring (dropped on export)")
    p.add_argument("--init-from", default=None,
                   help="K-shot: start from this trained one-shot checkpoint (copy 0 = its weights)")
    p.add_argument("--path-sampler", default=None, choices=("uniform", "flops-bins", "fair", "sandwich", "balanced"),
                   help="training path sampling: SPOS uniform, uniform over MACs bins, FairNAS, the sandwich rule "
                        "with in-place distillation (BigNAS), or few-shot supernet-balanced (default: balanced for "
                        "fewshot, else uniform)")
    p.add_argument("--warmup", type=float, default=0.0,
                   help="share of the training steps with a linear learning-rate warm-up (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=10, help="training epochs (default: %(default)s)")
    p.add_argument("--budget-images", type=int, default=None, help="train for this many images instead of epochs")
    p.add_argument("--batch-size", type=int, default=64, help="(default: %(default)s)")
    p.add_argument("--lr", type=float, default=0.1, help="(default: %(default)s)")
    p.add_argument("--checkpoint", default="runs/supernet.pt", help="supernet checkpoint (default: %(default)s)")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint and train anew")
    p.add_argument("--checkpoint-every", type=int, default=None,
                   help="also write the checkpoint every this many steps (default: after every epoch only)")
    p.add_argument("--monitor", type=int, default=8,
                   help="ranking monitor: score this many fixed probe archs after epochs and report the Kendall tau "
                        "between checks and with MACs/params/ENN; 0 turns it off (default: %(default)s)")
    p.add_argument("--monitor-every", type=int, default=None,
                   help="monitor check every this many epochs (default: as often as costs at most 5%% of the "
                        "training: every epoch on full Fashion-MNIST, every 5th on the built-in subset)")
    p.add_argument("--stop-when-stable", type=float, default=None, metavar="TAU",
                   help="stop training once the probe ranking's tau between checks is >= TAU for --stable-checks "
                        "checks in a row (default: train the whole budget)")
    p.add_argument("--stable-checks", type=int, default=2, help="see --stop-when-stable (default: %(default)s)")
    p.add_argument("--truth", default=None,
                   help="JSON of stand-alone accuracies of some archs ([{\"arch\": {...}, \"accuracy\": 0.9}, ...] "
                        "or {arch_key: accuracy}): after training, say whether the supernet ranks them better "
                        "than MACs, params and ENN do")


def _add_search(p: argparse.ArgumentParser, with_checkpoint: bool) -> None:
    if with_checkpoint:
        p.add_argument("--checkpoint", default="runs/supernet.pt", help="trained supernet (default: %(default)s)")
    p.add_argument("--storage", default="sqlite:///runs/study.db",
                   help="Optuna storage: sqlite:///FILE (one process), journal:FILE (processes on one host), "
                        "postgresql://... (many hosts) (default: %(default)s)")
    p.add_argument("--study-name", default="optuna-kshot", help="(default: %(default)s)")
    p.add_argument("--sampler", default="nsga2", choices=SAMPLERS, help="Optuna sampler (default: %(default)s)")
    p.add_argument("--trials", type=int, default=100,
                   help="complete trials the study should hold; workers on one storage share them "
                        "(default: %(default)s)")
    p.add_argument("--objectives", default="accuracy,macs",
                   help="comma-separated from accuracy, macs, flops, params (default: %(default)s)")
    p.add_argument("--max-macs", type=float, default=None, help="MACs budget (a constraint)")
    p.add_argument("--max-flops", type=float, default=None, help="FLOPs budget (2 x MACs; a constraint)")
    p.add_argument("--max-params", type=float, default=None, help="parameter budget (a constraint)")
    p.add_argument("--calib-batches", type=int, default=CALIB_BATCHES,
                   help="BN recalibration batches of 256 images (default: %(default)s)")
    p.add_argument("--n-jobs", type=int, default=None,
                   help="threads scoring trials at once, each with one intra-op thread (default: --threads)")
    p.add_argument("--heartbeat", type=int, default=5,
                   help="RDB storages: heartbeat interval in seconds; a trial silent for 4x that is failed and "
                        "retried (default: %(default)s)")


def _add_searched(p: argparse.ArgumentParser) -> None:
    """A trained supernet and its searched study (export, retrain)."""
    p.add_argument("--checkpoint", default="runs/supernet.pt", help="trained supernet (default: %(default)s)")
    p.add_argument("--storage", default="sqlite:///runs/study.db",
                   help="Optuna storage of the searched study: sqlite:///FILE, journal:FILE or postgresql://... "
                        "(default: %(default)s)")
    p.add_argument("--study-name", default="optuna-kshot", help="(default: %(default)s)")
    p.add_argument("--calib-batches", type=int, default=CALIB_BATCHES,
                   help="BN recalibration batches of 256 images (default: %(default)s)")


def _add_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trial", type=int, default=None,
                   help="trial number to export (default: the most accurate feasible Pareto-optimal trial)")
    p.add_argument("--out", default="runs/subnet", help="output directory (default: %(default)s)")
    p.add_argument("--finetune-epochs", type=int, default=0, help="fine-tune the exported subnet (default: 0)")


def _add_retrain(p: argparse.ArgumentParser, *, run: bool = False) -> None:
    p.add_argument("--retrain-epochs", type=int, default=10,
                   help="epochs to retrain the chosen arch" + (" (0: skip retraining)" if run else "")
                        + " (default: %(default)s)")
    p.add_argument("--retrain-init", default="scratch", choices=("scratch", "inherited"),
                   help="retrain from scratch or fine-tune the inherited supernet weights (default: %(default)s)")
    p.add_argument("--retrain-lr", type=float, default=None,
                   help="learning rate of the retraining (default: 0.1 from scratch, 0.01 inherited)")
    p.add_argument("--reference", action=argparse.BooleanOptionalAction, default=True,
                   help="also retrain the reference arch (the most MACs under the budget) with the same budget, "
                        "to show what the search bought (default: on)")
    if not run:
        p.add_argument("--out", default="runs/retrained", help="output directory (default: %(default)s)")


def _add_monitoring(p: argparse.ArgumentParser, *, study: bool = False, report: bool = False) -> None:
    """Options that show a command's work in optuna-dashboard (see optuna_kshot.dashboard)."""
    if study:
        p.add_argument("--storage", default=None,
                       help="show the training in optuna-dashboard: figures and a note on this Optuna storage's "
                            "study, e.g. sqlite:///runs/study.db (default: none)")
        p.add_argument("--study-name", default="optuna-kshot", help="(default: %(default)s)")
        p.add_argument("--objectives", default="accuracy,macs",
                       help="the study's objectives, when --storage creates it (default: %(default)s)")
    p.add_argument("--artifacts", default=None,
                   help="artifact directory (an Optuna file-system artifact store) for the checkpoint, reports and "
                        "exported subnets; give `optuna-kshot dashboard` the same (default: none)")
    if report:
        p.add_argument("--report-dir", default=None,
                       help="where the search writes pareto.png, pareto.html, trials.csv and summary.md (default: "
                            "reports/STUDY_NAME beside a sqlite or journal file, else runs/reports/STUDY_NAME)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="optuna-kshot",
        description="Weight-sharing supernets as Optuna objectives: train a supernet once, then search with "
                    "any Optuna sampler, each trial scored by the supernet.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log per-epoch details")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train a supernet to a checkpoint")
    _add_train(p)
    _add_monitoring(p, study=True)
    _add_data(p)
    p = sub.add_parser("search", help="run an Optuna study whose trials are scored by a trained supernet")
    _add_search(p, with_checkpoint=True)
    _add_monitoring(p, report=True)
    _add_data(p)
    p = sub.add_parser("export", help="export a trial's arch as a plain PyTorch subnet with inherited weights")
    _add_searched(p)
    _add_export(p)
    _add_monitoring(p)
    _add_data(p)
    p = sub.add_parser("retrain", help="train a trial's arch as a plain network and report its test accuracy")
    _add_searched(p)
    p.add_argument("--trial", type=int, default=None,
                   help="trial number (default: the most accurate feasible Pareto-optimal trial)")
    _add_retrain(p)
    _add_monitoring(p)
    _add_data(p)
    p = sub.add_parser("run", help="the main job: train, search, export and retrain in one go on the built-in data")
    _add_train(p)
    _add_search(p, with_checkpoint=False)
    _add_export(p)
    _add_retrain(p, run=True)
    _add_monitoring(p, report=True)
    _add_data(p)
    p.set_defaults(trials=60)
    p = sub.add_parser("dashboard", help="run optuna-dashboard on a storage (training curves, notes, artifacts)")
    p.add_argument("--storage", default="sqlite:///runs/study.db",
                   help="Optuna storage URL, as given to train/search (default: %(default)s)")
    p.add_argument("--artifacts", default=None, help="artifact directory given to train/search/export")
    p.add_argument("--host", default="127.0.0.1", help="(default: %(default)s)")
    p.add_argument("--port", type=int, default=8080, help="(default: %(default)s)")
    return parser


# ------------------------------------------------------------------------------------------------ helpers
def _space_for(args: argparse.Namespace, data: Any) -> Any:
    from .spaces import build_space

    common = {"in_channels": data.in_channels, "num_classes": data.num_classes, "resolution": data.resolution}
    if args.space == "nb201":
        return build_space("nb201", channels=args.channels, cells_per_stage=args.cells, **common)
    kwargs: dict[str, Any] = {"width_mult": args.width_mult, **common}
    if args.widths:
        if args.space != "layerwise":
            raise UsageError("--widths (channel search) needs --space layerwise.")
        try:
            kwargs["widths"] = tuple(float(w) for w in args.widths.split(","))
        except ValueError:
            raise UsageError(
                f"--widths takes comma-separated fractions such as 0.5,1.0, not {args.widths!r}."
            ) from None
    return build_space(args.space, **kwargs)


def _sampler(name: str, seed: int) -> Any:
    import optuna

    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=20)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def _example_input(data: Any) -> Any:
    """One training input with a batch dimension (to probe a model of the user's)."""
    x, _ = next(iter(data.train.batches(1)))
    return x


def _user_model(spec: str, data: Any) -> tuple[Any, Any]:
    from .userspec import model_from_spec

    model, example = model_from_spec(spec)
    return model, _example_input(data) if example is None else example


def _train(args: argparse.Namespace, data: Any) -> Path:
    from .training import close_distributed

    _use_threads(_threads(args))
    try:
        return _train_supernet(args, data)
    finally:
        close_distributed()  # every rank leaves the process group before it exits (torchrun)


def _train_supernet(args: argparse.Namespace, data: Any) -> Path:
    from .paths import default_path_sampler, make_path_sampler
    from .supernets import load_supernet, make_supernet, supernet_metadata
    from .training import TrainConfig, init_distributed_from_env, train_supernet

    rank, world = init_distributed_from_env(args.device)
    source: Any = _space_for(args, data) if not args.model else None
    example = None
    if args.model:
        if args.widths:
            raise UsageError("--widths is a built-in space's channel search; mark widths in your --model instead.")
        source, example = _user_model(args.model, data)
    config = TrainConfig(epochs=args.epochs, budget_images=args.budget_images, batch_size=args.batch_size,
                         lr=args.lr, seed=args.seed, checkpoint_every_steps=args.checkpoint_every,
                         warmup=args.warmup)
    options: dict[str, Any] = {"k": args.k, "simplex_every": args.simplex_every} if args.supernet == "kshot" else {}
    if args.supernet == "fewshot":
        options["split"] = args.split
        if args.enn_thresholds:
            try:
                options["thresholds"] = [float(t) for t in args.enn_thresholds.split(",")]
            except ValueError:
                raise UsageError(f"--enn-thresholds takes comma-separated numbers, not {args.enn_thresholds!r}.") \
                    from None
        if args.fewshot_width is not None:
            options["width_ratio"] = args.fewshot_width
    if args.stabilizer:
        options["stabilizer"] = True
    base = None
    if args.init_from:
        if args.supernet not in ("kshot", "fewshot"):
            raise UsageError("--init-from starts a K-shot or few-shot supernet from a one-shot one; "
                             "add --supernet kshot or --supernet fewshot.")
        base, _, state = load_supernet(args.init_from, space=source if not args.model else None,
                                       model=source if args.model else None)
        if state["supernet"]["kind"] != "oneshot":
            raise UsageError(f"--init-from needs a one-shot checkpoint, but {args.init_from!r} is {state['supernet']}.")
    if args.model:
        options["example_input"] = example
    supernet = make_supernet(source, args.supernet, seed=args.seed, base=base, **options)
    space = supernet.space
    if args.path_sampler is None:
        args.path_sampler = default_path_sampler(supernet)
    metadata = supernet_metadata(supernet, data=data.name, path_sampler=args.path_sampler,
                                 init_from=args.init_from, model_spec=args.model)
    study = _training_study(args) if args.storage and rank == 0 else None
    callbacks = []
    monitor = None
    if args.monitor:
        from .monitor import RankingMonitor

        monitor = RankingMonitor(data.train, data.val, probes=args.monitor, every=args.monitor_every,
                                 stop_tau=args.stop_when_stable, stop_checks=args.stable_checks, seed=args.seed)
        if not args.quiet and rank == 0:
            callbacks.append(_print_epoch)
    if study is not None:
        from dataclasses import asdict

        from .dashboard import training_callback

        shown = {**metadata, "config": asdict(config), "checkpoint": str(args.checkpoint)}
        callbacks.append(training_callback(study, config=shown, history=_earlier_history(args)))
    result = train_supernet(
        supernet, data.train, config,
        sampler=make_path_sampler(args.path_sampler, space, seed=args.seed, supernet=supernet),
        device=args.device, checkpoint=args.checkpoint, resume=not args.restart, progress=not args.quiet,
        callbacks=callbacks, metadata=metadata, monitor=monitor,
    )
    last = result.history[-1] if result.history else None
    if rank != 0:
        return Path(args.checkpoint)
    remarks = _verdict(args, supernet, data, monitor)
    if study is not None:
        from .dashboard import save_training

        save_training(study, result.history, config=shown, remarks=remarks)
        if args.artifacts:
            _upload_checkpoint(study, args.checkpoint, args.artifacts, images=result.images)
    totals = (f"{result.steps} steps, {result.images:,} images, {result.seconds:.1f} s of training"
              + (f", last epoch loss {last.loss:.3f}" if last else "")
              + (" (stopped early: the probe ranking was stable)" if result.stopped_early else ""))
    if result.start_step == result.steps and result.start_step > 0:
        print(f"reused the trained {args.supernet} supernet in {args.checkpoint} (nothing left to train; --restart "
              f"trains anew): {totals}")
    elif result.start_step > 0:
        print(f"resumed {args.checkpoint} at step {result.start_step} and trained the {args.supernet} supernet on "
              f"{space!r} to the end: {totals}")
    else:
        print(f"trained {args.supernet} supernet on {space!r}: {totals}")
    for line in remarks:
        print(f"warning: {line}")
    print(f"checkpoint: {args.checkpoint}")
    return Path(args.checkpoint)


def _print_epoch(record: Any, model: Any) -> None:
    """One line per epoch with the ranking monitor's taus (the progress bar shows the rest)."""
    e = record.extra
    if "probe_tau_macs" not in e and "probe_tau_prev" not in e:
        return
    parts = [f"{label} {e[k]:.2f}" for k, label in (("probe_tau_prev", "vs previous"), ("probe_tau_macs", "vs MACs"),
                                                     ("probe_tau_enn", "vs ENN")) if k in e]
    print(f"epoch {record.epoch + 1}: loss {record.loss:.3f}, probe ranking tau " + ", ".join(parts), flush=True)


def _read_truth(path: str, space: Any) -> dict[str, float]:
    """Stand-alone accuracies by arch key from a JSON file (a list of {arch, accuracy} or {key: accuracy})."""
    import json

    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"--truth {path!r} is not a readable JSON file ({e}).") from None
    if isinstance(raw, dict):
        return {space.key(space.from_key(str(k))): float(v) for k, v in raw.items()}
    if isinstance(raw, list) and all(isinstance(r, dict) and "arch" in r and "accuracy" in r for r in raw):
        return {space.key(r["arch"]): float(r["accuracy"]) for r in raw}
    raise UsageError(f"--truth {path!r} must hold [{{\"arch\": {{...}}, \"accuracy\": 0.9}}, ...] or "
                     "{arch_key: accuracy}.")


def _verdict(args: argparse.Namespace, supernet: Any, data: Any, monitor: Any) -> list[str]:
    """The monitor's verdict, and with --truth, whether the supernet ranks those archs better than free
    predictors."""
    from .monitor import verdict

    history = monitor.history if monitor is not None else []
    if not args.truth:
        return verdict(history)
    from .evaluation import SupernetEvaluator
    from .monitor import free_predictors

    space = supernet.space
    truth = _read_truth(args.truth, space)
    archs = [space.from_key(k) for k in truth]
    evaluator = SupernetEvaluator(supernet, None, data.train, data.val, calib_batches=args.calib_batches
                                  if hasattr(args, "calib_batches") else CALIB_BATCHES, device=args.device)
    scores = {space.key(a): evaluator.score(a).accuracy for a in archs}
    free = {name: dict(zip(truth, values)) for name, values in free_predictors(supernet, archs).items()}
    return verdict(history, truth=truth, supernet_scores=scores, free=free)


def _training_study(args: argparse.Namespace) -> Any:
    """The study that ``train --storage`` shows its training on (created with the objectives' directions)."""
    import optuna

    from .objective import open_study
    from .workers import make_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return open_study(args.objectives, storage=make_storage(args.storage), study_name=args.study_name)


def _earlier_history(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Epochs of the checkpoint that training will resume from (shown before the new ones)."""
    from .checkpoint import CheckpointError, load_checkpoint

    if args.restart or not Path(args.checkpoint).is_file():
        return []
    try:
        return list(load_checkpoint(args.checkpoint).get("history", []))
    except CheckpointError:  # train_supernet reports it
        return []


def _upload_checkpoint(study: Any, checkpoint: str | Path, artifact_dir: str, *, images: int) -> None:
    """Upload the checkpoint as a study artifact unless this very training state (file name and images seen)
    is already there."""
    from .dashboard import upload_artifacts

    mark = {"file": Path(checkpoint).name, "images": images}
    if {k: v for k, v in study.user_attrs.get("checkpoint_artifact", {}).items() if k in mark} == mark:
        return
    (artifact_id,) = upload_artifacts(study, [checkpoint], artifact_dir)
    study.set_user_attr("checkpoint_artifact", {**mark, "artifact_id": artifact_id})
    print(f"checkpoint uploaded to the artifact store {artifact_dir} (artifact {artifact_id})")


def _report_dir(args: argparse.Namespace) -> Path:
    if args.report_dir:
        return Path(args.report_dir)
    url = args.storage
    for prefix in ("sqlite:///", "journal:"):
        if url.startswith(prefix) and url != "sqlite:///:memory:":
            return Path(url[len(prefix):]).parent / "reports" / args.study_name
    return Path("runs") / "reports" / args.study_name


def _load(args: argparse.Namespace, data: Any) -> tuple[Any, Any, dict[str, Any]]:
    """The trained supernet of ``--checkpoint``; a model of the user's comes from ``--model`` or the spec the
    checkpoint recorded."""
    from .checkpoint import load_checkpoint
    from .supernets import load_supernet

    state = load_checkpoint(args.checkpoint)
    builtin = (state.get("network") or {}).get("builtin", True)
    spec = getattr(args, "model", None) or state.get("model_spec")
    if builtin:
        return load_supernet(args.checkpoint)
    if not spec:
        raise UsageError(f"{args.checkpoint} is a supernet of a model of your own: pass --model "
                         "package.module:function.")
    model, _ = _user_model(spec, data)
    return load_supernet(args.checkpoint, model=model)


def _evaluator(args: argparse.Namespace, data: Any) -> tuple[Any, Any, dict[str, Any]]:
    from .evaluation import SupernetEvaluator

    supernet, space, state = _load(args, data)
    if state.get("data") not in (None, data.name):
        logging.getLogger(__name__).warning("The supernet was trained on %s, not on %s.", state["data"], data.name)
    evaluator = SupernetEvaluator(supernet, space, data.train, data.val, calib_batches=args.calib_batches,
                                  device=args.device, seed=args.seed)
    return evaluator, space, state


def _search(args: argparse.Namespace, data: Any) -> Any:
    import optuna

    from .objective import SupernetObjective, open_study, parse_objectives
    from .tables import ground_truth_for
    from .workers import make_storage, run_workers

    evaluator, space, state = _evaluator(args, data)
    objectives = parse_objectives(args.objectives)
    objective = SupernetObjective(
        evaluator, objectives=objectives, max_macs=args.max_macs, max_flops=args.max_flops,
        max_params=args.max_params,
        user_attrs={"supernet_kind": state["supernet"]["kind"], "checkpoint": str(args.checkpoint)},
    )
    storage = make_storage(args.storage, heartbeat_interval=args.heartbeat, grace_period=4 * args.heartbeat)
    study = open_study(objectives, storage=storage, study_name=args.study_name,
                       sampler=_sampler(args.sampler, args.seed))
    study.set_user_attr("space", space.to_config())
    study.set_user_attr("objectives", list(objectives))
    study.set_user_attr("budgets", dict(objective.budgets))
    from .dashboard import TRAINING_ATTR, save_training

    history = state.get("history") or []
    shown = {k: state[k] for k in ("space", "supernet", "data", "path_sampler", "init_from", "config") if k in state}
    shown["checkpoint"] = str(args.checkpoint)
    on_study = study.user_attrs.get(TRAINING_ATTR, {})
    if history and (on_study.get("epochs"), on_study.get("images")) != (len(history), history[-1]["images"]):
        save_training(study, history, config=shown)  # a study searched from an existing checkpoint
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # --trials is the study's total: workers started on the same storage share it and stop together
    n_jobs = args.n_jobs or _threads(args)
    _use_threads(1 if n_jobs > 1 else _threads(args))  # parallel archs, not parallel ops within one
    run_workers(study, objective, args.trials, n_jobs=n_jobs, show_progress_bar=not args.quiet)
    _print_front(study, objective.metric_names)
    _report(args, study, history, shown, ground_truth_for(state.get("space", {}), state.get("data")))
    return study


def _report(args: argparse.Namespace, study: Any, history: list[dict[str, Any]], shown: dict[str, Any],
            truth: dict[str, float] | None) -> None:
    """After a search: the note with the search summary, the report files, and the artifacts."""
    from optuna.trial import TrialState

    from .dashboard import save_training, upload_artifacts
    from .report import write_report

    save_training(study, history, config=shown, truth=truth)
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        print("no complete trial: no report")
        return
    paths = write_report(study, _report_dir(args), truth=truth)
    print(f"report: {paths['md']}, {paths['png'].name}, {paths['html'].name}, {paths['csv'].name}")
    if args.artifacts:
        if Path(args.checkpoint).is_file():
            from .checkpoint import load_checkpoint

            images = history[-1]["images"] if history else load_checkpoint(args.checkpoint).get("images")
            _upload_checkpoint(study, args.checkpoint, args.artifacts, images=images)
        upload_artifacts(study, [paths["png"], paths["csv"], paths["md"]], args.artifacts)


def _print_front(study: Any, metric_names: list[str]) -> None:
    best = sorted(study.best_trials, key=lambda t: [-v if d.name == "MAXIMIZE" else v
                                                    for v, d in zip(t.values, study.directions)][::-1])
    print(f"\nPareto front of study {study.study_name!r} ({len(study.trials)} trials, {len(best)} on the front):")
    header = ["trial", *metric_names, "params", "arch_key"]
    rows = [[str(t.number), *(f"{v:.4f}" if n == "accuracy" else f"{v:,.0f}" for v, n in zip(t.values, metric_names)),
             f"{t.user_attrs.get('params', 0):,}", t.user_attrs.get("arch_key", "")] for t in best]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


def _export(args: argparse.Namespace, data: Any, study: Any = None) -> Path:
    from .evaluation import evaluate_model
    from .export import save_subnet
    from .objective import pick_trial

    evaluator, space, state = _evaluator(args, data)
    study = study if study is not None else _load_study(args)
    trial = pick_trial(study, args.trial)
    arch = space.validate(trial.params)
    subnet = evaluator.subnet(arch, deploy=True)  # stabilizers (if any) dropped, BN recalibrated for that
    accuracy, _ = evaluate_model(subnet, data.val, device=evaluator.device)
    meta = {"trial": trial.number, "study": study.study_name, "val_accuracy": accuracy,
            "supernet_score": evaluator.score(arch).accuracy, "supernet": state["supernet"]}
    if args.finetune_epochs:
        from .paths import FixedPath
        from .training import TrainConfig, train_supernet

        train_supernet(subnet, data.train, TrainConfig(epochs=args.finetune_epochs, lr=0.01, seed=args.seed),
                       sampler=FixedPath(space, arch), device=args.device, progress=not args.quiet)
        meta["finetuned_val_accuracy"], _ = evaluate_model(subnet, data.val, device=evaluator.device)
        meta["finetune_epochs"] = args.finetune_epochs
    out = save_subnet(subnet, space, arch, args.out, metadata=meta, example_input=evaluator.supernet.example_input())
    print(f"\nexported trial {trial.number} ({space.key(arch)}) to {out}/: val accuracy {accuracy:.4f}"
          + (f", after fine-tuning {meta['finetuned_val_accuracy']:.4f}" if args.finetune_epochs else ""))
    if args.artifacts:
        from .dashboard import upload_artifacts
        from .export import SPEC_FILE, WEIGHTS_FILE

        # study artifacts: Optuna attaches none to a finished trial, so the name says which trial it is
        prefix = f"trial{trial.number}_"
        ids = upload_artifacts(study, [out / WEIGHTS_FILE, out / SPEC_FILE], args.artifacts, prefix=prefix)
        exported = {**study.user_attrs.get("exported", {}), str(trial.number): ids}
        study.set_user_attr("exported", exported)
        print(f"uploaded {prefix}{WEIGHTS_FILE} and {prefix}{SPEC_FILE} as study artifacts to {args.artifacts}")
    return out


def _load_study(args: argparse.Namespace) -> Any:
    import optuna

    from .workers import make_storage

    try:
        return optuna.load_study(study_name=args.study_name, storage=make_storage(args.storage))
    except KeyError:
        raise UsageError(f"No study {args.study_name!r} in {args.storage!r}; run `optuna-kshot search` first.") \
            from None


def _retrain(args: argparse.Namespace, data: Any, study: Any = None, out: str | Path | None = None) -> Any:
    """Retrain the picked trial's arch (and the reference arch) with the same budget; report test accuracy."""
    _use_threads(_threads(args))
    from .export import save_subnet
    from .objective import pick_trial
    from .retrain import reference_arch, retrain
    from .training import TrainConfig

    evaluator, space, state = _evaluator(args, data)
    study = study if study is not None else _load_study(args)
    trial = pick_trial(study, args.trial)
    lr = args.retrain_lr or (0.1 if args.retrain_init == "scratch" else 0.01)
    config = TrainConfig(epochs=args.retrain_epochs, lr=lr, seed=args.seed)
    curves: dict[str, list[Any]] = {}

    def run(arch: Any, label: str, init: str) -> Any:
        print(f"retraining the {label} arch {space.key(arch)} ({args.retrain_epochs} epochs, {init})", flush=True)
        result = retrain(evaluator.supernet, arch, data, config, init=init, evaluator=evaluator, device=args.device,
                         progress=not args.quiet)
        curves[label] = result.history
        return result

    # one after the other, each with every thread: measured faster on 2 cores than the two side by side with one
    # thread each (212 s vs about 190 s for the main job's pair; the reference arch is the larger and sets the pace)
    chosen = run(trial.params, "chosen", args.retrain_init)
    reference = None
    budgets = study.user_attrs.get("budgets", {})
    budget = budgets.get("MACs") or (budgets["FLOPs"] / 2 if "FLOPs" in budgets else None)
    if args.reference and evaluator.costs.available:
        reference = run(reference_arch(space, evaluator.costs, max_macs=budget, seed=args.seed), "reference", "scratch")
    out = Path(out or args.out)
    meta = {"trial": trial.number, "study": study.study_name, "retrained": True, "init": chosen.init,
            "epochs": args.retrain_epochs, "val_accuracy": chosen.val_accuracy, "test_accuracy": chosen.test_accuracy,
            "supernet_score": evaluator.score(trial.params).accuracy}
    if reference is not None:
        meta["reference"] = {"arch_key": reference.key, "test_accuracy": reference.test_accuracy,
                             "val_accuracy": reference.val_accuracy}
    save_subnet(chosen.model, space, trial.params, out, metadata=meta,
                example_input=evaluator.supernet.example_input())
    costs = evaluator.costs(trial.params) if evaluator.costs.available else {}
    line = (f"\nretrained trial {trial.number} ({chosen.key}): test accuracy {_acc(chosen.test_accuracy)} "
            f"(val {chosen.val_accuracy:.4f}, supernet score {meta['supernet_score']:.4f}"
            + (f", {costs['MACs']:,} MACs" if costs else "") + f") -> {out}/")
    print(line)
    if reference is not None:
        ref_macs = evaluator.costs(reference.arch)["MACs"]
        print(f"reference arch {reference.key} (the most MACs {'under the budget' if budget else 'sampled'}, "
              f"{ref_macs:,} MACs), same budget: test accuracy {_acc(reference.test_accuracy)}")
    study.set_user_attr("retrained", {k: v for k, v in meta.items() if k != "study"})
    if getattr(args, "storage", None):
        from .dashboard import save_retraining

        save_retraining(study, curves)
    if args.artifacts:
        from .dashboard import upload_artifacts
        from .export import SPEC_FILE, WEIGHTS_FILE

        upload_artifacts(study, [out / WEIGHTS_FILE, out / SPEC_FILE], args.artifacts,
                         prefix=f"trial{trial.number}_retrained_")
    return chosen


def _acc(value: float | None) -> str:
    return "n/a (no test split)" if value is None else f"{value:.4f}"


def _dashboard(args: argparse.Namespace) -> int:
    """optuna-dashboard on the storage, with the artifact store (blocks until interrupted)."""
    import socket

    from optuna_dashboard import run_server

    from .workers import make_storage

    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be in 1..65535, not {args.port}.")
    with socket.socket() as probe:  # a busy port is one line, not the server's traceback
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((args.host, args.port))
        except OSError as e:
            raise UsageError(f"Cannot listen on {args.host}:{args.port} ({e.strerror or e}).") from None
    store = None
    if args.artifacts:
        from optuna.artifacts import FileSystemArtifactStore

        if not Path(args.artifacts).is_dir():
            raise UsageError(f"--artifacts {args.artifacts!r} is not a directory.")
        store = FileSystemArtifactStore(args.artifacts)
    storage = make_storage(args.storage)  # a bad storage is an error before the server announces itself
    print(f"optuna-dashboard on http://{args.host}:{args.port}/dashboard (Ctrl-C to stop)", flush=True)
    try:
        run_server(storage, host=args.host, port=args.port, artifact_store=store)
    except KeyboardInterrupt:
        pass
    return 0


def _threads(args: argparse.Namespace) -> int:
    """The CPU threads this command may use: --threads, else $OMP_NUM_THREADS, else every core."""
    import os

    if getattr(args, "threads", None):
        return int(args.threads)
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else (os.cpu_count() or 1)


def _use_threads(n: int) -> None:
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    if torch.cuda.is_available():  # fixed input shapes: let cuDNN pick its fastest kernels (this process only)
        torch.backends.cudnn.benchmark = True


def _check_args(args: argparse.Namespace) -> None:
    """Every numeric option checked before any work (no study created or supernet trained on a bad one)."""
    positive = ("trials", "epochs", "batch_size", "k", "simplex_every", "calib_batches", "n_jobs", "heartbeat",
                "threads", "monitor_every", "stable_checks", "budget_images", "checkpoint_every", "cells", "channels")
    for name in positive:
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be a positive integer, not {value}.")
    for name in ("retrain_epochs", "finetune_epochs", "monitor"):
        value = getattr(args, name, None)
        if value is not None and value < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be 0 or more, not {value}.")
    if getattr(args, "monitor", 0) and args.monitor < 3:
        raise UsageError(f"--monitor needs at least 3 probe archs to rank (or 0 to turn it off), not {args.monitor}.")
    for name in ("lr", "width_mult", "max_macs", "max_flops", "max_params", "retrain_lr", "fewshot_width"):
        value = getattr(args, name, None)
        if value is not None and not value > 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, not {value}.")
    if getattr(args, "warmup", None) is not None and not 0 <= args.warmup < 1:
        raise UsageError(f"--warmup is a share of the training steps in [0, 1), not {args.warmup}.")
    if getattr(args, "stop_when_stable", None) is not None and not -1 <= args.stop_when_stable <= 1:
        raise UsageError(f"--stop-when-stable is a Kendall tau in [-1, 1], not {args.stop_when_stable}.")
    if getattr(args, "objectives", None) is not None:
        from .objective import parse_objectives

        try:
            parse_objectives(args.objectives)
        except ValueError:
            raise UsageError(f"--objectives takes distinct names from accuracy,macs,flops,params, not "
                             f"{args.objectives!r}.") from None


# ------------------------------------------------------------------------------------------------ main
def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    from .checkpoint import CheckpointError

    try:
        _check_args(args)
        if args.command == "dashboard":
            return _dashboard(args)
        from .data import load_data

        data = load_data(args.data)
        if args.command == "train":
            _train(args, data)
        elif args.command == "search":
            _search(args, data)
        elif args.command == "export":
            _export(args, data)
        elif args.command == "retrain":
            _retrain(args, data)
        else:
            import time

            start = stage = time.perf_counter()
            stages: list[str] = []

            def lap(name: str) -> None:
                nonlocal stage
                now = time.perf_counter()
                stages.append(f"{name} {now - stage:.0f} s")
                stage = now

            _train(args, data)
            lap("training")
            study = _search(args, data)
            lap("search")
            _export(args, data, study)
            lap("export")
            if args.retrain_epochs:
                _retrain(args, data, study, out=Path(args.out).parent / "retrained")
                lap("retraining")
            print(f"\ndone in {time.perf_counter() - start:.1f} s ({', '.join(stages)})")
    except (UsageError, CheckpointError, FileNotFoundError, ValueError, TypeError, FloatingPointError) as e:
        if args.verbose:
            raise
        print(f"optuna-kshot {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the last checkpoint and every finished trial are kept", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

