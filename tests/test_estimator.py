"""FewlabelClassifier: the scikit-learn face of ``train``; fast (tfidf, 3 folds, the tiny fixture sets)."""

from __future__ import annotations

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import DataConversionWarning, NotFittedError, SkipTestWarning
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils import get_tags
from sklearn.utils.estimator_checks import check_estimator

import fewlabel
from fewlabel.errors import DataError, FewlabelError
from fewlabel.estimator import FewlabelClassifier

FAST = {"strategy": "tfidf", "folds": 3}
# Splits for searches: shuffled, since the three_class fixture lists its classes in blocks.
CV = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)


def fast(**params) -> FewlabelClassifier:
    return FewlabelClassifier(**{**FAST, **params})


@pytest.fixture(scope="module")
def fitted(reviews) -> FewlabelClassifier:
    texts, labels = reviews
    return fast().fit(texts, labels)


def decided(clf: FewlabelClassifier, texts: list[str]) -> np.ndarray:
    """The model's own answers (its decision rule, not an argmax here), as classes_ entries."""
    names, _ = clf.model_.predict(texts)
    return clf.classes_[[clf.model_.labels.index(name) for name in names]]


def lowercase(texts):
    return [text.lower() for text in texts]


# --- fit, predict, classes_ ------------------------------------------------------------------------


def test_fit_predict_on_lists(fitted, reviews):
    texts, labels = reviews
    assert list(fitted.classes_) == ["negative", "positive"]
    predicted = fitted.predict(texts)
    assert isinstance(predicted, np.ndarray) and predicted.shape == (len(texts),)
    assert set(predicted) <= set(fitted.classes_)
    proba = fitted.predict_proba(texts)
    assert proba.shape == (len(texts), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(predicted, decided(fitted, texts))
    assert fitted.score(texts, labels) >= 0.9
    assert fitted.chosen_strategy_ == "tfidf"


def test_estimate_is_the_headline_accuracy_with_its_interval(fitted):
    estimate = fitted.estimate_
    assert estimate == fitted.result_.expected.headline()
    assert 0.0 <= estimate.ci95_low <= estimate.value <= estimate.ci95_high <= 1.0
    assert str(estimate).startswith("accuracy ") and "95% CI" in str(estimate)
    with pytest.raises(AttributeError):
        fitted.estimate_ = {}  # read-only


def test_three_classes_from_numpy_arrays(three_class):
    texts, labels = three_class
    clf = fast().fit(np.array(texts), np.array(labels))
    assert list(clf.classes_) == ["cooking", "sport", "weather"]
    assert clf.predict_proba(np.array(texts)).shape == (len(texts), 3)
    assert clf.score(np.array(texts), np.array(labels)) >= 0.9
    # a single column of texts is one text per sample too
    column = np.array(texts, dtype=object).reshape(-1, 1)
    np.testing.assert_array_equal(clf.predict(column), clf.predict(texts))


def test_pandas_series_and_single_column_dataframe(reviews):
    pd = pytest.importorskip("pandas")
    texts, labels = reviews
    clf = fast().fit(pd.Series(texts), pd.Series(labels, dtype="category"))
    assert list(clf.classes_) == ["negative", "positive"]
    by_series = clf.predict_proba(pd.Series(texts))
    np.testing.assert_array_equal(by_series, clf.predict_proba(pd.DataFrame({"review": texts})))
    assert clf.score(pd.Series(texts), pd.Series(labels)) >= 0.9
    with pytest.raises(ValueError, match="2 columns"):
        clf.predict(pd.DataFrame({"a": texts, "b": texts}))


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda label: int(label == "positive"), id="int"),
        pytest.param(lambda label: label == "positive", id="bool"),
        pytest.param(lambda label: 10 if label == "positive" else 2, id="int-sorted-by-name"),
    ],
)
def test_labels_come_back_with_their_type(reviews, encode):
    texts, labels = reviews
    y = np.array([encode(label) for label in labels])
    clf = fast().fit(texts, y)
    # fewlabel's order: sorted by str(label), so 10 comes before 2
    assert list(clf.classes_) == sorted(set(y.tolist()), key=str)
    assert clf.classes_.dtype == y.dtype
    predicted = clf.predict(texts)
    assert predicted.dtype == y.dtype
    assert clf.score(texts, y) >= 0.9
    np.testing.assert_array_equal(predicted, decided(clf, texts))


def test_empty_input_predicts_nothing(fitted):
    assert fitted.predict([]).shape == (0,)
    assert fitted.predict_proba([]).shape == (0, 2)


@pytest.mark.parametrize(
    ("X", "message"),
    [
        ("one text", "not a single string"),
        ([1, 2], "item 0 is int"),
        (["fine", None], "item 1 is NoneType"),
        (np.zeros((3, 2)), "one text per sample"),
    ],
)
def test_anything_but_texts_is_refused(fitted, X, message):
    with pytest.raises(ValueError, match=message):
        fitted.predict(X)


def test_sparse_input_is_refused_by_name(fitted):
    sparse = pytest.importorskip("scipy.sparse")
    with pytest.raises(ValueError, match="sparse"):
        fitted.predict(sparse.csr_matrix(np.eye(3)))


def test_bad_targets_raise_value_errors(reviews):
    texts, labels = reviews
    with pytest.raises(ValueError, match="requires y"):
        fast().fit(texts, None)
    with pytest.raises(ValueError, match="Unknown label type"):
        fast().fit(texts, np.linspace(0, 1, len(texts)))
    with pytest.raises(ValueError, match="one class"):
        fast().fit(texts, ["positive"] * len(texts))
    with pytest.raises(ValueError, match="one label per text"):
        fast().fit(texts, labels[:-1])
    spaced = [" positive" if i % 2 else "positive" for i in range(len(texts))]
    with pytest.raises(ValueError, match="would become one class"):
        fast().fit(texts, spaced)


def with_missing(labels: list[str], form: str):
    """``labels`` with the 4th and 10th missing, in one of the forms y may take."""
    blank = {3: None, 9: float("nan")}
    kept = [blank.get(i, label) for i, label in enumerate(labels)]
    numbers = [float("nan") if i in blank else float(label == "positive") for i, label in enumerate(labels)]
    if form == "list":
        return kept
    if form == "object-array":
        return np.array(kept, dtype=object)
    if form == "float-array":
        return np.array(numbers)
    pd = pytest.importorskip("pandas")
    return {
        "series": lambda: pd.Series(kept),
        "series-string-na": lambda: pd.Series(kept, dtype="string"),
        "series-category": lambda: pd.Series(kept, dtype="category"),
        "series-int64-na": lambda: pd.Series(numbers).astype("Int64"),
        "one-column-frame": lambda: pd.DataFrame({"label": kept}),
    }[form]()


@pytest.mark.parametrize(
    "form",
    [
        "list",
        "object-array",
        "float-array",
        "series",
        "series-string-na",
        "series-category",
        "series-int64-na",
        "one-column-frame",
    ],
)
def test_missing_labels_are_refused_with_their_positions(reviews, form):
    """Not a class 'nan', nor a TypeError from sorting None among strings: how many, and where."""
    texts, labels = reviews
    y = with_missing(labels, form)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataConversionWarning)  # the one-column frame
        with pytest.raises(ValueError, match=r"missing labels .*: 2 of 48, at position\(s\) 3, 9 \(counting"):
            fast().fit(texts, y)


def test_a_class_with_fewer_texts_than_folds_is_refused_as_the_cli_does(reviews):
    texts, labels = reviews
    texts = [*texts, "Arrived on Tuesday.", "It is grey.", "Came in a box."]
    labels = [*labels, "neutral", "neutral", "neutral"]
    with pytest.raises(DataError, match=r"'neutral' has 3 \(each class needs at least 5, one per fold\)"):
        fast(folds=5).fit(texts, labels)
    assert list(fast(folds=3).fit(texts, labels).classes_) == ["negative", "neutral", "positive"]


def test_fewlabel_errors_propagate_from_fit(reviews):
    texts, labels = reviews
    with pytest.raises(DataError, match="differ only by case"):
        fast().fit(texts, [label.upper() if i % 4 == 0 else label for i, label in enumerate(labels)])
    with pytest.raises(FewlabelError, match="Did you mean 'tfidf'"):
        fast(strategy="tfdif").fit(texts, labels)
    with pytest.raises(FewlabelError, match="folds"):
        fast(folds=1).fit(texts, labels)


def test_column_vector_y_warns_and_fits(reviews):
    texts, labels = reviews
    with pytest.warns(DataConversionWarning):
        clf = fast().fit(texts, np.array(labels).reshape(-1, 1))
    assert list(clf.classes_) == ["negative", "positive"]


def test_predicting_before_fit_raises_not_fitted(reviews):
    texts, _ = reviews
    clf = fast()
    for method in (clf.predict, clf.predict_proba):
        with pytest.raises(NotFittedError):
            method(texts)
    with pytest.raises(NotFittedError):
        clf.save("never-written")
    assert not hasattr(clf, "estimate_") and not hasattr(clf, "chosen_strategy_")


# --- scikit-learn conventions, checked with texts (scikit-learn's own checks feed numbers) --------


def test_fit_returns_self_and_leaves_params_alone(reviews):
    texts, labels = reviews
    clf = fast(seed=3)
    before = clf.get_params()
    public = set(vars(clf))
    assert clf.fit(texts, labels) is clf
    assert clf.get_params() == before
    added = set(vars(clf)) - public
    assert added and all(name.endswith("_") and not name.startswith("_") for name in added)


def test_fit_is_idempotent_and_predicting_changes_nothing(fitted, reviews):
    texts, labels = reviews
    first = fitted.predict_proba(texts)
    state = {name: id(value) for name, value in vars(fitted).items()}
    fitted.predict(texts)
    fitted.predict_proba(texts)
    assert {name: id(value) for name, value in vars(fitted).items()} == state
    refit = clone(fitted).fit(texts, labels)
    np.testing.assert_array_equal(refit.predict_proba(texts), first)


def test_predictions_do_not_depend_on_order_or_batch(fitted, reviews):
    texts, _ = reviews
    whole = fitted.predict_proba(texts)
    order = np.random.RandomState(0).permutation(len(texts))
    np.testing.assert_allclose(fitted.predict_proba([texts[i] for i in order]), whole[order], rtol=1e-6)
    batches = np.vstack([fitted.predict_proba(texts[i : i + 5]) for i in range(0, len(texts), 5)])
    np.testing.assert_allclose(batches, whole, rtol=1e-6)


def test_pickles_in_memory_for_parallel_workers(fitted, reviews):
    texts, _ = reviews
    copy = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(copy.predict_proba(texts), fitted.predict_proba(texts))


def test_clone_and_params():
    clf = fast(seed=7, budget_minutes=2.0)
    params = clf.get_params()
    assert params == {
        "strategy": "tfidf",
        "backbone": "best",
        "budget_minutes": 2.0,
        "folds": 3,
        "seed": 7,
        "diagnostics": False,
    }
    copy = clone(clf)
    assert copy is not clf and copy.get_params() == params
    assert clf.set_params(folds=4, strategy="auto") is clf
    assert (clf.folds, clf.strategy) == (4, "auto")
    assert clone(clf).get_params()["folds"] == 4
    with pytest.raises(ValueError, match="Invalid parameter"):
        clf.set_params(fold=4)


def test_clone_of_a_fitted_classifier_is_unfitted(fitted, reviews):
    texts, _ = reviews
    with pytest.raises(NotFittedError):
        clone(fitted).predict(texts)


def test_in_a_pipeline(reviews):
    texts, labels = reviews
    pipe = Pipeline([("lower", FunctionTransformer(lowercase)), ("clf", fast())])
    pipe.fit(texts, labels)
    assert list(pipe.classes_) == ["negative", "positive"]
    assert pipe.predict_proba(texts).shape == (len(texts), 2)
    assert pipe.score(texts, labels) >= 0.9


def test_cross_val_score(three_class):
    texts, labels = three_class
    scores = cross_val_score(fast(), texts, labels, cv=CV)
    assert scores.shape == (3,)
    assert scores.mean() >= 0.6


def test_grid_search_over_strategy_and_folds(three_class):
    texts, labels = three_class
    search = GridSearchCV(fast(), {"strategy": ["tfidf"], "folds": [3, 4]}, cv=CV, error_score="raise")
    search.fit(texts, labels)
    assert search.best_params_["folds"] in (3, 4)
    assert [p["folds"] for p in search.cv_results_["params"]] == [3, 4]
    assert isinstance(search.best_estimator_, FewlabelClassifier)
    assert search.best_estimator_.folds == search.best_params_["folds"]
    assert search.predict(texts[:3]).shape == (3,)


# --- save and load --------------------------------------------------------------------------------


def test_save_load_round_trip(fitted, reviews, tmp_path):
    texts, _ = reviews
    directory = fitted.save(tmp_path / "model")
    assert (directory / "fewlabel.json").is_file()
    assert not list(directory.rglob("*.pkl")) and not list(directory.rglob("*.pickle"))
    loaded = FewlabelClassifier.load(directory)
    # Within float32 rounding: tfidf's head is fitted in float32 and loaded as float64.
    np.testing.assert_allclose(loaded.predict_proba(texts), fitted.predict_proba(texts), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(loaded.predict(texts), fitted.predict(texts))
    np.testing.assert_array_equal(loaded.classes_, fitted.classes_)
    assert loaded.get_params()["strategy"] == "tfidf" and loaded.get_params()["folds"] == 3
    assert loaded.chosen_strategy_ == "tfidf"
    for key in ("value", "ci95_low", "ci95_high"):
        assert getattr(loaded.estimate_, key) == pytest.approx(getattr(fitted.estimate_, key))
    with pytest.raises(ValueError, match="loaded from a model directory"):
        loaded.save(tmp_path / "again")


def test_saved_labels_come_back_as_strings(reviews, tmp_path):
    texts, labels = reviews
    y = [int(label == "positive") for label in labels]
    loaded = FewlabelClassifier.load(fast().fit(texts, y).save(tmp_path / "model"))
    assert list(loaded.classes_) == ["0", "1"]
    assert set(loaded.predict(texts)) == {"0", "1"}


# --- the package root -----------------------------------------------------------------------------


def test_public_api_is_listed_and_complete():
    names = dir(fewlabel)
    for name in ("FewlabelClassifier", "train", "load_model", "TrainConfig", "__version__"):
        assert name in names
    assert set(fewlabel._LAZY) <= set(fewlabel.__all__)
    assert fewlabel.FewlabelClassifier is FewlabelClassifier


def test_dir_lists_the_public_api_only():
    assert dir(fewlabel) == sorted(fewlabel.__all__)
    assert not {"Any", "TYPE_CHECKING", "annotations"} & set(dir(fewlabel))


def test_import_fewlabel_stays_light():
    code = (
        "import sys, fewlabel; dir(fewlabel); "
        "print(sorted(m for m in ('sklearn', 'torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- scikit-learn's own estimator checks ----------------------------------------------------------

_NUMERIC = "feeds numeric arrays; X is one raw text per sample"
# scikit-learn's checks that cannot apply to a classifier of raw text, and why. Where a check guards
# a convention that does apply, the test named in brackets checks it with texts instead.
NOT_APPLICABLE = {
    "check_fit_score_takes_y": f"{_NUMERIC} [test_in_a_pipeline]",
    "check_estimators_overwrite_params": f"{_NUMERIC} [test_fit_returns_self_and_leaves_params_alone]",
    "check_dont_overwrite_parameters": f"{_NUMERIC} [test_fit_returns_self_and_leaves_params_alone]",
    "check_estimators_fit_returns_self": f"{_NUMERIC} [test_fit_returns_self_and_leaves_params_alone]",
    "check_readonly_memmap_input": "feeds read-only memory-mapped numeric arrays",
    "check_n_features_in_after_fitting": "texts have no features: there is no n_features_in_",
    "check_n_features_in": "texts have no features: there is no n_features_in_",
    "check_positive_only_tag_during_fit": "about negative feature values; texts have none",
    "check_estimators_dtypes": "feeds float32, float64 and integer arrays",
    "check_dtype_object": "feeds object arrays of numbers [texts are object arrays of str everywhere here]",
    "check_estimators_empty_data_messages": "expects the message for zero features; texts have none",
    "check_pipeline_consistency": f"{_NUMERIC} [test_in_a_pipeline]",
    "check_estimators_nan_inf": "NaN and inf are numbers; a missing text is refused "
    "[test_anything_but_texts_is_refused]",
    "check_estimators_pickle": f"{_NUMERIC} [test_pickles_in_memory_for_parallel_workers]",
    "check_f_contiguous_array_estimator": "about the memory layout of numeric arrays",
    "check_classifier_data_not_an_array": f"{_NUMERIC} [lists, arrays and pandas objects are tested]",
    "check_classifiers_classes": f"{_NUMERIC} [test_labels_come_back_with_their_type]",
    "check_classifiers_train": f"{_NUMERIC} [test_fit_predict_on_lists]",
    "check_supervised_y_2d": f"{_NUMERIC} [test_column_vector_y_warns_and_fits]",
    "check_methods_sample_order_invariance": f"{_NUMERIC} [test_predictions_do_not_depend_on_order_or_batch]",
    "check_methods_subset_invariance": f"{_NUMERIC} [test_predictions_do_not_depend_on_order_or_batch]",
    "check_fit2d_1feature": "about one feature; texts have none",
    "check_fit2d_predict1d": "expects 1-D X to be refused: one text per sample is this classifier's input",
    "check_dict_unchanged": f"{_NUMERIC} [test_fit_is_idempotent_and_predicting_changes_nothing]",
    "check_fit_idempotent": f"{_NUMERIC} [test_fit_is_idempotent_and_predicting_changes_nothing]",
    "check_fit_check_is_fitted": f"{_NUMERIC} [test_predicting_before_fit_raises_not_fitted]",
}


class _AsIfNumeric(FewlabelClassifier):
    """FewlabelClassifier claiming 2-D input, only so that scikit-learn generates its whole suite.

    With its true tags (string input, no 2-D arrays) scikit-learn skips every check but cloning.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = True
        return tags


def test_tags_declare_text_input():
    tags = get_tags(fast())
    assert tags.input_tags.string and not tags.input_tags.two_d_array
    assert tags.estimator_type == "classifier" and tags.target_tags.required
    with pytest.warns(SkipTestWarning, match="requires input"):
        results = check_estimator(fast(), on_fail=None)
    assert [r["check_name"] for r in results] == ["check_estimator_cloneable"]


def test_sklearn_estimator_checks():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(
            _AsIfNumeric(**FAST), on_fail=None, on_skip=None, expected_failed_checks=NOT_APPLICABLE
        )
    failed = {r["check_name"]: repr(r["exception"]) for r in results if r["status"] == "failed"}
    assert not failed, f"scikit-learn checks failed: {failed}"
    by_name: dict[str, set[str]] = {}
    for r in results:
        by_name.setdefault(r["check_name"], set()).add(r["status"])
    passing = sorted(name for name in NOT_APPLICABLE if by_name.get(name) == {"passed"})
    assert not passing, f"these checks pass now; remove them from NOT_APPLICABLE: {passing}"
    missing = sorted(set(NOT_APPLICABLE) - set(by_name))
    assert not missing, (
        f"scikit-learn no longer runs these checks; remove them from NOT_APPLICABLE: {missing}"
    )
    # the checks of targets and of the API apply, and pass
    applied = {name for name, statuses in by_name.items() if "passed" in statuses}
    assert {"check_classifiers_one_label", "check_requires_y_none", "check_set_params"} <= applied
