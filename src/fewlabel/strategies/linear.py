"""The regularised logistic-regression head shared by strategies, saved as plain arrays."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy.special import expit

from fewlabel.errors import ModelDirError

if TYPE_CHECKING:
    from sklearn.linear_model import LogisticRegression


def fit_logreg(
    X, y: np.ndarray, n_classes: int, C: float, class_weight: str | None, solver: str = "lbfgs"
) -> LogisticRegression:
    """L2-regularised logistic regression; ``newton-cg`` converges in a few steps on wide sparse X."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=C, max_iter=3000, class_weight=class_weight, solver=solver)
    model.fit(X, y)
    if len(model.classes_) != n_classes:
        # A fold may miss a class; keep the head's columns aligned with all classes.
        model = _expand_classes(model, n_classes)
    return model


# Soft targets below this probability are left out of the expanded rows: they change the fit by less
# than the solver's tolerance and would multiply its rows by the number of classes.
MIN_SOFT_TARGET = 1e-3


def fit_soft_logreg(
    X, targets: np.ndarray, C: float, class_weight: str | None, solver: str = "lbfgs"
) -> LogisticRegression:
    """:func:`fit_logreg` on class probabilities (``targets``, rows x classes, rows summing to 1).

    Each row is repeated once per class it gives probability to, weighted by that probability: the
    weighted log loss is then the cross-entropy against the soft targets, and every text still weighs
    one row against the regularisation, as in a fit on hard labels. ``balanced`` weighs each class by
    its share of the probability mass, as it weighs classes by their counts there.
    """
    from sklearn.linear_model import LogisticRegression

    n_classes = targets.shape[1]
    rows, classes = np.nonzero(targets >= MIN_SOFT_TARGET)
    weight = targets[rows, classes]
    if class_weight == "balanced":
        mass = targets.sum(axis=0)
        weight = weight * (len(targets) / (n_classes * np.maximum(mass, 1e-12)))[classes]
    elif class_weight is not None:
        raise ValueError(f"class_weight must be 'balanced' or None, got {class_weight!r}")
    model = LogisticRegression(C=C, max_iter=3000, solver=solver)
    model.fit(X[rows], classes, sample_weight=weight)
    if len(model.classes_) != n_classes:
        model = _expand_classes(model, n_classes)
    return model


def _expand_classes(model: LogisticRegression, n_classes: int) -> LogisticRegression:
    coef = model.coef_
    intercept = model.intercept_
    if coef.shape[0] == 1 and len(model.classes_) == 2:
        coef = np.vstack([-coef / 2, coef / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    full_coef = np.zeros((n_classes, coef.shape[1]))
    full_intercept = np.full(n_classes, -1e3)
    for row, cls in enumerate(model.classes_):
        full_coef[cls] = coef[row]
        full_intercept[cls] = intercept[row]
    return logreg_from_arrays(full_coef, full_intercept, n_classes)


def logreg_from_arrays(coef: np.ndarray, intercept: np.ndarray, n_classes: int) -> LogisticRegression:
    """A fitted LogisticRegression from saved arrays, with no pickle involved."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression()
    model.classes_ = np.arange(n_classes)
    model.coef_ = np.asarray(coef, dtype=np.float64)
    model.intercept_ = np.asarray(intercept, dtype=np.float64)
    model.n_features_in_ = model.coef_.shape[1]
    return model


class LinearHead:
    """A saved single-label head, predicting exactly as scikit-learn's ``LogisticRegression`` with
    these weights does (its ``predict_proba``: sigmoids for two classes, softmax for more), in NumPy:
    loading a model to predict imports no scikit-learn (1.3 s of a one-text ``fewlabel predict``)."""

    def __init__(self, coef: np.ndarray, intercept: np.ndarray, n_classes: int):
        self.coef_ = np.asarray(coef, dtype=np.float64)  # classes x features (1 x features: binary)
        self.intercept_ = np.asarray(intercept, dtype=np.float64)
        self.classes_ = np.arange(n_classes)
        self.n_features_in_ = self.coef_.shape[1]

    def decision_function(self, X) -> np.ndarray:
        scores = np.asarray(X @ self.coef_.T) + self.intercept_
        return scores.ravel() if scores.shape[1] == 1 else scores

    def predict_proba(self, X) -> np.ndarray:
        scores = self.decision_function(X)
        if len(self.classes_) > 2:
            scores = np.exp(scores - scores.max(axis=1, keepdims=True))
            return scores / scores.sum(axis=1, keepdims=True)
        p = expit(scores)
        if p.ndim == 1:
            return np.stack([1 - p, p], axis=1)
        total = p.sum(axis=1)  # one sigmoid per class, normalised (scikit-learn's one-vs-rest)
        p[total == 0] = 1.0
        total[total == 0] = p.shape[1]
        return p / total[:, None]

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class OneVsRestHead:
    """One binary logistic regression per label on shared features: each label's own probability."""

    def __init__(self, coef: np.ndarray, intercept: np.ndarray):
        self.coef_ = np.asarray(coef, dtype=np.float64)  # labels x features
        self.intercept_ = np.asarray(intercept, dtype=np.float64)  # labels

    def predict_proba(self, X) -> np.ndarray:
        """Shape (rows, labels): independent sigmoids, so a text may have several labels or none."""
        return expit(np.asarray(X @ self.coef_.T) + self.intercept_)


def fit_one_vs_rest(
    X, Y: np.ndarray, C: float, class_weight: str | None, solver: str = "lbfgs"
) -> OneVsRestHead:
    """A binary :func:`fit_logreg` per column of the 0/1 matrix ``Y``, on the same features ``X``.

    A label every training text has (or none has), which a fold can leave, gets no weights and its
    smoothed share as a constant probability.
    """
    coef = np.zeros((Y.shape[1], X.shape[1]))
    intercept = np.zeros(Y.shape[1])
    for j in range(Y.shape[1]):
        column = Y[:, j]
        if column.min() == column.max():
            share = (column.sum() + 0.5) / (len(column) + 1.0)
            intercept[j] = np.log(share / (1 - share))
            continue
        model = fit_logreg(X, column, 2, C, class_weight, solver)
        coef[j], intercept[j] = model.coef_[0], model.intercept_[0]
    return OneVsRestHead(coef, intercept)


def fit_head(
    X, y: np.ndarray, n_classes: int, C: float, class_weight: str | None, solver: str = "lbfgs"
) -> LogisticRegression | OneVsRestHead:
    """:func:`fit_logreg` for class indices, :func:`fit_one_vs_rest` for a 0/1 label matrix."""
    if y.ndim == 2:
        return fit_one_vs_rest(X, y, C, class_weight, solver)
    return fit_logreg(X, y, n_classes, C, class_weight, solver)


def head_from_arrays(
    coef: np.ndarray, intercept: np.ndarray, n_classes: int, multi_label: bool
) -> LinearHead | OneVsRestHead:
    """The head saved as ``coef`` and ``intercept`` (checked by :func:`check_head`)."""
    if multi_label:
        return OneVsRestHead(coef, intercept)
    return LinearHead(coef, intercept, n_classes)


def head_arrays(model: LogisticRegression | LinearHead | OneVsRestHead) -> dict[str, np.ndarray]:
    return {"coef": model.coef_, "intercept": model.intercept_}


def check_head(
    path: Path,
    arrays: dict[str, np.ndarray],
    n_classes: int,
    n_features: int | None = None,
    multi_label: bool = False,
) -> None:
    """Saved head arrays fit ``n_classes`` (one row for two classes, as scikit-learn keeps them; one row
    per label, always, for a multi-label head) and ``n_features``, and hold finite numbers;
    ModelDirError otherwise."""
    coef, intercept = arrays.get("coef"), arrays.get("intercept")
    if coef is None or intercept is None:
        raise ModelDirError(f"{path}: the head's coef and intercept arrays are missing")
    one_row = n_classes == 2 and not multi_label
    rows_ok = coef.ndim == 2 and (coef.shape[0] == n_classes or (one_row and coef.shape[0] == 1))
    if not rows_ok or coef.shape[1] < 1 or intercept.shape != coef.shape[:1]:
        raise ModelDirError(
            f"{path}: head arrays of shapes {list(coef.shape)} and {list(intercept.shape)} do not fit "
            f"{n_classes} classes"
        )
    if n_features is not None and coef.shape[1] != n_features:
        raise ModelDirError(f"{path}: the head takes {coef.shape[1]} features, the model gives {n_features}")
    if coef.dtype.kind != "f" or not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
        raise ModelDirError(f"{path}: the head's weights are not all finite numbers")
