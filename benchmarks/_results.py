"""Writing benchmark results: the JSON each script produces and a PNG plot drawn from it.

Each script ends with :func:`write_result`; to redraw the plots from saved results:

    python benchmarks/_results.py benchmarks/results/ranking_macro_default.json benchmarks/results/tabular.json
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any


def _pyplot():
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("plots need matplotlib: pip install 'optuna-kshot[benchmarks]'") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_ranking(result: dict[str, Any], path: Path) -> None:
    """Ranking result: Kendall tau with its 95% interval for every supernet kind and free predictor (the ceiling
    as a line), then one panel per kind of its scores (every seed) against the ground truth."""
    if "baselines" not in result:  # a result of the earlier ranking.py (one seed per kind)
        _plot_ranking_single_seed(result, path)
        return
    plt = _pyplot()
    truth = result["ground_truth"]["mean_test_accuracy"]
    kinds = result["kinds"]
    cols = min(4, len(kinds) + 1)
    rows = math.ceil((len(kinds) + 1) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.1 * rows), squeeze=False)
    _plot_taus(axes.flat[0], kinds + result["baselines"], result["ground_truth"]["ceiling_kendall_tau"])
    for ax, row in zip(list(axes.flat)[1:], kinds):
        for seed, scores in zip(row["seeds"], row["scores"]):
            ax.scatter(truth, scores, s=10, alpha=0.7, label=f"seed {seed}")
        ax.set_title(f"{row['kind']}: tau {row['tau_mean']:.2f} ± {row['tau_std']:.2f}", fontsize=9)
        ax.set_xlabel("ground-truth accuracy", fontsize=8)
        ax.set_ylabel("supernet val. accuracy", fontsize=8)
        ax.tick_params(labelsize=7)
    if kinds:
        axes.flat[1].legend(fontsize=6)
    for ax in list(axes.flat)[len(kinds) + 1:]:
        ax.axis("off")
    s = result["settings"]
    fig.suptitle(f"ranking: {s['space']} space, {s['data']} data, {len(truth)} archs, {s['budget_images']:,} images "
                 f"per kind, seeds {s['seeds']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_taus(ax: Any, rows: list[dict[str, Any]], ceiling: float) -> None:
    """Kendall tau (mean over seeds) and its bootstrap interval per predictor; free predictors in grey."""
    y = list(range(len(rows)))[::-1]
    for yi, r in zip(y, rows):
        lo, hi = r["tau_ci"]
        color = "grey" if r.get("free") else "C0"
        ax.plot([lo, hi], [yi, yi], color=color, linewidth=2)
        ax.plot([r["tau_mean"]], [yi], "o", color=color, markersize=4)
    if ceiling == ceiling:  # not nan
        ax.axvline(ceiling, color="C3", linestyle=":", linewidth=1, label="ceiling")
        ax.legend(fontsize=6)
    ax.axvline(0, color="black", linewidth=0.5)
    ax.set_yticks(y, [r["kind"] for r in rows], fontsize=7)
    ax.set_xlabel("Kendall tau, 95% interval", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)


def _plot_ranking_single_seed(result: dict[str, Any], path: Path) -> None:
    """One panel per supernet kind: supernet score against stand-alone accuracy of the same archs."""
    plt = _pyplot()
    truth = result["ground_truth"]["mean_test_accuracy"]
    kinds = result["kinds"]
    cols = min(4, max(1, len(kinds)))
    rows = math.ceil(len(kinds) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for ax, row in zip(axes.flat, kinds):
        ax.scatter(truth, row["scores"], s=12)
        ax.set_title(f"{row['kind']}: tau {row['kendall_tau']:.2f}", fontsize=9)
        ax.set_xlabel("stand-alone test accuracy", fontsize=8)
        ax.set_ylabel("supernet val. accuracy", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(kinds):]:
        ax.axis("off")
    s = result["settings"]
    fig.suptitle(f"ranking: {s['space']} space, {s['data']} data, ceiling tau "
                 f"{result['ground_truth']['ceiling_kendall_tau']:.2f}, {s['budget_images']:,} images per kind",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_tabular(result: dict[str, Any], path: Path) -> None:
    """Hypervolume fraction against trials, one panel per (table, objectives), one line per sampler."""
    plt = _pyplot()
    rows = [r for r in result["rows"] if any(k.startswith("hv_frac@") for k in r)]
    panels = sorted({(r["table"], r["objectives"]) for r in rows})
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2), squeeze=False)
    for ax, (table, objectives) in zip(axes.flat, panels):
        for r in (r for r in rows if (r["table"], r["objectives"]) == (table, objectives)):
            ns = sorted(int(k.split("@")[1]) for k in r if k.startswith("hv_frac@"))
            ax.plot(ns, [r[f"hv_frac@{n}"] for n in ns], marker="o", label=r["sampler"])
        ax.axhline(0.95, color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_title(f"{table}: {objectives}", fontsize=9)
        ax.set_xlabel("trials", fontsize=8)
        ax.set_ylabel("hypervolume / true front's", fontsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_speed(result: dict[str, Any], path: Path) -> None:
    """Training step time and peak memory of each supernet kind relative to one-shot."""
    plt = _pyplot()
    kinds = result["kinds"]
    names = [k["kind"] for k in kinds]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, key, label in ((axes[0], "step_over_oneshot", "step time / one-shot step"),
                           (axes[1], "memory_over_oneshot", "peak memory / one-shot's")):
        ax.bar(names, [k[key] for k in kinds])
        ax.axhline(1.0, color="grey", linestyle=":", linewidth=1)
        ax.set_ylabel(label, fontsize=8)
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    fig.suptitle(f"supernet kinds, {result['settings']['threads']} thread(s); evaluation / bare forwards "
                 f"{result['eval_over_bare_median']:.2f}x", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_png(result: dict[str, Any], json_path: Path) -> Path:
    """Draw the plot that fits ``result`` next to its JSON (same name, ``.png``); return the PNG's path."""
    path = Path(json_path).with_suffix(".png")
    if "ground_truth" in result:
        plot_ranking(result, path)
    elif "rows" in result:
        plot_tabular(result, path)
    elif "eval_over_bare_median" in result:
        plot_speed(result, path)
    else:
        raise ValueError(f"{json_path}: not a result of ranking.py, tabular.py or speed.py")
    return path


def write_result(result: dict[str, Any], out: str | Path) -> None:
    """Write ``result`` as JSON to ``out`` and its plot next to it (``.png``), and say where."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out} and {save_png(result, out)}")


if __name__ == "__main__":
    for name in sys.argv[1:]:
        result = json.loads(Path(name).read_text())
        if "runs" in result:
            print(f"{name}: ground truth, no plot")  # the cached stand-alone runs ranking.py reads
            continue
        print(save_png(result, Path(name)))
