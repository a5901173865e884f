"""The regularised logistic-regression head shared by strategies, saved as plain arrays."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression


def fit_logreg(
    X, y: np.ndarray, n_classes: int, C: float, class_weight: str | None, solver: str = "lbfgs"
) -> LogisticRegression:
    """L2-regularised logistic regression; ``newton-cg`` converges in a few steps on wide sparse X."""
    model = LogisticRegression(C=C, max_iter=3000, class_weight=class_weight, solver=solver)
    model.fit(X, y)
    if len(model.classes_) != n_classes:
        # A fold may miss a class; keep the head's columns aligned with all classes.
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
    model = LogisticRegression()
    model.classes_ = np.arange(n_classes)
    model.coef_ = np.asarray(coef, dtype=np.float64)
    model.intercept_ = np.asarray(intercept, dtype=np.float64)
    model.n_features_in_ = model.coef_.shape[1]
    return model


def head_arrays(model: LogisticRegression) -> dict[str, np.ndarray]:
    return {"coef": model.coef_, "intercept": model.intercept_}
