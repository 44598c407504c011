"""Speed benchmark: what scoring a trial costs, measured side by side in one run.

Rows (all on the CLI's default space and the built-in data, 1 thread unless --threads):
- per-trial evaluation time (``SupernetEvaluator.score``: export + BN recalibration + validation) against the bare
  forward passes it needs (the same calibration and validation batches through a prebuilt stand-alone subnet);
- supernet training step time against a stand-alone training step of the same arch;
- trials per second of an Optuna study scored by the supernet;
- the speedup of scoring an arch by supernet versus training it stand-alone for the stated budget.

    python benchmarks/speed.py            # a few minutes
    python benchmarks/speed.py --smoke    # seconds, for the test suite
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import torch

import optuna_kshot as ok
from optuna_kshot.devices import place
from optuna_kshot.evaluation import recalibrate_bn

RESULTS = Path(__file__).resolve().parent / "results"


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bare_forward_seconds(subnet: torch.nn.Module, calib: list[torch.Tensor], val: ok.ArrayDataset,
                         batch_size: int) -> float:
    """The forward passes scoring needs, on a prebuilt subnet: calibration batches in train mode, then the
    validation split in eval mode (no export, no copies, no bookkeeping)."""
    start = time.perf_counter()
    recalibrate_bn(subnet, calib)
    with torch.no_grad():
        for x, _ in val.batches(batch_size):
            subnet(x)
    return time.perf_counter() - start


KINDS = {"oneshot": ("oneshot", {}, "uniform"), "fair": ("oneshot", {}, "fair"),
         "kshot (default)": ("kshot", {}, "uniform"),  # K=2, a simplex-net turn every 8th step (defaults.py)
         "kshot2": ("kshot", {"k": 2, "simplex_every": 1}, "uniform"),
         "kshot4": ("kshot", {"k": 4, "simplex_every": 1}, "uniform"),
         # K-shot cost split: supernet steps only (warm-up all along: the merge's overhead), and the simplex-net
         # stepped after every 4th supernet step instead of every one (GUIDE: "in turns")
         "kshot4-merge": ("kshot", {"k": 4, "warmup_fraction": 1.0}, "uniform"),
         "kshot4-every4": ("kshot", {"k": 4, "simplex_every": 4}, "uniform"),
         "fewshot": ("fewshot", {"split": "enn"}, "balanced"),
         "oneshot+stab": ("oneshot", {"stabilizer": True}, "uniform")}


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def kind_worker(kind: str, width: float, steps: int) -> dict:
    """Run in a fresh process: time ``steps`` training steps of one supernet kind (after one warm-up step) and
    measure its peak resident memory above the process's state right before the supernet is built."""
    torch.set_num_threads(1)
    data = ok.load_default()
    space = ok.layerwise_space(width_mult=width, in_channels=data.in_channels, num_classes=data.num_classes,
                               resolution=data.resolution)
    # load torch's lazily loaded kernels first (a throwaway conv step), so that the peak counts the supernet
    probe = torch.nn.Conv2d(data.in_channels, 8, 3)
    probe(data.train.images[:64].float()).square().mean().backward()
    torch.optim.SGD(probe.parameters(), lr=0.1, momentum=0.9).step()
    del probe
    if not _reset_peak_rss():  # without it, the peak would include loading the data
        raise SystemExit("peak memory needs Linux's /proc/self/clear_refs")
    before = _status_mib("VmRSS")
    supernet = ok.make_supernet(space, KINDS[kind][0], seed=0, **KINDS[kind][1])
    sampler = ok.make_path_sampler(KINDS[kind][2], space, supernet=supernet)
    paths = len(sampler.sample(np.random.default_rng(0)))
    train = data.train  # the budget in images sets the steps; a multi-path step uses one batch
    # warm-up excluded: one short run first, then the timed one (same budget in images for every kind)
    ok.train_supernet(supernet, train, ok.TrainConfig(budget_images=64 * paths, batch_size=64), sampler=sampler,
                      progress=False)
    start = time.perf_counter()
    result = ok.train_supernet(supernet, train, ok.TrainConfig(budget_images=64 * steps * paths, batch_size=64),
                               sampler=sampler, progress=False)
    seconds = time.perf_counter() - start
    peak = _status_mib("VmHWM")
    params = sum(p.numel() for p in supernet.parameters())
    return {"kind": kind, "seconds_per_step": seconds / result.steps, "seconds_per_image": seconds / result.images,
            "paths_per_step": paths, "peak_rss_above_baseline_mib": peak - before, "parameters": params}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds (for tests)")
    parser.add_argument("--archs", type=int, default=20, help="archs timed (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="turns each supernet kind is timed, median kept (default: %(default)s)")
    parser.add_argument("--out", default=str(RESULTS / "speed.json"), help="JSON output (default: %(default)s)")
    parser.add_argument("--kind-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.kind_worker:
        print(json.dumps(kind_worker(args.kind_worker, 0.25 if args.smoke else 0.5, 2 if args.smoke else 30)))
        return {}
    torch.set_num_threads(args.threads)
    data = ok.load_default()
    width = 0.25 if args.smoke else 0.5
    space = ok.layerwise_space(width_mult=width, in_channels=data.in_channels, num_classes=data.num_classes,
                               resolution=data.resolution)
    n_archs = 3 if args.smoke else args.archs
    calib_batches, batch_size = (1, 64) if args.smoke else (4, 256)
    val = data.val.subset(torch.arange(128)) if args.smoke else data.val
    supernet = ok.make_supernet(space, seed=0)
    train_config = ok.TrainConfig(budget_images=256 if args.smoke else 64 * 20, batch_size=64)
    ok.train_supernet(supernet, data.train, train_config, sampler=ok.UniformPaths(space), progress=False)

    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(n_archs)]
    evaluator = ok.SupernetEvaluator(supernet, space, data.train, val, calib_batches=calib_batches,
                                     batch_size=batch_size, cache=False)
    ratios, evals, bares = [], [], []
    for arch in archs:  # interleaved, so drifts in machine load hit both sides alike
        subnet = place(ok.build_subnet(space, arch), torch.device("cpu"))  # the layout scoring uses
        # best of 3 each: one arch's ratio is what the worst-arch target reads, and a single late timer tick
        # moved it by 0.2 between runs
        bare = min(bare_forward_seconds(subnet, evaluator.calibration_batches, val, batch_size) for _ in range(3))
        score = min(_median_time(lambda a=arch: evaluator.score(a), 1) for _ in range(3))
        evals.append(score)
        bares.append(bare)
        ratios.append(score / bare)

    # Training steps: supernet (one uniformly sampled path per step) vs stand-alone steps of the same arch.
    steps = 3 if args.smoke else 20
    step_data = data.train.subset(torch.arange(64 * (steps + 1)))
    step_config = ok.TrainConfig(epochs=1, batch_size=64)
    arch = archs[0]

    def supernet_steps():
        ok.train_supernet(supernet, step_data, step_config, sampler=ok.FixedPath(space, arch), progress=False)

    def standalone_steps():
        ok.train_supernet(ok.build_subnet(space, arch), step_data, step_config, sampler=ok.FixedPath(space, arch),
                          progress=False)

    super_step = _median_time(supernet_steps, 3) / (steps + 1)
    alone_step = _median_time(standalone_steps, 3) / (steps + 1)

    # A study scored by the supernet.
    objective = ok.SupernetObjective(
        ok.SupernetEvaluator(supernet, space, data.train, val, calib_batches=calib_batches, batch_size=batch_size),
        objectives=("accuracy", "macs"))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = objective.create_study(sampler=optuna.samplers.NSGAIISampler(seed=0))
    n_trials = 4 if args.smoke else 30
    start = time.perf_counter()
    study.optimize(objective, n_trials=n_trials)
    trials_per_second = n_trials / (time.perf_counter() - start)
    # The same with 2 scoring threads (one intra-op thread each), what `search` does by default on 2 cores.
    threaded = ok.SupernetObjective(
        ok.SupernetEvaluator(supernet, space, data.train, val, calib_batches=calib_batches, batch_size=batch_size),
        objectives=("accuracy", "macs"))
    study = threaded.create_study(sampler=optuna.samplers.NSGAIISampler(seed=0))
    start = time.perf_counter()
    study.optimize(threaded, n_trials=n_trials, n_jobs=2)
    trials_per_second_2 = n_trials / (time.perf_counter() - start)

    # Stand-alone training of one arch (the cost the supernet replaces).
    standalone_epochs = 1 if args.smoke else 3
    standalone_data = data if not args.smoke else ok.DataSplits(
        data.train.subset(torch.arange(256)), val, val, data.num_classes, "smoke")
    start = time.perf_counter()
    ok.train_standalone(space, arch, standalone_data, ok.TrainConfig(epochs=standalone_epochs))
    standalone_seconds = time.perf_counter() - start

    # Every supernet kind: step time and peak memory, each run in a fresh process; the kinds take turns for
    # several rounds (so drifts in machine load hit them alike) and each keeps its median round.
    rounds = {kind: [] for kind in KINDS}
    for _ in range(1 if args.smoke else args.rounds):
        for kind in KINDS:
            proc = subprocess.run([sys.executable, __file__, "--kind-worker", kind,
                                   *(["--smoke"] if args.smoke else [])], capture_output=True, text=True, check=True,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
            rounds[kind].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    kinds = [{**runs[0], "rounds": len(runs),
              **{key: statistics.median(r[key] for r in runs)
                 for key in ("seconds_per_step", "seconds_per_image", "peak_rss_above_baseline_mib")}}
             for runs in rounds.values()]
    base = kinds[0]
    for k in kinds:
        k["step_over_oneshot"] = k["seconds_per_step"] / base["seconds_per_step"]
        k["image_over_oneshot"] = k["seconds_per_image"] / base["seconds_per_image"]
        k["memory_over_oneshot"] = k["peak_rss_above_baseline_mib"] / base["peak_rss_above_baseline_mib"]
        k["step_over_standalone_step"] = k["seconds_per_step"] / alone_step

    result = {
        "settings": {
            "space": space.to_config(), "threads": args.threads, "archs": n_archs, "calib_batches": calib_batches,
            "batch_size": batch_size, "val_images": len(val), "torch": torch.__version__,
            "machine": platform.processor() or platform.machine(), "smoke": args.smoke,
        },
        "eval_seconds_median": statistics.median(evals),
        "bare_forward_seconds_median": statistics.median(bares),
        "eval_over_bare_median": statistics.median(ratios),
        "eval_over_bare_max": max(ratios),
        "eval_over_bare_per_arch": [{"arch": space.key(a), "eval_seconds": e, "bare_seconds": b}
                                    for a, e, b in zip(archs, evals, bares)],
        "supernet_step_seconds": super_step,
        "standalone_step_seconds": alone_step,
        "supernet_over_standalone_step": super_step / alone_step,
        "study_trials_per_second": trials_per_second,
        "study_trials_per_second_2_threads": trials_per_second_2,
        "scoring_threads_speedup": trials_per_second_2 / trials_per_second,
        "standalone_train_seconds": standalone_seconds,
        "standalone_epochs": standalone_epochs,
        "speedup_supernet_score_vs_standalone_training": standalone_seconds / statistics.median(evals),
        "kinds": kinds,
    }
    rows = [
        ("per-trial evaluation (s, median)", f"{result['eval_seconds_median']:.3f}"),
        ("bare forward passes it needs (s, median)", f"{result['bare_forward_seconds_median']:.3f}"),
        ("evaluation / bare forwards (median, max)",
         f"{result['eval_over_bare_median']:.2f}x, {result['eval_over_bare_max']:.2f}x"),
        ("supernet step / stand-alone step", f"{result['supernet_over_standalone_step']:.2f}x "
         f"({super_step * 1e3:.1f} ms vs {alone_step * 1e3:.1f} ms)"),
        ("study trials per second", f"{trials_per_second:.2f}"),
        ("study trials per second, 2 scoring threads", f"{trials_per_second_2:.2f} "
         f"({trials_per_second_2 / trials_per_second:.2f}x)"),
        (f"stand-alone training, {standalone_epochs} epochs (s)", f"{standalone_seconds:.1f}"),
        ("speedup: supernet score vs stand-alone training",
         f"{result['speedup_supernet_score_vs_standalone_training']:.0f}x"),
    ]
    print(f"speed benchmark ({args.threads} thread(s), {n_archs} archs, {len(val)} validation images, "
          f"{calib_batches} x {batch_size} calibration images)")
    width_col = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"  {name.ljust(width_col)}  {value}")
    print(f"\nsupernet kinds (fresh process each, median of {kinds[0]['rounds']} round(s) taken in turns; a step "
          "trains paths_per_step archs on one batch of 64; peak MiB: resident memory above the process before the "
          "build)")
    print(f"  {'kind':<16}{'paths':>6}{'ms/step':>9}{'step/1-shot':>12}{'image/1-shot':>13}{'step/stand-alone':>17}"
          f"{'peak MiB':>10}{'mem/1-shot':>11}{'params':>10}")
    for k in kinds:
        print(f"  {k['kind']:<16}{k['paths_per_step']:>6}{k['seconds_per_step'] * 1e3:>9.1f}"
              f"{k['step_over_oneshot']:>12.2f}{k['image_over_oneshot']:>13.2f}{k['step_over_standalone_step']:>17.2f}"
              f"{k['peak_rss_above_baseline_mib']:>10.1f}{k['memory_over_oneshot']:>11.2f}{k['parameters']:>10,}")
    from _results import write_result  # next to this script

    write_result(result, args.out)
    return result


if __name__ == "__main__":
    main()
