"""How well a per-document score separates two labelled sets: AUROC (the Mann–Whitney statistic) and the true
positive rate at a fixed false positive rate, with the threshold that gives it.

Scores are oriented so that higher means "label 1"; callers negate scores for which lower means it.
"""

from __future__ import annotations

import numpy as np


def auroc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """P(a label-1 score > a label-0 score) + ½ P(equal): U / (n1 · n0), ranks averaged over ties; None
    when a class is empty."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    n1, n0 = int(labels.sum()), int((~labels).sum())
    if n1 == 0 or n0 == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    ranks[order] = np.arange(1, len(scores) + 1)
    values, first, counts = np.unique(scores[order], return_index=True, return_counts=True)
    for start, count in zip(first[counts > 1], counts[counts > 1], strict=True):  # ties: the mean of their ranks
        ranks[order[start : start + count]] = start + (count + 1) / 2
    u = ranks[labels].sum() - n1 * (n1 + 1) / 2
    return float(u / (n1 * n0))


def tpr_at_fpr(scores: np.ndarray, labels: np.ndarray, fpr: float) -> tuple[float, float] | None:
    """(true positive rate, threshold): the highest TPR of the rule "label 1 when score >= threshold" whose
    false positive rate is at most `fpr`, over every threshold the scores allow; ties go to the lowest FPR,
    then the highest threshold (inf: nothing is flagged). None when a class is empty."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    positive, negative = np.sort(scores[labels]), np.sort(scores[~labels])
    if len(positive) == 0 or len(negative) == 0:
        return None
    candidates = np.concatenate([[np.inf], np.unique(scores)[::-1]])  # (c,) strictest rule first
    tpr = (len(positive) - np.searchsorted(positive, candidates, side="left")) / len(positive)  # (c,) >= t
    false = (len(negative) - np.searchsorted(negative, candidates, side="left")) / len(negative)  # (c,)
    allowed = false <= fpr + 1e-12
    best = float(tpr[allowed].max())
    pick = int(np.flatnonzero(allowed & (tpr == best))[0])  # FPR grows with the index: the first is the lowest
    return best, float(candidates[pick])
