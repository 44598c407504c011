"""Blending a supernet's scores with a free predictor, measured on a saved ranking result (no training).

For each supernet kind of a ``benchmarks/ranking.py`` result, and each supernet seed, the blended predictor is
``z(score) + w * z(log predictor)`` (z-scores over the ranked archs; rank averaging is ``w = 1`` on ranks). Its
Kendall tau against the ground truth is compared, on one paired bootstrap over archs, with the kind alone and
with the free predictor alone: blending earns its place only where its interval beats both.

    python benchmarks/blend.py benchmarks/results/ranking_nb201_fashion-mnist_uniform.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from _stats import bootstrap_index, difference, interval, resampled_taus, tau_b
from scipy import stats


def _z(values: np.ndarray) -> np.ndarray:
    std = values.std()
    return (values - values.mean()) / std if std > 0 else values * 0.0


def blended(scores: np.ndarray, predictor: np.ndarray, weight: float, *, ranks: bool = False) -> np.ndarray:
    """Per seed (rows of ``scores``): z(score) + weight * z(log predictor), or the same on ranks."""
    pred = stats.rankdata(predictor) if ranks else np.log(np.maximum(predictor, 1e-12))
    rows = [stats.rankdata(s) if ranks else s for s in scores]
    return np.stack([_z(np.asarray(r, float)) + weight * _z(np.asarray(pred, float)) for r in rows])


def analyse(result: dict[str, Any], *, predictor: str = "macs", weights: tuple[float, ...] = (0.5, 1.0),
            n_boot: int = 2000) -> list[dict[str, Any]]:
    truth = np.asarray(result["ground_truth"]["mean_test_accuracy"])
    free = np.asarray(result["archs"][predictor], dtype=float)
    index = bootstrap_index(len(truth), n_boot, 0)
    free_boot = resampled_taus(free[None], truth, index)
    free_tau = tau_b(free, truth)
    rows = []
    for row in result["kinds"]:
        scores = np.atleast_2d(np.asarray(row["scores"], dtype=float))  # one row per supernet seed
        own_boot = resampled_taus(scores, truth, index)
        own_tau = float(np.mean([tau_b(s, truth) for s in scores]))
        for w in weights:
            for ranks in (False, True):
                mix = blended(scores, free, w, ranks=ranks)
                boot = resampled_taus(mix, truth, index)
                tau = float(np.mean([tau_b(s, truth) for s in mix]))
                rows.append({"kind": row["kind"], "weight": w, "on": "ranks" if ranks else "z-scores",
                             "tau": tau, "tau_ci": interval(boot), "kind_tau": own_tau, "free_tau": free_tau,
                             "vs_kind": difference(boot, own_boot, tau, own_tau),
                             "vs_free": difference(boot, free_boot, tau, free_tau)})
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("result", help="a ranking result JSON")
    p.add_argument("--predictor", default="macs", choices=("macs", "params", "enn", "depth"))
    p.add_argument("--out", default=None, help="JSON output (default: beside the result, blend_<name>.json)")
    args = p.parse_args(argv)
    path = Path(args.result)
    result = json.loads(path.read_text())
    rows = analyse(result, predictor=args.predictor)
    print(f"blending with {args.predictor} on {path.name} ({len(result['ground_truth']['archs'])} archs; "
          f"{args.predictor} alone: tau {rows[0]['free_tau']:.3f})")
    print(f"{'kind':<16}{'w':>5}{'on':>10}{'tau':>8}{'kind tau':>10}  {'blend - kind [95% CI]':<26}"
          f"{'blend - ' + args.predictor + ' [95% CI]':<26}")
    for r in rows:
        vk, vf = r["vs_kind"], r["vs_free"]
        print(f"{r['kind']:<16}{r['weight']:>5}{r['on']:>10}{r['tau']:>8.3f}{r['kind_tau']:>10.3f}  "
              f"{vk['point']:+.3f} [{vk['ci'][0]:+.3f}, {vk['ci'][1]:+.3f}]      "
              f"{vf['point']:+.3f} [{vf['ci'][0]:+.3f}, {vf['ci'][1]:+.3f}]")
    out = Path(args.out) if args.out else path.with_name(f"blend_{path.stem}.json")
    out.write_text(json.dumps({"source": str(path.name), "predictor": args.predictor, "rows": rows}, indent=1)
                   + "\n")
    return rows


if __name__ == "__main__":
    main()
