"""The saved head predicts as scikit-learn's LogisticRegression with the same weights does."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from fewlabel.strategies.linear import LinearHead, fit_logreg, head_arrays, head_from_arrays


@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_loaded_head_gives_scikit_learns_probabilities(n_classes):
    rng = np.random.default_rng(n_classes)
    X = rng.normal(size=(120, 16)).astype(np.float32)
    y = np.arange(120) % n_classes
    fitted = fit_logreg(X + y[:, None] * 0.3, y, n_classes, C=4.0, class_weight="balanced")
    loaded = head_from_arrays(**head_arrays(fitted), n_classes=n_classes, multi_label=False)
    assert isinstance(loaded, LinearHead) and not isinstance(loaded, LogisticRegression)
    new = rng.normal(size=(50, 16)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict_proba(new), fitted.predict_proba(new), rtol=0, atol=1e-12)
    assert (loaded.predict(new) == fitted.predict(new)).all()


def test_a_head_with_one_row_per_class_of_two_normalises_its_sigmoids():
    """A fold that missed a class is widened to one row per class (two rows for two classes):
    scikit-learn then normalises one sigmoid per class, and so must the loaded head."""
    rng = np.random.default_rng(0)
    coef, intercept = rng.normal(size=(2, 8)), rng.normal(size=2)
    reference = LogisticRegression()
    reference.classes_, reference.coef_, reference.intercept_ = np.arange(2), coef, intercept
    reference.n_features_in_ = 8
    X = rng.normal(size=(30, 8))
    np.testing.assert_allclose(
        LinearHead(coef, intercept, 2).predict_proba(X), reference.predict_proba(X), rtol=0, atol=1e-12
    )
