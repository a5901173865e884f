"""Below 200 rows ``auto`` cross-validates setfit: no hold-out split to stop on, the same folds as the
fast strategies, a paired choice, and a final fit on every row."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import BACKBONE, encode_labels
from fewlabel import training
from fewlabel.config import TrainConfig
from fewlabel.data.labelled import LabelledTexts
from fewlabel.errors import FewlabelError
from fewlabel.inference.loading import load_model
from fewlabel.strategies import make_strategy
from fewlabel.strategies.finetune import ContrastiveEncoder
from fewlabel.training import train

pytestmark = pytest.mark.small_data_setfit
QUICK = {"setfit": {"epochs": 2, "max_tokens": 32, "min_steps": 0}}  # seconds a fit on 48 short texts


def test_without_a_validation_split_every_row_trains_to_the_epoch_cap(reviews):
    texts, labels = reviews
    y, _ = encode_labels(labels)
    strategy = make_strategy(
        "setfit", backbone=BACKBONE, val_fraction=0.0, epochs=1, min_steps=9, max_tokens=32
    )
    strategy.fit(texts, y, 2)
    report = strategy.report_
    assert report.n_train == len(texts) and report.n_val == 0 and report.val_index == []
    # 48 rows are 3 batches of 16: one epoch is 3 steps, so 9 steps at least take 3 epochs.
    assert report.stopped == "epoch cap (3)" and report.history == []  # nothing to evaluate on
    assert strategy.predict_proba(texts).shape == (len(texts), 2)
    with pytest.raises(FewlabelError, match="no held-out rows to score it on; cross-validate it instead"):
        strategy.holdout_run()


def test_auto_cross_validates_setfit_on_the_same_folds_and_keeps_the_better(reviews, tmp_path):
    texts, labels = reviews
    data = LabelledTexts.from_lists(texts, labels)
    config = TrainConfig(model=BACKBONE, folds=3, candidates=["tfidf", "setfit"], strategy_params=QUICK)
    result = train(data, tmp_path / "model", config)
    setfit = result.results["setfit"]
    assert setfit.protocol == "cv" and len(setfit.y) == len(texts)  # out of fold, every row
    assert np.array_equal(setfit.y, result.results["tfidf"].y)  # the same rows, in the same order
    compared = [n for n in result.notes if n.startswith(f"Out of fold on the same {len(texts)} rows")]
    assert len(compared) == 1 and f"({result.chosen} kept)" in compared[0]
    better = max(["tfidf", "setfit"], key=lambda n: result.results[n].final.balanced_accuracy.value)
    assert result.chosen == better
    # Diagnostics refit on every fold: they come from the fast strategy, whichever was chosen.
    assert set(result.diagnostics["learning_curve"]) == {"tfidf"}
    saved = load_model(tmp_path / "model")
    predicted, _ = saved.predict(texts[:4])
    assert len(predicted) == 4


def test_setfit_is_left_out_when_its_folds_do_not_fit_the_budget(reviews, monkeypatch):
    texts, labels = reviews
    monkeypatch.setattr(ContrastiveEncoder, "estimated_seconds", classmethod(lambda cls, t, b: 600.0))
    config = TrainConfig(model=BACKBONE, folds=3, candidates=["tfidf", "setfit"], diagnostics=False)
    result = train(LabelledTexts.from_lists(texts, labels), None, config)
    assert "setfit" not in result.results and result.chosen == "tfidf"
    assert any(n.startswith("setfit left out: about 40 min with minilm") for n in result.notes)  # 4 fits


def test_from_200_rows_auto_leaves_setfit_to_finetune(reviews, monkeypatch):
    texts, labels = reviews
    monkeypatch.setattr(training, "MIN_ROWS_FOR_HOLDOUT", 40)
    config = TrainConfig(model=BACKBONE, folds=3, candidates=["tfidf", "setfit"], diagnostics=False)
    result = train(LabelledTexts.from_lists(texts, labels), None, config)
    assert "setfit" not in result.results
    assert any(
        n.startswith("setfit left out: from 40 texts auto fine-tunes with finetune") for n in result.notes
    )
