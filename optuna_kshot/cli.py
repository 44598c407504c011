"""The ``optuna-kshot`` command line: ``train``, ``search``, ``export`` and ``run`` (all three in one).

Heavy imports (torch, optuna) happen inside the handlers so that ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser"]

SAMPLERS = ("nsga2", "tpe", "random")


class UsageError(ValueError):
    """Bad command-line input; reported as one line with exit status 2."""


# ------------------------------------------------------------------------------------------------ options
def _add_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="default",
                   help="'default' (built-in Fashion-MNIST subset), 'fashion-mnist[:DIR]' (Debian idx files), "
                        "or 'cifar10:DIR' and other torchvision sets from a directory (default: %(default)s)")
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
    p.add_argument("--k", type=int, default=4, help="K-shot: weight copies per op (default: %(default)s)")
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
    p.add_argument("--path-sampler", default=None, choices=("uniform", "flops-bins", "fair", "balanced"),
                   help="training path sampling: SPOS uniform, uniform over MACs bins, FairNAS, or few-shot "
                        "supernet-balanced (default: balanced for fewshot, else uniform)")
    p.add_argument("--epochs", type=int, default=10, help="training epochs (default: %(default)s)")
    p.add_argument("--budget-images", type=int, default=None, help="train for this many images instead of epochs")
    p.add_argument("--batch-size", type=int, default=64, help="(default: %(default)s)")
    p.add_argument("--lr", type=float, default=0.1, help="(default: %(default)s)")
    p.add_argument("--checkpoint", default="runs/supernet.pt", help="supernet checkpoint (default: %(default)s)")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint and train anew")
    p.add_argument("--checkpoint-every", type=int, default=None,
                   help="also write the checkpoint every this many steps (default: after every epoch only)")


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
    p.add_argument("--calib-batches", type=int, default=2, help="BN recalibration batches (default: %(default)s)")
    p.add_argument("--n-jobs", type=int, default=1, help="threads scoring trials (default: %(default)s)")
    p.add_argument("--heartbeat", type=int, default=5,
                   help="RDB storages: heartbeat interval in seconds; a trial silent for 4x that is failed and "
                        "retried (default: %(default)s)")


def _add_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trial", type=int, default=None,
                   help="trial number to export (default: the most accurate feasible Pareto-optimal trial)")
    p.add_argument("--out", default="runs/subnet", help="output directory (default: %(default)s)")
    p.add_argument("--finetune-epochs", type=int, default=0, help="fine-tune the exported subnet (default: 0)")


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
    _add_data(p)
    p = sub.add_parser("search", help="run an Optuna study whose trials are scored by a trained supernet")
    _add_search(p, with_checkpoint=True)
    _add_data(p)
    p = sub.add_parser("export", help="export a trial's arch as a plain PyTorch subnet with inherited weights")
    p.add_argument("--checkpoint", default="runs/supernet.pt", help="trained supernet (default: %(default)s)")
    p.add_argument("--storage", default="sqlite:///runs/study.db",
                   help="Optuna storage: sqlite:///FILE (one process), journal:FILE (processes on one host), "
                        "postgresql://... (many hosts) (default: %(default)s)")
    p.add_argument("--study-name", default="optuna-kshot", help="(default: %(default)s)")
    p.add_argument("--calib-batches", type=int, default=2, help="BN recalibration batches (default: %(default)s)")
    _add_export(p)
    _add_data(p)
    p = sub.add_parser("run", help="the main job: train, search and export in one go on the built-in data")
    _add_train(p)
    _add_search(p, with_checkpoint=False)
    _add_export(p)
    _add_data(p)
    p.set_defaults(trials=60)
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


def _train(args: argparse.Namespace, data: Any) -> Path:
    from .sampling import make_sampler
    from .supernet import load_supernet, make_supernet, supernet_metadata
    from .training import TrainConfig, init_distributed_from_env, train_supernet

    rank, world = init_distributed_from_env(args.device)
    space = _space_for(args, data)
    config = TrainConfig(epochs=args.epochs, budget_images=args.budget_images, batch_size=args.batch_size,
                         lr=args.lr, seed=args.seed, checkpoint_every_steps=args.checkpoint_every)
    options: dict[str, Any] = {"k": args.k} if args.supernet == "kshot" else {}
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
    if args.path_sampler is None:
        args.path_sampler = "balanced" if args.supernet == "fewshot" else "uniform"
    if args.stabilizer:
        options["stabilizer"] = True
    base = None
    if args.init_from:
        if args.supernet not in ("kshot", "fewshot"):
            raise UsageError("--init-from starts a K-shot or few-shot supernet from a one-shot one; "
                             "add --supernet kshot or --supernet fewshot.")
        base, base_space, state = load_supernet(args.init_from, space=space)
        if state["supernet"]["kind"] != "oneshot":
            raise UsageError(f"--init-from needs a one-shot checkpoint, but {args.init_from!r} is {state['supernet']}.")
    supernet = make_supernet(space, args.supernet, seed=args.seed, base=base, **options)
    result = train_supernet(
        supernet, data.train, config,
        sampler=make_sampler(args.path_sampler, space, seed=args.seed, supernet=supernet),
        device=args.device, checkpoint=args.checkpoint, resume=not args.restart, progress=not args.quiet,
        metadata={**supernet_metadata(space, args.supernet, **options), "data": data.name,
                  "path_sampler": args.path_sampler, "init_from": args.init_from},
    )
    last = result.history[-1] if result.history else None
    if rank != 0:
        return Path(args.checkpoint)
    print(f"trained {args.supernet} supernet on {space!r}: {result.steps} steps, {result.images:,} images, "
          f"{result.seconds:.1f} s" + (f", last epoch loss {last.loss:.3f}" if last else ""))
    print(f"checkpoint: {args.checkpoint}")
    return Path(args.checkpoint)


def _evaluator(args: argparse.Namespace, data: Any) -> tuple[Any, Any, dict[str, Any]]:
    from .evaluation import SupernetEvaluator
    from .supernet import load_supernet

    supernet, space, state = load_supernet(args.checkpoint)
    if state.get("data") not in (None, data.name):
        logging.getLogger(__name__).warning("The supernet was trained on %s, not on %s.", state["data"], data.name)
    evaluator = SupernetEvaluator(supernet, space, data.train, data.val, calib_batches=args.calib_batches,
                                  device=args.device, seed=args.seed)
    return evaluator, space, state


def _search(args: argparse.Namespace, data: Any) -> Any:
    import optuna

    from .objective import SupernetObjective
    from .workers import make_storage, run_worker

    evaluator, space, state = _evaluator(args, data)
    objectives = tuple(o.strip() for o in args.objectives.split(",") if o.strip())
    objective = SupernetObjective(
        evaluator, objectives=objectives, max_macs=args.max_macs, max_flops=args.max_flops,
        max_params=args.max_params,
        user_attrs={"supernet_kind": state["supernet"]["kind"], "checkpoint": str(args.checkpoint)},
    )
    storage = make_storage(args.storage, heartbeat_interval=args.heartbeat, grace_period=4 * args.heartbeat)
    study = optuna.create_study(storage=storage, study_name=args.study_name,
                                directions=objective.directions, sampler=_sampler(args.sampler, args.seed),
                                load_if_exists=True)
    objective.prepare(study)
    study.set_user_attr("space", space.to_config())
    study.set_user_attr("objectives", list(objectives))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # --trials is the study's total: workers started on the same storage share it and stop together
    if args.n_jobs > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(args.n_jobs) as pool:
            list(pool.map(lambda i: run_worker(study, objective, args.trials, show_progress_bar=i == 0
                                               and not args.quiet), range(args.n_jobs)))
    else:
        run_worker(study, objective, args.trials, show_progress_bar=not args.quiet)
    _print_front(study, objective.metric_names)
    return study


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


def _pick_trial(study: Any, number: int | None) -> Any:
    from optuna.trial import TrialState

    if number is not None:
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.number == number:
                return t
        raise UsageError(f"Study {study.study_name!r} has no completed trial number {number}.")
    if not study.best_trials:
        raise UsageError(f"Study {study.study_name!r} has no completed feasible trial to export.")
    return max(study.best_trials, key=lambda t: t.user_attrs.get("accuracy", t.values[0]))


def _export(args: argparse.Namespace, data: Any, study: Any = None) -> Path:
    import optuna

    from .evaluation import evaluate_model
    from .export import save_subnet

    evaluator, space, state = _evaluator(args, data)
    if study is None:
        try:
            from .workers import make_storage

            study = optuna.load_study(study_name=args.study_name, storage=make_storage(args.storage))
        except KeyError:
            raise UsageError(f"No study {args.study_name!r} in {args.storage!r}; run `optuna-kshot search` first.") \
                from None
    trial = _pick_trial(study, args.trial)
    arch = space.validate(trial.params)
    subnet = evaluator.subnet(arch, deploy=True)  # stabilizers (if any) dropped, BN recalibrated for that
    accuracy, _ = evaluate_model(subnet, data.val, device=evaluator.device)
    meta = {"trial": trial.number, "study": study.study_name, "val_accuracy": accuracy,
            "supernet_score": evaluator.score(arch).accuracy, "supernet": state["supernet"]}
    if args.finetune_epochs:
        from .sampling import FixedSampler
        from .training import TrainConfig, train_supernet

        train_supernet(subnet, data.train, TrainConfig(epochs=args.finetune_epochs, lr=0.01, seed=args.seed),
                       sampler=FixedSampler(space, arch), device=args.device, progress=not args.quiet)
        meta["finetuned_val_accuracy"], _ = evaluate_model(subnet, data.val, device=evaluator.device)
        meta["finetune_epochs"] = args.finetune_epochs
    out = save_subnet(subnet, space, arch, args.out, metadata=meta)
    print(f"\nexported trial {trial.number} ({space.key(arch)}) to {out}/: val accuracy {accuracy:.4f}"
          + (f", after fine-tuning {meta['finetuned_val_accuracy']:.4f}" if args.finetune_epochs else ""))
    return out


# ------------------------------------------------------------------------------------------------ main
def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    from .checkpoint import CheckpointError

    try:
        from .data import load_data

        data = load_data(args.data)
        if args.command == "train":
            _train(args, data)
        elif args.command == "search":
            _search(args, data)
        elif args.command == "export":
            _export(args, data)
        else:
            import time

            start = time.perf_counter()
            _train(args, data)
            study = _search(args, data)
            _export(args, data, study)
            print(f"\ndone in {time.perf_counter() - start:.1f} s")
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

