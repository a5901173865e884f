"""Self-training: balanced, confident pseudo-labels from the unlabelled pool only."""

from __future__ import annotations

import numpy as np
import pytest

from fewlabel.semi_supervised import self_train
from fewlabel.strategies.tfidf import TfidfLogReg


def _split(reviews):
    texts, labels = reviews
    y = np.array([1 if lab == "positive" else 0 for lab in labels])
    return texts[:12], y[:12], texts[12:], y[12:]  # 6 + 6 labelled (the fixture alternates), 36 unlabelled


def test_pseudo_labels_are_balanced_capped_and_from_the_pool(reviews):
    texts, y, pool, pool_y = _split(reviews)
    result = self_train(TfidfLogReg, texts, y, pool, 2, threshold=0.5, rounds=3)
    assert result.added_per_round and all(n % 2 == 0 and n <= 12 for n in result.added_per_round)
    assert len(set(result.pseudo_index.tolist())) == len(result.pseudo_index) == sum(result.added_per_round)
    assert (
        np.bincount(result.pseudo_labels, minlength=2)[0] == np.bincount(result.pseudo_labels, minlength=2)[1]
    )
    assert (result.pseudo_labels == pool_y[result.pseudo_index]).mean() >= 0.75
    assert result.strategy.predict_proba(pool).shape == (len(pool), 2)


def test_nothing_confident_enough_adds_nothing(reviews):
    texts, y, pool, _ = _split(reviews)
    result = self_train(TfidfLogReg, texts, y, pool, 2, threshold=0.999)
    assert result.added_per_round == [0] and len(result.pseudo_index) == 0


def test_rejects_bad_settings(reviews):
    texts, y, pool, _ = _split(reviews)
    with pytest.raises(Exception, match="threshold"):
        self_train(TfidfLogReg, texts, y, pool, threshold=0.3)
    with pytest.raises(Exception, match="rounds"):
        self_train(TfidfLogReg, texts, y, pool, rounds=0)
