"""Wrappers: strategies that change how another strategy is fitted (augmentation, self-training).

They sit above the registry, which names the strategy they wrap; the strategies themselves never
import the registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fewlabel.errors import FewlabelError
from fewlabel.strategies import get_strategy_class, make_strategy
from fewlabel.strategies.base import HoldoutRun, Strategy


class Wrapper(Strategy):
    """A strategy that changes how another is fitted (augmentation, self-training), nothing else.

    ``params["strategy"]`` and ``params["strategy_params"]`` name the wrapped strategy; ``_fit``
    sets ``inner_``. Prediction, saving and loading are the wrapped strategy's own, so a saved
    model holds the wrapped strategy and loads without the wrapper.
    """

    inner_: Strategy  # the wrapped strategy as fitted, set by _fit

    def __init__(self, **params: Any):
        super().__init__(**params)
        inner = get_strategy_class(self.params["strategy"])
        self.uses_backbone = inner.uses_backbone  # type: ignore[misc]
        self.evaluation = inner.evaluation  # type: ignore[misc]

    def inner(self) -> Strategy:
        return make_strategy(self.params["strategy"], **self.params["strategy_params"])

    @property
    def fitted(self) -> Strategy:
        """The wrapped strategy as fitted (what a saved model holds)."""
        self._check_fitted()
        return self.inner_

    def _predict_proba(self, texts: list[str]) -> np.ndarray:
        return self.inner_.predict_proba(texts)

    def holdout_run(self) -> HoldoutRun:
        """The wrapped strategy's: a wrapper of a slow strategy is scored on the rows it held out."""
        return self.fitted.holdout_run()

    def save(self, directory: Path) -> None:
        self.fitted.save(directory)

    def _save(self, directory: Path) -> None:  # pragma: no cover - save() is the wrapped strategy's
        raise NotImplementedError

    def _load(self, directory: Path) -> None:
        raise FewlabelError(
            f"{directory}: {self.name} strategies are saved as the strategy they wrap; load that"
        )

    def attach_encoder(self, encoder: Any) -> None:
        self.fitted.attach_encoder(encoder)

    def use_precision(self, precision: str) -> None:
        self.fitted.use_precision(precision)
