"""Multi-label training: cross-fitted per-label thresholds, scores with intervals, the saved model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import BACKBONE
from fewlabel.config import TrainConfig
from fewlabel.data.labelled import load_labelled
from fewlabel.data.multilabel import MultiLabelledTexts
from fewlabel.errors import FewlabelError, ModelDirError
from fewlabel.evaluation.multilabel import (
    best_thresholds,
    crossfit_predictions,
    majority_predictions,
    multilabel_scores,
    shuffled_folds,
)
from fewlabel.model_dir.manifest import read_manifest
from fewlabel.model_dir.store import read_model, read_multilabel_metrics
from fewlabel.multilabel import train_multilabel


def test_best_threshold_maximises_each_labels_f1():
    proba = np.array([[0.9, 0.35], [0.8, 0.3], [0.3, 0.1], [0.2, 0.05]])
    Y = np.array([[1, 1], [1, 1], [0, 0], [0, 0]])
    assert best_thresholds(proba, Y).tolist() == [0.5, 0.3]  # F1 = 1 from 0.12 to 0.3: nearest 0.5


def test_crossfit_answers_each_fold_with_the_other_folds_thresholds():
    rng = np.random.default_rng(0)
    proba, Y = rng.random((30, 2)), (rng.random((30, 2)) < 0.4).astype(int)
    folds = shuffled_folds(30, 3, seed=1)
    pred = crossfit_predictions(proba, Y, folds)
    train, val = folds[0]
    expected = proba[val] >= best_thresholds(proba[train], Y[train])
    assert (pred[val] == expected).all()


def test_scores_and_intervals():
    Y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]] * 10)
    perfect = multilabel_scores(Y, Y)
    assert (
        perfect.micro_f1.value == perfect.subset_accuracy.value == 1.0 and perfect.hamming_loss.value == 0.0
    )
    none = multilabel_scores(Y, majority_predictions(Y))
    assert none.micro_f1.value == 0.0 and none.hamming_loss.value == 0.5
    one_wrong = Y.copy()
    one_wrong[:10, 1] = 1 - one_wrong[:10, 1]  # 10 of 80 pairs wrong
    s = multilabel_scores(Y, one_wrong, seed=3)
    assert s.hamming_loss.value == pytest.approx(10 / 80) and s.subset_accuracy.value == 0.75
    assert s.micro_f1.low <= s.micro_f1.value <= s.micro_f1.high
    assert s.micro_f1.high - s.micro_f1.low > 0.02
    assert multilabel_scores(Y, one_wrong, seed=3) == s  # a fixed seed: the same intervals


@pytest.fixture(scope="module")
def multi_model(tmp_path_factory):
    from conftest import multi_label_rows

    path = tmp_path_factory.mktemp("ml") / "multi.csv"
    path.write_text("text,labels\n" + "".join(f'"{t}",{lab}\n' for t, lab in multi_label_rows()))
    data = load_labelled(path, multi_label=True, min_per_class=4)
    out = tmp_path_factory.mktemp("ml") / "model"
    config = TrainConfig(model=BACKBONE, folds=4, candidates=["tfidf", "embed", "ensemble", "finetune"])
    return train_multilabel(data, out, config), out


def test_auto_chooses_by_micro_f1_and_says_so(multi_model):
    result, _ = multi_model
    assert set(result.results) == {"tfidf", "embed", "ensemble"}
    best = max(r.scores.micro_f1.value for r in result.results.values())
    assert result.estimate.micro_f1.value == best > 0.8
    assert any("slightly optimistic" in n for n in result.notes)
    assert any("Left out of auto (single-label only): finetune" in n for n in result.notes)
    assert result.baseline.micro_f1.value == 0.0 and result.not_better is None


def test_saved_model_predicts_label_sets(multi_model):
    result, out = multi_model
    manifest = read_manifest(out)
    assert manifest["task"] == "multi-label" and manifest["label_separator"] == "|"
    assert set(manifest["thresholds"]) == {"food", "sports", "tech"}
    model = read_model(out)
    sets, proba = model.predict_label_sets(["the pasta and the goal", "the laptop screen", "a quiet day"])
    assert proba.shape == (3, 3)
    assert sets[0] == ["food", "sports"] and sets[1] == ["tech"]
    with pytest.raises(FewlabelError, match="predict_label_sets"):
        model.predict(["x"])
    metrics = read_multilabel_metrics(out)
    assert metrics.chosen_strategy == result.chosen and set(metrics.per_label) == {"food", "sports", "tech"}
    assert metrics.per_label["food"].support == 20 and metrics.labels_per_text == 1.5
    assert (
        "multi-label" in (out / "README.md").read_text() and "micro-F1" in (out / "report.html").read_text()
    )


@pytest.mark.parametrize(
    "change, message",
    [
        ({"thresholds": {"food": 0.5}}, "one threshold per label"),
        ({"thresholds": {"food": 0.5, "sports": 1.5, "tech": 0.5}}, "between 0 and 1"),
        ({"task": "multi"}, "'single-label' or 'multi-label'"),
        ({"task": "single-label"}, "multi-label models only"),
    ],
)
def test_damaged_multi_label_manifest_is_refused(multi_model, tmp_path, change, message):
    import shutil

    _, out = multi_model
    copy = tmp_path / "m"
    shutil.copytree(out, copy)
    path = copy / "fewlabel.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    with pytest.raises(ModelDirError, match=message):
        read_manifest(copy)


def test_unsupported_settings_are_refused():
    data = MultiLabelledTexts(["a", "b"], [["x"], ["y"]], [2, 3])
    with pytest.raises(FewlabelError, match="single-label only; multi-label training works with tfidf"):
        train_multilabel(data, config=TrainConfig(strategy="finetune"))
    with pytest.raises(FewlabelError, match="augmentation is single-label only"):
        train_multilabel(data, config=TrainConfig(strategy="tfidf", augment="eda"))


def test_a_model_no_better_than_the_baseline_is_flagged():
    rng = np.random.default_rng(0)
    words = ["red", "green", "blue", "round", "square", "small", "large", "old", "new", "soft"]
    texts = [" ".join(rng.choice(words, 4)) + f" item {i}" for i in range(60)]
    sets = [[lab for lab in ("a", "b") if rng.random() < 0.2] for _ in texts]
    data = MultiLabelledTexts(texts, sets, list(range(2, 62)))
    result = train_multilabel(data, config=TrainConfig(strategy="tfidf", folds=3, model=BACKBONE))
    assert result.not_better is not None and "Not clearly better" in result.not_better
    assert "every label on every text" in result.not_better
    assert result.warnings[-1] == result.not_better
    with pytest.raises(FewlabelError, match="strict mode"):
        train_multilabel(data, config=TrainConfig(strategy="tfidf", folds=3, model=BACKBONE, strict=True))


def test_thresholds_stay_at_one_half_when_tuning_is_off():
    from conftest import multi_label_rows

    rows = multi_label_rows()
    data = MultiLabelledTexts(
        [t for t, _ in rows], [sorted(filter(None, s.split("|"))) for _, s in rows], list(range(40))
    )
    result = train_multilabel(data, config=TrainConfig(strategy="tfidf", folds=4, tune_threshold=False))
    assert set(result.thresholds.values()) == {0.5}
    best = result.results["tfidf"]
    assert (best.pred == (best.oof_proba >= 0.5)).all()
    assert any("in the estimate too" in n for n in result.notes)


def test_an_english_backbone_on_french_texts_is_warned_about_first():
    from test_language import FRENCH

    texts = [f"{t} (numéro {i})" for i in range(3) for t in FRENCH]
    sets = [["livre"] if "livre" in t or "histoire" in t else ["service"] for t in texts]
    data = MultiLabelledTexts(
        texts, [s + (["envoi"] if i % 2 else []) for i, s in enumerate(sets)], list(range(12))
    )
    result = train_multilabel(data, config=TrainConfig(strategy="embed", folds=2, model=BACKBONE))
    assert "not in English" in result.warnings[0] and "minilm" in result.warnings[0]
    tfidf = train_multilabel(data, config=TrainConfig(strategy="tfidf", folds=2, model=BACKBONE))
    assert not any("not in English" in w for w in tfidf.warnings)
