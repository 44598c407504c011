"""The search report: numbers about a search (trial counts, spread of scores, Kendall tau of the supernet's scores
with MACs and params, and with ground truth when there is a table) and its files: a Pareto-front PNG and HTML, a CSV
of the trials and a markdown summary, written atomically (several workers on one storage may write them at once).
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

__all__ = ["search_summary", "search_markdown", "write_report"]


def _complete(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def _metric_names(study: optuna.Study) -> list[str]:
    names = study.metric_names
    return list(names) if names else [f"objective_{i}" for i in range(len(study.directions))]


def search_summary(study: optuna.Study, *, truth: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Numbers about a search: trial counts, the spread of supernet accuracies over the trials, their Kendall tau
    with MACs and params (a sanity check: bigger nets usually score higher), and, given ground-truth accuracies by
    ``arch_key`` (``truth``), the supernet's ranking quality on the searched archs (``ranking_metrics``)."""
    trials = _complete(study)
    front = study.best_trials if trials else []
    summary: dict[str, Any] = {
        "study": study.study_name, "complete": len(trials), "pareto": len(front),
        "feasible": sum(bool(t.user_attrs.get("feasible", True)) for t in trials),
    }
    acc = [t.user_attrs["accuracy"] for t in trials if "accuracy" in t.user_attrs]
    if acc:
        summary["accuracy"] = {"min": min(acc), "median": statistics.median(acc), "max": max(acc),
                               "std": statistics.pstdev(acc)}
        best = max((t for t in trials if "accuracy" in t.user_attrs), key=lambda t: t.user_attrs["accuracy"])
        summary["best"] = {"trial": best.number, "accuracy": best.user_attrs["accuracy"],
                           "arch_key": best.user_attrs.get("arch_key")}
    if len(acc) >= 2:
        from scipy import stats

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant input: tau is NaN, reported as such
            for cost in ("MACs", "params"):
                pairs = [(t.user_attrs["accuracy"], t.user_attrs[cost]) for t in trials
                         if "accuracy" in t.user_attrs and cost in t.user_attrs]
                if len(pairs) >= 2:
                    summary[f"tau_accuracy_{cost}"] = float(stats.kendalltau(*zip(*pairs)).statistic)
    if truth is not None:
        from .metrics import ranking_metrics

        known = {t.user_attrs["arch_key"]: t for t in trials
                 if t.user_attrs.get("arch_key") in truth and "accuracy" in t.user_attrs}
        if len(known) >= 2:
            gt = [truth[key] for key in known]
            summary["ground_truth"] = ranking_metrics([t.user_attrs["accuracy"] for t in known.values()], gt)
            # the free predictors on the same archs: the supernet is worth what it ranks above the best of them
            free = {}
            for cost in ("MACs", "params"):
                values = [t.user_attrs.get(cost) for t in known.values()]
                if None not in values and len(set(values)) > 1:
                    free[cost] = ranking_metrics(values, gt)["kendall_tau"]
            summary["ground_truth"]["free_predictors"] = free
    return summary


def search_markdown(s: Mapping[str, Any]) -> str:
    lines = [f"{s['complete']} complete trials, {s['feasible']} feasible, {s['pareto']} on the Pareto front."]
    if "accuracy" in s:
        a = s["accuracy"]
        lines.append(f"Supernet accuracy over the trials: min {a['min']:.4f}, median {a['median']:.4f}, "
                     f"max {a['max']:.4f} (std {a['std']:.4f}); most accurate: trial {s['best']['trial']} "
                     f"(`{s['best']['arch_key']}`).")
    taus = [f"{cost} {s[f'tau_accuracy_{cost}']:.3f}" for cost in ("MACs", "params") if f"tau_accuracy_{cost}" in s]
    if taus:
        lines.append("Kendall tau of supernet accuracy with " + ", ".join(taus)
                     + " (a sanity check: larger nets usually score higher).")
    if "ground_truth" in s:
        g = s["ground_truth"]
        lines.append(f"Ranking quality against ground truth on {g['n']} searched archs: Kendall tau "
                     f"{g['kendall_tau']:.3f}, Spearman {g['spearman']:.3f}, GT accuracy of the best pick "
                     f"{g['best_pick_truth']:.4f} (best {g['best_truth']:.4f}).")
        free = g.get("free_predictors") or {}
        if free:
            best = max(free, key=lambda k: free[k])
            lines.append("Free predictors on the same archs: " + ", ".join(f"{k} {v:.3f}" for k, v in free.items())
                         + f"; the supernet ranks {g['kendall_tau'] - free[best]:+.3f} tau against the best of them "
                         f"({best})" + (" and is worth no more than it." if g["kendall_tau"] <= free[best] else "."))
    return "\n".join(lines)


def _table(study: optuna.Study) -> tuple[list[str], list[list[Any]]]:
    names = _metric_names(study)
    front = {t.number for t in study.best_trials} if _complete(study) else set()
    attrs = ["MACs", "params", "arch_key", "supernet_kind", "subsupernet", "kshot_code", "feasible", "eval_seconds"]
    trials = _complete(study)
    attrs = [a for a in attrs if a not in names and any(a in t.user_attrs for t in trials)]
    header = ["trial", *names, "pareto", *attrs]
    rows = [[t.number, *t.values, t.number in front, *(t.user_attrs.get(a, "") for a in attrs)] for t in trials]
    return header, rows


def _axes(study: optuna.Study) -> tuple[tuple[str, Callable[[FrozenTrial], float]], ...]:
    """(name, getter) of the plot's x and y: the second and first objective, or MACs and the only objective."""
    names = _metric_names(study)
    if len(names) >= 2:
        return (names[1], lambda t: t.values[1]), (names[0], lambda t: t.values[0])
    return ("MACs", lambda t: t.user_attrs.get("MACs", float("nan"))), (names[0], lambda t: t.values[0])


def write_report(
    study: optuna.Study, out_dir: str | os.PathLike[str], *, truth: Mapping[str, float] | None = None
) -> dict[str, Path]:
    """Write the search's report into ``out_dir``: ``pareto.png`` (matplotlib) and ``pareto.html`` (plotly,
    with ``plotly.min.js`` beside it, so it works offline) of the trials with the Pareto front highlighted,
    ``trials.csv`` (every complete trial) and ``summary.md`` (:func:`search_summary` and the front as a table).
    Returns the paths by kind: ``png``, ``html``, ``csv``, ``md``."""
    trials = _complete(study)
    if not trials:
        raise ValueError(f"Study {study.study_name!r} has no complete trial to report on.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"png": out / "pareto.png", "html": out / "pareto.html", "csv": out / "trials.csv",
             "md": out / "summary.md"}
    header, rows = _table(study)
    with _replacing(paths["csv"]) as tmp, tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows([[json.dumps(v) if isinstance(v, list) else v for v in r] for r in rows])

    front = {t.number for t in study.best_trials}
    (xname, x), (yname, y) = _axes(study)
    groups = {
        "Pareto front": [t for t in trials if t.number in front],
        "feasible": [t for t in trials if t.number not in front and t.user_attrs.get("feasible", True)],
        "infeasible": [t for t in trials if t.number not in front and not t.user_attrs.get("feasible", True)],
    }
    title = f"Study {study.study_name!r}: {len(trials)} trials, {len(front)} on the Pareto front"
    with _replacing(paths["png"]) as tmp:
        _pareto_png(tmp, groups, x, y, xname, yname, title)
    with _replacing(paths["html"]) as tmp:
        _pareto_html(tmp, groups, x, y, xname, yname, title)

    summary = search_summary(study, truth=truth)
    names = _metric_names(study)
    cols = [header.index(c) for c in ("trial", *names, *(a for a in ("params", "arch_key") if a in header))]
    front_rows = sorted((r for r in rows if r[header.index("pareto")]), key=lambda r: r[1:1 + len(names)])
    md = [f"# Search report: {study.study_name}", "", search_markdown(summary), "", "## Pareto front", "",
          "| " + " | ".join(header[c] for c in cols) + " |", "|" + " --- |" * len(cols),
          *("| " + " | ".join(_cell(r[c]) for c in cols) + " |" for r in front_rows), "",
          f"![Pareto front]({paths['png'].name})", ""]
    with _replacing(paths["md"]) as tmp:
        tmp.write_text("\n".join(md))
    return paths


@contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """A temporary file beside ``path`` that replaces it atomically when the block succeeds, so that workers
    writing the same report at once never leave a torn file."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:,.0f}"
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)


_STYLE = {"Pareto front": ("tab:red", "o"), "feasible": ("tab:blue", "o"), "infeasible": ("0.6", "x")}


def _pareto_png(path: Path, groups: Mapping[str, list[FrozenTrial]], x: Callable, y: Callable, xname: str,
                yname: str, title: str) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.add_subplot()
    for name, trials in groups.items():
        if trials:
            color, marker = _STYLE[name]
            pts = sorted((x(t), y(t)) for t in trials)
            ax.scatter(*zip(*pts), c=color, marker=marker, s=28, label=name, zorder=3 if name == "Pareto front"
                       else 2)
            if name == "Pareto front":
                ax.plot(*zip(*pts), c=color, lw=1, alpha=0.6, drawstyle="steps-post")
    ax.set(xlabel=xname, ylabel=yname, title=title)
    ax.title.set_fontsize(10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=110, format="png")


def _pareto_html(path: Path, groups: Mapping[str, list[FrozenTrial]], x: Callable, y: Callable, xname: str,
                 yname: str, title: str) -> None:
    import plotly.graph_objects as go

    colors = {"Pareto front": "#d62728", "feasible": "#1f77b4", "infeasible": "#999999"}
    fig = go.Figure(layout={"title": {"text": title}, "xaxis": {"title": {"text": xname}},
                            "yaxis": {"title": {"text": yname}}, "template": "plotly_white"})
    for name, trials in groups.items():
        if trials:
            fig.add_trace(go.Scatter(
                x=[x(t) for t in trials], y=[y(t) for t in trials], mode="markers", name=name,
                marker={"color": colors[name], "symbol": "x" if name == "infeasible" else "circle", "size": 8},
                text=[f"trial {t.number}<br>{t.user_attrs.get('arch_key', t.params)}" for t in trials],
                hovertemplate="%{text}<br>" + xname + " %{x}<br>" + yname + " %{y}<extra></extra>",
            ))
    bundle = path.parent / "plotly.min.js"  # written once per directory, atomically; the HTML refers to it
    if not bundle.is_file():
        from plotly.offline import get_plotlyjs

        with _replacing(bundle) as tmp:
            tmp.write_text(get_plotlyjs(), encoding="utf-8")
    fig.write_html(path, include_plotlyjs="directory")
