"""Ranking benchmark: how well each supernet kind ranks archs against stand-alone ground truth, with supernet seeds,
bootstrap intervals and free predictors beside every figure.

Ground truth (_gt.py): a fixed, seeded sample of archs (``uniform``: as a search meets them; ``depth``: spread over
depth), each trained stand-alone with several seeds (test accuracy, mean over seeds), cached as JSON in
benchmarks/results/ and reused (ground_truth.py trains it ahead of time); or your own archs: --arch-file. Every
supernet kind is trained with each seed at the same budget (training images seen, every path of a step counted)
and scores the same archs on the validation split. MACs, params, depth and ENN rank the same archs for free: a kind
is worth what it adds above the best of them. Intervals: paired bootstrap over archs (_stats.py).

    python benchmarks/ranking.py --space nb201 --data fashion-mnist          # 60 uniform archs, 3 seeds per kind
    python benchmarks/ranking.py --space macro --data fashion-mnist --search # + NSGA-II under two MACs budgets
    python benchmarks/ranking.py --space macro --arch-file mine.json         # your archs and their accuracies
    python benchmarks/ranking.py --space nb201 --data fashion-mnist --kinds kshot4 --merge  # re-run one kind
    python benchmarks/ranking.py --markdown results/ranking_nb201_fashion-mnist_uniform.json  # README table
    python benchmarks/ranking.py --smoke                                     # seconds, for the test suite
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import _stats
import numpy as np
import torch
from _gt import RESULTS, SAMPLES, depth, ground_truth, sample_archs
from ground_truth import make_space

import optuna_kshot as ok

# kind name -> how to build and train it. "transfer": share of the budget spent on a one-shot supernet first, whose
# weights the sub-supernets start from (few-shot by op, split on the space's first choice); "ensemble": that many
# one-shot supernets (seeds s, s+100, ...) sharing the budget, their scores averaged; "snapshots": n also scores
# with the average of the last n epochs' weights of the same training (ok.LateSnapshots), an extra row
# "<kind>-snap<n>" at no extra training cost.
KINDS: dict[str, dict[str, Any]] = {
    "oneshot": {"kind": "oneshot", "options": {}, "sampler": "uniform", "snapshots": 3},
    "fair": {"kind": "oneshot", "options": {}, "sampler": "fair"},
    # K-shot rows pin simplex_every=1 (the library default became 4 after these rows were measured)
    "kshot2": {"kind": "kshot", "options": {"k": 2, "simplex_every": 1}, "sampler": "uniform"},
    "kshot4": {"kind": "kshot", "options": {"k": 4, "simplex_every": 1}, "sampler": "uniform"},
    "kshot2-every4": {"kind": "kshot", "options": {"k": 2, "simplex_every": 4}, "sampler": "uniform"},
    "kshot2-every8": {"kind": "kshot", "options": {"k": 2, "simplex_every": 8}, "sampler": "uniform",
                      "snapshots": 3},
    "fewshot-op": {"kind": "fewshot", "options": {"split": "op:<first choice>"}, "sampler": "balanced",
                   "transfer": 0.5},
    "fewshot-enn": {"kind": "fewshot", "options": {"split": "enn"}, "sampler": "balanced"},
    # few-shot by ENN with full-width sub-supernets (the default narrows them to about 1/groups)
    "fewshot-enn-full": {"kind": "fewshot", "options": {"split": "enn", "width_ratio": 1.0}, "sampler": "balanced"},
    "oneshot+stab": {"kind": "oneshot", "options": {"stabilizer": True}, "sampler": "uniform"},
    "kshot2+stab": {"kind": "kshot", "options": {"k": 2, "simplex_every": 1, "stabilizer": True},
                    "sampler": "uniform"},
    "oneshot-ens3": {"kind": "oneshot", "options": {}, "sampler": "uniform", "ensemble": 3},
    # training recipes of a one-shot supernet: learning-rate warm-up; the sandwich rule with in-place distillation
    "oneshot-warmup": {"kind": "oneshot", "options": {}, "sampler": "uniform", "warmup": 0.05},
    "sandwich": {"kind": "oneshot", "options": {}, "sampler": "sandwich", "warmup": 0.05},
}
FREE = ("macs", "params", "depth", "enn")  # free predictors, each ranking archs higher = better
SMOKE_KINDS = ("oneshot", "kshot2", "oneshot-ens3")
TOP_K = 5


def smoke_data() -> ok.DataSplits:
    """The built-in data cut to 1,200 training and 500 validation and test images (``--smoke``: stand-alone
    ground truth in about a second per run)."""
    d = ok.load_default()
    return ok.DataSplits(d.train.subset(slice(0, 1200)), d.val.subset(slice(0, 500)), d.test.subset(slice(0, 500)),
                         d.num_classes, "fashion-mnist-small[:1200]")


# ---------------------------------------------------------------------------------------------- arguments
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line settings, with ``--smoke`` and ``--quick`` applied."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="layerwise", choices=("layerwise", "macro", "nb201"))
    p.add_argument("--sample", default="uniform", choices=SAMPLES,
                   help="arch sample: as a search meets them, or spread over depth (default: %(default)s)")
    p.add_argument("--archs", type=int, default=60, help="ground-truth sample size (default: %(default)s)")
    p.add_argument("--arch-file", default=None, help="your ground truth: JSON list of {'arch': {...}, 'accuracy': x}")
    p.add_argument("--data", default="default", help="data spec (default: %(default)s)")
    p.add_argument("--resolution", type=int, default=None, help="default: 14 (chain spaces), 16 (nb201)")
    p.add_argument("--width-mult", type=float, default=0.25, help="chain spaces (default: %(default)s)")
    p.add_argument("--channels", type=int, default=8, help="NAS-Bench-201 C (default: %(default)s)")
    p.add_argument("--cells", type=int, default=1, help="NAS-Bench-201 N (default: %(default)s)")
    p.add_argument("--gt-epochs", type=int, default=1, help="stand-alone epochs (default: %(default)s)")
    p.add_argument("--gt-seeds", default="0,1", help="stand-alone seeds (default: %(default)s)")
    p.add_argument("--seeds", default="0,1,2", help="supernet seeds, every kind each (default: %(default)s)")
    p.add_argument("--kinds", default=None, help=f"from {list(KINDS)} (default: all)")
    p.add_argument("--budget-images", type=int, default=200_000,
                   help="supernet training images, the same for every kind (default: %(default)s)")
    p.add_argument("--lr", type=float, default=0.1, help="supernet learning rate (default: %(default)s)")
    p.add_argument("--bootstrap", type=int, default=2000, help="arch resamples (default: %(default)s)")
    p.add_argument("--search", action="store_true", help="NSGA-II under two MACs budgets, picks trained stand-alone")
    p.add_argument("--search-trials", type=int, default=100, help="(default: %(default)s)")
    p.add_argument("--workers", type=int, default=2, help="processes, 1 thread each (default: %(default)s)")
    p.add_argument("--cache-dir", default=str(Path(__file__).resolve().parent / ".cache"),
                   help="where each finished (kind, seed) run is kept, so a rerun resumes (default: %(default)s)")
    p.add_argument("--gt-dir", default=str(RESULTS), help="ground-truth cache directory (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="30 archs, 2 seeds, a third of the budget")
    p.add_argument("--smoke", action="store_true", help="tiny everything, seconds (for tests)")
    p.add_argument("--out", default=None, help="JSON output (default: results/ranking_<space>_<data>_<sample>.json)")
    p.add_argument("--merge", action="store_true", help="re-run some kinds: replace their rows in an existing output "
                   "of the same ground truth and budget, keep the other rows")
    p.add_argument("--markdown", nargs="?", const="", default=None, metavar="RESULT",
                   help="print the table as markdown (of RESULT.json, without running anything, if given)")
    p.add_argument("--reanalyse", metavar="RESULT",
                   help="recompute the statistics and claims of a saved RESULT.json from its scores (no training) "
                        "and write it back")
    args = p.parse_args(argv)
    if args.smoke:
        args.archs, args.gt_epochs, args.budget_images, args.width_mult, args.resolution = 6, 1, 512, 0.125, 8
        args.data, args.seeds, args.bootstrap, args.workers, args.search_trials = (
            "ranking:smoke_data", "0,1", 200, 1, 10)
        args.kinds = args.kinds or ",".join(SMOKE_KINDS)
    elif args.quick:
        args.archs, args.budget_images, args.seeds, args.bootstrap = 30, args.budget_images // 3, "0,1", 1000
    args.resolution = args.resolution or (16 if args.space == "nb201" else 14)
    args.seeds = [int(s) for s in str(args.seeds).split(",")]
    args.gt_seeds = [int(s) for s in str(args.gt_seeds).split(",")]
    args.kinds = [k.strip() for k in (args.kinds or ",".join(KINDS)).split(",") if k.strip()]
    unknown = [k for k in args.kinds if k not in KINDS]
    if unknown:
        raise SystemExit(f"unknown kinds {unknown}; choose from {list(KINDS)}")
    if args.search and args.arch_file:
        raise SystemExit("--search trains the picked archs stand-alone with the ground truth's settings; "
                         "it cannot run with --arch-file")
    return args


def load_split(spec: str, resolution: int) -> ok.DataSplits:
    """Data of ``spec`` at ``resolution`` pixels."""
    return ok.load_data(spec).resized(resolution)


# ---------------------------------------------------------------------------------------------- ground truth
def user_ground_truth(path: str, space: ok.SearchSpace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Archs and accuracies from a JSON list of ``{"arch": {...}, "accuracy": float}`` (no ceiling known)."""
    entries = json.loads(Path(path).read_text())
    if not isinstance(entries, list) or len(entries) < 4:
        raise SystemExit(f"--arch-file {path}: expected a JSON list of >= 4 {{'arch', 'accuracy'}} objects")
    try:
        archs = [space.validate(e["arch"]) for e in entries]
        accuracy = [float(e["accuracy"]) for e in entries]
    except (KeyError, TypeError, ValueError) as exc:
        raise SystemExit(f"--arch-file {path}: {exc} (the archs must belong to --space {space.kind})") from exc
    return archs, {"path": str(Path(path).resolve()), "mean": accuracy, "per_seed": [accuracy], "seeds": [],
                   "ceiling": float("nan"), "seconds": 0.0, "metric": "accuracy from --arch-file"}


def load_ground_truth(args: argparse.Namespace, space: ok.SearchSpace) -> tuple[list[dict[str, Any]], dict]:
    """The arch sample and its ground truth: the user's, or stand-alone runs (trained where not cached)."""
    if args.arch_file:
        return user_ground_truth(args.arch_file, space)
    archs = sample_archs(space, args.archs, args.sample)
    gt = ground_truth(space, archs, data=args.data, resolution=args.resolution, epochs=args.gt_epochs,
                      seeds=tuple(args.gt_seeds), sample=args.sample, workers=args.workers, gt_dir=args.gt_dir)
    return archs, {**gt, "metric": "stand-alone test accuracy"}


def features(space: ok.SearchSpace, archs: list[dict[str, Any]]) -> dict[str, list[float]]:
    """The free predictors of every arch: MACs, params, depth (non-skip layers; NAS-Bench-201: conv edges), ENN."""
    return {"macs": [float(space.count_macs(a)) for a in archs],
            "params": [float(space.count_params(a)) for a in archs],
            "depth": [float(depth(space, a)) for a in archs], "enn": [float(ok.enn(space, a)) for a in archs]}


# ---------------------------------------------------------------------------------------------- supernets
def _init_worker() -> None:
    import optuna

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _options(spec: dict[str, Any], space: ok.SearchSpace) -> dict[str, Any]:
    """The kind's supernet options (few-shot by op splits on the space's first choice)."""
    options = dict(spec["options"])
    if str(options.get("split", "")).startswith("op:"):
        options["split"] = f"op:{space.choices[0].name}"
    return options


def _fit(supernet: Any, space: ok.SearchSpace, data: ok.DataSplits, sampler: str, budget: int, lr: float,
         seed: int, warmup: float = 0.0, callbacks: tuple[Any, ...] = ()) -> int:
    """Train ``supernet`` on ``budget`` images; return the images it saw."""
    config = ok.TrainConfig(budget_images=budget, batch_size=64, lr=lr, seed=seed, warmup=warmup)
    sampler_ = ok.make_path_sampler(sampler, space, supernet=supernet)
    return ok.train_supernet(supernet, data.train, config, sampler=sampler_, progress=False,
                             callbacks=callbacks).images


def train_one(space: ok.SearchSpace, data: ok.DataSplits, spec: dict[str, Any], seed: int, budget: int,
              lr: float, callbacks: tuple[Any, ...] = ()) -> tuple[Any, int]:
    """One supernet of ``spec`` trained within ``budget`` images (a one-shot transfer share included);
    ``callbacks`` see the supernet's own training (not the transfer share's)."""
    images, base = 0, None
    if spec.get("transfer"):
        base = ok.make_supernet(space, seed=seed)
        images += _fit(base, space, data, "uniform", int(budget * spec["transfer"]), lr, seed)
    supernet = ok.make_supernet(space, spec["kind"], seed=seed, base=base, **_options(spec, space))
    images += _fit(supernet, space, data, spec["sampler"], budget - images, lr, seed, spec.get("warmup", 0.0),
                   callbacks)
    return supernet, images


def train_scorer(space: ok.SearchSpace, data: ok.DataSplits, spec: dict[str, Any], seed: int, budget: int,
                 lr: float) -> tuple[Any, int, ok.LateSnapshots | None]:
    """The evaluator of one (kind, seed), the images its training saw, and its last ``spec["snapshots"]``
    epochs' weights (None without). The evaluator is one supernet's, or the average of ``spec["ensemble"]``
    one-shot supernets (seeds ``seed + 100 m``) that share the budget."""
    members = int(spec.get("ensemble", 1))
    snaps = ok.LateSnapshots(int(spec["snapshots"])) if spec.get("snapshots") and members == 1 else None
    evaluators, images = [], 0
    for m in range(members):
        supernet, n = train_one(space, data, spec, seed + 100 * m, budget // members, lr,
                                (snaps,) if snaps is not None else ())
        evaluators.append(ok.SupernetEvaluator(supernet, space, data.train, data.val, calib_batches=4))
        images += n
    return (evaluators[0] if members == 1 else ok.EnsembleEvaluator(evaluators)), images, snaps


def search(evaluator: Any, max_macs: float, trials: int) -> dict[str, Any]:
    """NSGA-II on (accuracy, MACs) under ``max_macs``, scored by ``evaluator``: its most accurate feasible
    Pareto trial."""
    import optuna

    objective = ok.SupernetObjective(evaluator, objectives=("accuracy", "macs"), max_macs=max_macs)
    study = objective.create_study(sampler=optuna.samplers.NSGAIISampler(seed=0, population_size=20))
    start = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    feasible = [t for t in study.best_trials if t.user_attrs.get("feasible", True)]
    best = max(feasible, key=lambda t: t.values[0], default=None)
    return {"max_macs": max_macs, "trials": trials, "seconds": time.perf_counter() - start,
            "arch": dict(best.params) if best else None, "supernet_accuracy": best.values[0] if best else None}


def _kind_job(job: dict[str, Any]) -> dict[str, Any]:
    """Train one (kind, seed), score the sample's archs, and search when asked (first seed only)."""
    space = ok.space_from_config(job["space"])
    data = load_split(job["data"], job["resolution"])
    start = time.perf_counter()
    evaluator, images, snaps = train_scorer(space, data, KINDS[job["kind"]], job["seed"], job["budget_images"],
                                            job["lr"])
    train_seconds = time.perf_counter() - start
    scores = [evaluator.score(a) for a in job["archs"]]
    score_seconds = time.perf_counter() - start - train_seconds
    picks = [search(evaluator, b, job["search_trials"]) for b in job["search_budgets"]]
    out = {"kind": job["kind"], "seed": job["seed"], "scores": [s.accuracy for s in scores],
           "losses": [s.loss for s in scores], "images": images, "train_seconds": train_seconds,
           "score_seconds": score_seconds, "search": picks or None}
    if snaps is not None:  # the last epochs' weights of the same training, their scores averaged
        t0 = time.perf_counter()
        late = snaps.evaluator(space, data.train, data.val, calib_batches=4)
        late_scores = [late.score(a) for a in job["archs"]]
        out["snapshots"] = {"images": snaps.images, "scores": [s.accuracy for s in late_scores],
                            "losses": [s.loss for s in late_scores], "score_seconds": time.perf_counter() - t0}
    return out


def _job_key(job: dict[str, Any]) -> str:
    """A short hash of everything a (kind, seed) run depends on (space, data, archs, budget, settings)."""
    return hashlib.sha256(json.dumps({**job, "spec": KINDS[job["kind"]]}, sort_keys=True, default=str)
                          .encode()).hexdigest()[:10]


def run_cached(fn: Callable[[dict[str, Any]], dict[str, Any]], jobs: list[dict[str, Any]], names: list[str],
               cache_dir: str | Path, *, workers: int, what: str, describe: Callable[[dict[str, Any]], str],
               initializer: Callable[[], None] | None = None, stamp: dict[str, Any] | None = None,
               cached_only: bool = False) -> dict[int, dict[str, Any]]:
    """``fn`` on every job in a process pool, each result kept as ``cache_dir/<name>-<job key>.json`` (with
    ``stamp`` added) so that a rerun reuses it and an interrupted benchmark resumes; ``cached_only`` runs nothing.
    Returns {job index: result} for the jobs that have one."""
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    paths = [cache / f"{name}-{_job_key(job)}.json" for name, job in zip(names, jobs)]
    done = {i: json.loads(p.read_text()) for i, p in enumerate(paths) if p.exists()}
    if done:
        print(f"  {len(done)} of {len(jobs)} {what} reused from {cache}", flush=True)
    todo = [] if cached_only else [i for i in range(len(jobs)) if i not in done]
    if todo:
        with ProcessPoolExecutor(workers, initializer=initializer) as pool:
            futures = {pool.submit(fn, jobs[i]): i for i in todo}
            for future in as_completed(futures):
                i = futures[future]
                done[i] = {**future.result(), **(stamp or {})}
                paths[i].write_text(json.dumps(done[i]))
                print(f"  {describe(done[i])}", flush=True)
    return done


def train_kinds(args: argparse.Namespace, space: ok.SearchSpace, archs: list[dict[str, Any]],
                budgets: list[float]) -> list[dict[str, Any]]:
    """Every (kind, seed) trained and scored in a process pool; one row per kind with per-seed lists."""
    jobs = [{"space": space.to_config(), "data": args.data, "resolution": args.resolution, "kind": k, "seed": s,
             "budget_images": args.budget_images, "lr": args.lr, "archs": archs, "search_trials": args.search_trials,
             "search_budgets": budgets if s == args.seeds[0] else []} for k in args.kinds for s in args.seeds]
    print(f"training {len(args.kinds)} kinds x {len(args.seeds)} seeds at {args.budget_images:,} images each "
          f"({args.workers} worker(s))", flush=True)
    commit = code_version()
    done = run_cached(_kind_job, jobs, [f"{j['kind']}-s{j['seed']}" for j in jobs], args.cache_dir,
                      workers=args.workers, what="(kind, seed) runs", initializer=_init_worker,
                      stamp={"commit": commit},
                      describe=lambda r: f"{r['kind']} seed {r['seed']}: {r['train_seconds']:.0f} s training")
    runs = [done[i] for i in range(len(jobs))]
    rows = []
    for kind in args.kinds:
        mine = [r for r in runs if r["kind"] == kind]
        row = {"kind": kind, "spec": KINDS[kind], "commit": commit, "seeds": [r["seed"] for r in mine]}
        for key in ("scores", "losses", "images", "train_seconds", "score_seconds"):
            row[key] = [r[key] for r in mine]
        row["search"] = mine[0]["search"]
        rows.append(row)
        if all("snapshots" in r for r in mine):  # the same trainings scored by their last epochs' average
            n = KINDS[kind]["snapshots"]
            rows.append({**row, "kind": f"{kind}-snap{n}", "snapshot_of": kind, "search": None,
                         "snapshot_images": [r["snapshots"]["images"] for r in mine],
                         "scores": [r["snapshots"]["scores"] for r in mine],
                         "losses": [r["snapshots"]["losses"] for r in mine],
                         "score_seconds": [r["snapshots"]["score_seconds"] for r in mine]})
    return rows


def kinds_for(space: ok.SearchSpace, kinds: list[str]) -> tuple[list[str], list[str]]:
    """The kinds that run on ``space`` and the skipped ones (NAS-Bench-201 refuses the stabilizer)."""
    if space.kind != "nb201":
        return kinds, []
    skipped = [k for k in kinds if KINDS[k]["options"].get("stabilizer")]
    return [k for k in kinds if k not in skipped], skipped


# ---------------------------------------------------------------------------------------------- search outcome
def _pick_gt_job(job: tuple[dict, dict, dict]) -> float:
    """Stand-alone GT accuracy of one arch (mean over the GT seeds), cached by _gt as a one-arch sample."""
    space_config, arch, settings = job
    space = ok.space_from_config(space_config)
    accuracies = []
    for seed in settings["seeds"]:  # one seed per call: a one-arch sample has no seed-to-seed ceiling
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            gt = ground_truth(space, [arch], data=settings["data"], resolution=settings["resolution"],
                              epochs=settings["epochs"], seeds=(seed,), sample="search", gt_dir=settings["gt_dir"])
        accuracies.append(gt["mean"][0])
    return float(np.mean(accuracies))


def search_outcome(args: argparse.Namespace, space: ok.SearchSpace, archs: list[dict[str, Any]],
                   truth: list[float], macs: list[float], rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Each kind's search pick trained stand-alone, beside the sample's best arch under the budget and the
    MACs-proxy pick (the sample's arch with the most MACs under the budget)."""
    picks = [(r["kind"], p) for r in rows for p in (r.get("search") or []) if p["arch"] is not None]
    if not picks:
        return None
    unique = {space.key(p["arch"]): p["arch"] for _, p in picks}
    settings = {"seeds": args.gt_seeds, "data": args.data, "resolution": args.resolution, "epochs": args.gt_epochs,
                "gt_dir": args.gt_dir}
    print(f"search: {len(unique)} picked archs, stand-alone ground truth", flush=True)
    with ProcessPoolExecutor(args.workers, initializer=_init_worker) as pool:
        jobs = [(space.to_config(), a, settings) for a in unique.values()]
        accuracy = dict(zip(unique, pool.map(_pick_gt_job, jobs)))
    truth_, macs_ = np.asarray(truth), np.asarray(macs)
    reference = []
    for budget in sorted({p["max_macs"] for _, p in picks}):
        under = np.flatnonzero(macs_ <= budget)
        reference.append({"max_macs": budget, "archs_under_budget": len(under),
                          "best_sample_gt": float(truth_[under].max()) if len(under) else None,
                          "macs_proxy_gt": float(truth_[under[np.argmax(macs_[under])]]) if len(under) else None})
    found = [{"kind": k, "max_macs": p["max_macs"], "arch": p["arch"], "macs": float(space.count_macs(p["arch"])),
              "supernet_accuracy": p["supernet_accuracy"], "gt_accuracy": accuracy[space.key(p["arch"])],
              "in_sample": space.key(p["arch"]) in {space.key(a) for a in archs}} for k, p in picks]
    return {"trials": args.search_trials, "sampler": "NSGAIISampler(seed=0, population_size=20)",
            "reference": reference, "picks": found}


# ---------------------------------------------------------------------------------------------- analysis
def analyse(rows: list[dict[str, Any]], gt: dict[str, Any], feats: dict[str, list[float]], *, n_boot: int,
            seed: int = 0) -> dict[str, Any]:
    """Statistics of every supernet kind (in place on ``rows``) and free predictor, paired on one bootstrap;
    in-group taus (depth groups, MACs quartiles) get their own paired bootstrap, resampling inside each group."""
    truth = np.asarray(gt["mean"])
    index = _stats.bootstrap_index(len(truth), n_boot, seed)
    groups = {"depth": feats["depth"], "macs_bin": _stats.quartile_bins(feats["macs"])}
    group_index = {g: _stats.group_bootstrap_index(v, n_boot, seed) for g, v in groups.items()}
    baselines, boots, boots_in = [], {}, {}
    for name in FREE:
        stats_, boots[name] = _stats.summarise([feats[name]], truth, index, **groups, top_k=TOP_K)
        boots_in[name] = {g: _stats.resampled_within([feats[name]], truth, i) for g, i in group_index.items()}
        baselines.append({"kind": name, "free": True, **stats_})
    best = max(baselines, key=lambda r: r["tau_mean"] if np.isfinite(r["tau_mean"]) else -np.inf)
    for row in rows:
        stats_, boots[row["kind"]] = _stats.summarise(row["scores"], truth, index, **groups, top_k=TOP_K)
        boots_in[row["kind"]] = {g: _stats.resampled_within(row["scores"], truth, i) for g, i in group_index.items()}
        row.update(stats_)
    ceiling, ceiling_ci = gt["ceiling"], [float("nan")] * 2
    if len(gt["per_seed"]) >= 2:
        per_seed = np.asarray(gt["per_seed"])
        ceiling_ci = _stats.interval(_stats.tau_b_rows(per_seed[0][index], per_seed[1][index]))
    oneshot = next((r for r in rows if r["kind"] == "oneshot"), None)
    best_in = {}  # per grouping, the free predictor that ranks best inside the groups
    for g in groups:
        finite = [r for r in baselines if np.isfinite(r[f"tau_within_{g}"])]
        best_in[g] = max(finite, key=lambda r, g=g: r[f"tau_within_{g}"]) if finite else None
    for row in rows + baselines:
        row["diff_oneshot"] = (_stats.difference(boots[row["kind"]], boots["oneshot"], row["tau_mean"],
                                                 oneshot["tau_mean"]) if oneshot else None)
        row["diff_best_free"] = {"against": best["kind"], **_stats.difference(
            boots[row["kind"]], boots[best["kind"]], row["tau_mean"], best["tau_mean"])}
        row["tau_over_ceiling"] = row["tau_mean"] / ceiling if ceiling > 0 else float("nan")
        mine = boots_in[row["kind"]]
        row["within_ci"] = {g: _stats.interval(values) for g, values in mine.items()}
        row["diff_oneshot_within"] = {g: _stats.difference(
            mine[g], boots_in["oneshot"][g], row[f"tau_within_{g}"], oneshot[f"tau_within_{g}"])
            for g in groups} if oneshot else None
        row["diff_best_free_within"] = {g: {"against": b["kind"], **_stats.difference(
            mine[g], boots_in[b["kind"]][g], row[f"tau_within_{g}"], b[f"tau_within_{g}"])}
            for g, b in best_in.items() if b is not None}
        base = row.get("snapshot_of")
        if base in boots:  # late snapshots against the final weights of the same trainings
            base_tau = next(r["tau_mean"] for r in rows if r["kind"] == base)
            row["diff_snapshot_of"] = _stats.difference(boots[row["kind"]], boots[base], row["tau_mean"], base_tau)
    return {"baselines": baselines, "best_free": best["kind"], "ceiling_ci": ceiling_ci,
            "bootstrap": {"resamples": n_boot, "seed": seed, "level": _stats.LEVEL, "paired": True}}


# ---------------------------------------------------------------------------------------------- tables
COLUMNS = ("predictor", "tau mean ± std", "95% CI", "- oneshot [95% CI]", "- best free [95% CI]", "in depth",
           "in MACs bin", f"top-{TOP_K}", "top-1 GT", "train s")


def _f(value: Any, fmt: str) -> str:
    return "-" if value is None or not np.isfinite(value) else format(value, fmt)


def _diff(d: dict[str, Any] | None) -> str:
    if d is None or not np.isfinite(d["point"]):
        return "-"
    return f"{d['point']:+.3f} [{_f(d['ci'][0], '+.2f')}, {_f(d['ci'][1], '+.2f')}]"


def table_cells(result: dict[str, Any]) -> list[list[str]]:
    """One row of cells per supernet kind, then per free predictor (the columns of :data:`COLUMNS`)."""
    out = []
    for r in result["kinds"] + result["baselines"]:
        free = r.get("free", False)
        vs_oneshot = "reference" if r["kind"] == "oneshot" else _diff(r["diff_oneshot"])
        vs_free = "reference" if r["kind"] == result["best_free"] else _diff(r["diff_best_free"])
        tau = _f(r["tau_mean"], ".3f") + ("" if free else f" ± {_f(r['tau_std'], '.3f')}")
        name = f"{r['kind']} (free)" if free else r["kind"]
        train = "-" if free else f"{np.mean(r['train_seconds']):.0f}"
        out.append([name, tau, f"[{_f(r['tau_ci'][0], '+.2f')}, {_f(r['tau_ci'][1], '+.2f')}]",
                    vs_oneshot, vs_free, _f(r["tau_within_depth"], ".2f"),
                    _f(r["tau_within_macs_bin"], ".2f"), _f(r[f"top{TOP_K}_overlap"], ".1f"),
                    _f(r["top1_pick_gt"], ".4f"), train])
    return out


def header_lines(result: dict[str, Any]) -> list[str]:
    """What the table measures: space, sample, ground truth, ceiling, budget, seeds."""
    s, gt = result["settings"], result["ground_truth"]
    lo, hi = gt["ceiling_ci"]
    source = (f"--arch-file {s['arch_file']}" if s.get("arch_file") else
              f"{s['sample']} sample, GT {s['gt_epochs']} epoch(s) x seeds {gt['seeds']}")
    return [f"ranking vs ground truth ({gt['metric']}): {s['space']} space, data {s['data']} at {s['resolution']}px, "
            f"{len(gt['archs'])} archs ({source})",
            f"ceiling (seed-to-seed Kendall tau): {_f(gt['ceiling_kendall_tau'], '.3f')} "
            f"[{_f(lo, '.2f')}, {_f(hi, '.2f')}]; budget {s['budget_images']:,} images per kind; supernet seeds "
            f"{s['seeds']}; 95% intervals from {result['bootstrap']['resamples']} paired arch resamples; best free "
            f"predictor: {result['best_free']}"]


def print_table(result: dict[str, Any]) -> None:
    """The table on the console, fixed-width columns."""
    cells = [list(COLUMNS)] + table_cells(result)
    widths = [max(len(row[i]) for row in cells) + 2 for i in range(len(COLUMNS))]
    print("\n" + "\n".join(header_lines(result)))
    for row in cells:
        print(row[0].ljust(widths[0]) + "".join(c.rjust(w) for c, w in zip(row[1:], widths[1:])))


def markdown_table(result: dict[str, Any]) -> str:
    """The table as markdown (what the README pastes), from a result's JSON."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in table_cells(result)]
    return "\n".join(lines)


def claims(result: dict[str, Any]) -> list[str]:
    """Sentences that say only what the intervals support."""
    gt, out = result["ground_truth"], []
    if np.isfinite(gt["ceiling_kendall_tau"]):
        lo, hi = gt["ceiling_ci"]
        out.append(f"ceiling (seed-to-seed GT tau): {gt['ceiling_kendall_tau']:.2f} [{lo:.2f}, {hi:.2f}] "
                   f"over {len(gt['archs'])} archs")
    for r in result["kinds"]:
        lo, hi = r["tau_ci"]
        out.append(f"{r['kind']}: tau {r['tau_mean']:.2f} [{lo:.2f}, {hi:.2f}] ({len(r['seeds'])} seeds)")
        if r["diff_oneshot"] is not None and r["kind"] != "oneshot":
            out.append(_stats.claim(r["kind"], "oneshot", r["diff_oneshot"]))
        if r.get("diff_snapshot_of") and r["snapshot_of"] != "oneshot":
            out.append(_stats.claim(r["kind"], r["snapshot_of"], r["diff_snapshot_of"]))
        for g, where in (("depth", "within depth groups"), ("macs_bin", "within MACs quartiles")):
            inside = (r.get("diff_oneshot_within") or {}).get(g)
            if inside and r["kind"] != "oneshot":
                out.append(_stats.claim(r["kind"], "oneshot", inside, where))
            free = (r.get("diff_best_free_within") or {}).get(g)
            if free:
                out.append(_stats.claim(r["kind"], free["against"], free,
                                        f"{where} (the best free predictor there)"))
        out.append(_stats.claim(r["kind"], f"{result['best_free']} (best free predictor)", r["diff_best_free"]))
    return out


def print_depth_view(result: dict[str, Any]) -> None:
    """Tau inside each depth group (>= 4 archs) per predictor, and the mean GT accuracy per depth."""
    groups = sorted({d for r in result["kinds"] + result["baselines"] for d in r["tau_by_depth"]}, key=float)
    gt = result["ground_truth"]
    depths = np.asarray(result["archs"]["depth"])
    print("\ntau within depth groups (depth: non-skip layers; NAS-Bench-201: conv edges)")
    if not groups:
        print("  no depth group holds >= 4 archs")
        return
    print("predictor".ljust(22) + "".join(f"d={float(d):g} (n={(depths == float(d)).sum()})".rjust(14)
                                          for d in groups))
    for r in result["kinds"] + result["baselines"]:
        print(r["kind"].ljust(22) + "".join(_f(r["tau_by_depth"].get(d), ".2f").rjust(14) for d in groups))
    acc = np.asarray(gt["mean_test_accuracy"])
    print("GT mean accuracy".ljust(22) + "".join(f"{acc[depths == float(d)].mean():.4f}".rjust(14) for d in groups))


def print_search(outcome: dict[str, Any]) -> None:
    """Search picks' GT accuracy beside the sample's best and the MACs-proxy pick, per budget."""
    print(f"\nsearch outcome: NSGA-II, {outcome['trials']} trials per kind and budget, scored by each kind's first "
          "seed; stand-alone GT accuracy")
    for ref in outcome["reference"]:
        print(f"  MACs <= {ref['max_macs']:,.0f}: best sample arch {_f(ref['best_sample_gt'], '.4f')}, "
              f"MACs proxy {_f(ref['macs_proxy_gt'], '.4f')} ({ref['archs_under_budget']} sample archs under it)")
        for p in (p for p in outcome["picks"] if p["max_macs"] == ref["max_macs"]):
            print(f"    {p['kind']:<16} {p['gt_accuracy']:.4f}  (MACs {p['macs']:,.0f})")


# ---------------------------------------------------------------------------------------------- results
def code_version() -> str | None:
    """The git commit the package code is at (``-dirty`` with uncommitted changes to it), or None outside git."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "optuna_kshot"], cwd=root, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if dirty else "")


def merged_rows(out: Path, rows: list[dict[str, Any]], gt_path: str, budget: int) -> list[dict[str, Any]]:
    """``rows`` in place of the same kinds' rows of the result at ``out`` (same ground truth and budget)."""
    if not out.is_file():
        raise SystemExit(f"--merge: no earlier result at {out}")
    old = json.loads(out.read_text())
    if "baselines" not in old:
        raise SystemExit(f"--merge: {out} is a result of an older ranking.py; run without --merge")
    if old["ground_truth"]["path"] != gt_path or old["settings"]["budget_images"] != budget:
        raise SystemExit(f"--merge: {out} has another ground truth or budget; run without --merge")
    new = {r["kind"]: r for r in rows}
    kept = [new.pop(r["kind"], r) for r in old["kinds"]]
    return kept + list(new.values())


def reanalyse(path: Path) -> dict[str, Any]:
    """The statistics and claims of a saved result recomputed from its scores (same bootstrap settings), written
    back with the commit that recomputed them."""
    result = json.loads(path.read_text())
    if "baselines" not in result:
        raise SystemExit(f"--reanalyse: {path} is a result of an older ranking.py")
    gt = result["ground_truth"]
    truth = {"mean": gt["mean_test_accuracy"], "ceiling": gt["ceiling_kendall_tau"], "per_seed": gt["per_seed"]}
    boot = result["bootstrap"]
    stats_ = analyse(result["kinds"], truth, result["archs"], n_boot=boot["resamples"], seed=boot["seed"])
    gt["ceiling_ci"] = stats_.pop("ceiling_ci")
    result.update(stats_)
    result["analysed_by"] = code_version()
    result["claims"] = claims(result)
    report(result)
    from _results import write_result  # next to this script

    write_result(result, path)
    return result


def default_out(args: argparse.Namespace, space: ok.SearchSpace) -> Path:
    if args.out:
        return Path(args.out)
    tag = Path(args.arch_file).stem if args.arch_file else f"{args.data.split(':')[0]}_{args.sample}"
    return RESULTS / f"ranking_{space.kind}_{tag}.json"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.markdown:  # a saved result: print its table and claims only
        result = json.loads(Path(args.markdown).read_text())
        print(markdown_table(result) + "\n\n" + "\n".join(f"- {c}" for c in claims(result)))
        return result
    if args.reanalyse:
        return reanalyse(Path(args.reanalyse))
    torch.set_num_threads(1)
    start = time.perf_counter()
    data = load_split(args.data, args.resolution)
    space = make_space(args.space, data, width_mult=args.width_mult, channels=args.channels, cells=args.cells)
    archs, gt = load_ground_truth(args, space)
    gt_wall = time.perf_counter() - start
    feats = features(space, archs)
    args.kinds, skipped = kinds_for(space, args.kinds)
    if skipped:
        print(f"skipped on {space.kind} (the stabilizer is refused there): {skipped}")
    budgets = [float(b) for b in np.percentile(feats["macs"], [33, 66])] if args.search else []
    rows = train_kinds(args, space, archs, budgets)
    kinds_wall = time.perf_counter() - start - gt_wall
    out = default_out(args, space)
    if args.merge:
        rows = merged_rows(out, rows, gt["path"], args.budget_images)
    stats_ = analyse(rows, gt, feats, n_boot=args.bootstrap)
    search_start = time.perf_counter()
    outcome = search_outcome(args, space, archs, gt["mean"], feats["macs"], rows)
    search_wall = time.perf_counter() - search_start
    result = {
        "settings": {**{k: v for k, v in vars(args).items() if k not in ("out", "gt_dir", "merge", "markdown")},
                     "kinds": [r["kind"] for r in rows], "skipped_kinds": skipped, "space_config": space.to_config(),
                     "threads_per_worker": 1, "torch": torch.__version__, "machine": platform.machine(),
                     "cpus": os.cpu_count()},
        "commit": code_version(),
        "ground_truth": {"path": gt["path"], "metric": gt["metric"], "seeds": gt["seeds"],
                         "archs": [space.key(a) for a in archs], "arch_dicts": archs,
                         "mean_test_accuracy": list(gt["mean"]), "per_seed": gt["per_seed"],
                         "ceiling_kendall_tau": gt["ceiling"], "ceiling_ci": stats_.pop("ceiling_ci"),
                         "training_seconds": gt["seconds"]},
        "archs": feats,
        **stats_,
        "kinds": rows,
        "search": outcome,
        "wall_seconds": {"ground_truth": gt_wall, "supernets": kinds_wall, "search_ground_truth": search_wall,
                         "total": time.perf_counter() - start},
    }
    result["claims"] = claims(result)
    report(result, markdown=args.markdown == "")
    from _results import write_result  # next to this script

    write_result(result, out)
    return result


def report(result: dict[str, Any], *, markdown: bool = False) -> None:
    """Everything on the console: the table, the depth view (depth samples), the search outcome, the claims."""
    print_table(result)
    if result["settings"]["sample"] == "depth" and not result["settings"].get("arch_file"):
        print_depth_view(result)
    if result["search"]:
        print_search(result["search"])
    print("\n" + "\n".join(result["claims"]))
    if markdown:
        print("\n" + markdown_table(result))


if __name__ == "__main__":
    main()
