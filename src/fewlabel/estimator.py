"""``FewlabelClassifier``: ``fewlabel train`` as a scikit-learn classifier, for pipelines and searches.

It wraps :func:`fewlabel.training.train` and the model it returns; it adds no learning of its own.
Fitting runs the whole procedure (cross-validation, choice, calibration, refit on all rows), so
``estimate_`` holds the same honest accuracy estimate the command line reports, and ``save`` writes the
same model directory (JSON, npz and safetensors; never a pickle).

Input is raw text: X is one text per row (a list, a 1-D array, a pandas Series, or a single-column
DataFrame or 2-D array). Labels may be any hashable values; fewlabel names classes by ``str(label)``
and orders them by that name, and ``classes_`` follows the same order (so the columns of
``predict_proba`` match the saved model's labels).
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
    from fewlabel.data.labelled import LabelledTexts
    from fewlabel.model_dir.records import Headline
    from fewlabel.model_dir.store import TrainedModel
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
        model_: the fitted :class:`fewlabel.model_dir.store.TrainedModel` (calibrated probabilities).
        result_: the :class:`fewlabel.training.TrainResult` of ``fit`` (every strategy's scores,
            calibration, notes, warnings); ``None`` after :meth:`load`.
        data_: the checked :class:`fewlabel.data.labelled.LabelledTexts` ``fit`` trained on; ``None`` after
            :meth:`load`.
        estimate_: the headline accuracy estimate of the fitted model with its 95% interval.
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
            y: one label per text, of any hashable type; labels are named by ``str(label)``.

        Returns:
            self, fitted.
        """
        from fewlabel.config import TrainConfig
        from fewlabel.data.labelled import LabelledTexts
        from fewlabel.training import train

        if np.ndim(y) == 2 and np.shape(y)[1] > 1:  # a column vector is one label per text
            raise ValueError(
                "FewlabelClassifier takes one label per text; for several labels per text (a label "
                "matrix), use fewlabel.multilabel.train_multilabel (docs/multi-label.md)"
            )
        labels = _labels(y)
        texts = _texts(X)
        if len(labels) != len(texts):
            raise ValueError(f"got {len(texts)} texts but {len(labels)} labels; give one label per text")
        config = TrainConfig(**{field: getattr(self, param) for param, field in _CONFIG_FIELDS.items()})
        data = LabelledTexts.from_lists(texts, _names(labels))
        self.classes_ = _classes(labels, data)
        self.result_: TrainResult | None = train(data, None, config)
        self.data_: LabelledTexts | None = data
        self.model_: TrainedModel = self.result_.model
        return self

    def predict(self, X: Any) -> np.ndarray:
        """The predicted class of each text, as given to ``fit`` (the model's decision rule applies)."""
        check_is_fitted(self, "model_")
        texts = _texts(X)
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
        """Calibrated class probabilities, one row per text, columns in the order of ``classes_``."""
        check_is_fitted(self, "model_")
        texts = _texts(X)
        if not texts:
            return np.zeros((0, len(self.classes_)))
        return np.asarray(self.model_.predict_proba(texts))

    @property
    def estimate_(self) -> Headline | None:
        """Expected accuracy (balanced accuracy on imbalanced data) on new data: ``metric``, ``value``,
        ``ci95_low``, ``ci95_high``; None for a saved model that records none."""
        check_is_fitted(self, "model_")
        if self.result_ is not None:
            return self.result_.expected.headline()
        summary = self.model_.manifest.metrics
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
        from fewlabel.training import save

        check_is_fitted(self, "model_")
        if self.result_ is None or self.data_ is None:
            raise ValueError(
                "this classifier was loaded from a model directory, which is its saved form; "
                "copy that directory instead of saving it again"
            )
        return save(self.result_, self.data_, Path(path))

    @classmethod
    def load(cls, path: str | Path) -> FewlabelClassifier:
        """A fitted classifier from a saved model directory; never unpickles or runs code from it.

        The parameters are those of the saved training config and ``classes_`` are the saved label
        names: labels that were not strings when fitted come back as their string form.
        """
        from fewlabel.inference.loading import load_model

        model = load_model(path)
        config = model.manifest.config or {}
        params = {param: config[field] for param, field in _CONFIG_FIELDS.items() if field in config}
        estimator = cls(**params)
        estimator.classes_ = np.array(model.labels)
        estimator.model_ = model
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


def _labels(y: Any) -> np.ndarray:
    """y as a 1-D array of classification targets; raises ValueError for regression targets."""
    if y is None:
        raise ValueError("FewlabelClassifier requires y to be passed, but the target y is None")
    labels = column_or_1d(y, warn=True)
    check_classification_targets(labels)
    distinct = set(labels.tolist())
    if len(distinct) == 1:
        raise ValueError(
            f"a classifier needs at least two classes; y holds one class only: {distinct.pop()!r}"
        )
    return labels


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
