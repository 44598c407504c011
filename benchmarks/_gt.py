"""Stand-alone ground truth for the ranking benchmarks: a fixed, seeded sample of archs, each trained from scratch
with several seeds (test accuracy), cached as JSON in benchmarks/results/ with its settings and reused.

Arch samples:
- ``uniform``: archs as a search meets them (uniform over the space; NAS-Bench-201 cells whose output is
  disconnected by ``none`` edges are left out: every method, and any free predictor, scores them at chance);
- ``depth``: spread evenly over depth (number of non-skip layers) and, within a depth, over MACs quantiles
  (shallow archs are rare under uniform sampling).
"""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

import optuna_kshot as ok

RESULTS = Path(__file__).resolve().parent / "results"
SAMPLES = ("uniform", "depth")


def depth(space: ok.SearchSpace, arch: dict[str, Any]) -> int:
    """Number of non-skip layers of a chain-space arch (NAS-Bench-201: number of conv edges)."""
    if space.kind == "nb201":
        return sum(str(v).startswith("nor_conv") for v in arch.values())
    return sum(arch[c.name] != "skip" for c in space.choices if c.name.startswith("layer"))


def uniform_sample(space: ok.SearchSpace, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` distinct archs drawn uniformly (NAS-Bench-201: connected cells only), in drawing order."""
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, Any]] = {}
    for _ in range(1000 * n):
        if len(out) == n:
            break
        arch = space.sample(rng)
        if space.kind == "nb201" and not space.is_connected(arch):
            continue
        out.setdefault(space.key(arch), arch)
    return list(out.values())


def spread_sample(space: ok.SearchSpace, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` distinct archs spread evenly over depth (number of non-skip layers; shallow archs are rare under
    uniform sampling), and within a depth over MACs quantiles of seeded uniform samples."""
    rng = np.random.default_rng(seed)
    by_depth: dict[int, dict[str, dict[str, Any]]] = {}
    skippable = [c.name for c in space.choices if c.name.startswith("layer") and "skip" in c.options]
    for _ in range(40 * n):
        arch = dict(space.sample(rng))
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


def sample_archs(space: ok.SearchSpace, n: int, sample: str, seed: int = 0) -> list[dict[str, Any]]:
    if sample == "uniform":
        return uniform_sample(space, n, seed)
    if sample == "depth":
        return spread_sample(space, n, seed)
    raise ValueError(f"Unknown arch sample {sample!r}; choose one of {list(SAMPLES)}.")


def init_worker() -> None:
    torch.set_num_threads(1)


def _gt_job(job: tuple[dict, dict, str, int, int, int, float]) -> tuple[str, int, float, float, float]:
    space_config, arch, data_spec, resolution, epochs, seed, lr = job
    space = ok.space_from_config(space_config)
    data = ok.load_data(data_spec).resized(resolution)
    result = ok.train_standalone(space, arch, data, ok.TrainConfig(epochs=epochs, lr=lr, seed=seed))
    return space.key(arch), seed, result.test_accuracy, result.val_accuracy, result.seconds


def ground_truth(space: ok.SearchSpace, archs: list[dict[str, Any]], *, data: str, resolution: int, epochs: int,
                 seeds: tuple[int, ...] = (0, 1), sample: str = "depth", workers: int = 1,
                 gt_dir: str | Path = RESULTS, lr: float = 0.1) -> dict[str, Any]:
    """Stand-alone test accuracy of ``archs`` (mean over ``seeds``), trained for the missing (arch, seed) pairs
    and cached; the ceiling is the mean seed-to-seed Kendall tau over seed pairs."""
    settings: dict[str, Any] = {
        "space": space.to_config(), "data": data, "resolution": resolution, "epochs": epochs,
        "lr": lr, "seeds": [0, 1], "archs": [space.key(a) for a in archs], "metric": "test accuracy",
    }
    # Every sample is named in the settings (so in the file's hash). Depth-sampled caches written before this
    # (gt_*_<hash> without "sample") were trained on earlier networks (NAS-Bench-Macro with ReLU6) and are kept
    # only as the record of the old tables; a depth sample is now trained afresh.
    settings["sample"] = sample
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    path = Path(gt_dir) / f"gt_{space.kind}_{data.replace(':', '_').replace('/', '_')}_{digest}.json"
    cached = json.loads(path.read_text()) if path.is_file() else {"settings": settings, "runs": {}}
    todo = [(a, s) for s in seeds for a in archs if f"{space.key(a)}|{s}" not in cached["runs"]]
    if todo:
        print(f"ground truth: training {len(todo)} stand-alone runs ({workers} worker(s)) -> {path}", flush=True)
        jobs = [(space.to_config(), a, data, resolution, epochs, s, lr) for a, s in todo]
        start = time.perf_counter()
        with ProcessPoolExecutor(workers, initializer=init_worker) as pool:
            for i, (key, seed, acc, val, seconds) in enumerate(pool.map(_gt_job, jobs), 1):
                cached["runs"][f"{key}|{seed}"] = {"test_accuracy": acc, "val_accuracy": val, "seconds": seconds}
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(cached, indent=1) + "\n")  # progress survives a kill
                tmp.replace(path)
                if i % 10 == 0 or i == len(jobs):
                    print(f"  {i}/{len(jobs)} runs, {time.perf_counter() - start:.0f} s", flush=True)
    runs = cached["runs"]
    per_seed = [[runs[f"{space.key(a)}|{s}"]["test_accuracy"] for a in archs] for s in seeds]
    pairs = [(i, j) for i in range(len(seeds)) for j in range(i + 1, len(seeds))]
    ceiling = float(np.mean([ok.ranking_metrics(per_seed[i], per_seed[j])["kendall_tau"] for i, j in pairs])) \
        if pairs and len(archs) >= 2 else float("nan")
    return {"path": str(path), "settings": settings, "per_seed": per_seed, "seeds": list(seeds),
            "seed0": per_seed[0], "seed1": per_seed[1] if len(seeds) > 1 else per_seed[0],
            "mean": [float(v) for v in np.mean(per_seed, axis=0)], "ceiling": ceiling,
            "seconds": float(sum(runs[f"{space.key(a)}|{s}"]["seconds"] for a in archs for s in seeds))}
