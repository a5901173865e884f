"""``embed``: frozen sentence embeddings from a backbone + a regularised logistic regression.

The backbone is not trained, so a few hundred labels cannot over-fit it; embeddings are cached,
which makes cross-validation almost free after the first encoding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np

from fewlabel.errors import ModelDirError
from fewlabel.strategies.base import Strategy, load_npz
from fewlabel.strategies.linear import (
    check_head,
    fit_head,
    fit_soft_logreg,
    head_arrays,
    head_from_arrays,
)


class EmbeddingLogReg(Strategy):
    name = "embed"
    uses_backbone = True
    supports_multi_label = True
    supports_soft_targets = True
    defaults = {
        "backbone": "minilm",
        "C": 4.0,  # on unit-norm sentence embeddings; chosen on the shared benchmark sets
        # Each class weighs the same in the loss: on imbalanced data the rare class is not drowned
        # out (benchmarks/imbalanced.py); on balanced data it changes nothing.
        "class_weight": "balanced",
        "cache": True,
    }

    @property
    def encoder(self):
        attached = self.__dict__.get("attached_encoder_")
        if attached is not None:
            return attached
        from fewlabel.encoders.sentence import get_encoder

        return get_encoder(self.backbone_ref(), cache=self.params["cache"])

    def attach_encoder(self, encoder) -> None:
        self.attached_encoder_ = encoder

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.encoder.encode(texts)

    def _fit(self, texts: list[str], y: np.ndarray) -> None:
        assert self.n_classes_ is not None  # fit() sets it before calling _fit
        self._pin_backbone()
        self.head_ = fit_head(
            self.embed(texts), y, self.n_classes_, self.params["C"], self.params["class_weight"]
        )

    def _fit_soft(self, texts: list[str], targets: np.ndarray, n_labelled: int) -> None:
        self._pin_backbone()
        self.head_ = fit_soft_logreg(
            self.embed(texts), targets, self.params["C"], self.params["class_weight"]
        )

    def _predict_proba(self, texts: list[str]) -> np.ndarray:
        vectors = self.embed(texts)
        if vectors.ndim != 2 or vectors.shape[1] != self.head_.coef_.shape[1]:
            # Only a model directory put together by hand gets here: the head was fitted on this backbone.
            raise ModelDirError(
                f"the model's head takes {self.head_.coef_.shape[1]} features, but its backbone "
                f"gives {vectors.shape[1:]} per text"
            )
        return self.head_.predict_proba(vectors)

    def _save(self, directory: Path) -> None:
        # cast: numpy's stub checks **kwds against savez's bool allow_pickle keyword too
        np.savez(directory / "head.npz", **cast(dict[str, Any], head_arrays(self.head_)))

    def _load(self, directory: Path) -> None:
        arrays = load_npz(directory / "head.npz")
        assert self.n_classes_ is not None  # load() sets it before calling _load
        check_head(directory / "head.npz", arrays, self.n_classes_, multi_label=self.multi_label_)
        self.head_ = head_from_arrays(arrays["coef"], arrays["intercept"], self.n_classes_, self.multi_label_)

    def describe(self) -> str:
        return f"embed ({self.params['backbone']} embeddings, LR C={self.params['C']:g})"
