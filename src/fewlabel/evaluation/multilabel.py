"""Multi-label evaluation: shuffled folds, per-label thresholds, and scores with bootstrap intervals.

Each label is answered on its own when its probability reaches the label's threshold. A threshold is
chosen to maximise that label's F1 on out-of-fold probabilities; the estimate answers each fold's
rows with thresholds chosen on the other folds' rows only (cross-fitting, as
:mod:`fewlabel.evaluation.threshold` does for two classes), so tuning never flatters it. Scores:
micro-F1 (over every text-label pair: frequent labels weigh more), macro-F1 (the mean of the labels'
F1: every label weighs the same), subset accuracy (the whole set right: strict) and Hamming loss
(the share of text-label pairs wrong), each with a 95% interval from resampling the texts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from fewlabel.evaluation.scores import N_BOOTSTRAP, Interval
from fewlabel.evaluation.threshold import CANDIDATES
from fewlabel.strategies.base import Strategy

Folds = list[tuple[np.ndarray, np.ndarray]]
BOOTSTRAP_BLOCK = 50  # resamples drawn at once: 50 x rows weights (40 MB for 100,000 rows)


def shuffled_folds(n_rows: int, n_folds: int, seed: int) -> Folds:
    """k shuffled folds (label sets have no single class to stratify on)."""
    from sklearn.model_selection import KFold

    splitter = KFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(n_rows)))


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """F1 from counts; NaN where a label is neither present nor predicted (0/0)."""
    denominator = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), np.nan)


def best_thresholds(proba: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Per label, the threshold with the highest F1 on these rows; the one nearest 0.5 on ties."""
    out = np.full(Y.shape[1], 0.5)
    for j in range(Y.shape[1]):
        pred = proba[:, j][None, :] >= CANDIDATES[:, None]  # candidates x rows
        tp = (pred & (Y[:, j] == 1)).sum(axis=1)
        f1 = np.nan_to_num(_f1(tp, pred.sum(axis=1) - tp, Y[:, j].sum() - tp), nan=0.0)
        best = np.flatnonzero(f1 >= f1.max() - 1e-12)
        out[j] = float(CANDIDATES[best[np.argmin(np.abs(CANDIDATES[best] - 0.5))]])
    return out


def crossfit_predictions(proba: np.ndarray, Y: np.ndarray, folds: Folds) -> np.ndarray:
    """Each fold's rows answered with thresholds chosen on the other folds' out-of-fold rows."""
    pred = np.zeros_like(Y)
    for train, val in folds:
        pred[val] = (proba[val] >= best_thresholds(proba[train], Y[train])).astype(Y.dtype)
    return pred


@dataclass
class MultiScores:
    """Micro-F1, macro-F1, subset accuracy and Hamming loss on ``n`` texts, with 95% intervals."""

    n: int
    micro_f1: Interval
    macro_f1: Interval
    subset_accuracy: Interval
    hamming_loss: Interval

    def to_dict(self) -> dict:
        return {
            "n": self.n,
            "micro_f1": self.micro_f1.to_dict(),
            "macro_f1": self.macro_f1.to_dict(),
            "subset_accuracy": self.subset_accuracy.to_dict(),
            "hamming_loss": self.hamming_loss.to_dict(),
        }


def _metrics(weights: np.ndarray, Y: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
    """The four metrics for each row of ``weights`` (how often each text counts)."""
    tp = weights @ (pred & Y)
    fp = weights @ (pred & (1 - Y))
    fn = weights @ ((1 - pred) & Y)
    total = weights.sum(axis=1)
    with np.errstate(invalid="ignore"):
        macro = np.nanmean(_f1(tp, fp, fn), axis=1)
    return {
        "micro_f1": np.nan_to_num(_f1(tp.sum(axis=1), fp.sum(axis=1), fn.sum(axis=1)), nan=1.0),
        "macro_f1": macro,
        "subset_accuracy": weights @ (pred == Y).all(axis=1) / total,
        "hamming_loss": weights @ (pred != Y).mean(axis=1) / total,
    }


def multilabel_scores(Y: np.ndarray, pred: np.ndarray, seed: int = 0) -> MultiScores:
    """The scores of ``pred`` against ``Y`` (both 0/1, texts x labels), intervals by row bootstrap."""
    Y, pred = np.asarray(Y, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    n = len(Y)
    point = _metrics(np.ones((1, n)), Y, pred)
    rng = np.random.default_rng(seed)
    blocks = [  # resamples in blocks: the weights of all 1,000 over a large file would not fit in memory
        _metrics(rng.multinomial(n, np.full(n, 1 / n), size=size).astype(float), Y, pred)
        for size in np.diff(np.r_[0:N_BOOTSTRAP:BOOTSTRAP_BLOCK, N_BOOTSTRAP])
    ]
    resampled = {key: np.concatenate([b[key] for b in blocks]) for key in point}

    def interval(key: str) -> Interval:
        low, high = np.nanpercentile(resampled[key], [2.5, 97.5])
        return Interval(float(point[key][0]), float(low), float(high))

    return MultiScores(n, *(interval(k) for k in ("micro_f1", "macro_f1", "subset_accuracy", "hamming_loss")))


def per_label(Y: np.ndarray, pred: np.ndarray, labels: list[str]) -> dict[str, dict[str, float | int]]:
    """Precision, recall, F1 and support of each label (NaN where undefined)."""
    tp = (pred & Y).sum(axis=0)
    predicted, support = pred.sum(axis=0), Y.sum(axis=0)
    f1 = _f1(tp, predicted - tp, support - tp)
    out: dict[str, dict[str, float | int]] = {}
    for j, label in enumerate(labels):
        out[label] = {
            "precision": float(tp[j] / predicted[j]) if predicted[j] else float("nan"),
            "recall": float(tp[j] / support[j]) if support[j] else float("nan"),
            "f1": float(f1[j]),
            "support": int(support[j]),
        }
    return out


def majority_predictions(Y: np.ndarray) -> np.ndarray:
    """Each label's majority answer for every text (usually: no label at all)."""
    return np.broadcast_to((Y.mean(axis=0) > 0.5).astype(Y.dtype), Y.shape).copy()


@dataclass
class MultiCV:
    """One strategy's out-of-fold label probabilities and how it did per fold (thresholds at 0.5)."""

    name: str
    description: str
    oof_proba: np.ndarray
    Y: np.ndarray
    train_micro_f1: list[float]
    val_micro_f1: list[float]
    seconds: float
    pred: np.ndarray = field(default_factory=lambda: np.zeros(0))  # cross-fitted answers
    scores: MultiScores | None = None  # of those answers


def _micro_f1(Y: np.ndarray, pred: np.ndarray) -> float:
    tp = int((pred & Y).sum())
    denominator = 2 * tp + int((pred != Y).sum())
    return 2 * tp / denominator if denominator else 1.0


def cross_validate_multilabel(
    factory: Callable[[], Strategy],
    texts: Sequence[str],
    Y: np.ndarray,
    folds: Folds,
    name: str,
    seed: int = 0,
    on_fold: Callable[[], None] | None = None,
    tune_thresholds: bool = True,
) -> MultiCV:
    """Out-of-fold probabilities of one strategy, then cross-fitted thresholds (or 0.5 for every label
    without ``tune_thresholds``) and the scores of those answers."""
    start = time.perf_counter()
    oof = np.zeros(Y.shape, dtype=float)
    train_f1, val_f1 = [], []
    for train, val in folds:
        strategy = factory().fit([texts[i] for i in train], Y[train])
        oof[val] = strategy.predict_proba([texts[i] for i in val])
        fitted = strategy.predict_proba([texts[i] for i in train]) >= 0.5
        train_f1.append(_micro_f1(Y[train], fitted.astype(Y.dtype)))
        val_f1.append(_micro_f1(Y[val], (oof[val] >= 0.5).astype(Y.dtype)))
        if on_fold:
            on_fold()
    result = MultiCV(name, factory().describe(), oof, Y, train_f1, val_f1, time.perf_counter() - start)
    result.pred = crossfit_predictions(oof, Y, folds) if tune_thresholds else (oof >= 0.5).astype(Y.dtype)
    result.scores = multilabel_scores(Y, result.pred, seed)
    return result
