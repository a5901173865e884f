"""The one small interface every strategy implements: fit, predict_proba, save, load."""

from __future__ import annotations

import contextlib
import hashlib
import json
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fewlabel.errors import FewlabelError, ModelDirError


class NotFittedError(FewlabelError):
    """A strategy was asked to predict or save before it was fitted."""


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
    digest.update(np.ascontiguousarray(y).tobytes())
    return digest.hexdigest()


class Strategy(ABC):
    """A way to turn labelled texts into class probabilities.

    Subclasses set ``name`` and ``defaults``; ``__init__`` only stores parameters (scikit-learn style),
    fitted state lives in attributes ending in ``_``. Labels are class indices ``0..n_classes-1``; the
    mapping to label names belongs to the saved model, not to the strategy.
    """

    name: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}
    uses_backbone: ClassVar[bool] = False
    # "cv": cheap enough to refit on every fold; "holdout": scored on a validation split of its own
    # run (``report_.val_index`` / ``report_.val_proba``), because refitting per fold takes too long.
    evaluation: ClassVar[str] = "cv"

    def __init__(self, **params: Any):
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise FewlabelError(
                f"strategy {self.name!r} has no setting(s) {', '.join(sorted(unknown))}; "
                f"its settings are {', '.join(sorted(self.defaults)) or 'none'}"
            )
        self.params: dict[str, Any] = {**self.defaults, **params}
        self.n_classes_: int | None = None

    def fit(self, texts: Sequence[str], y: np.ndarray, n_classes: int | None = None) -> Strategy:
        """Fit on ``texts`` with integer labels ``y``; returns self."""
        y = np.asarray(y, dtype=np.int64)
        if len(texts) != len(y):
            raise FewlabelError(f"{len(texts)} texts but {len(y)} labels")
        if len(texts) == 0:
            raise FewlabelError("cannot fit on zero texts")
        self.n_classes_ = int(n_classes if n_classes is not None else y.max() + 1)
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

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities, shape (len(texts), n_classes); rows sum to 1."""
        self._check_fitted()
        if len(texts) == 0:
            return np.zeros((0, self.n_classes_ or 0))
        return self._predict_proba(list(texts))

    def save(self, directory: Path) -> None:
        """Write fitted state into ``directory`` (JSON and .npz only: loading runs no code)."""
        self._check_fitted()
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "strategy.json").write_text(
            json.dumps({"name": self.name, "params": self.params, "n_classes": self.n_classes_}, indent=2),
            encoding="utf-8",
        )
        self._save(directory)

    @classmethod
    def load(cls, directory: Path) -> Strategy:
        """Rebuild a fitted strategy from what :meth:`save` wrote."""
        try:
            meta = json.loads((directory / "strategy.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ModelDirError(f"{directory}: cannot read strategy.json ({err})") from None
        strategy = cls(**meta["params"])
        strategy.n_classes_ = int(meta["n_classes"])
        strategy._load(directory)
        return strategy

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

    def use_precision(self, precision: str) -> None:
        """Predict with ``fp32``, ``bf16`` or ``auto`` matrix products where the strategy runs a network."""
        del precision  # strategies that run no network of their own have nothing to change

    def attach_encoder(self, encoder: Any) -> None:
        """Use ``encoder`` (anything with ``encode(texts)``) instead of the backbone; no-op without one."""
        del encoder  # strategies that embed nothing have nothing to replace


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Read an .npz written by a strategy, refusing pickled objects."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as err:
        raise ModelDirError(f"{path}: cannot read weights ({err})") from None
