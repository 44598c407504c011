"""Ranking quality of a supernet against ground truth: Kendall tau-b and Spearman rho between supernet scores and
stand-alone accuracies over the same archs, top-k precision, and the ground-truth accuracy of the best-scored arch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

__all__ = ["ranking_metrics"]


def ranking_metrics(scores: Sequence[float], truth: Sequence[float], *, top_k: int = 5) -> dict[str, float]:
    """Agreement of supernet ``scores`` with ground-truth accuracies ``truth`` over the same archs.

    Returns Kendall tau-b and Spearman rho, ``top{k}_precision`` (share of the GT top-k in the scores' top-k),
    ``best_pick_truth`` (GT accuracy of the arch the scores rank first) and ``best_truth`` (the best GT accuracy).
    """
    scores, truth = np.asarray(scores, dtype=float), np.asarray(truth, dtype=float)
    if scores.shape != truth.shape or scores.ndim != 1 or len(scores) < 2:
        raise ValueError(f"Need two equal-length 1-d sequences of >= 2 values, got {scores.shape}, {truth.shape}.")
    k = min(top_k, len(scores))
    top_scores = set(np.argsort(-scores, kind="stable")[:k])
    top_truth = set(np.argsort(-truth, kind="stable")[:k])
    return {
        "kendall_tau": float(stats.kendalltau(scores, truth).statistic),
        "spearman": float(stats.spearmanr(scores, truth).statistic),
        f"top{k}_precision": len(top_scores & top_truth) / k,
        "best_pick_truth": float(truth[int(np.argmax(scores))]),
        "best_truth": float(truth.max()),
        "n": len(scores),
    }
