"""Training recipes of the main job's supernet at equal images: how close inherited accuracy comes to stand-alone
accuracy, and whether the ranking holds.

Runs ``ranking.py`` on the layer-wise space and the built-in data (the main job's space and data; 50 archs spread
over depth, each trained stand-alone for 5 epochs with 2 seeds, cached) with one-shot supernets trained by each
recipe for the same number of images (every path counted) and several seeds, then adds what the ranking table does
not show: the supernet's mean inherited accuracy over the archs, their mean stand-alone accuracy, and the gap.

    python benchmarks/recipe.py                      # oneshot, oneshot-warmup, sandwich; 3 seeds; 50,000 images
    python benchmarks/recipe.py --smoke
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import ranking
from _gt import RESULTS

RECIPES = "oneshot,oneshot-warmup,sandwich"


def gaps(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per recipe: mean inherited accuracy (over archs and seeds), the archs' mean stand-alone accuracy, the gap,
    the mean tau with its interval and its difference to plain one-shot."""
    truth = np.asarray(result["ground_truth"]["mean_test_accuracy"])
    rows = []
    for row in result["kinds"]:
        if row.get("snapshot_of"):  # a scoring variant of a recipe's trainings (late snapshots), not a recipe
            continue
        scores = np.asarray(row["scores"], dtype=float)  # seeds x archs
        rows.append({
            "recipe": row["kind"], "spec": row["spec"], "inherited_mean": float(scores.mean()),
            "inherited_best": float(scores.max(axis=1).mean()), "standalone_mean": float(truth.mean()),
            "gap": float(truth.mean() - scores.mean()),
            "gap_per_seed": [float(truth.mean() - s.mean()) for s in scores],
            "tau_mean": row["tau_mean"], "tau_ci": row["tau_ci"], "diff_oneshot": row["diff_oneshot"],
            "top1_pick_gt": row.get("top1_pick_gt"), "train_seconds": row["train_seconds"],
        })
    return rows


def print_gaps(rows: list[dict[str, Any]]) -> None:
    print(f"\n{'recipe':<16}{'inherited':>10}{'stand-alone':>12}{'gap':>8}{'gap over seeds':>18}{'tau':>7}"
          f"{'95% CI':>16}{'- oneshot [95% CI]':>26}")
    for r in rows:
        spread = f"{min(r['gap_per_seed']):.3f}-{max(r['gap_per_seed']):.3f}"
        d = r["diff_oneshot"]
        diff = f"{d['point']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]" if d else "-"
        print(f"{r['recipe']:<16}{r['inherited_mean']:>10.3f}{r['standalone_mean']:>12.3f}{r['gap']:>8.3f}"
              f"{spread:>18}{r['tau_mean']:>7.3f}  [{r['tau_ci'][0]:.3f}, {r['tau_ci'][1]:.3f}]{diff:>26}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", default=RECIPES, help="ranking.py kinds (default: %(default)s)")
    p.add_argument("--budget-images", type=int, default=50_000, help="the main job's budget (default: %(default)s)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--from-result", default=None, help="analyse a saved ranking result instead of running one")
    p.add_argument("--gt-dir", default=str(RESULTS))
    p.add_argument("--cache-dir", default=str(Path(__file__).resolve().parent / ".cache"))
    p.add_argument("--out", default=str(RESULTS / "recipe_layerwise_default.json"))
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    if args.from_result:
        result = json.loads(Path(args.from_result).read_text())
    else:
        extra = ["--smoke", "--gt-dir", str(Path(args.out).parent)] if args.smoke else [
            "--space", "layerwise", "--data", "default", "--sample", "depth", "--archs", "50", "--gt-epochs", "5",
            "--budget-images", str(args.budget_images), "--seeds", args.seeds, "--gt-dir", args.gt_dir]
        result = ranking.main([*extra, "--kinds", args.recipes, "--workers", str(args.workers), "--cache-dir",
                               args.cache_dir, "--out", args.out])
    rows = gaps(result)
    print_gaps(rows)
    result["recipes"] = rows
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
