"""Imbalanced classes: said before training, balanced weights and choice, a tuned threshold, honest figures."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import BACKBONE, NEGATIVE, NEW_NEGATIVE, NEW_POSITIVE, POSITIVE
from fewlabel.cli.main import app
from fewlabel.config import TrainConfig
from fewlabel.data.labelled import LabelledTexts, is_imbalanced
from fewlabel.evaluation.threshold import balanced_accuracy, best_threshold, crossfit_decisions, decide
from fewlabel.inference.loading import load_model
from fewlabel.strategies import make_strategy
from fewlabel.training import train

# 24 positive reviews (each twice, lightly varied) and 6 negative: 48 / 6, the rare class at 11%.
RARE = NEGATIVE[:6]
COMMON = POSITIVE + [f"{p} Truly." for p in POSITIVE]


@pytest.fixture(scope="module")
def imbalanced() -> LabelledTexts:
    texts = COMMON + RARE
    labels = ["positive"] * len(COMMON) + ["negative"] * len(RARE)
    order = np.random.default_rng(0).permutation(len(texts))
    return LabelledTexts.from_lists([texts[i] for i in order], [labels[i] for i in order])


@pytest.fixture(scope="module")
def result(imbalanced):
    return train(imbalanced, None, TrainConfig(strategy="tfidf", model=BACKBONE, folds=3, diagnostics=False))


def test_imbalance_is_defined_by_half_a_fair_share():
    assert not is_imbalanced([50, 50]) and not is_imbalanced([30, 20])  # 40% of 2 classes: fine
    assert is_imbalanced([76, 24])  # 24% < 25%
    assert is_imbalanced([10, 10, 3])  # 13% < half of a third
    assert not is_imbalanced([10, 0])  # one class present: nothing to balance


def test_imbalance_message_names_counts_and_the_class_to_label(imbalanced):
    message = imbalanced.imbalance()
    assert message.startswith("Imbalanced classes (negative: 6 (11.1%), positive: 48 (88.9%)")
    assert "balanced accuracy" in message and "'negative'" in message
    assert LabelledTexts.from_lists(["a b", "c d", "e f", "g h"], ["x", "y", "x", "y"]).imbalance() is None


def test_strategies_weigh_classes_equally_by_default():
    for name in ("tfidf", "embed", "ensemble"):
        assert make_strategy(name).params["class_weight"] == "balanced"


def test_threshold_search_finds_the_rare_class():
    # The rare class (1) never passes 0.5, but its probabilities sit above the common class's.
    p1 = np.array([0.05, 0.1, 0.12, 0.08, 0.3, 0.35, 0.28, 0.11, 0.09, 0.07])
    y = np.array([0, 0, 0, 0, 1, 1, 1, 0, 0, 0])
    t = best_threshold(p1, y)
    assert 0.12 < t <= 0.28  # the grid point nearest 0.5 among those that separate the classes
    assert balanced_accuracy(y, (p1 >= t).astype(int), 2) == 1.0
    assert balanced_accuracy(y, decide(np.stack([1 - p1, p1], 1), None), 2) == 0.5  # argmax: all common
    # Cross-fitted: each part is answered with a threshold chosen on the others.
    pred = crossfit_decisions(p1, y, [np.arange(0, 5), np.arange(5, 10)])
    assert pred.shape == y.shape and set(pred) <= {0, 1}


def test_train_on_imbalanced_data_tunes_the_threshold_and_reports_balanced_accuracy(result, imbalanced):
    assert result.imbalanced
    assert result.warnings[0] == imbalanced.imbalance()  # first, as the CLI says before training
    assert result.threshold is not None
    assert result.expected.metric == "balanced_accuracy"
    assert result.expected.ci95_low < result.expected.value <= result.expected.ci95_high
    assert any(
        n.startswith("Decision threshold: 'positive' when its probability is at least") for n in result.notes
    )
    metrics = result.metrics(imbalanced)
    assert metrics.imbalanced and metrics.decision_threshold == result.threshold
    assert set(metrics.estimate.per_class) == {"negative", "positive"}
    # The in-memory model applies the threshold, and finds the rare class on new texts.
    labels, _ = result.model.predict(NEW_NEGATIVE + NEW_POSITIVE)
    assert labels[: len(NEW_NEGATIVE)] == ["negative"] * len(NEW_NEGATIVE)


def test_the_threshold_is_saved_and_applied_after_loading(result, imbalanced, tmp_path):
    from fewlabel.training import save

    save(result, imbalanced, tmp_path / "m")
    model = load_model(tmp_path / "m")
    assert model.threshold == pytest.approx(result.threshold)
    assert model.manifest.decision.model_dump() == {"threshold": result.threshold, "label": "positive"}
    texts = NEW_NEGATIVE + NEW_POSITIVE + RARE
    proba = model.predict_proba(texts)
    labels, confidence = model.predict(texts)
    expected = np.where(proba[:, 1] >= result.threshold, "positive", "negative")
    assert labels == expected.tolist()
    assert np.allclose(confidence, proba[np.arange(len(texts)), [model.labels.index(x) for x in labels]])


def test_threshold_tuning_can_be_turned_off_or_on(imbalanced, reviews):
    off = train(
        imbalanced,
        None,
        TrainConfig(strategy="tfidf", model=BACKBONE, folds=3, diagnostics=False, tune_threshold=False),
    )
    assert off.threshold is None and "decision" not in off.model.manifest
    balanced = LabelledTexts.from_lists(*reviews)
    plain = train(balanced, None, TrainConfig(strategy="tfidf", model=BACKBONE, folds=3, diagnostics=False))
    assert plain.threshold is None and not plain.imbalanced  # balanced data: off by default
    assert plain.expected.metric == "accuracy"
    forced = train(
        balanced,
        None,
        TrainConfig(strategy="tfidf", model=BACKBONE, folds=3, diagnostics=False, tune_threshold=True),
    )
    # Tried, and kept only where cross-fitting shows it helps: on this separable balanced set it does not.
    tried = [n for n in forced.notes if n.startswith("Decision threshold")]
    assert len(tried) == 1
    assert (forced.threshold is None) == tried[0].startswith(
        "Decision threshold left at the most probable class"
    )


def test_cli_says_imbalance_before_training_and_reports_recall(tmp_path, write_csv, imbalanced):
    data = write_csv(
        tmp_path / "reviews.csv",
        ["text", "label"],
        [[t, lab] for t, lab in zip(imbalanced.texts, imbalanced.labels, strict=True)],
    )
    out = tmp_path / "model"
    args = ["train", str(data), "-o", str(out), "--model", BACKBONE, "--strategy", "tfidf", "--folds", "3"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200", "FEWLABEL_PROGRESS": "0"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Warning: Imbalanced classes (negative: 6")
    assert sum("Imbalanced classes" in line for line in lines) == 1  # said once, before training
    assert any(line.startswith("Recall per class (share of each class found): negative") for line in lines)
    assert "Expected balanced accuracy (the mean recall per class)" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["imbalanced"] is True and metrics["decision_threshold"] is not None
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "Decision threshold" in report and "Recall per class" in report


def test_a_model_at_chance_is_the_last_line_and_strict_fails(tmp_path, write_csv, reviews):
    texts, labels = reviews
    shuffled = list(np.random.default_rng(0).permutation(labels))
    data = write_csv(
        tmp_path / "random.csv", ["text", "label"], [[t, lab] for t, lab in zip(texts, shuffled, strict=True)]
    )
    env = {"COLUMNS": "200", "FEWLABEL_PROGRESS": "0"}
    base = ["train", str(data), "--model", BACKBONE, "--strategy", "tfidf", "--folds", "4"]
    saved = CliRunner().invoke(app, [*base, "-o", str(tmp_path / "m")], env=env)
    assert saved.exit_code == 0, saved.output
    assert saved.stdout.strip().splitlines()[-1].startswith("Warning: Not clearly better than chance")
    report = (tmp_path / "m" / "report.html").read_text(encoding="utf-8")
    assert report.index("Not clearly better than chance") < report.index("Verdict")  # heads the page
    strict = CliRunner().invoke(app, [*base, "-o", str(tmp_path / "s"), "--strict"], env=env)
    assert strict.exit_code == 2 and "Nothing was saved" in strict.stderr
    assert not (tmp_path / "s").exists()
