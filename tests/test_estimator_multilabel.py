"""FewlabelClassifier on a 0/1 label matrix (multi-label), as scikit-learn's ``OneVsRestClassifier`` takes
one; fast: tfidf, 3 folds, 72 short texts whose words decide their labels."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import f1_score
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score

from fewlabel.errors import DataError, FewlabelError
from fewlabel.estimator import FewlabelClassifier
from fewlabel.multilabel import MultiLabelResult

FAST = {"strategy": "tfidf", "folds": 3}
# Columns deliberately not in sorted order: predictions must keep y's column order, not sort it.
TOPICS = ["tech", "food", "sports"]
WORDS = {
    "food": ["pasta", "recipe", "oven", "flavour", "dessert", "bread"],
    "sports": ["match", "goal", "team", "coach", "stadium", "referee"],
    "tech": ["laptop", "software", "battery", "screen", "keyboard", "router"],
}
SUBSETS = [(), ("food",), ("sports",), ("tech",), ("food", "sports"), ("food", "tech"), ("sports", "tech")]
SUBSETS.append(("food", "sports", "tech"))


def fast(**params) -> FewlabelClassifier:
    return FewlabelClassifier(**{**FAST, **params})


@pytest.fixture(scope="module")
def topics() -> tuple[list[str], np.ndarray]:
    """Every subset of three topics (the empty one too) in 9 wordings: 72 texts; each topic on 36."""
    texts, rows = [], []
    for i in range(9):
        for subset in SUBSETS:
            words = [f"the {WORDS[t][i % 6]} and the {WORDS[t][(i + 2) % 6]}" for t in subset]
            texts.append(f"Note {i}: " + ("; ".join(words) if words else f"nothing much happened on day {i}"))
            rows.append([int(t in subset) for t in TOPICS])
    return texts, np.array(rows)


@pytest.fixture(scope="module")
def fitted(topics) -> FewlabelClassifier:
    texts, Y = topics
    return fast().fit(texts, Y)


# --- fit, predict, predict_proba, estimate_ --------------------------------------------------------


def test_fit_on_an_indicator_matrix(fitted, topics):
    texts, Y = topics
    assert fitted.multilabel_ is True
    assert list(fitted.classes_) == ["0", "1", "2"]  # a matrix without names: its column indices
    predicted = fitted.predict(texts)
    assert predicted.shape == Y.shape and predicted.dtype == np.int64
    assert set(np.unique(predicted)) <= {0, 1}
    assert f1_score(Y, predicted, average="micro") > 0.8  # columns in y's order, not sorted
    proba = fitted.predict_proba(texts)
    assert proba.shape == Y.shape and proba.dtype.kind == "f"
    assert ((proba >= 0) & (proba <= 1)).all()
    # Independent per label (no softmax): a text with every topic is likely on all three.
    assert proba[Y.sum(axis=1) == 3].min() > 0.5
    np.testing.assert_array_equal(predicted, (proba >= fitted.model_.label_thresholds).astype(int))
    assert fitted.predict([]).shape == (0, 3) and fitted.predict_proba([]).shape == (0, 3)


def test_fitted_attributes(fitted):
    estimate = fitted.estimate_
    assert estimate.metric == "micro_f1"
    assert estimate.ci95_low <= estimate.value <= estimate.ci95_high
    assert estimate.value > 0.8
    assert str(estimate).startswith("micro-F1 ") and "95% CI" in str(estimate)
    assert fitted.chosen_strategy_ == "tfidf"
    assert isinstance(fitted.result_, MultiLabelResult)
    assert fitted.result_.labels == list(fitted.classes_) == fitted.model_.labels
    assert fitted.data_.classes == ["0", "1", "2"]


def test_a_dataframe_names_the_labels(topics):
    pd = pytest.importorskip("pandas")
    texts, Y = topics
    frame = pd.DataFrame(Y, columns=TOPICS)
    clf = fast().fit(pd.Series(texts), frame)
    assert list(clf.classes_) == TOPICS  # the frame's column order, not sorted
    assert clf.model_.labels == TOPICS
    predicted = clf.predict(texts)
    assert f1_score(Y, predicted, average="micro") > 0.8
    assert 0.0 <= clf.score(texts, frame) <= 1.0


def test_lists_booleans_and_sparse_matrices_are_label_matrices(fitted, topics):
    sparse = pytest.importorskip("scipy.sparse")
    texts, Y = topics
    for y in (Y.tolist(), Y.astype(bool), sparse.csr_matrix(Y)):
        clf = fast().fit(texts, y)
        assert clf.multilabel_
        np.testing.assert_array_equal(clf.predict(texts), fitted.predict(texts))


def test_score_is_subset_accuracy(fitted, topics):
    texts, Y = topics
    expected = float(np.mean((fitted.predict(texts) == Y).all(axis=1)))
    assert fitted.score(texts, Y) == pytest.approx(expected)


def test_a_single_label_fit_is_not_multilabel(topics):
    texts, Y = topics
    clf = fast().fit(texts, Y[:, 1])
    assert clf.multilabel_ is False
    assert clf.predict(texts).shape == (len(texts),)


# --- save and load ---------------------------------------------------------------------------------


def test_save_load_round_trip(topics, tmp_path):
    pd = pytest.importorskip("pandas")
    texts, Y = topics
    fitted = fast().fit(texts, pd.DataFrame(Y, columns=TOPICS))
    directory = fitted.save(tmp_path / "model")
    assert not list(directory.rglob("*.pkl"))
    loaded = FewlabelClassifier.load(directory)
    assert loaded.multilabel_ is True and loaded.model_.multi_label
    np.testing.assert_array_equal(loaded.classes_, fitted.classes_)
    np.testing.assert_array_equal(loaded.predict(texts), fitted.predict(texts))
    # Within float32 rounding: tfidf's head is fitted in float32 and loaded as float64.
    np.testing.assert_allclose(loaded.predict_proba(texts), fitted.predict_proba(texts), rtol=0, atol=1e-6)
    assert loaded.estimate_.metric == "micro_f1"
    for key in ("value", "ci95_low", "ci95_high"):
        assert getattr(loaded.estimate_, key) == pytest.approx(getattr(fitted.estimate_, key))
    assert loaded.chosen_strategy_ == "tfidf"
    assert loaded.get_params()["strategy"] == "tfidf" and loaded.get_params()["folds"] == 3
    with pytest.raises(ValueError, match="loaded from a model directory"):
        loaded.save(tmp_path / "again")


# --- refusals --------------------------------------------------------------------------------------


def test_values_other_than_0_and_1_are_named(topics):
    pd = pytest.importorskip("pandas")
    texts, Y = topics
    bad = Y.copy()
    bad[5, 1] = 2
    with pytest.raises(ValueError, match=r"0 and 1 only.*row 5 .*column '1' holds 2"):
        fast().fit(texts, bad)
    frame = pd.DataFrame(Y.astype(float), columns=TOPICS)
    frame.iloc[7, 2] = np.nan
    with pytest.raises(ValueError, match=r"row 7 .*column 'sports' holds nan"):
        fast().fit(texts, frame)


def test_label_sets_get_the_multilabelbinarizer_hint(topics):
    texts, _ = topics
    sets = [list(SUBSETS[i % len(SUBSETS)]) for i in range(len(texts))]
    with pytest.raises(ValueError, match="MultiLabelBinarizer"):
        fast().fit(texts, sets)  # rows of different lengths
    with pytest.raises(ValueError, match="MultiLabelBinarizer"):
        fast().fit(texts, [{"food", "tech"} if i % 2 else {"sports"} for i in range(len(texts))])
    with pytest.raises(ValueError, match="MultiLabelBinarizer"):
        fast().fit(texts, [["food", "tech"]] * len(texts))  # same length: a matrix of strings


def test_mismatched_lengths_are_refused(topics):
    texts, Y = topics
    with pytest.raises(ValueError, match="71 texts but 72 rows"):
        fast().fit(texts[:-1], Y)


def test_unusable_label_columns_raise_data_errors(topics):
    pd = pytest.importorskip("pandas")
    texts, Y = topics
    empty = Y.copy()
    empty[:, 2] = 0
    with pytest.raises(DataError, match="'2' is on 0 text"):
        fast().fit(texts, empty)
    few = Y.copy()
    few[:, 0] = 0
    few[[3, 11], 0] = 1  # two texts with it: fewer than one per fold
    with pytest.raises(DataError, match="'0' is on 2 text"):
        fast().fit(texts, few)
    with pytest.raises(DataError, match="'a|b'"):
        fast().fit(texts, pd.DataFrame(Y, columns=["a|b", "c", "d"]))
    with pytest.raises(DataError, match="name two columns"):
        fast().fit(texts, pd.DataFrame(Y, columns=[1, "1", "x"]))


def test_single_label_strategies_are_refused(topics):
    texts, Y = topics
    with pytest.raises(FewlabelError, match="single-label only"):
        fast(strategy="finetune").fit(texts, Y)


# --- scikit-learn tools ----------------------------------------------------------------------------


def test_clone_and_cross_val_score_with_a_multilabel_scorer(fitted, topics):
    texts, Y = topics
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params() and not hasattr(copy, "model_")
    scores = cross_val_score(copy, texts, Y, cv=KFold(2, shuffle=True, random_state=0), scoring="f1_micro")
    assert scores.shape == (2,) and (scores > 0.8).all()


def test_grid_search_over_strategy(topics):
    texts, Y = topics
    search = GridSearchCV(
        fast(), {"strategy": ["tfidf"], "folds": [2, 3]}, cv=2, scoring="f1_micro", error_score="raise"
    )
    search.fit(texts, Y)
    assert search.best_score_ > 0.8
    assert search.best_estimator_.multilabel_
    assert search.predict(texts[:4]).shape == (4, 3)
