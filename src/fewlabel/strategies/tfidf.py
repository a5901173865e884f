"""``tfidf``: word and character n-gram TF-IDF with a regularised logistic regression.

Often a match for frozen embeddings on short, vocabulary-driven texts, and a baseline every other
strategy has to beat. Texts with no words at all (only emoji, symbols or punctuation) are read by
their character n-grams alone: an emoji says a lot about sentiment.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

from fewlabel.errors import DataError, ModelDirError
from fewlabel.strategies.base import Strategy, load_npz
from fewlabel.strategies.files import read_json
from fewlabel.strategies.linear import (
    check_head,
    fit_head,
    fit_soft_logreg,
    head_arrays,
    head_from_arrays,
)

_VECTORIZERS = {
    # sublinear tf: a word said five times is not five times the evidence; min_df=1 because with a few
    # hundred texts most useful words are rare.
    "word": dict(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, min_df=1, lowercase=True),
    # char n-grams inside word boundaries survive typos and inflections ("disapointed", "broke/broken").
    "char": dict(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2, lowercase=True),
}


class TfidfLogReg(Strategy):
    name = "tfidf"
    supports_multi_label = True
    supports_soft_targets = True
    defaults = {
        "C": 10.0,  # weak regularisation suits sparse TF-IDF rows of unit norm
        "max_features": 200_000,  # per vectorizer; bounds model size on large inputs
        # Each class weighs the same in the loss: on imbalanced data the rare class is not drowned
        # out (benchmarks/imbalanced.py); on balanced data it changes nothing.
        "class_weight": "balanced",
    }

    def _vectorizers(
        self, vocabularies: dict[str, dict[str, int]] | None = None
    ) -> dict[str, TfidfVectorizer]:
        out = {}
        for kind, settings in _VECTORIZERS.items():
            if vocabularies is not None and kind not in vocabularies:
                continue  # not fitted: the training texts had no words
            vocab = vocabularies[kind] if vocabularies else None
            max_features = None if vocab else self.params["max_features"]
            out[kind] = TfidfVectorizer(
                **settings, max_features=max_features, vocabulary=vocab, dtype=np.float32
            )
        return out

    def _features(self, texts: list[str]) -> sp.csr_matrix:
        return sp.hstack([v.transform(texts) for v in self.vectorizers_.values()], format="csr")

    def _fit(self, texts: list[str], y: np.ndarray) -> None:
        X = self._fit_features(texts)
        assert self.n_classes_ is not None  # fit() sets it before calling _fit
        # newton-cg: ~10x faster than lbfgs on ~100k sparse features, same optimum.
        self.head_ = fit_head(
            X, y, self.n_classes_, self.params["C"], self.params["class_weight"], "newton-cg"
        )

    def _fit_soft(self, texts: list[str], targets: np.ndarray, n_labelled: int) -> None:
        X = self._fit_features(texts)
        self.head_ = fit_soft_logreg(X, targets, self.params["C"], self.params["class_weight"], "newton-cg")

    def _fit_features(self, texts: list[str]) -> sp.csr_matrix:
        """Fit the vectorizers on ``texts``; their TF-IDF rows."""
        self.vectorizers_ = {}
        blocks = []
        for kind, vectorizer in self._vectorizers().items():
            try:
                block = vectorizer.fit_transform(texts)
            except ValueError:  # too few texts for min_df: fall back to keeping every n-gram
                vectorizer.set_params(min_df=1)
                try:
                    block = vectorizer.fit_transform(texts)
                except ValueError:  # "empty vocabulary": no words (emoji-only texts); characters remain
                    continue
            self.vectorizers_[kind] = vectorizer
            blocks.append(block)
        if not blocks:
            raise DataError(
                "tfidf found nothing to read in the training texts (no words and no characters); "
                "check the text column"
            )
        return sp.hstack(blocks, format="csr")

    def _predict_proba(self, texts: list[str]) -> np.ndarray:
        return self.head_.predict_proba(self._features(texts))

    def _save(self, directory: Path) -> None:
        vocabularies = {
            k: {t: int(i) for t, i in v.vocabulary_.items()} for k, v in self.vectorizers_.items()
        }
        (directory / "tfidf_vocabulary.json").write_text(
            json.dumps(vocabularies, ensure_ascii=False), encoding="utf-8"
        )
        arrays = head_arrays(self.head_)
        arrays.update({f"idf_{k}": v.idf_ for k, v in self.vectorizers_.items()})
        # cast: numpy's stub checks **kwds against savez's bool allow_pickle keyword too
        np.savez(directory / "tfidf_weights.npz", **cast(dict[str, Any], arrays))

    def _load(self, directory: Path) -> None:
        vocabularies = _check_vocabularies(directory / "tfidf_vocabulary.json")
        path = directory / "tfidf_weights.npz"
        arrays = load_npz(path)
        for kind, vocab in vocabularies.items():
            idf = arrays.get(f"idf_{kind}")
            if (
                idf is None
                or idf.shape != (len(vocab),)
                or idf.dtype.kind != "f"
                or not np.isfinite(idf).all()
            ):
                raise ModelDirError(f"{path}: idf_{kind} does not fit the {len(vocab)} {kind} n-grams")
        assert self.n_classes_ is not None  # load() sets it before calling _load
        n_features = sum(len(v) for v in vocabularies.values())
        check_head(path, arrays, self.n_classes_, n_features, self.multi_label_)
        self.vectorizers_ = self._vectorizers(vocabularies)
        for kind, vectorizer in self.vectorizers_.items():
            vectorizer.idf_ = arrays[f"idf_{kind}"]
        self.head_ = head_from_arrays(arrays["coef"], arrays["intercept"], self.n_classes_, self.multi_label_)

    def describe(self) -> str:
        fitted = getattr(self, "vectorizers_", _VECTORIZERS)
        grams = " + ".join(g for k, g in (("word", "word 1-2"), ("char", "char 2-5")) if k in fitted)
        return f"tfidf ({grams} grams, LR C={self.params['C']:g})"


def _check_vocabularies(path: Path) -> dict[str, dict[str, int]]:
    """The saved vocabularies: for each vectorizer, n-grams numbered 0..n-1 once each.

    Both, or the character one alone (training texts with no words, only emoji or symbols)."""
    vocabularies = read_json(path)
    if not isinstance(vocabularies, dict) or set(vocabularies) not in ({"word", "char"}, {"char"}):
        raise ModelDirError(f"{path}: must hold the word and char vocabularies (or char alone)")
    for kind, vocab in vocabularies.items():
        ok = isinstance(vocab, dict) and all(
            isinstance(i, int) and not isinstance(i, bool) for i in vocab.values()
        )
        if not ok or not vocab or sorted(vocab.values()) != list(range(len(vocab))):
            raise ModelDirError(f"{path}: the {kind} vocabulary does not number its n-grams 0..n-1")
    return vocabularies
