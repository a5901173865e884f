"""Fine-tuning: long-text windows, batching, the failure detector, the recipe, and train() with it."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import BACKBONE, encode_labels
from fewlabel.errors import FewlabelError
from fewlabel.finetuning import PRESETS, Recipe, failure_flags, length_batches, windows

FAST = {"epochs": 3, "max_tokens": 48, "freeze_layers": 3}  # the frozen-layer cache path


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from fewlabel.encoders.backbones import resolve

    return AutoTokenizer.from_pretrained(resolve(BACKBONE).location)


def test_head_tail_keeps_the_start_and_the_verdict(tokenizer):
    text = "start " + "filler " * 300 + "verdict: terrible"
    win = windows(tokenizer, [text, "short one"], max_tokens=32, mode="head_tail", head_fraction=0.25)
    assert win.truncated == 1 and win.owner.tolist() == [0, 1]
    decoded = tokenizer.decode(win.ids[0])
    assert len(win.ids[0]) == 32
    assert "start" in decoded and decoded.rstrip().endswith("verdict : terrible [SEP]")
    head_only = windows(tokenizer, [text], max_tokens=32, mode="head", head_fraction=0.25)
    assert "terrible" not in tokenizer.decode(head_only.ids[0])


def test_chunks_cover_every_token(tokenizer):
    text = " ".join(f"word{i}" for i in range(100))
    bare = tokenizer(text, add_special_tokens=False)["input_ids"]
    win = windows(tokenizer, [text, "tiny"], max_tokens=20, mode="chunks", head_fraction=0.25)
    assert win.truncated == 1
    first = [w[1:-1] for w, o in zip(win.ids, win.owner, strict=True) if o == 0]
    assert sum(first, []) == bare  # every token once, in order, special tokens around each window
    assert all(len(w) <= 20 for w in win.ids)
    assert win.owner.tolist().count(1) == 1


def test_length_batches_cover_each_index_once_with_similar_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 300, size=103).tolist()
    batches = length_batches(lengths, 16, np.random.default_rng(1))
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(103))
    # Sorted within pools: the padding inside a batch is far below that of random batches.
    padding = sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)
    shuffled = np.array_split(rng.permutation(103), len(batches))
    random_padding = sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in shuffled)
    assert padding < random_padding / 3


def test_failure_flags_explain_memorising_and_collapse():
    balanced = [50, 50]
    flags = failure_flags(train_acc=0.998, val_acc=0.523, val_balanced=0.523, val_counts=balanced)
    assert len(flags) == 2
    collapsed, memorising = flags
    assert collapsed.startswith("collapsed: validation balanced accuracy 52.3% is not clearly above chance")
    assert "learning rate" in collapsed  # balanced classes: the usual causes
    assert "memorising: train 99.8%, validation 52.3%" in memorising
    assert "normal" in memorising  # says what the gap does not mean
    assert failure_flags(0.95, 0.90, 0.90, balanced) == []
    assert len(failure_flags(1.0, 0.88, 0.88, balanced)) == 1  # a 12-point gap alone: flagged, not collapsed
    # 60% is clearly above chance on 1000 rows, not on 20.
    assert failure_flags(0.6, 0.6, 0.6, [500, 500]) == []
    assert failure_flags(0.6, 0.6, 0.6, [10, 10])[0].startswith("collapsed")


def test_collapse_on_imbalanced_data_names_the_imbalance():
    """Answering the common class: 95% accuracy, 50% balanced accuracy; the flag blames the imbalance."""
    flags = failure_flags(train_acc=0.95, val_acc=0.95, val_balanced=0.5, val_counts=[4, 76])
    assert flags[0].startswith("collapsed:")
    assert "imbalanced" in flags[0] and "4 of the 80 validation rows" in flags[0]
    assert "learning rate" not in flags[0]
    # Good on both classes despite the imbalance: not collapsed.
    assert failure_flags(0.97, 0.96, 0.9, [4, 76]) == []


def test_naive_preset_is_the_original_setup():
    naive = Recipe(**PRESETS["naive"])
    assert naive.lr == 5e-5 and naive.warmup == 0.0 and naive.epochs == 2
    assert not naive.early_stopping and not naive.restore_best and naive.freeze_layers == 0
    robust = Recipe()
    assert robust.early_stopping and robust.restore_best and robust.warmup > 0


def test_recipe_scales_to_the_backbone_unless_told():
    small, base = Recipe().scaled(384), Recipe().scaled(768)
    assert (small.lr, small.epochs, small.patience) == (8e-5, 10, 6)
    assert (base.lr, base.epochs, base.patience) == (3e-5, 6, 3)
    chosen = Recipe(lr=1e-5, epochs=2, patience=1).scaled(384)
    assert (chosen.lr, chosen.epochs, chosen.patience) == (1e-5, 2, 1)
    assert Recipe(**PRESETS["naive"]).scaled(384).epochs == 2


def test_device_names_are_checked():
    import torch

    from fewlabel.encoders.device import resolve_device

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(FewlabelError, match="not a torch device"):
        resolve_device("abacus")
    if not torch.cuda.is_available():
        with pytest.raises(FewlabelError, match="no CUDA GPU"):
            resolve_device("cuda")


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"long_texts": "middle"}, "long_texts"),
        ({"val_fraction": 0.7}, "val_fraction"),
        ({"max_tokens": 4}, "max_tokens"),
    ],
)
def test_recipe_rejects_bad_settings(bad, message):
    with pytest.raises(FewlabelError, match=message):
        Recipe(**bad)


@pytest.fixture(scope="module")
def run(reviews):
    from fewlabel.strategies import make_strategy

    texts, labels = reviews
    strategy = make_strategy("finetune", backbone=BACKBONE, **FAST).fit(texts, encode_labels(labels)[0])
    return strategy, strategy.report_


def test_run_report_records_curves_and_restores_the_best_checkpoint(run):
    _, report = run
    assert report.history and {"epoch", "train_loss", "val_loss", "val_accuracy", "lr"} <= set(
        report.history[0]
    )
    best = max(h["val_accuracy"] for h in report.history)
    assert report.val_accuracy == pytest.approx(best)
    assert report.n_train + report.n_val == 48 and len(report.val_index) == report.n_val
    assert report.frozen_layers == 3 and report.trained_layers == 3  # minilm: 6 layers
    assert np.allclose(np.asarray(report.val_proba).sum(axis=1), 1.0)


def test_saved_run_keeps_the_curves(run, tmp_path):
    import json

    strategy, report = run
    strategy.save(tmp_path / "s")
    saved = json.loads((tmp_path / "s" / "training_run.json").read_text())
    assert saved["history"] == report.history
    assert (tmp_path / "s" / "weights.safetensors").stat().st_size < 30e6  # only the trained layers


def test_refit_trains_on_every_row_to_the_held_out_stopping_point(run, reviews):
    from fewlabel.strategies import make_strategy

    texts, labels = reviews
    held_out, report = run
    refitted = make_strategy("finetune", backbone=BACKBONE, refit=True, **FAST).fit(
        texts, encode_labels(labels)[0]
    )
    again = refitted.report_
    assert again.refit.startswith("refitted on all 48 rows")
    assert again.refit_rows == 48 and again.refit_steps == max(1, round(again.best_epoch * 3))  # 48 / 16
    # The estimate is the hold-out run's, the same as without the refit; the model is a new one.
    assert again.val_proba == report.val_proba and again.best_epoch == report.best_epoch
    assert not np.allclose(refitted.predict_proba(texts), held_out.predict_proba(texts))


def test_refit_that_cannot_finish_in_the_budget_keeps_the_held_out_model(run, reviews):
    import time

    texts, labels = reviews
    strategy, report = run
    tuner = strategy.tuner_
    before = tuner.net
    out = tuner.refit(texts, encode_labels(labels)[0], report, deadline=time.perf_counter())
    assert out.refit.startswith("not done: about") and tuner.net is before
    report.refit = ""  # the module-scoped run is shared


def test_refit_at_chance_is_discarded(reviews):
    from fewlabel.strategies import make_strategy

    texts, labels = reviews
    strategy = make_strategy("finetune", backbone=BACKBONE, epochs=1, max_tokens=32, lr=5.0, refit=True)
    strategy.fit(texts, encode_labels(labels)[0])
    assert strategy.report_.refit.startswith("discarded: the refit on all 48 rows ended at chance")


def test_time_budget_stops_early_and_keeps_a_checkpoint(reviews):
    from fewlabel.strategies import make_strategy

    texts, labels = reviews
    strategy = make_strategy("finetune", backbone=BACKBONE, epochs=50, max_tokens=48, time_budget_s=0.01)
    strategy.fit(texts, encode_labels(labels)[0])
    assert strategy.report_.stopped.startswith("time budget")
    assert len(strategy.report_.history) <= 1
    assert strategy.predict_proba(texts[:2]).shape == (2, 2)


def test_collapsed_run_is_restarted(reviews):
    from fewlabel.strategies import make_strategy

    texts, labels = reviews
    # A learning rate absurd enough to destroy any run: both tries collapse, the restart is reported.
    strategy = make_strategy("finetune", backbone=BACKBONE, epochs=1, max_tokens=32, lr=5.0)
    strategy.fit(texts, encode_labels(labels)[0])
    report = strategy.report_
    assert report.restarts and "restarted with seed 1" in report.restarts[0]
    assert any(flag.startswith("collapsed") for flag in report.flags)


def test_train_scores_finetune_on_its_held_out_rows(reviews, tmp_path):
    from fewlabel.config import TrainConfig
    from fewlabel.data.labelled import LabelledTexts
    from fewlabel.inference.loading import load_model
    from fewlabel.training import train

    texts, labels = reviews
    data = LabelledTexts.from_lists(texts, labels)
    config = TrainConfig(strategy="finetune", model=BACKBONE, strategy_params={"finetune": FAST})
    result = train(data, tmp_path / "m", config)
    assert result.chosen == "finetune" and result.evaluation.protocol == "holdout"
    assert len(result.evaluation.y) == result.strategy.report_.n_val
    assert result.expected.value == pytest.approx(result.strategy.report_.val_accuracy)
    assert "held-out" in result.expected.method
    model = load_model(tmp_path / "m")
    assert model.predict(["Broke after a week.", "Lovely, works great."])[0] == ["negative", "positive"]
    report = (tmp_path / "m" / "report.html").read_text()
    assert "How finetune trained" in report and "(held out)" in report
    run_section = report[report.index("How finetune trained") :]
    assert "<svg" in run_section[:20000]  # the per-evaluation curves


def test_saved_metrics_record_the_resolved_recipe(reviews, tmp_path):
    """metrics.json says how the fine-tuned run was set up, with what the backbone decided filled in."""
    import json
    from dataclasses import fields

    from fewlabel.config import TrainConfig
    from fewlabel.data.labelled import LabelledTexts
    from fewlabel.training import train

    texts, labels = reviews
    config = TrainConfig(strategy="finetune", model=BACKBONE, strategy_params={"finetune": FAST})
    train(LabelledTexts.from_lists(texts, labels), tmp_path / "m", config)
    run = json.loads((tmp_path / "m" / "metrics.json").read_text())["runs"]["finetune"]
    recipe = run["recipe"]
    assert set(recipe) == {f.name for f in fields(Recipe)}
    assert (recipe["lr"], recipe["epochs"], recipe["patience"]) == (8e-5, 3, 6)  # minilm: small
    assert recipe["freeze_layers"] == 3 and recipe["max_tokens"] == 48 and recipe["batch_size"] == 16
    assert (recipe["warmup"], recipe["weight_decay"]) == (0.1, 0.01)
    assert recipe["precision"] in ("bf16", "fp32") and recipe["device"] in ("cpu", "cuda:0")
    assert recipe["time_budget_s"] > 0  # what was left of the budget
    assert Recipe(**recipe).scaled(384) == Recipe(**recipe)  # nothing left to the backbone
    assert "val_proba" not in run and run["n_val"] == 10  # the rest of the record as before


def test_auto_leaves_finetune_out_of_small_data_and_says_why(reviews):
    from fewlabel.config import TrainConfig
    from fewlabel.data.labelled import LabelledTexts
    from fewlabel.training import train

    texts, labels = reviews
    result = train(
        LabelledTexts.from_lists(texts, labels), None, TrainConfig(model=BACKBONE, folds=3, diagnostics=False)
    )
    assert "finetune" not in result.results
    assert any(note.startswith("finetune left out: with 48 texts") for note in result.notes)


def test_frozen_bottom_then_top_equals_the_whole_encoder(tokenizer):
    """The split that lets epochs reuse the frozen layers' outputs computes exactly the same thing."""
    import torch

    from fewlabel.encoders.backbones import resolve
    from fewlabel.finetuning import EncoderClassifier, _pad

    location = resolve(BACKBONE).location
    split = EncoderClassifier(location, 2, freeze_layers=4, dropout=0.1)
    assert split.freeze == 4
    assert EncoderClassifier(location, 2, freeze_layers=None, dropout=0.1).freeze == 0  # 6 layers: train all
    split.model.eval()
    win = windows(
        split.tokenizer,
        ["short", "a somewhat longer review that needs padding in the batch"],
        64,
        "head",
        0.25,
    )
    ids, mask = _pad(win.ids, split.tokenizer.pad_token_id)
    with torch.inference_mode():
        whole = split.forward_tokens(ids, mask)
        parts = split.top(split.bottom(ids, mask), mask)
    real = mask.bool()
    assert torch.allclose(whole[real], parts[real], atol=1e-4)
    trainable = {name for name, p in split.model.named_parameters() if p.requires_grad}
    assert trainable and all(".layer.4." in n or ".layer.5." in n for n in trainable)
