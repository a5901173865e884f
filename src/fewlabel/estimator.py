"""``FewlabelClassifier``: ``fewlabel train`` as a scikit-learn classifier, for pipelines and searches.

It wraps :func:`fewlabel.training.train` and the model it returns; it adds no learning of its own.
Fitting runs the whole procedure (cross-validation, choice, calibration, refit on all rows), so
``estimate_`` holds the same honest accuracy estimate the command line reports, and ``save`` writes the
same model directory (JSON, npz and safetensors; never a pickle).

Input is raw text: X is one text per row (a list, a 1-D array, a pandas Series, or a single-column
DataFrame or 2-D array). Labels may be any hashable values; fewlabel names classes by ``str(label)``
and orders them by that name, and ``classes_`` follows the same order (so the columns of
``predict_proba`` match the saved model's labels).

Multi-label data follows scikit-learn's convention (``OneVsRestClassifier`` on an indicator matrix):
y is a 0/1 matrix, one row per text and one column per label (a NumPy array, a list of lists, a
sparse matrix, or a DataFrame whose column names name the labels; otherwise they are ``"0"``,
``"1"``, ...). ``fit`` then runs :func:`fewlabel.multilabel.train_multilabel` (micro-F1, per-label
thresholds), ``predict`` answers a 0/1 matrix and ``predict_proba`` each label's own probability,
columns in the order of y's columns, which ``classes_`` names. Lists of label sets are refused:
:class:`sklearn.preprocessing.MultiLabelBinarizer` turns them into such a matrix.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from fewlabel.config import DEFAULT_BUDGET_MINUTES

if TYPE_CHECKING:
    from fewlabel.config import TrainConfig
    from fewlabel.data.labelled import LabelledTexts
    from fewlabel.data.multilabel import MultiLabelledTexts
    from fewlabel.model_dir.records import Headline
    from fewlabel.model_dir.store import TrainedModel
    from fewlabel.multilabel import MultiLabelResult
    from fewlabel.training import TrainResult

# The TrainConfig fields this estimator exposes as parameters, under the estimator's own names.
_CONFIG_FIELDS = {
    "strategy": "strategy",
    "backbone": "model",
    "budget_minutes": "budget_minutes",
    "folds": "folds",
    "seed": "seed",
    "diagnostics": "diagnostics",
}

_LABEL_SETS = (
    "y looks like a list of label sets (the labels of each text); give a 0/1 label matrix instead, one "
    "column per label: sklearn.preprocessing.MultiLabelBinarizer().fit_transform(y) makes one, and its "
    "classes_ name the columns"
)


class FewlabelClassifier(ClassifierMixin, BaseEstimator):
    """A text classifier trained by fewlabel: the most accurate strategy a few hundred labels allow.

    Args:
        strategy: ``auto`` (compare the candidate strategies by nested cross-validation) or one
            registered strategy name (``tfidf``, ``embed``, ``ensemble``, ``finetune``, ...).
        backbone: embedding model for strategies that embed text: ``best``, ``minilm``, ``mpnet``, a
            local directory or a Hugging Face Hub id (``TrainConfig.model``).
        budget_minutes: upper bound on one ``fit``; fine-tuning is skipped or stopped early to fit.
        folds: outer cross-validation folds of the accuracy estimate (2 to 20).
        seed: seeds fold assignment and anything random in the strategies.
        diagnostics: also compute the learning curve, label issues and near-duplicates (slower;
            ``result_.diagnostics``); off by default since ``fit`` may run many times in a search.

    Attributes:
        classes_: the class labels, as given to ``fit`` (original types), in fewlabel's order:
            sorted by ``str(label)``. After :meth:`load` they are the saved label names (strings).
            Multi-label: the label names (strings), in the order of y's columns.
        multilabel_: whether ``fit`` was given a label matrix (or :meth:`load` a multi-label model).
        model_: the fitted :class:`fewlabel.model_dir.store.TrainedModel` (calibrated probabilities).
        result_: the :class:`fewlabel.training.TrainResult` of ``fit`` (every strategy's scores,
            calibration, notes, warnings), multi-label a :class:`fewlabel.multilabel.MultiLabelResult`;
            ``None`` after :meth:`load`.
        data_: the checked :class:`fewlabel.data.labelled.LabelledTexts` (multi-label:
            ``MultiLabelledTexts``) ``fit`` trained on; ``None`` after :meth:`load`.
        estimate_: the headline accuracy estimate of the fitted model with its 95% interval
            (multi-label: micro-F1).
        chosen_strategy_: the strategy ``fit`` chose (or was told to use).

    Invalid settings raise :class:`fewlabel.errors.FewlabelError` and unusable data
    :class:`fewlabel.errors.DataError` from ``fit`` (not from ``__init__`` or ``set_params``).
    """

    def __init__(
        self,
        strategy: str = "auto",
        backbone: str = "best",
        budget_minutes: float = DEFAULT_BUDGET_MINUTES,
        folds: int = 5,
        seed: int = 0,
        diagnostics: bool = False,
    ) -> None:
        self.strategy = strategy
        self.backbone = backbone
        self.budget_minutes = budget_minutes
        self.folds = folds
        self.seed = seed
        self.diagnostics = diagnostics

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        # One raw text per sample: scikit-learn's numeric-array checks do not apply (see docs/python.md).
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags

    def fit(self, X: Any, y: Any) -> FewlabelClassifier:
        """Cross-validate, choose, calibrate and refit on all of ``X`` and ``y``.

        Args:
            X: the texts, one per sample.
            y: one label per text, of any hashable type; labels are named by ``str(label)``. Or a 0/1
                label matrix (texts x labels) for multi-label training (see the module docstring).

        Returns:
            self, fitted.
        """
        from fewlabel.data.labelled import LabelledTexts
        from fewlabel.training import train

        matrix = _label_matrix(y)
        if matrix is not None:
            return self._fit_multilabel(_texts(X), *matrix)
        labels = _labels(y)
        texts = _texts(X)
        if len(labels) != len(texts):
            raise ValueError(f"got {len(texts)} texts but {len(labels)} labels; give one label per text")
        config = self._config()
        data = LabelledTexts.from_lists(texts, _names(labels))  # train() refuses a class short of the folds
        self.classes_ = _classes(labels, data)
        self.result_: TrainResult | MultiLabelResult | None = train(data, None, config)
        self.data_: LabelledTexts | MultiLabelledTexts | None = data
        self.model_: TrainedModel = self.result_.model
        self.multilabel_ = False
        return self

    def _config(self) -> TrainConfig:
        from fewlabel.config import TrainConfig

        return TrainConfig(**{field: getattr(self, param) for param, field in _CONFIG_FIELDS.items()})

    def _fit_multilabel(self, texts: list[str], Y: np.ndarray, names: list[str]) -> FewlabelClassifier:
        """``fit`` on a 0/1 label matrix: :func:`fewlabel.multilabel.train_multilabel`."""
        from fewlabel.data.multilabel import MultiLabelledTexts
        from fewlabel.multilabel import train_multilabel

        if len(Y) != len(texts):
            raise ValueError(
                f"got {len(texts)} texts but {len(Y)} rows in the label matrix; give one row per text"
            )
        config = self._config()
        # Each label on at least one text per fold, as `fewlabel train --multi-label` asks.
        data = MultiLabelledTexts.from_matrix(texts, Y, names, min_per_label=config.folds)
        result = train_multilabel(data, None, config)
        self.classes_ = np.array(data.classes)
        self.result_ = result
        self.data_ = data
        self.model_ = result.model
        self.multilabel_ = True
        return self

    def predict(self, X: Any) -> np.ndarray:
        """The predicted class of each text, as given to ``fit`` (the model's decision rule applies).

        Multi-label: a 0/1 matrix (texts x labels, columns in the order of ``classes_``): 1 where a
        label's probability reaches that label's threshold.
        """
        check_is_fitted(self, "model_")
        texts = _texts(X)
        if self.multilabel_:
            proba = self.predict_proba(texts)
            return (proba >= self.model_.label_thresholds).astype(np.int64)
        if not texts:
            return self.classes_[:0]
        names, _ = self.model_.predict(texts)
        column = {name: i for i, name in enumerate(self.model_.labels)}
        if all(name in column for name in names):
            return self.classes_[np.array([column[name] for name in names], dtype=np.intp)]
        # A decision rule may answer with a name that is not a class (an abstention): keep it as is.
        index = dict(zip(self.model_.labels, self.classes_.tolist(), strict=True))
        return np.array([index.get(name, name) for name in names], dtype=object)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Calibrated class probabilities, one row per text, columns in the order of ``classes_``.

        Multi-label: each label's own probability (they need not sum to 1), shape (texts, labels), as
        ``OneVsRestClassifier`` answers for a label matrix.
        """
        check_is_fitted(self, "model_")
        texts = _texts(X)
        if not texts:
            return np.zeros((0, len(self.classes_)))
        return np.asarray(self.model_.predict_proba(texts))

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Accuracy of ``predict`` on ``X`` against ``y`` (scikit-learn's ``ClassifierMixin.score``).

        Multi-label: subset accuracy, scikit-learn's convention: a text counts only when every one of its
        labels is right. For micro-F1, score with ``sklearn.metrics.f1_score(y, predict(X), average="micro")``
        or ``scoring="f1_micro"`` in a search.
        """
        return float(super().score(X, y, sample_weight=sample_weight))

    @property
    def estimate_(self) -> Headline | None:
        """Expected accuracy (balanced accuracy on imbalanced data; micro-F1 for a multi-label model) on
        new data: ``metric``, ``value``, ``ci95_low``, ``ci95_high``; None for a saved model that
        records none."""
        from fewlabel.model_dir.records import Headline
        from fewlabel.multilabel import MultiLabelResult

        check_is_fitted(self, "model_")
        summary = self.model_.manifest.metrics
        if isinstance(self.result_, MultiLabelResult):
            micro = self.result_.estimate.micro_f1
            return Headline(metric="micro_f1", value=micro.value, ci95_low=micro.low, ci95_high=micro.high)
        if self.result_ is not None:
            return self.result_.expected.headline()
        if self.multilabel_:  # loaded: the manifest's copy of the micro-F1 estimate
            saved = summary.micro_f1 if summary is not None else None
            return Headline(metric="micro_f1", **saved.model_dump()) if saved is not None else None
        return summary.accuracy if summary is not None else None

    @property
    def chosen_strategy_(self) -> str:
        """The strategy of the fitted model."""
        check_is_fitted(self, "model_")
        if self.result_ is not None:
            return self.result_.chosen
        return self.model_.manifest.strategy.name

    def save(self, path: str | Path) -> Path:
        """Write the model directory ``fewlabel train -o`` writes (JSON, npz, safetensors; no pickle).

        Returns:
            the directory written.
        """
        from fewlabel.data.labelled import LabelledTexts
        from fewlabel.data.multilabel import MultiLabelledTexts
        from fewlabel.multilabel import MultiLabelResult, save_multilabel
        from fewlabel.training import TrainResult, save

        check_is_fitted(self, "model_")
        result, data = self.result_, self.data_
        if result is None or data is None:
            raise ValueError(
                "this classifier was loaded from a model directory, which is its saved form; "
                "copy that directory instead of saving it again"
            )
        if isinstance(result, MultiLabelResult) and isinstance(data, MultiLabelledTexts):
            return save_multilabel(result, data, Path(path))
        assert isinstance(result, TrainResult) and isinstance(data, LabelledTexts)
        return save(result, data, Path(path))

    @classmethod
    def load(cls, path: str | Path) -> FewlabelClassifier:
        """A fitted classifier from a saved model directory; never unpickles or runs code from it.

        The parameters are those of the saved training config and ``classes_`` are the saved label
        names: labels that were not strings when fitted come back as their string form. A multi-label
        model (``task`` in its manifest) loads with ``multilabel_`` set and predicts a label matrix.
        """
        from fewlabel.inference.loading import load_model

        model = load_model(path)
        config = model.manifest.config or {}
        params = {param: config[field] for param, field in _CONFIG_FIELDS.items() if field in config}
        estimator = cls(**params)
        estimator.classes_ = np.array(model.labels)
        estimator.model_ = model
        estimator.multilabel_ = model.multi_label
        estimator.result_ = None
        estimator.data_ = None
        return estimator


def _texts(X: Any) -> list[str]:
    """X as a list of texts; raises ValueError for anything that is not one text per sample."""
    if isinstance(X, str | bytes):
        raise ValueError("X must be a sequence of texts, one per sample, not a single string")
    X = _as_array(X)
    if X.ndim == 2 and X.shape[1] == 1:
        X = X[:, 0]
    if X.ndim != 1:
        raise ValueError(
            f"X must hold one text per sample (a 1-D sequence, or one column); got shape {X.shape}"
        )
    texts = X.tolist()
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"X must hold texts (str); item {i} is {type(text).__name__}: {text!r:.60}")
    return [str(text) for text in texts]


def _as_array(X: Any) -> np.ndarray:
    """X as a NumPy array: a DataFrame's one column, a Series, an array, or any sequence (as objects)."""
    if hasattr(X, "columns") and hasattr(X, "iloc"):  # a pandas DataFrame, without importing pandas
        if X.shape[1] != 1:
            raise ValueError(
                f"X is a DataFrame with {X.shape[1]} columns; give the one column that holds the texts"
            )
        X = X.iloc[:, 0]
    if hasattr(X, "toarray") or type(X).__module__.startswith("scipy.sparse"):
        raise ValueError("X is a sparse matrix; give the texts themselves, one per sample")
    if hasattr(X, "to_numpy"):  # a pandas Series (or Index)
        return X.to_numpy(dtype=object)
    if hasattr(X, "__array__"):
        return np.asarray(X)
    if not isinstance(X, Iterable):
        raise ValueError(f"X must be a sequence of texts, one per sample; got {type(X).__name__}")
    items = list(X)
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def _label_matrix(y: Any) -> tuple[np.ndarray, list[str]] | None:
    """y as a 0/1 label matrix with its label names, or None when y holds one label per text (a
    column vector does); ValueError for label sets and for values other than 0 and 1."""
    if y is None or isinstance(y, str | bytes):
        return None
    if hasattr(y, "columns") and hasattr(y, "iloc"):  # a pandas DataFrame: its columns name the labels
        return None if y.shape[1] == 1 else _binary(y.to_numpy(), [str(c) for c in y.columns])
    if hasattr(y, "toarray"):  # a sparse label matrix, as MultiLabelBinarizer(sparse_output=True) gives
        y = y.toarray()
    if isinstance(y, list | tuple):
        if any(isinstance(item, set | frozenset | dict) for item in y):
            raise ValueError(_LABEL_SETS)
        try:
            y = np.asarray(y)
        except ValueError:  # rows of different lengths
            raise ValueError(_LABEL_SETS) from None
    array = np.asarray(y)
    if array.ndim == 1 and array.dtype == object and any(isinstance(v, set | list | tuple) for v in array):
        raise ValueError(_LABEL_SETS)
    if array.ndim != 2 or array.shape[1] == 1:
        return None
    return _binary(array, [str(j) for j in range(array.shape[1])])


def _binary(values: np.ndarray, names: list[str]) -> tuple[np.ndarray, list[str]]:
    """values as a 0/1 integer matrix; ValueError naming the first cell that holds anything else."""
    if values.dtype.kind in "biuf":
        ok = np.isin(values, (0, 1))
    else:
        ok = np.vectorize(_is_binary, otypes=[bool])(values)
    if not ok.all():
        row, col = (int(i) for i in np.argwhere(~ok)[0])
        value = values[row, col]
        value = value.item() if isinstance(value, np.generic) else value  # 2, not np.int64(2)
        hint = f"; {_LABEL_SETS}" if isinstance(value, str) else ""
        raise ValueError(
            f"a label matrix holds 0 and 1 only (1: the text has that label); row {row} (counting from 0), "
            f"column {names[col]!r} holds {value!r}{hint}"
        )
    return values.astype(np.int64), names


def _is_binary(value: Any) -> bool:
    """Whether one cell of an object array is 0 or 1 (a number or a bool; not the string "1")."""
    return isinstance(value, bool | int | float | np.number | np.bool_) and value in (0, 1)


def _labels(y: Any) -> np.ndarray:
    """y as a 1-D array of classification targets; raises ValueError for regression targets."""
    if y is None:
        raise ValueError("FewlabelClassifier requires y to be passed, but the target y is None")
    _refuse_missing(y)
    labels = column_or_1d(y, warn=True)
    check_classification_targets(labels)
    distinct = set(labels.tolist())
    if len(distinct) == 1:
        raise ValueError(
            f"a classifier needs at least two classes; y holds one class only: {distinct.pop()!r}"
        )
    return labels


def _refuse_missing(y: Any) -> None:
    """ValueError naming how many labels are missing and where, before anything turns them into a
    class (``str(nan)`` is ``'nan'``) or fails on them (scikit-learn sorts the labels, and None does not
    sort with strings)."""
    values = y.to_numpy(dtype=object) if hasattr(y, "to_numpy") else np.asarray(y, dtype=object)
    if values.ndim == 2 and values.shape[1] == 1:  # a column vector: column_or_1d warns and takes it
        values = values[:, 0]
    if values.ndim != 1:
        return  # not one label per text: column_or_1d says so
    missing = [i for i, value in enumerate(values.tolist()) if _is_missing(value)]
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
        raise ValueError(
            f"Input y contains missing labels (NaN, None or NA): {len(missing)} of {len(values)}, at "
            f"position(s) {shown} (counting from 0); give each text its label, or leave out the texts "
            "without one"
        )


def _is_missing(value: Any) -> bool:
    """Whether one label is missing: None, a float NaN, or pandas' NA or NaT (pandas is not imported)."""
    if value is None or (isinstance(value, float | np.floating) and np.isnan(value)):
        return True
    if isinstance(value, np.datetime64 | np.timedelta64):
        return bool(np.isnat(value))
    return type(value).__name__ in {"NAType", "NaTType"}


def _names(labels: np.ndarray) -> list[str]:
    """fewlabel's class name of each label: ``str(label)``; two labels may not share one."""
    names = [str(label) for label in labels]
    seen: dict[str, Any] = {}
    for label, name in zip(labels.tolist(), names, strict=True):
        # fewlabel strips labels of surrounding spaces, so " a" and "a" would become one class.
        other = seen.setdefault(name.strip(), label)
        if other != label:
            raise ValueError(
                f"labels {other!r} and {label!r} would become one class {name.strip()!r} (classes are "
                "named by str(label) without surrounding spaces); give labels whose names differ"
            )
    return names


def _classes(labels: np.ndarray, data: LabelledTexts) -> np.ndarray:
    """The original label of each of fewlabel's classes, in fewlabel's class order."""
    first: dict[str, int] = {}
    for name, row in zip(data.labels, data.rows, strict=True):
        first.setdefault(name, row - 1)  # from_lists numbers rows from 1, in input order
    return labels[np.array([first[name] for name in data.classes], dtype=np.intp)]
