"""``ensemble``: the average of ``embed`` and ``tfidf`` probabilities.

The two see different evidence (meaning versus exact words and spellings), so their errors are only
partly shared; averaging is a cheap, robust way to use both, with nothing extra to fit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fewlabel.errors import ModelDirError
from fewlabel.strategies.base import Strategy
from fewlabel.strategies.embed import EmbeddingLogReg
from fewlabel.strategies.tfidf import TfidfLogReg


class EmbedTfidfEnsemble(Strategy):
    name = "ensemble"
    uses_backbone = True
    supports_multi_label = True
    defaults = {
        "backbone": "minilm",
        "embed_weight": 0.5,  # share of the embedding model in the average
        "embed_C": EmbeddingLogReg.defaults["C"],
        "tfidf_C": TfidfLogReg.defaults["C"],
        "class_weight": "balanced",  # for both members (see tfidf and embed)
        "cache": True,
    }

    def _members(self) -> tuple[EmbeddingLogReg, TfidfLogReg]:
        weight = self.params["class_weight"]
        embed = EmbeddingLogReg(
            backbone=self.backbone_ref(),
            C=self.params["embed_C"],
            class_weight=weight,
            cache=self.params["cache"],
        )
        return embed, TfidfLogReg(C=self.params["tfidf_C"], class_weight=weight)

    def _fit(self, texts: list[str], y: np.ndarray) -> None:
        self._pin_backbone()
        self.members_ = [m.fit(texts, y, self.n_classes_) for m in self._members()]

    def _predict_proba(self, texts: list[str]) -> np.ndarray:
        w = float(self.params["embed_weight"])
        embed, tfidf = self.members_
        return w * embed.predict_proba(texts) + (1 - w) * tfidf.predict_proba(texts)

    def _save(self, directory: Path) -> None:
        for member in self.members_:
            member.save(directory / member.name)

    def _load(self, directory: Path) -> None:
        if not 0.0 <= float(self.params["embed_weight"]) <= 1.0:
            raise ModelDirError(
                f"{directory / 'strategy.json'}: field 'params.embed_weight' must be in [0, 1]"
            )
        self.members_ = [
            EmbeddingLogReg.load(directory / "embed", backbone=self.backbone_ref()),
            TfidfLogReg.load(directory / "tfidf"),
        ]
        if any(m.n_classes_ != self.n_classes_ or m.multi_label_ != self.multi_label_ for m in self.members_):
            raise ModelDirError(f"{directory}: the ensemble's members answer other classes than it does")

    def attach_encoder(self, encoder) -> None:
        for member in self.members_:
            member.attach_encoder(encoder)

    def describe(self) -> str:
        return f"ensemble (mean of embed[{self.params['backbone']}] and tfidf)"
