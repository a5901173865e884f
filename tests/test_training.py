"""TrainConfig validation and the train() procedure (choice by nested CV, warnings, metrics)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import BACKBONE
from fewlabel.config import AUTO_CANDIDATES, TrainConfig
from fewlabel.data.labelled import LabelledTexts
from fewlabel.errors import FewlabelError
from fewlabel.strategies.base import HoldoutRun, HoldoutStrategy
from fewlabel.training import train


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"folds": 1}, "folds must be between 2 and 20"),
        ({"folds": 21}, "folds must be between 2 and 20"),
        ({"inner_folds": 11}, "inner_folds must be between 2 and 10"),
        ({"strategy": "embedd"}, "Did you mean 'embed'?"),
        ({"candidates": []}, "at least one strategy"),
        ({"candidates": ["tfidf", "nope"]}, "unknown strategy 'nope'"),
        ({"strategy_params": {"tfidff": {"C": 1.0}}}, "unknown strategy 'tfidff'"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(FewlabelError, match=message):
        TrainConfig(model=BACKBONE, **kwargs)


def test_config_round_trip_and_params():
    config = TrainConfig(model=BACKBONE, strategy_params={"tfidf": {"C": 3.0}})
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert config.strategies == list(AUTO_CANDIDATES)
    assert TrainConfig(strategy="tfidf", model=BACKBONE).strategies == ["tfidf"]
    assert config.params_for("tfidf") == {"C": 3.0}  # no backbone for tfidf
    assert config.params_for("embed") == {"backbone": BACKBONE}
    with pytest.raises(FewlabelError, match="unknown config key"):
        TrainConfig.from_dict({**config.to_dict(), "colour": "red"})


def test_best_backbone_choice(monkeypatch):
    from fewlabel.encoders import backbones

    monkeypatch.setattr(backbones, "is_installed", lambda name: False)
    monkeypatch.setattr(backbones, "_mpnet_part_files", lambda: None)
    name, why = backbones.best_available(["short text"])
    assert name == "minilm" and "not installed" in why

    monkeypatch.setattr(backbones, "is_installed", lambda name: name != "embeddinggemma")
    assert backbones.best_available(None)[0] == "mpnet"
    assert backbones.best_available(["A short review."] * 100)[0] == "mpnet"
    long_texts = ["word " * 400] * 2000  # far beyond the time budget for mpnet on a CPU
    assert backbones.estimated_encode_seconds("mpnet", long_texts) > backbones.BEST_BUDGET_SECONDS
    name, why = backbones.best_available(long_texts)
    assert name == "minilm" and "--model mpnet" in why


def test_best_takes_embeddinggemma_when_installed_and_it_fits_the_budget(monkeypatch):
    from fewlabel.encoders import backbones

    monkeypatch.setattr(backbones, "is_installed", lambda name: True)
    reviews = ["A fine kettle that boils fast and quietly, though the lid is stiff. " * 5] * 500
    seconds = backbones.estimated_encode_seconds("embeddinggemma", reviews)
    name, why = backbones.best_available(reviews, budget_seconds=2.5 * seconds)
    assert name == "embeddinggemma" and "most accurate" in why
    # Too slow for a short budget: mpnet, and the note says how to get embeddinggemma anyway.
    name, why = backbones.best_available(["A short review."] * 100 + reviews, budget_seconds=1.5 * seconds)
    assert name == "mpnet" and "--model embeddinggemma" in why
    assert backbones.best_available(None)[0] == "mpnet"  # no texts to price: the known-fast one


def test_best_is_resolved_at_training_and_recorded(monkeypatch, reviews):
    """``best`` is resolved from the texts when training starts, and the concrete name is recorded."""
    from fewlabel.encoders import backbones

    seen = []

    def fake_best(texts=None, languages=None, budget_seconds=None):
        seen.append(len(texts))
        return BACKBONE, "chosen by the test"

    monkeypatch.setattr(backbones, "best_available", fake_best)
    data = LabelledTexts.from_lists(*reviews)
    result = train(data, None, TrainConfig(strategy="tfidf", folds=3))
    assert seen == [len(data)]
    assert result.config.model == BACKBONE
    assert any("chosen by the test" in note for note in result.metrics(data).notes)


def test_single_strategy_estimate_is_its_cross_validation(reviews):
    data = LabelledTexts.from_lists(*reviews)
    seen = []
    result = train(data, None, TrainConfig(strategy="tfidf", model=BACKBONE, folds=3), on_result=seen.append)
    assert result.model_dir is None
    assert list(result.results) == ["tfidf"] and result.chosen == "tfidf"
    assert result.evaluation is result.results["tfidf"]
    assert [r.name for r in seen] == ["tfidf"]
    assert result.labels == ["negative", "positive"]
    assert result.metrics(data).estimate.source == "cross-validation"
    assert result.evaluation.scores.accuracy.value >= 0.75


def test_auto_uses_nested_cross_validation(reviews):
    data = LabelledTexts.from_lists(*reviews)
    seen = []
    config = TrainConfig(model=BACKBONE, folds=3, inner_folds=2, candidates=["tfidf", "embed"])
    result = train(data, None, config, on_result=seen.append)
    assert [r.name for r in seen] == ["tfidf", "embed", "auto"]
    assert result.evaluation.name == "auto"
    assert len(result.evaluation.choices) == 3 and set(result.evaluation.choices) <= {"tfidf", "embed"}
    assert result.chosen in {"tfidf", "embed"}
    assert result.strategy.name == result.chosen
    metrics = result.metrics(data)
    assert metrics.estimate.source == "nested cross-validation of the auto procedure"
    assert metrics.estimate.choices_per_fold == result.evaluation.choices
    assert set(metrics.strategies) == {"tfidf", "embed"}
    assert metrics.data.sha256 == data.fingerprint()
    assert sum(map(sum, metrics.estimate.confusion_matrix)) == len(data)
    assert result.evaluation.scores.accuracy.value >= 0.8


def test_training_is_deterministic_for_a_seed(reviews):
    data = LabelledTexts.from_lists(*reviews)
    a = train(data, None, TrainConfig(strategy="tfidf", model=BACKBONE, folds=3, seed=4))
    b = train(data, None, TrainConfig(strategy="tfidf", model=BACKBONE, folds=3, seed=4))
    assert np.array_equal(a.evaluation.oof_proba, b.evaluation.oof_proba)


def test_random_labels_are_warned_about(reviews):
    texts, labels = reviews
    shuffled = list(np.random.default_rng(0).permutation(labels))
    data = LabelledTexts.from_lists(texts, shuffled)
    result = train(data, None, TrainConfig(strategy="tfidf", model=BACKBONE, folds=4))
    # The chance warning comes last, and the label issues of a model at chance are not listed.
    assert result.warnings[-1] == result.chance_warning
    assert result.chance_warning.startswith("Not clearly better than chance: balanced accuracy")
    assert "Check that the labels match the texts" in result.chance_warning  # balanced: not imbalance
    assert result.diagnostics["n_label_issues"] == 0 and result.diagnostics["label_issues_withheld"]
    assert result.metrics(data).at_chance == result.chance_warning
    assert any("tfidf memorises its training folds" in w for w in result.warnings)
    assert any("uncertain" in w for w in result.warnings)
    with pytest.raises(FewlabelError, match="Not clearly better than chance.*Nothing was saved"):
        train(data, None, TrainConfig(strategy="tfidf", model=BACKBONE, folds=4, strict=True))


def test_data_warnings_are_passed_on(tmp_path, write_csv, reviews):
    from fewlabel.data.labelled import load_labelled

    texts, labels = reviews
    rows = [[t, lab] for t, lab in zip(texts, labels, strict=True)] + [[texts[0], labels[0]]]
    data = load_labelled(write_csv(tmp_path / "d.csv", ["text", "label"], rows))
    result = train(data, None, TrainConfig(strategy="tfidf", model=BACKBONE, folds=3))
    assert any("duplicate" in w for w in result.warnings)


# -- a slow strategy written only against the hold-out protocol -----------------------------------


class HeldOutTfidf(HoldoutStrategy):
    """TF-IDF fitted on four fifths of the rows and scored on the rest: a stand-in slow strategy."""

    name = "heldout-tfidf"
    defaults = {"backbone": None, "time_budget_s": None}
    seconds_needed = 1.0  # what estimated_seconds answers

    @classmethod
    def estimated_seconds(cls, texts, backbone):
        return cls.seconds_needed

    def _fit(self, texts, y):
        from fewlabel.strategies.tfidf import TfidfLogReg

        val = np.arange(len(texts))[::5]
        rest = np.setdiff1d(np.arange(len(texts)), val)
        self.inner_ = TfidfLogReg().fit([texts[i] for i in rest], y[rest], self.n_classes_)
        proba = self.inner_.predict_proba([texts[i] for i in val])
        self.run_ = HoldoutRun(
            val_index=val.tolist(),
            val_proba=proba,
            train_accuracy=1.0,
            val_accuracy=float((proba.argmax(1) == y[val]).mean()),
            seconds=0.5,
            notes=("stopped when told to.",),
            flags=("memorises on purpose",),
            record={"held_out": len(val)},
        )

    def holdout_run(self):
        self._check_fitted()
        return self.run_

    def _predict_proba(self, texts):
        return self.inner_.predict_proba(texts)

    def _save(self, directory):
        raise NotImplementedError

    def _load(self, directory):
        raise NotImplementedError


@pytest.fixture
def heldout_tfidf(monkeypatch):
    """HeldOutTfidf registered (a new slow strategy: one registry line, nothing in training)."""
    from fewlabel import training
    from fewlabel.strategies import REGISTRY

    monkeypatch.setitem(REGISTRY, HeldOutTfidf.name, f"{__name__}:HeldOutTfidf")
    monkeypatch.setattr(training, "MIN_ROWS_FOR_HOLDOUT", 40)
    return HeldOutTfidf


def test_a_new_slow_strategy_is_scored_on_its_held_out_rows(heldout_tfidf, reviews):
    texts, labels = reviews
    config = TrainConfig(strategy=heldout_tfidf.name, model=BACKBONE, folds=3)
    result = train(LabelledTexts.from_lists(texts, labels), None, config)
    assert result.chosen == "heldout-tfidf" and result.evaluation.protocol == "holdout"
    assert len(result.evaluation.y) == 10  # every fifth of 48 rows
    assert "heldout-tfidf: stopped when told to." in result.notes
    assert "heldout-tfidf: memorises on purpose" in result.warnings
    assert result.runs == {"heldout-tfidf": {"held_out": 10}}
    assert "No diagnostics: they need cross-validation, and only slow strategies ran." in result.notes


def test_auto_compares_a_new_slow_strategy_on_the_same_rows_or_leaves_it_out(
    heldout_tfidf, reviews, monkeypatch
):
    texts, labels = reviews
    data = LabelledTexts.from_lists(texts, labels)
    config = TrainConfig(model=BACKBONE, folds=3, candidates=["tfidf", heldout_tfidf.name], diagnostics=False)
    result = train(data, None, config)
    assert "heldout-tfidf" in result.results
    assert any(
        n.startswith("On the same 10 held-out rows, balanced accuracy: heldout-tfidf") for n in result.notes
    )
    monkeypatch.setattr(heldout_tfidf, "seconds_needed", 1e9)
    result = train(data, None, config)
    assert "heldout-tfidf" not in result.results and result.chosen == "tfidf"
    assert any(n.startswith("heldout-tfidf left out: about 16666667 min") for n in result.notes)


def test_few_labels_with_a_weak_frozen_backbone_advise_a_stronger_one(monkeypatch):
    from fewlabel import training
    from fewlabel.encoders import backbones

    monkeypatch.setattr(backbones, "is_installed", lambda name: name != "embeddinggemma")
    warning = training.few_labels_warning(64, TrainConfig(model="mpnet"))
    assert warning is not None
    assert warning.startswith("Only 64 labelled texts") and "tunes mpnet SetFit-style" in warning
    assert "fewlabel models install embeddinggemma --accept-license" in warning
    monkeypatch.setattr(backbones, "is_installed", lambda name: True)
    assert "--model embeddinggemma" in training.few_labels_warning(64, TrainConfig(model="minilm"))
    # Enough labels to fine-tune, a named strategy, or already the strongest backbone: no advice.
    assert training.few_labels_warning(training.MIN_ROWS_FOR_HOLDOUT, TrainConfig(model="mpnet")) is None
    assert training.few_labels_warning(64, TrainConfig(model="mpnet", strategy="embed")) is None
    assert training.few_labels_warning(64, TrainConfig(model="embeddinggemma")) is None
