"""Honest evaluation: stratified k-fold cross-validation, nested when a choice is made, with intervals.

Every number here comes from predictions on texts the model did not see while fitting (out-of-fold).
When ``auto`` chooses among strategies, the choice is made inside each outer training fold by an
inner cross-validation, so the outer estimate of the procedure is not biased by the choice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from fewlabel.strategies.base import Strategy

StrategyFactory = Callable[[], Strategy]
N_BOOTSTRAP = 1000
EPS = 1e-7


@dataclass
class Interval:
    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "ci95_low": self.low, "ci95_high": self.high}

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


@dataclass
class Scores:
    """Accuracy, balanced accuracy, macro-F1 and log loss with 95% confidence intervals.

    Balanced accuracy (the mean of the per-class recalls) is what fewlabel chooses, stops early and
    tests for collapse by: always answering the common class scores 1/k on it however imbalanced the
    data, while its plain accuracy can look excellent. On balanced data the two are the same figure.
    """

    accuracy: Interval
    macro_f1: Interval
    log_loss: Interval
    n: int
    balanced_accuracy: Interval = field(
        default_factory=lambda: Interval(float("nan"), float("nan"), float("nan"))
    )
    recall: list[float] = field(default_factory=list)  # per class, in label order

    def to_dict(self) -> dict:
        return {
            "n": self.n,
            "accuracy": self.accuracy.to_dict(),
            "balanced_accuracy": self.balanced_accuracy.to_dict(),
            "macro_f1": self.macro_f1.to_dict(),
            "log_loss": self.log_loss.to_dict(),
            "recall": [None if np.isnan(r) else r for r in self.recall],  # None: class absent here
        }


def wilson(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion: never zero-width, sound at 0% and 100% with few rows."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(centre - half, 0.0)), float(min(centre + half, 1.0))


def _balanced_bootstrap(y: np.ndarray, correct: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Balanced accuracy of ``N_BOOTSTRAP`` resamples drawn within each class (class counts kept).

    A plain row bootstrap of 80 rows holding 4 of the rare class often draws none or one of them,
    and then says nothing about that class; resampling within each class keeps every recall measured
    on as many rows as it really was.
    """
    classes = np.unique(y)
    total = np.zeros(N_BOOTSTRAP)
    for c in classes:
        rows = np.flatnonzero(y == c)
        draws = rng.integers(0, len(rows), size=(N_BOOTSTRAP, len(rows)))
        total += correct[rows][draws].mean(axis=1)
    return total / len(classes)


def _macro_f1_rows(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Macro-F1 for each row of index arrays ``y``/``pred`` (shape (B, n)), vectorised for the bootstrap."""
    total = np.zeros(len(y))
    present = np.zeros(len(y))
    for c in range(n_classes):
        tp = ((pred == c) & (y == c)).sum(axis=1)
        fp = ((pred == c) & (y != c)).sum(axis=1)
        fn = ((pred != c) & (y == c)).sum(axis=1)
        denom = 2 * tp + fp + fn
        # A class absent from both truth and prediction of a resample says nothing; leave it out.
        total += np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
        present += denom > 0
    return total / np.maximum(present, 1)


def balanced_interval(y: np.ndarray, pred: np.ndarray, z: float = 1.96) -> tuple[float, float]:
    """Agresti-Coull style interval of balanced accuracy: each class's recall shrunk by z^2/2 successes
    and failures, their variances added. Never zero-width, even when a rare class is all right."""
    k = len(np.unique(y))
    centre, var = 0.0, 0.0
    for c in np.unique(y):
        n_c = int((y == c).sum())
        p = (float(((pred == c) & (y == c)).sum()) + z * z / 2) / (n_c + z * z)
        centre += p / k
        var += p * (1 - p) / (n_c + z * z) / (k * k)
    half = z * float(np.sqrt(var))
    return max(centre - half, 0.0), min(centre + half, 1.0)


def score(y: np.ndarray, proba: np.ndarray, seed: int = 0, pred: np.ndarray | None = None) -> Scores:
    """Scores of probabilities ``proba`` against labels ``y``, with 95% intervals.

    ``pred`` are the answers given (default: the most probable class; a tuned threshold gives others).
    Intervals are percentile-bootstrap ones, widened where needed to the Wilson interval (for balanced
    accuracy: :func:`balanced_interval`): a bootstrap of 80 rows that are all right
    is the single point 100%, which says nothing about the next 80.
    """
    y = np.asarray(y)
    n, n_classes = proba.shape
    pred = proba.argmax(axis=1) if pred is None else np.asarray(pred)
    p_true = np.clip(proba[np.arange(n), y], EPS, 1.0)
    correct = (pred == y).astype(float)
    nll = -np.log(p_true)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(N_BOOTSTRAP, n))
    acc_boot = correct[idx].mean(axis=1)
    nll_boot = nll[idx].mean(axis=1)
    f1_boot = _macro_f1_rows(y[idx], pred[idx], n_classes)
    bal_boot = _balanced_bootstrap(y, correct, rng)
    present = [c for c in range(n_classes) if (y == c).any()]
    recall = [float((pred[y == c] == c).mean()) if (y == c).any() else float("nan") for c in range(n_classes)]

    def est(value: float, boot: np.ndarray, floor: tuple[float, float] | None = None) -> Interval:
        low, high = np.percentile(boot, [2.5, 97.5])
        if floor is not None:
            low, high = min(low, floor[0]), max(high, floor[1])
        return Interval(float(value), float(low), float(high))

    from sklearn.metrics import (  # here: predicting never imports scikit-learn's metrics
        accuracy_score,
        f1_score,
    )

    balanced = float(np.mean([recall[c] for c in present]))
    return Scores(
        accuracy=est(accuracy_score(y, pred), acc_boot, wilson(correct.sum(), n)),
        macro_f1=est(
            f1_score(y, pred, average="macro", labels=np.union1d(y, pred), zero_division=0), f1_boot
        ),
        log_loss=est(float(nll.mean()), nll_boot),
        n=n,
        balanced_accuracy=est(balanced, bal_boot, balanced_interval(y, pred)),
        recall=recall,
    )


@dataclass
class CVResult:
    """Out-of-fold predictions of one strategy (or of the auto procedure) and their scores."""

    name: str
    description: str
    oof_proba: np.ndarray
    y: np.ndarray
    train_accuracy: list[float]
    val_accuracy: list[float]
    seconds: float
    scores: Scores
    choices: list[str] = field(default_factory=list)
    # "cv": out-of-fold over every row; "holdout": one held-out split (strategies too slow to refit
    # per fold, scored on the validation rows of their own run).
    protocol: str = "cv"
    # Two imbalanced classes: the scores of answers with a tuned threshold (cross-fitted), when
    # those beat the most probable class. What the strategy would be deployed with.
    decided: Scores | None = None

    @property
    def final(self) -> Scores:
        """The scores of the answers this strategy gives: with its tuned threshold, if it has one."""
        return self.decided or self.scores

    @property
    def gap(self) -> float:
        """Mean train minus validation accuracy across folds: how much the strategy memorises."""
        return float(np.mean(self.train_accuracy) - np.mean(self.val_accuracy))

    def to_dict(self) -> dict:
        out = {
            "name": self.name,
            "description": self.description,
            **self.scores.to_dict(),
            "train_accuracy": float(np.mean(self.train_accuracy)),
            "train_val_gap": self.gap,
            "fold_accuracy": [float(a) for a in self.val_accuracy],
            "seconds": self.seconds,
            "protocol": self.protocol,
        }
        if self.choices:
            out["choices_per_fold"] = list(self.choices)
        if self.decided is not None:
            out["with_threshold"] = self.decided.to_dict()
        return out


def folds_for(y: np.ndarray, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds; fewer when the rarest class has fewer members than ``n_folds``."""
    from sklearn.model_selection import StratifiedKFold

    n_folds = int(min(n_folds, np.bincount(y).min()))
    splitter = StratifiedKFold(n_splits=max(n_folds, 2), shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y))


def _fit_predict(
    factory: StrategyFactory,
    texts: Sequence[str],
    y: np.ndarray,
    n_classes: int,
    train: np.ndarray,
    val: np.ndarray,
) -> tuple[np.ndarray, float]:
    strategy = factory().fit([texts[i] for i in train], y[train], n_classes)
    val_proba = strategy.predict_proba([texts[i] for i in val])
    train_acc = float((strategy.predict_proba([texts[i] for i in train]).argmax(1) == y[train]).mean())
    return val_proba, train_acc


def _run_folds(
    pick: Callable[[int, np.ndarray], tuple[str, StrategyFactory]],
    texts: Sequence[str],
    y: np.ndarray,
    n_classes: int,
    folds: list[tuple[np.ndarray, np.ndarray]],
    on_fold: Callable[[], None] | None,
) -> tuple[np.ndarray, list[float], list[float], list[str]]:
    """Fit what ``pick`` names on each training fold; out-of-fold probabilities and per-fold accuracies."""
    oof = np.zeros((len(y), n_classes))
    train_acc, val_acc, picked = [], [], []
    for number, (train, val) in enumerate(folds):
        name, factory = pick(number, train)
        proba, acc = _fit_predict(factory, texts, y, n_classes, train, val)
        oof[val] = proba
        train_acc.append(acc)
        val_acc.append(float((proba.argmax(1) == y[val]).mean()))
        picked.append(name)
        if on_fold:
            on_fold()
    return oof, train_acc, val_acc, picked


def cross_validate(
    factory: StrategyFactory,
    texts: Sequence[str],
    y: np.ndarray,
    n_classes: int,
    folds: list[tuple[np.ndarray, np.ndarray]],
    name: str,
    seed: int = 0,
    on_fold: Callable[[], None] | None = None,
) -> CVResult:
    """k-fold cross-validation of one strategy on precomputed ``folds``."""
    start = time.perf_counter()
    oof, train_acc, val_acc, _ = _run_folds(
        lambda _n, _t: (name, factory), texts, y, n_classes, folds, on_fold
    )
    seconds = time.perf_counter() - start
    return CVResult(name, factory().describe(), oof, y, train_acc, val_acc, seconds, score(y, oof, seed))


def _rank_key(result_score: float, result_loss: float) -> tuple[float, float]:
    # Balanced accuracy decides; log loss breaks ties (it separates strategies that are equally right
    # but not equally sure, and is less noisy than accuracy on a few hundred texts).
    return (-round(result_score, 4), result_loss)


def choose(results: dict[str, CVResult]) -> str:
    """The best candidate by cross-validated balanced accuracy, ties broken by log loss.

    Balanced accuracy, not accuracy: on imbalanced data a strategy that always answers the common
    class would win on accuracy. On balanced data the two agree. A candidate with a tuned threshold
    (``decided``) is ranked by the answers it gives with it.
    """
    return min(
        results,
        key=lambda k: _rank_key(results[k].final.balanced_accuracy.value, results[k].final.log_loss.value),
    )


def nested_cross_validate(
    factories: dict[str, StrategyFactory],
    texts: Sequence[str],
    y: np.ndarray,
    n_classes: int,
    folds: list[tuple[np.ndarray, np.ndarray]],
    inner_folds: int,
    seed: int = 0,
    on_fold: Callable[[], None] | None = None,
) -> CVResult:
    """Outer CV of the whole "choose the best candidate by inner CV, then refit" procedure."""

    def pick(number: int, train: np.ndarray) -> tuple[str, StrategyFactory]:
        inner_texts = [texts[i] for i in train]
        inner = folds_for(y[train], inner_folds, seed + 1000 + number)
        results = {
            name: cross_validate(factory, inner_texts, y[train], n_classes, inner, name, seed)
            for name, factory in factories.items()
        }
        chosen = choose(results)
        return chosen, factories[chosen]

    start = time.perf_counter()
    oof, train_acc, val_acc, choices = _run_folds(pick, texts, y, n_classes, folds, on_fold)
    seconds = time.perf_counter() - start
    description = "choose the best candidate by inner CV"
    return CVResult("auto", description, oof, y, train_acc, val_acc, seconds, score(y, oof, seed), choices)


def majority_baseline(y: np.ndarray) -> float:
    """Accuracy of always answering the most common class (on balanced data, 1 / number of classes).

    Taken on the whole data rather than out of fold: out of fold, a training fold's majority is the
    class its validation fold has fewer of, which makes the baseline look worse than chance.
    """
    return float(np.bincount(y).max() / len(y))


def per_class(y: np.ndarray, pred: np.ndarray, labels: list[str]) -> dict:
    """Precision, recall, F1 and support per class, and the confusion matrix (rows: true)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    idx = list(range(len(labels)))
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=idx, zero_division=0)
    return {
        "per_class": {
            lab: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, lab in enumerate(labels)
        },
        "confusion_matrix": confusion_matrix(y, pred, labels=idx).tolist(),
    }


def expected_accuracy(
    estimate: CVResult,
    n_rows: int,
    n_folds: int,
    curve_gain: float | None = None,
    max_gain: float = 0.03,
    metric: str = "accuracy",
    fold_values: Sequence[float] | None = None,
) -> dict[str, float | str]:
    """Accuracy expected of the model refitted on all rows, with an interval that admits CV's own noise.

    Two corrections to the plain out-of-fold figure:
    - the folds trained on (k-1)/k of the rows, the saved model on all of them; the learning curve's
      rise over that step (``curve_gain``, clipped to [0, max_gain]) is added;
    - a bootstrap over rows ignores that the folds' training sets overlap, which makes the spread
      of a CV estimate larger than it looks (Bengio & Grandvalet, 2004); the interval is widened to
      at least the corrected resampled variance (1/k + n_val/n_train) s^2 of Nadeau & Bengio (2003),
      with s the standard deviation of the fold accuracies.

    ``metric`` is ``accuracy`` or ``balanced_accuracy`` (the headline on imbalanced data); for the
    latter, ``fold_values`` are the folds' balanced accuracies.
    """
    acc = getattr(estimate.scores, metric)
    folds = list(fold_values) if fold_values is not None else list(estimate.val_accuracy)
    k = max(n_folds, 2)
    gain = 0.0 if curve_gain is None else float(np.clip(curve_gain, 0.0, max_gain))
    fold_sd = float(np.std(folds, ddof=1)) if len(folds) > 1 else 0.0
    nb_half = 1.96 * np.sqrt((1 / k + 1 / (k - 1)) * fold_sd**2)
    boot_half = (acc.high - acc.low) / 2
    half = max(nb_half, boot_half)
    value = min(acc.value + gain, 1.0)
    return {
        "metric": metric,
        "value": value,
        "ci95_low": max(value - half, 0.0),
        "ci95_high": min(value + half, 1.0),
        "cv_accuracy": acc.value,
        "learning_curve_gain": gain,
        "fold_sd": fold_sd,
        "method": f"out-of-fold {metric.replace('_', ' ')}, plus the learning-curve gain from (k-1)/k to all rows; interval the "
        "wider of a row bootstrap and the Nadeau-Bengio corrected CV variance",
    }


def holdout_accuracy(estimate: CVResult, metric: str = "accuracy") -> dict[str, float | str]:
    """Expected accuracy (or ``balanced_accuracy``) of a model scored on one held-out split: its value
    there, with the bootstrap (Wilson-floored) interval."""
    acc = getattr(estimate.scores, metric)
    return {
        "metric": metric,
        "value": acc.value,
        "ci95_low": acc.low,
        "ci95_high": acc.high,
        "cv_accuracy": acc.value,
        "learning_curve_gain": 0.0,
        "fold_sd": 0.0,
        "method": f"{metric.replace('_', ' ')} on {len(estimate.y)} held-out validation rows, row-bootstrap interval; the same "
        "rows chose the checkpoint, so it is slightly optimistic",
    }
