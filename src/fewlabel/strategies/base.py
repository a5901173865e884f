"""The one small interface every strategy implements: fit, predict_proba, save, load."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fewlabel.errors import BackboneError, FewlabelError, ModelDirError
from fewlabel.strategies.files import load_npz as load_npz
from fewlabel.strategies.files import read_json


class NotFittedError(FewlabelError):
    """A strategy was asked to predict or save before it was fitted."""


# The strategies that set ``supports_multi_label`` (tests/test_multilabel_strategies.py checks it):
# named in the error a single-label strategy gives when fitted on a label matrix.
MULTI_LABEL_STRATEGIES = ("tfidf", "embed", "ensemble")


# Fitted state by (strategy, settings, training texts and labels). Cross-validation fits the same
# thing more than once (the ensemble refits its members; nested CV refits the outer folds); within
# `fit_memo()` those repeats are lookups. Off outside it, so nothing is kept alive by accident.
_MEMO: OrderedDict[str, dict[str, Any]] | None = None
_MEMO_SIZE = 48


@contextlib.contextmanager
def fit_memo() -> Iterator[None]:
    """Within this block, refitting a strategy on the same data reuses the earlier fit."""
    global _MEMO
    outer = _MEMO
    if outer is None:
        _MEMO = OrderedDict()
    try:
        yield
    finally:
        if outer is None:
            _MEMO = None


def texts_digest(texts: Sequence[str], digest=None) -> str:
    """SHA-256 over the texts in order (each hashed first, so boundaries between texts count)."""
    digest = digest or hashlib.sha256()
    for text in texts:
        digest.update(hashlib.sha256(text.encode("utf-8")).digest())
    return digest.hexdigest()


def _memo_key(strategy: Strategy, texts: Sequence[str], y: np.ndarray) -> str:
    digest = hashlib.sha256(
        json.dumps(
            [type(strategy).__qualname__, strategy.params, strategy.n_classes_], sort_keys=True
        ).encode()
    )
    texts_digest(texts, digest)
    digest.update(repr(y.shape).encode())
    digest.update(np.ascontiguousarray(y).tobytes())
    return digest.hexdigest()


class Strategy(ABC):
    """A way to turn labelled texts into class probabilities.

    Subclasses set ``name`` and ``defaults``; ``__init__`` only stores parameters (scikit-learn style),
    fitted state lives in attributes ending in ``_``. Labels are class indices ``0..n_classes-1``; the
    mapping to label names belongs to the saved model, not to the strategy.

    A strategy with ``supports_multi_label`` also fits a 0/1 label matrix (texts x labels): one
    binary head per label on shared features; it then predicts each label's probability on its own
    (``multi_label_`` is True, and ``n_classes_`` is the number of labels).
    """

    name: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}
    uses_backbone: ClassVar[bool] = False
    # "cv": cheap enough to refit on every fold; "holdout": scored on a validation split of its own
    # run (see :class:`HoldoutStrategy`), because refitting per fold takes too long.
    evaluation: ClassVar[str] = "cv"
    supports_multi_label: ClassVar[bool] = False
    # Whether :meth:`fit_soft` works: the strategy learns from class probabilities (distillation).
    supports_soft_targets: ClassVar[bool] = False

    def __init__(self, **params: Any):
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise FewlabelError(
                f"strategy {self.name!r} has no setting(s) {', '.join(sorted(unknown))}; "
                f"its settings are {', '.join(sorted(self.defaults)) or 'none'}"
            )
        self.params: dict[str, Any] = {**self.defaults, **params}
        self.n_classes_: int | None = None
        self.multi_label_: bool = False

    def fit(self, texts: Sequence[str], y: np.ndarray, n_classes: int | None = None) -> Strategy:
        """Fit on ``texts`` with integer labels ``y`` (or a 0/1 matrix, texts x labels, for a
        multi-label fit); returns self."""
        y = np.asarray(y, dtype=np.int64)
        if len(texts) != len(y):
            raise FewlabelError(f"{len(texts)} texts but {len(y)} labels")
        if len(texts) == 0:
            raise FewlabelError("cannot fit on zero texts")
        self.multi_label_ = self._check_multi_label(y)
        self.n_classes_ = int(
            y.shape[1] if y.ndim == 2 else n_classes if n_classes is not None else y.max() + 1
        )
        key = _memo_key(self, texts, y) if _MEMO is not None else None
        if key is not None and _MEMO is not None and key in _MEMO:
            self.__dict__.update(_MEMO[key])  # fitted attributes are never mutated after fit
            _MEMO.move_to_end(key)
            return self
        self._fit(list(texts), y)
        if key is not None and _MEMO is not None:
            _MEMO[key] = dict(self.__dict__)
            while len(_MEMO) > _MEMO_SIZE:
                _MEMO.popitem(last=False)
        return self

    def fit_soft(
        self,
        texts: Sequence[str],
        y: np.ndarray,
        n_classes: int,
        extra_texts: Sequence[str],
        extra_proba: np.ndarray,
    ) -> Strategy:
        """Fit on labelled ``texts`` (class indices ``y``) and on ``extra_texts`` with class
        probabilities ``extra_proba`` (texts x classes) as soft targets, a teacher's say; returns self.

        The labelled rows are one-hot targets. A strategy that validates on a split of its own run
        (fine-tuning) validates on labelled rows only.
        """
        if not self.supports_soft_targets:
            raise FewlabelError(f"strategy {self.name!r} cannot learn from class probabilities")
        y = np.asarray(y, dtype=np.int64)
        proba = np.asarray(extra_proba, dtype=np.float64).reshape(len(extra_texts), -1)
        if len(texts) != len(y):
            raise FewlabelError(f"{len(texts)} texts but {len(y)} labels")
        if proba.shape[1] != n_classes or not np.allclose(proba.sum(axis=1), 1.0, atol=1e-3):
            raise FewlabelError(
                f"extra_proba must hold {n_classes} class probabilities per text, summing to 1"
            )
        if len(texts) + len(extra_texts) == 0:
            raise FewlabelError("cannot fit on zero texts")
        self.multi_label_, self.n_classes_ = False, int(n_classes)
        targets = np.vstack([np.eye(n_classes)[y], proba])
        self._fit_soft([*texts, *extra_texts], targets, len(texts))
        return self

    def _fit_soft(self, texts: list[str], targets: np.ndarray, n_labelled: int) -> None:
        """Fit on ``targets`` (texts x classes, rows summing to 1); the first ``n_labelled`` are labels."""
        raise NotImplementedError  # pragma: no cover - fit_soft() checks supports_soft_targets first

    def _check_multi_label(self, y: np.ndarray) -> bool:
        """Whether ``y`` is a label matrix (multi-label fit); FewlabelError where this strategy has none."""
        if y.ndim == 1:
            return False
        if y.ndim != 2 or not np.isin(y, (0, 1)).all():
            raise FewlabelError(
                "labels must be class indices, or a 0/1 matrix (texts x labels) for multi-label"
            )
        if not self.supports_multi_label:
            raise FewlabelError(
                f"strategy {self.name!r} is single-label only; multi-label training works with "
                f"{', '.join(MULTI_LABEL_STRATEGIES)}"
            )
        return True

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities, shape (len(texts), n_classes); rows sum to 1. Multi-label: each label's
        own probability (independent sigmoids, rows need not sum to 1)."""
        self._check_fitted()
        if len(texts) == 0:
            return np.zeros((0, self.n_classes_ or 0))
        return self._predict_proba(list(texts))

    def save(self, directory: Path) -> None:
        """Write fitted state into ``directory`` (JSON and .npz only: loading runs no code).

        A strategy that embeds with a backbone records it pinned by content hash (``backbone``).
        """
        self._check_fitted()
        directory.mkdir(parents=True, exist_ok=True)
        meta: dict[str, Any] = {"name": self.name, "params": self.params, "n_classes": self.n_classes_}
        if self.multi_label_:
            meta["multi_label"] = True  # only then: single-label files stay as they were
        if self.uses_backbone:
            meta["backbone"] = self.backbone_ref()
        (directory / "strategy.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        self._save(directory)

    @classmethod
    def load(cls, directory: Path, backbone: str | None = None) -> Strategy:
        """Rebuild a fitted strategy from what :meth:`save` wrote, checking it as untrusted input.

        Args:
            backbone: the pinned backbone (``NAME@sha256:HEX``) the model's manifest names; by
                default the one ``strategy.json`` names. A name, a path or a Hub id is refused.
        """
        where = directory / "strategy.json"
        meta = read_json(where, 1 << 20)
        if not isinstance(meta, dict):
            raise ModelDirError(f"{where}: not a JSON object; the model directory is damaged")
        params, n_classes = meta.get("params"), meta.get("n_classes")
        if meta.get("name") != cls.name:
            raise ModelDirError(
                f"{where}: field 'name' is {str(meta.get('name'))[:60]!r}, expected {cls.name!r}"
            )
        if not isinstance(params, dict):
            raise ModelDirError(f"{where}: field 'params' must be an object")
        if not isinstance(n_classes, int) or isinstance(n_classes, bool) or not 2 <= n_classes <= 100_000:
            raise ModelDirError(f"{where}: field 'n_classes' must be a whole number of classes (2 or more)")
        try:
            strategy = cls(**params)
        except FewlabelError as err:
            raise ModelDirError(f"{where}: field 'params': {err}") from None
        strategy._check_params(where)
        strategy.multi_label_ = _saved_multi_label(where, meta.get("multi_label", False), cls)
        if cls.uses_backbone:
            strategy.backbone_ = _pinned(where, meta.get("backbone"), backbone)
        strategy.n_classes_ = n_classes
        strategy._load(directory)
        return strategy

    def _check_params(self, where: Path) -> None:
        """Each saved setting has the type of its default (any plain value where the default is None)."""
        for key, value in self.params.items():
            default = self.defaults[key]
            if default is None:
                ok = value is None or isinstance(value, bool | int | float | str)
            elif isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, int | float):
                ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            elif isinstance(default, str):
                ok = value is None or isinstance(value, str)
            else:
                ok = isinstance(value, type(default))
            if not ok:
                raise ModelDirError(
                    f"{where}: field 'params.{key}' must be like {default!r}, got {type(value).__name__}"
                )

    def backbone_ref(self) -> str:
        """The backbone this strategy embeds with: pinned by content hash once fitted or loaded."""
        pinned = self.__dict__.get("backbone_")
        return pinned if pinned is not None else str(self.params["backbone"])

    def _pin_backbone(self) -> str:
        """Resolve the ``backbone`` setting (importing a directory or Hub model) and pin it by hash."""
        from fewlabel.encoders.backbones import resolve

        self.backbone_: str = resolve(str(self.params["backbone"])).ref
        return self.backbone_

    def _check_fitted(self) -> None:
        if self.n_classes_ is None:
            raise NotFittedError(f"this {self.name!r} strategy is not fitted yet; call fit() first")

    @abstractmethod
    def _fit(self, texts: list[str], y: np.ndarray) -> None: ...

    @abstractmethod
    def _predict_proba(self, texts: list[str]) -> np.ndarray: ...

    @abstractmethod
    def _save(self, directory: Path) -> None: ...

    @abstractmethod
    def _load(self, directory: Path) -> None: ...

    def describe(self) -> str:
        """One line for tables: the name and the settings that matter."""
        return self.name

    def holdout_run(self) -> HoldoutRun:
        """What this fit measured on the rows it held out; only ``holdout`` strategies hold rows out."""
        raise FewlabelError(f"strategy {self.name!r} is cross-validated: its fit holds no rows out")

    def use_precision(self, precision: str) -> None:
        """Predict with ``fp32``, ``bf16`` or ``auto`` matrix products where the strategy runs a network."""
        del precision  # strategies that run no network of their own have nothing to change

    def attach_encoder(self, encoder: Any) -> None:
        """Use ``encoder`` (anything with ``encode(texts)``) instead of the backbone; no-op without one."""
        del encoder  # strategies that embed nothing have nothing to replace


@dataclass(frozen=True)
class HoldoutRun:
    """What a slow strategy's fit measured on the validation rows it held out of its own training.

    Training scores a :class:`HoldoutStrategy` on these rows instead of cross-validating it.
    """

    val_index: list[int]  # rows of the fitted texts held out for validation, ascending
    val_proba: np.ndarray  # their class probabilities, shape (len(val_index), n_classes)
    train_accuracy: float
    val_accuracy: float
    seconds: float  # the training run that was scored
    notes: tuple[str, ...] = ()  # sentences on how the run went (restarts, early stop, truncation, refit)
    flags: tuple[str, ...] = ()  # warnings about the run (collapse, memorising)
    record: dict[str, Any] = field(default_factory=dict)  # JSON-ready account of the run (metrics.json)


class HoldoutStrategy(Strategy):
    """A strategy too slow to refit on every fold: it validates on a split of its own training run.

    Training asks, before fitting, :meth:`estimated_seconds` (to keep within the time budget) and,
    after fitting, :meth:`holdout_run` (to score it, compare it and report how the run went). It
    fits with the settings ``backbone`` and ``time_budget_s`` (seconds the fit may take), so ``defaults``
    must name both. A new slow strategy implements this and is registered like any other; training
    needs no change.
    """

    evaluation: ClassVar[str] = "holdout"

    @classmethod
    @abstractmethod
    def estimated_seconds(cls, texts: Sequence[str], backbone: str) -> float:
        """Rough seconds one fit on ``texts`` with ``backbone`` takes here (for budget decisions)."""

    @abstractmethod
    def holdout_run(self) -> HoldoutRun:
        """What the last fit measured on the rows it held out."""


def _saved_multi_label(where: Path, saved: object, cls: type[Strategy]) -> bool:
    """The saved ``multi_label`` field: a boolean, true only for a strategy that supports it."""
    if not isinstance(saved, bool):
        raise ModelDirError(f"{where}: field 'multi_label' must be true or false")
    if saved and not cls.supports_multi_label:
        raise ModelDirError(
            f"{where}: field 'multi_label' is true, but strategy {cls.name!r} is single-label only"
        )
    return saved


def _pinned(where: Path, saved: object, given: str | None) -> str:
    """The pinned backbone a loaded strategy uses: ``given`` (the manifest's), else the one it saved."""
    from fewlabel.encoders.backbones import parse_ref

    if given is not None and saved is not None and saved != given:
        raise ModelDirError(f"{where}: field 'backbone' names another backbone than the model's manifest")
    ref = given if given is not None else saved
    try:
        parse_ref(ref)
    except BackboneError as err:
        raise ModelDirError(f"{where}: field 'backbone': {err}") from None
    return str(ref)
