"""Statistics of the ranking benchmark (numpy and scipy only).

Kendall tau is scipy's tau-b. Uncertainty comes from a paired bootstrap over archs: one set of resampled arch
indices is shared by every predictor, so differences between two predictors are taken on the same resamples. A
predictor's bootstrap value on a resample is the mean over its supernet seeds of tau on the resampled archs; its
interval thus covers arch sampling and (through the mean) supernet seeds.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

LEVEL = 0.95


def tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall tau-b of two equal-length sequences (nan when one is constant or shorter than 2)."""
    if len(x) < 2:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input: scipy warns and returns nan
        return float(stats.kendalltau(x, y).statistic)


def tau_b_rows(x: np.ndarray, y: np.ndarray, *, chunk: int = 256) -> np.ndarray:
    """Kendall tau-b of every row pair of ``x`` and ``y`` (both ``(B, n)``), vectorised.

    With ``S`` the matrix of pairwise signs ``sign(v_i - v_j)``, tau-b is ``<Sx, Sy> / (|Sx| |Sy|)``: the
    numerator counts concordant minus discordant pairs, the norms the pairs untied in x and in y. Ties, and the
    duplicated archs of a bootstrap resample, are handled as scipy's ``kendalltau`` handles them. nan for a
    constant row.
    """
    x, y = np.atleast_2d(np.asarray(x, dtype=float)), np.atleast_2d(np.asarray(y, dtype=float))
    if x.shape != y.shape:
        raise ValueError(f"`x` and `y` must have one shape, but got {x.shape} and {y.shape}.")
    out = np.empty(len(x))
    for start in range(0, len(x), chunk):
        sx = np.sign(x[start:start + chunk, :, None] - x[start:start + chunk, None, :])
        sy = np.sign(y[start:start + chunk, :, None] - y[start:start + chunk, None, :])
        num = np.einsum("bij,bij->b", sx, sy)
        den = np.sqrt(np.einsum("bij,bij->b", sx, sx) * np.einsum("bij,bij->b", sy, sy))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start:start + chunk] = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return out


def bootstrap_index(n: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """``(n_boot, n)`` arch indices drawn with replacement (seeded): the resamples every predictor shares."""
    if n < 2 or n_boot < 1:
        raise ValueError(f"A bootstrap needs n >= 2 archs and n_boot >= 1, but got {n=}, {n_boot=}.")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def resampled_taus(scores: np.ndarray, truth: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Bootstrap values of one predictor: for each resample (row of ``index``), the mean over seeds (rows of
    ``scores``, shape ``(seeds, n)``) of tau against ``truth`` on the resampled archs."""
    scores, truth = np.atleast_2d(np.asarray(scores, dtype=float)), np.asarray(truth, dtype=float)
    per_seed = np.stack([tau_b_rows(s[index], truth[index]) for s in scores])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-nan columns stay nan
        return np.nanmean(per_seed, axis=0)


def interval(values: np.ndarray, level: float = LEVEL) -> list[float]:
    """Percentile interval of bootstrap values (nan-aware): ``[low, high]``."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if not len(values):
        return [float("nan"), float("nan")]
    tail = 100 * (1 - level) / 2
    return [float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))]


def difference(boot_a: np.ndarray, boot_b: np.ndarray, point_a: float, point_b: float) -> dict[str, Any]:
    """``a - b`` on the full sample and its paired bootstrap interval (same resamples for both)."""
    return {"point": float(point_a - point_b), "ci": interval(np.asarray(boot_a) - np.asarray(boot_b))}


def group_bootstrap_index(groups: Sequence[Any], n_boot: int, seed: int = 0, *, min_size: int = 4
                          ) -> list[np.ndarray]:
    """Resamples inside each group of >= ``min_size`` archs: per group, ``(n_boot, m)`` indices into the sample
    drawn with replacement among the group's ``m`` archs (seeded), shared by every predictor so that in-group
    differences are paired."""
    groups, rng = np.asarray(groups), np.random.default_rng(seed)
    out = []
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        if len(members) >= min_size:
            out.append(members[rng.integers(0, len(members), size=(n_boot, len(members)))])
    return out


def resampled_within(scores: np.ndarray, truth: np.ndarray, group_index: list[np.ndarray]) -> np.ndarray:
    """Bootstrap values of the in-group tau (:func:`within_groups`): per resample, the mean over groups of tau
    inside the group (groups where a side is constant left out), averaged over seeds (rows of ``scores``)."""
    scores, truth = np.atleast_2d(np.asarray(scores, dtype=float)), np.asarray(truth, dtype=float)
    if not group_index:
        return np.full(1, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-nan columns stay nan
        per_seed = [np.nanmean(np.stack([tau_b_rows(s[i], truth[i]) for i in group_index]), axis=0) for s in scores]
        return np.nanmean(np.stack(per_seed), axis=0)


def within_groups(scores: Sequence[float], truth: Sequence[float], groups: Sequence[Any],
                  *, min_size: int = 4) -> float:
    """Mean tau inside the groups of ``groups`` with at least ``min_size`` archs (groups where either side is
    constant are left out); nan when no group qualifies."""
    scores, truth, groups = np.asarray(scores, dtype=float), np.asarray(truth, dtype=float), np.asarray(groups)
    taus = [tau_b(scores[groups == g], truth[groups == g]) for g in np.unique(groups)
            if (groups == g).sum() >= min_size]
    taus = [t for t in taus if np.isfinite(t)]
    return float(np.mean(taus)) if taus else float("nan")


def by_group(scores: Sequence[float], truth: Sequence[float], groups: Sequence[Any],
             *, min_size: int = 4) -> dict[str, float]:
    """Tau inside each group with at least ``min_size`` archs, keyed by the group (as a string)."""
    scores, truth, groups = np.asarray(scores, dtype=float), np.asarray(truth, dtype=float), np.asarray(groups)
    return {str(g): tau_b(scores[groups == g], truth[groups == g]) for g in np.unique(groups)
            if (groups == g).sum() >= min_size}


def quartile_bins(values: Sequence[float]) -> list[int]:
    """Bin 0-3 of each value by the quartiles of ``values`` (the sample's MACs)."""
    values = np.asarray(values, dtype=float)
    edges = np.quantile(values, [0.25, 0.5, 0.75])
    return [int(b) for b in np.searchsorted(edges, values, side="right")]


def top_overlap(scores: Sequence[float], truth: Sequence[float], k: int = 5) -> int:
    """How many of the ground truth's top-``k`` archs are in the scores' top-``k`` (ties broken by order)."""
    scores, truth = np.asarray(scores, dtype=float), np.asarray(truth, dtype=float)
    k = min(k, len(scores))
    return len(set(np.argsort(-scores, kind="stable")[:k]) & set(np.argsort(-truth, kind="stable")[:k]))


def top1_truth(scores: Sequence[float], truth: Sequence[float]) -> float:
    """Ground-truth accuracy of the arch the scores rank first (the mean over archs tied for first, so a
    predictor with many ties, such as depth, is not credited with a lucky tie-break)."""
    scores, truth = np.asarray(scores, dtype=float), np.asarray(truth, dtype=float)
    return float(truth[scores == scores.max()].mean())


def summarise(scores: np.ndarray, truth: Sequence[float], index: np.ndarray, *, depth: Sequence[int],
              macs_bin: Sequence[int], top_k: int = 5) -> tuple[dict[str, Any], np.ndarray]:
    """Every statistic of one predictor (``scores``: ``(seeds, n)``, one row per supernet seed) and its
    bootstrap values (kept out of the dict, used for paired differences)."""
    scores, truth = np.atleast_2d(np.asarray(scores, dtype=float)), np.asarray(truth, dtype=float)
    taus = [tau_b(s, truth) for s in scores]
    boot = resampled_taus(scores, truth, index)
    per_depth = [by_group(s, truth, depth) for s in scores]
    row = {
        "tau_per_seed": taus,
        "tau_mean": float(np.mean(taus)),
        "tau_std": float(np.std(taus, ddof=1)) if len(taus) > 1 else 0.0,
        "tau_ci": interval(boot),
        "spearman_mean": float(np.mean([stats.spearmanr(s, truth).statistic for s in scores])),
        "tau_within_depth": _nanmean([within_groups(s, truth, depth) for s in scores]),
        "tau_within_macs_bin": _nanmean([within_groups(s, truth, macs_bin) for s in scores]),
        "tau_by_depth": {d: _nanmean([p.get(d, float("nan")) for p in per_depth]) for d in per_depth[0]},
        f"top{top_k}_overlap": float(np.mean([top_overlap(s, truth, top_k) for s in scores])),
        "top1_pick_gt": float(np.mean([top1_truth(s, truth) for s in scores])),
    }
    return row, boot


def claim(name: str, reference: str, diff: dict[str, Any], where: str = "") -> str:
    """A sentence that says only what the interval supports, e.g.
    ``"kshot2 - oneshot: +0.05 [-0.08, +0.17], not different"``; ``where`` qualifies the comparison (e.g.
    ``"within depth groups"``)."""
    low, high = diff["ci"]
    if not (np.isfinite(low) and np.isfinite(high)):
        verdict = "no interval"
    elif low > 0:
        verdict = "higher"
    elif high < 0:
        verdict = "lower"
    else:
        verdict = "not different"
    what = f"{name} - {reference}" + (f" {where}" if where else "")
    return f"{what}: {diff['point']:+.2f} [{low:+.2f}, {high:+.2f}], {verdict}"


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")
