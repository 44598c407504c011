"""Budget curves: Kendall tau against stand-alone ground truth versus the supernet's training budget, with the
ranking monitor's probe history and where its stop rule would have stopped.

Each (kind, budget) is its own training run (the cosine schedule spans the run's budget), monitored after every
epoch (8 probe archs, 256 validation images, 128 calibration images each); the ground-truth archs and settings are
those of ``benchmarks/ground_truth.py`` (cached; train them first). Free predictors (MACs, params, ENN) are drawn
as horizontal lines, the seed-to-seed ceiling as a dashed one.

    python benchmarks/budget.py --space nb201 --kinds oneshot,kshot2 --budgets 100000,200000,500000,1000000
    python benchmarks/budget.py --smoke
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch
from _gt import RESULTS, ground_truth, sample_archs
from ground_truth import make_space
from ranking import KINDS, _options, code_version, features, load_split, run_cached

import optuna_kshot as ok
from optuna_kshot.monitor import RankingMonitor


def stop_point(history: list[dict[str, Any]], tau: float, checks: int) -> int | None:
    """Images seen when the stop rule (tau between checks >= ``tau`` for ``checks`` checks in a row) fires."""
    run = 0
    for c in history:
        run = run + 1 if c["tau_prev"] is not None and c["tau_prev"] >= tau else 0
        if run >= checks:
            return int(c["images"])
    return None


def earlier_runs(out: Path, gt_path: str, args: argparse.Namespace) -> dict[tuple[str, int], dict[str, Any]]:
    """``--merge``: the runs of an earlier result at ``out`` by (kind, budget), checked to share this run's ground
    truth, seed and training settings (each keeps the commit it was measured on)."""
    if not out.exists():
        raise SystemExit(f"--merge: no earlier result at {out}")
    old = json.loads(out.read_text())
    same = {k: old["settings"].get(k) == getattr(args, k) for k in ("seed", "lr", "probes", "stop_checks")}
    if old["ground_truth"]["path"] != gt_path or not all(same.values()):
        differs = [k for k, v in same.items() if not v] or ["ground truth"]
        raise SystemExit(f"--merge: {out} differs in {', '.join(differs)}; run without --merge")
    return {(r["kind"], r["budget"]): {**r, "commit": r.get("commit", old["commit"])} for r in old["runs"]}


def _job(job: dict[str, Any]) -> dict[str, Any]:
    torch.set_num_threads(1)
    space = ok.space_from_config(job["space"])
    data = load_split(job["data"], job["resolution"])
    spec = KINDS[job["kind"]]
    supernet = ok.make_supernet(space, spec["kind"], seed=job["seed"], **_options(spec, space))
    monitor = RankingMonitor(data.train, data.val, probes=job["probes"], seed=job["seed"], every=1)
    config = ok.TrainConfig(budget_images=job["budget"], batch_size=64, lr=job["lr"], seed=job["seed"])
    sampler = ok.make_path_sampler(spec["sampler"], space, supernet=supernet)
    start = time.perf_counter()
    result = ok.train_supernet(supernet, data.train, config, sampler=sampler, monitor=monitor, progress=False)
    wall = time.perf_counter() - start
    evaluator = ok.SupernetEvaluator(supernet, space, data.train, data.val, calib_batches=4)
    scores = [evaluator.score(a).accuracy for a in job["archs"]]
    probe_seconds = sum(c.seconds for c in monitor.history)
    return {"kind": job["kind"], "budget": job["budget"], "seed": job["seed"], "images": result.images,
            "scores": scores, "train_seconds": result.seconds, "wall_seconds": wall, "probe_seconds": probe_seconds,
            "monitor": [{"epoch": c.epoch, "images": c.images, "tau_prev": c.tau_prev, **{
                f"tau_{k}": v for k, v in c.tau_free.items()}} for c in monitor.history]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="nb201", choices=("layerwise", "macro", "nb201"))
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--archs", type=int, default=60)
    p.add_argument("--sample", default="uniform")
    p.add_argument("--kinds", default="oneshot,kshot2")
    p.add_argument("--budgets", default="100000,200000,500000,1000000")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--probes", type=int, default=8)
    p.add_argument("--stop-tau", default="0.7,0.8,0.9", help="stop-rule thresholds to mark")
    p.add_argument("--stop-checks", type=int, default=2)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--gt-dir", default=str(RESULTS))
    p.add_argument("--cache-dir", default=str(Path(__file__).resolve().parent / ".cache"),
                   help="where each finished run is kept, so a rerun resumes (default: %(default)s)")
    p.add_argument("--out", default=None)
    p.add_argument("--cached-only", action="store_true",
                   help="train nothing: draw the runs already in --cache-dir, list the missing ones")
    p.add_argument("--merge", action="store_true",
                   help="keep the runs of an existing --out (same ground truth and settings) and train only the "
                        "missing (kind, budget) points")
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    resolution = 16 if args.space == "nb201" else 14
    if args.smoke:
        args.data, args.archs, args.budgets, args.kinds = "ranking:smoke_data", 5, "1024,2048", "oneshot"
        resolution = 8
        args.gt_dir = str(Path(args.out).parent if args.out else Path(os.environ.get("TMPDIR", "/tmp")))
        args.cache_dir = str(Path(args.gt_dir) / "cache")
    torch.set_num_threads(1)
    data = load_split(args.data, resolution)
    space = make_space(args.space, data, width_mult=0.25, channels=8, cells=1)
    archs = sample_archs(space, args.archs, args.sample)
    gt = ground_truth(space, archs, data=args.data, resolution=resolution, epochs=1, sample=args.sample,
                      workers=args.workers, gt_dir=args.gt_dir)
    budgets = [int(b) for b in args.budgets.split(",")]
    kinds = [k.strip() for k in args.kinds.split(",")]
    jobs = [{"space": space.to_config(), "data": args.data, "resolution": resolution, "kind": k, "budget": b,
             "seed": args.seed, "lr": args.lr, "archs": archs, "probes": args.probes}
            for b in sorted(budgets, reverse=True) for k in kinds]
    out = Path(args.out or RESULTS / f"budget_{space.kind}_{args.data.split(':')[0]}.json")
    if args.smoke:
        out = Path(args.out or Path(os.environ.get("TMPDIR", "/tmp")) / "budget_smoke.json")
    earlier = earlier_runs(out, gt["path"], args) if args.merge else {}
    jobs = [j for j in jobs if (j["kind"], j["budget"]) not in earlier]
    start = time.perf_counter()
    done = run_cached(_job, jobs, [f"budget-{j['kind']}-{j['budget']}" for j in jobs], args.cache_dir,
                      workers=args.workers, what="runs", cached_only=args.cached_only, stamp={"commit": code_version()},
                      describe=lambda r: f"{r['kind']} at {r['budget']:,} images: {r['train_seconds']:.0f} s")
    # --cached-only draws the finished runs and says which points are missing
    skipped = [{"kind": j["kind"], "budget": j["budget"]} for i, j in enumerate(jobs) if i not in done]
    if skipped:
        print("  not run (--cached-only): " + ", ".join(f"{s['kind']} at {s['budget']:,}" for s in skipped))
    runs = [done[i] for i in sorted(done)] + list(earlier.values())
    feats = features(space, archs)
    free = {k: ok.ranking_metrics(v, gt["mean"])["kendall_tau"] for k, v in feats.items() if len(set(v)) > 1}
    thresholds = [float(t) for t in args.stop_tau.split(",")]
    for run in runs:
        run["kendall_tau"] = ok.ranking_metrics(run["scores"], gt["mean"])["kendall_tau"]
        run["stop_images"] = {str(t): stop_point(run["monitor"], t, args.stop_checks) for t in thresholds}
    result = {
        "settings": {**vars(args), "resolution": resolution, "space_config": space.to_config(), "threads": 1,
                     "torch": torch.__version__, "machine": platform.machine(), "cpus": os.cpu_count()},
        "commit": code_version(), "ground_truth": {"path": gt["path"], "ceiling": gt["ceiling"], "n": len(archs)},
        "free_predictors": free, "runs": runs, "not_run": skipped, "wall_seconds": time.perf_counter() - start,
    }
    print(f"budget curves: {space.kind} space, {len(archs)} archs, ceiling {gt['ceiling']:.3f}; free predictors "
          + ", ".join(f"{k} {v:.3f}" for k, v in free.items()))
    print(f"{'kind':<10}{'budget':>10}{'tau':>8}{'train s':>9}{'probe s':>9}  stop rule fires at (images)")
    for r in sorted(runs, key=lambda r: (r["kind"], r["budget"])):
        stops = ", ".join(f"tau>={t}: {v if v is not None else '-'}" for t, v in r["stop_images"].items())
        print(f"{r['kind']:<10}{r['budget']:>10,}{r['kendall_tau']:>8.3f}{r['train_seconds']:>9.0f}"
              f"{r['probe_seconds']:>9.1f}  {stops}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    plot(result, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png').name}")
    return result


def plot(result: dict[str, Any], path: Path) -> None:
    """Tau against budget per kind, the free predictors and the ceiling as lines, the stop points marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    kinds = sorted({r["kind"] for r in result["runs"]})
    for i, kind in enumerate(kinds):
        rows = sorted((r for r in result["runs"] if r["kind"] == kind), key=lambda r: r["budget"])
        ax.plot([r["budget"] for r in rows], [r["kendall_tau"] for r in rows], "o-", color=f"C{i}", label=kind)
        longest = rows[-1]
        stop = longest["stop_images"].get("0.8")
        if stop is not None:
            ax.axvline(stop, color=f"C{i}", ls=":", lw=1, label=f"{kind}: monitor stops (tau>=0.8)")
    for name, tau in result["free_predictors"].items():
        ax.axhline(tau, color="0.5", ls="-.", lw=0.8)
        ax.annotate(name, (0.99, tau), xycoords=("axes fraction", "data"), ha="right", va="bottom", fontsize=7)
    ax.axhline(result["ground_truth"]["ceiling"], color="k", ls="--", lw=0.8)
    ax.annotate("ceiling", (0.01, result["ground_truth"]["ceiling"]), xycoords=("axes fraction", "data"),
                fontsize=7, va="bottom")
    ax.set_xscale("log")
    ax.set_xlabel("supernet training images")
    ax.set_ylabel("Kendall tau vs stand-alone")
    s = result["settings"]
    ax.set_title(f"{s['space']} space, {s['data']}: tau vs budget", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
