"""The decision threshold of a two-class model, tuned for balanced accuracy on unseen predictions.

With imbalanced classes, a calibrated model's probability of the rare class rarely passes 0.5, so
answering by the most probable class favours the common one. Moving the threshold on P(second class)
to where balanced accuracy (the mean of the per-class recalls) is highest on out-of-fold (or
held-out) probabilities recovers the rare class. The threshold is chosen on all those rows for the
saved model. Whether to use it at all is decided by cross-fitting (each fold's rows answered with a
threshold chosen on the other folds' rows): only when that beats the most-probable-class answer,
whose balanced accuracy is then the estimate reported. So tuning never flatters the estimate, and
with too few rare-class rows to tune on (the cross-fitted figure falls short) the model keeps 0.5.
"""

from __future__ import annotations

import numpy as np


def balanced_accuracy(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """Mean recall over the classes present in ``y``."""
    recalls = [float((pred[y == c] == c).mean()) for c in range(n_classes) if (y == c).any()]
    return float(np.mean(recalls)) if recalls else float("nan")


def decide(proba: np.ndarray, threshold: float | None) -> np.ndarray:
    """Class indices: the second class when its probability reaches ``threshold``; else the argmax."""
    if threshold is None or proba.shape[1] != 2:
        return proba.argmax(axis=1)
    return (proba[:, 1] >= threshold).astype(np.int64)


# Thresholds tried: a coarse grid, so that with a handful of rare-class rows the choice cannot thread
# the needle between two particular probabilities (it would not carry over to new texts).
CANDIDATES = np.round(np.arange(0.02, 0.99, 0.02), 2)


def best_threshold(p1: np.ndarray, y: np.ndarray) -> float:
    """The threshold on P(class 1) with the highest balanced accuracy; the one nearest 0.5 on ties."""
    candidates = CANDIDATES
    best, best_score = 0.5, -1.0
    for t in candidates:
        s = balanced_accuracy(y, (p1 >= t).astype(np.int64), 2)
        if s > best_score + 1e-12 or (abs(s - best_score) <= 1e-12 and abs(t - 0.5) < abs(best - 0.5)):
            best, best_score = float(t), s
    return best


def crossfit_decisions(p1: np.ndarray, y: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    """Each group's rows answered with the threshold chosen on the other groups' rows."""
    pred = np.zeros(len(y), dtype=np.int64)
    for rows in groups:
        others = np.setdiff1d(np.arange(len(y)), rows)
        t = best_threshold(p1[others], y[others]) if len(np.unique(y[others])) == 2 else 0.5
        pred[rows] = (p1[rows] >= t).astype(np.int64)
    return pred
