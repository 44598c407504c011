"""Ranking benchmark: how well each supernet kind's scores agree with stand-alone ground truth.

Ground truth: a fixed, seeded sample of archs spread over depth and MACs, each trained stand-alone from scratch with two
seeds (test accuracy, mean of the seeds); the seed-to-seed Kendall tau is the ceiling. It is cached as JSON with
its settings in benchmarks/results/ and reused. Then every supernet kind is trained at the same budget (training
images seen, every path of a multi-path step counted) and scores the same archs on the validation split.

    python benchmarks/ranking.py                       # built-in data, layer-wise space
    python benchmarks/ranking.py --data fashion-mnist  # full Fashion-MNIST (Debian dataset-fashion-mnist)
    python benchmarks/ranking.py --quick               # fewer archs, smaller budget
    python benchmarks/ranking.py --smoke               # seconds, for the test suite
    python benchmarks/ranking.py --kinds kshot4 --merge  # re-run one kind, keep the other rows
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

import optuna_kshot as ok

RESULTS = Path(__file__).resolve().parent / "results"

# kind name -> how to build and train it; "transfer": share of the budget spent on a one-shot supernet first,
# whose weights the sub-supernets then start from (few-shot by op).
KINDS: dict[str, dict[str, Any]] = {
    "oneshot": {"kind": "oneshot", "options": {}, "sampler": "uniform"},
    "fair": {"kind": "oneshot", "options": {}, "sampler": "fair"},
    "kshot2": {"kind": "kshot", "options": {"k": 2}, "sampler": "uniform"},
    "kshot4": {"kind": "kshot", "options": {"k": 4}, "sampler": "uniform"},
    "oneshot+stab": {"kind": "oneshot", "options": {"stabilizer": True}, "sampler": "uniform"},
    "kshot4+stab": {"kind": "kshot", "options": {"k": 4, "stabilizer": True}, "sampler": "uniform"},
    "fewshot-op": {"kind": "fewshot", "options": {"split": "op:layer0"}, "sampler": "balanced", "transfer": 0.5},
    "fewshot-enn": {"kind": "fewshot", "options": {"split": "enn"}, "sampler": "balanced"},
    "fewshot-enn-uniform": {"kind": "fewshot", "options": {"split": "enn"}, "sampler": "uniform"},
    "fewshot-enn-fullwidth": {"kind": "fewshot", "options": {"split": "enn", "width_ratio": 1.0},
                              "sampler": "balanced"},
    "fewshot-enn+stab": {"kind": "fewshot", "options": {"split": "enn", "stabilizer": True}, "sampler": "balanced"},
}
DEFAULT_KINDS = ("oneshot", "fair", "kshot2", "kshot4", "fewshot-op", "fewshot-enn", "fewshot-enn-uniform",
                 "fewshot-enn-fullwidth", "oneshot+stab", "kshot4+stab", "fewshot-enn+stab")


def _space(args: argparse.Namespace, data: ok.DataSplits) -> ok.SearchSpace:
    common = {"in_channels": data.in_channels, "num_classes": data.num_classes, "resolution": data.resolution}
    if args.space == "macro":
        return ok.macro_space(width_mult=args.width_mult, **common)
    return ok.layerwise_space(width_mult=args.width_mult, **common)


def depth(space: ok.SearchSpace, arch: dict[str, Any]) -> int:
    """Number of non-skip layers of a chain-space arch."""
    return sum(arch[c.name] != "skip" for c in space.choices if c.name.startswith("layer"))


def spread_sample(space: ok.SearchSpace, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` distinct archs spread evenly over depth (number of non-skip layers; shallow archs are rare under
    uniform sampling), and within a depth over MACs quantiles of seeded uniform samples."""
    rng = np.random.default_rng(seed)
    by_depth: dict[int, dict[str, dict[str, Any]]] = {}
    skippable = [c.name for c in space.choices if c.name.startswith("layer") and "skip" in c.options]
    for _ in range(40 * n):
        arch = space.sample(rng)
        keep = int(rng.integers(len(skippable) + 1))  # force a uniform number of skips, then sample the rest
        for name in rng.permutation(skippable)[: len(skippable) - keep]:
            arch[str(name)] = "skip"
        by_depth.setdefault(depth(space, arch), {})[space.key(arch)] = arch
    depths = sorted(by_depth)
    quota = dict.fromkeys(depths, 0)
    while sum(quota.values()) < n and any(quota[d] < len(by_depth[d]) for d in depths):
        for d in depths:  # round robin, so a depth with few distinct archs passes its share on
            if quota[d] < len(by_depth[d]) and sum(quota.values()) < n:
                quota[d] += 1
    out = []
    for d in depths:
        pool = sorted(by_depth[d].values(), key=lambda a: (space.count_macs(a), space.key(a)))
        index = np.unique(np.linspace(0, len(pool) - 1, quota[d]).round().astype(int))
        out.extend(pool[i] for i in index)
    return out


def _init_worker() -> None:
    torch.set_num_threads(1)


def _gt_job(job: tuple[dict, dict, str, int, int, float]) -> tuple[str, int, float, float]:
    space_config, arch, data_spec, resolution, epochs, seed_lr = job[0], job[1], job[2], job[3], job[4], job[5]
    space = ok.space_from_config(space_config)
    data = ok.load_data(data_spec).resized(resolution)
    seed, lr = int(seed_lr[0]), float(seed_lr[1])
    result = ok.train_standalone(space, arch, data, ok.TrainConfig(epochs=epochs, lr=lr, seed=seed))
    return space.key(arch), seed, result.test_accuracy, result.seconds


def ground_truth(args: argparse.Namespace, space: ok.SearchSpace, archs: list[dict[str, Any]]) -> dict[str, Any]:
    settings = {
        "space": space.to_config(), "data": args.data, "resolution": args.resolution, "epochs": args.gt_epochs,
        "lr": 0.1, "seeds": [0, 1], "archs": [space.key(a) for a in archs], "metric": "test accuracy",
    }
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    path = Path(args.gt_dir) / f"gt_{space.kind}_{args.data.replace(':', '_').replace('/', '_')}_{digest}.json"
    cached = json.loads(path.read_text()) if path.is_file() else {"settings": settings, "runs": {}}
    todo = [(a, s) for a in archs for s in (0, 1) if f"{space.key(a)}|{s}" not in cached["runs"]]
    if todo:
        print(f"ground truth: training {len(todo)} stand-alone runs ({args.workers} worker(s)) -> {path}")
        jobs = [(space.to_config(), a, args.data, args.resolution, args.gt_epochs, (s, 0.1)) for a, s in todo]
        start = time.perf_counter()
        with ProcessPoolExecutor(args.workers, initializer=_init_worker) as pool:
            for i, (key, seed, acc, seconds) in enumerate(pool.map(_gt_job, jobs), 1):
                cached["runs"][f"{key}|{seed}"] = {"test_accuracy": acc, "seconds": seconds}
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(cached, indent=1) + "\n")  # progress survives a kill
                if i % 10 == 0 or i == len(jobs):
                    print(f"  {i}/{len(jobs)} runs, {time.perf_counter() - start:.0f} s", flush=True)
    runs = cached["runs"]
    per_seed = [[runs[f"{space.key(a)}|{s}"]["test_accuracy"] for a in archs] for s in (0, 1)]
    return {"path": str(path), "settings": settings, "seed0": per_seed[0], "seed1": per_seed[1],
            "mean": list(np.mean(per_seed, axis=0)),
            "ceiling": ok.ranking_metrics(per_seed[0], per_seed[1])["kendall_tau"]}


def _kind_job(job: dict[str, Any]) -> dict[str, Any]:
    space = ok.space_from_config(job["space"])
    data = ok.load_data(job["data"]).resized(job["resolution"])
    spec = KINDS[job["kind"]]
    start = time.perf_counter()
    images = 0
    base = None
    transfer = spec.get("transfer", 0.0)
    if transfer:  # one-shot first, then sub-supernets from its weights; the budget is shared
        base = ok.make_supernet(space, seed=0)
        config = ok.TrainConfig(budget_images=int(job["budget_images"] * transfer), lr=job["lr"], seed=0)
        images += ok.train_supernet(base, data.train, config, sampler=ok.UniformSampler(space), progress=False).images
    supernet = ok.make_supernet(space, spec["kind"], seed=0, base=base, **spec["options"])
    config = ok.TrainConfig(budget_images=job["budget_images"] - images, batch_size=64, lr=job["lr"], seed=0)
    sampler = ok.make_sampler(spec["sampler"], space, supernet=supernet)
    result = ok.train_supernet(supernet, data.train, config, sampler=sampler, progress=False)
    seconds = time.perf_counter() - start
    evaluator = ok.SupernetEvaluator(supernet, space, data.train, data.val, calib_batches=4)
    scores = [evaluator.score(a).accuracy for a in job["archs"]]
    groups = [supernet.group(a) for a in job["archs"]] if hasattr(supernet, "group") else None
    return {"kind": job["kind"], "scores": scores, "train_seconds": seconds, "images": images + result.images,
            "history_extra": result.history[-1].extra if result.history else {}, "groups": groups}


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
    if old["ground_truth"]["path"] != gt_path or old["settings"]["budget_images"] != budget:
        raise SystemExit(f"--merge: {out} has another ground truth or budget; run without --merge")
    new = {r["kind"]: r for r in rows}
    kept = [new.pop(r["kind"], r) for r in old["kinds"]]
    return kept + list(new.values())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="layerwise", choices=("layerwise", "macro"))
    parser.add_argument("--data", default="default", help="data spec (default: %(default)s)")
    parser.add_argument("--resolution", type=int, default=14, help="images resized to this (default: %(default)s)")
    parser.add_argument("--width-mult", type=float, default=0.25, help="(default: %(default)s)")
    parser.add_argument("--archs", type=int, default=50, help="ground-truth sample size (default: %(default)s)")
    parser.add_argument("--gt-epochs", type=int, default=6, help="stand-alone epochs (default: %(default)s)")
    parser.add_argument("--budget-images", type=int, default=200_000,
                        help="supernet training images, the same for every kind (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=0.1, help="supernet learning rate (default: %(default)s)")
    parser.add_argument("--kinds", default=",".join(DEFAULT_KINDS), help=f"from {list(KINDS)} (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="processes, 1 thread each (default: %(default)s)")
    parser.add_argument("--gt-dir", default=str(RESULTS), help="ground-truth cache directory (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="30 archs, a third of the budget")
    parser.add_argument("--smoke", action="store_true", help="tiny everything, seconds (for tests)")
    parser.add_argument("--out", default=None, help="JSON output (default: results/ranking_<space>_<data>.json)")
    parser.add_argument("--merge", action="store_true",
                        help="re-run some kinds: replace their rows in an existing output of the same ground truth "
                             "and budget, keep the other rows")
    args = parser.parse_args(argv)
    if args.smoke:
        args.archs, args.gt_epochs, args.budget_images, args.width_mult, args.resolution = 4, 1, 512, 0.125, 8
        args.workers = 1
    elif args.quick:
        args.archs, args.budget_images = 30, args.budget_images // 3
    torch.set_num_threads(1)
    data = ok.load_data(args.data).resized(args.resolution)
    if args.smoke:  # a few hundred images are enough to exercise every step
        args.data = "default"
    space = _space(args, data)
    archs = spread_sample(space, args.archs)
    gt = ground_truth(args, space, archs)

    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise SystemExit(f"unknown kinds {unknown}; choose from {list(KINDS)}")
    jobs = [{"space": space.to_config(), "data": args.data, "resolution": args.resolution, "kind": k,
             "budget_images": args.budget_images, "lr": args.lr, "archs": archs} for k in kinds]
    print(f"training {len(jobs)} supernet kinds at {args.budget_images:,} images each ({args.workers} worker(s))")
    with ProcessPoolExecutor(args.workers, initializer=_init_worker) as pool:
        runs = list(pool.map(_kind_job, jobs))

    depths = [depth(space, a) for a in archs]

    def by_depth(values: list[float]) -> dict[int, float]:
        return {d: float(np.mean([v for v, dd in zip(values, depths) if dd == d])) for d in sorted(set(depths))}

    commit = code_version()
    rows = []
    for run in runs:
        m = ok.ranking_metrics(run["scores"], gt["mean"])
        per_depth = by_depth(run["scores"])
        m["score_by_depth"] = per_depth
        m["score_spread_across_depths"] = float(np.std(list(per_depth.values())))
        m["score_std"] = float(np.std(run["scores"]))
        if run["groups"] is not None:  # few-shot: does the ranking hold within groups and across them?
            within = []
            for g in sorted(set(run["groups"])):
                idx = [i for i, gg in enumerate(run["groups"]) if gg == g]
                if len(idx) >= 3:
                    within.append(ok.ranking_metrics([run["scores"][i] for i in idx],
                                                     [gt["mean"][i] for i in idx])["kendall_tau"])
            m["group_sizes"] = {int(g): run["groups"].count(g) for g in sorted(set(run["groups"]))}
            m["kendall_tau_within_groups_mean"] = float(np.mean(within)) if within else float("nan")
        rows.append({"kind": run["kind"], **m, "tau_over_ceiling": m["kendall_tau"] / gt["ceiling"]
                     if gt["ceiling"] > 0 else float("nan"), "train_seconds": run["train_seconds"],
                     "images": run["images"], "extra": run["history_extra"], "scores": run["scores"],
                     "commit": commit})
    out = Path(args.out or RESULTS / f"ranking_{space.kind}_{args.data.split(':')[0]}.json")
    if args.merge:
        rows = merged_rows(out, rows, gt["path"], args.budget_images)
    result = {
        "settings": {**{k: v for k, v in vars(args).items() if k not in ("out", "gt_dir", "merge")},
                     "kinds": ",".join(r["kind"] for r in rows),
                     "space_config": space.to_config(), "threads_per_worker": 1, "torch": torch.__version__,
                     "machine": platform.machine(), "cpus": os.cpu_count()},
        "ground_truth": {"path": gt["path"], "ceiling_kendall_tau": gt["ceiling"], "archs": gt["settings"]["archs"],
                         "mean_test_accuracy": gt["mean"], "accuracy_by_depth": by_depth(gt["mean"])},
        "kinds": rows,
    }
    topk = [k for k in rows[0] if k.startswith("top")][0] if rows else "top5_precision"
    print(f"\nranking vs stand-alone ground truth: {space.kind} space, data {args.data} at {args.resolution}px, "
          f"width x{args.width_mult}, {len(archs)} archs, GT {args.gt_epochs} epochs x 2 seeds")
    print(f"ceiling (seed-to-seed Kendall tau): {gt['ceiling']:.3f}; budget {args.budget_images:,} images per kind")
    header = (f"{'kind':<14}{'tau':>8}{'spearman':>10}{topk:>16}{'best pick GT':>14}{'tau/ceiling':>13}"
              f"{'train s':>9}{'depth spread':>14}")
    print(header)
    for r in rows:
        print(f"{r['kind']:<14}{r['kendall_tau']:>8.3f}{r['spearman']:>10.3f}{r[topk]:>16.2f}"
              f"{r['best_pick_truth']:>14.4f}{r['tau_over_ceiling']:>13.2f}{r['train_seconds']:>9.1f}"
              f"{r['score_spread_across_depths']:>14.4f}")
    from _results import write_result  # next to this script

    write_result(result, out)
    return result


if __name__ == "__main__":
    main()
