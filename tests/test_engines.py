"""Training chooses the engine a model predicts with; ``load_model(engine="auto")`` runs it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from rich.console import Console

from conftest import BACKBONE, REVIEWS
from fewlabel.cli.tables import print_engine
from fewlabel.config import TrainConfig
from fewlabel.data.labelled import LabelledTexts, load_labelled
from fewlabel.errors import ModelDirError
from fewlabel.inference.loading import load_model
from fewlabel.model_dir import engines
from fewlabel.model_dir.manifest import MANIFEST, load_manifest, read_manifest, write_manifest
from fewlabel.model_dir.records import PredictionEntry
from fewlabel.model_dir.store import TrainedModel, read_metrics
from fewlabel.training import train

TEXTS = [text for text, _ in REVIEWS[:40]]
LABELS = [label for _, label in REVIEWS[:40]]


def _fake_seconds(model, texts) -> float:
    """Timings that do not depend on the machine: bfloat16 twice as fast."""
    return 1.0 if _precision(model) == "bf16" else 2.0


def _precision(model) -> str:
    """The precision the model's encoder runs in (the observable of an engine)."""
    return model.strategy.encoder.precision


@pytest.fixture(scope="module")
def bf16_model(tmp_path_factory):
    """An embed model trained where bfloat16 is native, answers alike and is (made) faster."""
    out = tmp_path_factory.mktemp("engines") / "embed"
    data = LabelledTexts.from_lists(TEXTS, LABELS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engines, "bf16_native_here", lambda: True)
        patch.setattr(engines, "_seconds", _fake_seconds)
        result = train(data, out, TrainConfig(strategy="embed", model=BACKBONE, folds=3, diagnostics=False))
    return result, out


@pytest.fixture
def native(monkeypatch):
    monkeypatch.setattr(engines, "bf16_native_here", lambda: True)


def test_training_records_the_engine_and_its_numbers(bf16_model):
    result, out = bf16_model
    entry = load_manifest(out).prediction
    assert entry is not None and entry == result.prediction
    assert entry.engine == "torch-bf16" and entry.sample == len(TEXTS) and entry.agreement == 1.0
    assert entry.speedup == 2.0 and 0 < entry.max_abs_diff < 0.05 and entry.seconds > 0
    assert entry.reason == f"2.0x faster than float32 on {len(TEXTS)} training texts, same answers"
    assert read_metrics(out).prediction == entry
    assert "- **Prediction engine**: `torch-bf16`" in (out / "README.md").read_text(encoding="utf-8")
    assert result.strategy.encoder.cache  # measuring left the returned model's cached encoder alone


def test_auto_runs_the_recorded_engine_and_torch_overrides_it(bf16_model, native):
    _, out = bf16_model
    fast = load_model(out)
    assert _precision(fast) == "bf16"
    exact = load_model(out, engine="torch")
    assert _precision(exact) == "fp32"
    np.testing.assert_allclose(fast.predict_proba(TEXTS), exact.predict_proba(TEXTS), atol=0.05)


def test_auto_runs_float32_where_bfloat16_is_not_native(bf16_model, monkeypatch):
    _, out = bf16_model
    monkeypatch.setattr(engines, "bf16_native_here", lambda: False)
    assert _precision(load_model(out)) == "fp32"


def test_a_model_saved_before_engines_were_recorded_loads_as_float32(bf16_model, native, tmp_path):
    _, out = bf16_model
    old = tmp_path / "old"
    shutil.copytree(out, old)
    manifest = read_manifest(old)
    del manifest["prediction"]
    write_manifest(old, manifest)  # resealed: as an older fewlabel wrote it
    assert _precision(load_model(old)) == "fp32"


def test_an_edited_engine_is_caught_by_the_digest(bf16_model, tmp_path):
    _, out = bf16_model
    edited = tmp_path / "edited"
    shutil.copytree(out, edited)
    manifest = json.loads((edited / MANIFEST).read_text(encoding="utf-8"))
    manifest["prediction"]["engine"] = "torch"
    (edited / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(ModelDirError, match="does not match its digest"):
        load_model(edited)


def test_a_model_that_embeds_nothing_records_no_engine(tfidf_model_dir):
    assert load_manifest(tfidf_model_dir).prediction is None
    assert read_metrics(tfidf_model_dir).prediction is None
    assert "prediction" not in json.loads((tfidf_model_dir / MANIFEST).read_text(encoding="utf-8"))


def test_float32_is_kept_when_bfloat16_is_slower_or_answers_otherwise(bf16_model, native, monkeypatch):
    result, _ = bf16_model
    monkeypatch.setattr(engines, "_seconds", lambda model, texts: 3.0 - _fake_seconds(model, texts))
    slower = engines.choose_engine(result.model, TEXTS)
    assert slower is not None and slower.engine == "torch" and slower.speedup == 0.5
    assert slower.reason == f"bfloat16 was not faster on {len(TEXTS)} training texts (0.50x)"
    monkeypatch.setattr(engines, "_same_answers", lambda model, a, b: np.arange(len(a)) > 0)
    monkeypatch.setattr(engines, "_near_tie", lambda model, p: np.zeros(len(p), dtype=bool))
    differ = engines.choose_engine(result.model, TEXTS)
    assert differ is not None and differ.engine == "torch" and differ.speedup is None
    assert differ.agreement == 1 - 1 / len(TEXTS) and "answered 1 of 40" in differ.reason
    # The same flip on a text float32 itself put at a near tie does not count against bfloat16.
    monkeypatch.setattr(engines, "_near_tie", lambda model, p: np.arange(len(p)) == 0)
    monkeypatch.setattr(engines, "_seconds", _fake_seconds)
    tie = engines.choose_engine(result.model, TEXTS)
    assert tie is not None and tie.engine == "torch-bf16" and tie.near_ties == 1
    assert tie.agreement == 1 - 1 / len(TEXTS) and "but for 1 near tie" in tie.reason


def test_the_sample_is_predicted_in_small_groups_of_similar_length(bf16_model, native, monkeypatch):
    """One call with the whole sample pads every text to the longest (22 long reviews took 92 s with
    embeddinggemma that way): each call gets at most GROUP texts, in length order."""
    result, _ = bf16_model
    calls: list[list[str]] = []
    real = TrainedModel.predict_proba

    def recording(self, texts):
        calls.append(list(texts))
        return real(self, texts)

    monkeypatch.setattr(TrainedModel, "predict_proba", recording)
    monkeypatch.setattr(engines, "_seconds", _fake_seconds)
    entry = engines.choose_engine(result.model, TEXTS)
    assert entry is not None and entry.sample == len(TEXTS)
    assert len(calls) == 2 * -(-len(TEXTS) // engines.GROUP)  # float32 and bfloat16, every group once
    assert max(len(c) for c in calls) == engines.GROUP
    first_pass = [text for call in calls[: len(calls) // 2] for text in call]
    assert first_pass == engines.length_spread(TEXTS, len(TEXTS))


def test_near_ties_are_texts_a_small_move_would_answer_otherwise(bf16_model):
    result, _ = bf16_model
    p = np.array([[0.499, 0.501], [0.2, 0.8], [0.505, 0.495], [0.9, 0.1]])
    expected = [True, False, True, False]
    if result.model.threshold is not None:  # a tuned threshold moves where the ties are
        t = result.model.threshold
        p = np.array([[1 - t + 0.003, t - 0.003], [0.2, 0.8], [1 - t - 0.004, t + 0.004], [0.99, 0.01]])
    assert engines._near_tie(result.model, p).tolist() == expected


def test_nothing_is_measured_without_native_bfloat16(bf16_model, monkeypatch):
    result, _ = bf16_model
    monkeypatch.setattr(engines, "bf16_native_here", lambda: False)
    entry = engines.choose_engine(result.model, TEXTS)
    assert entry is not None and entry.engine == "torch" and entry.sample is None
    assert "no native bfloat16" in entry.reason


def test_the_sample_spreads_over_lengths_deterministically():
    texts = [f"{'x' * n}" for n in (5, 1, 9, 3, 7, 2, 8)]
    assert engines.length_spread(texts, 3) == ["x", "xxxxx", "x" * 9]
    assert engines.length_spread(texts, 3) == engines.length_spread(list(texts), 3)
    assert sorted(engines.length_spread(texts, 10), key=len) == sorted(texts, key=len)
    assert len(set(engines.length_spread([str(i) * i for i in range(1, 200)], 64))) == 64


def test_training_can_skip_the_measurement(tmp_path):
    data = LabelledTexts.from_lists(TEXTS, LABELS)
    config = TrainConfig(strategy="embed", model=BACKBONE, folds=3, diagnostics=False, choose_engine=False)
    result = train(data, tmp_path / "model", config)
    assert result.prediction is None and load_manifest(tmp_path / "model").prediction is None


def test_a_multi_label_model_records_its_engine_too(tmp_path, native):
    from conftest import multi_label_rows
    from fewlabel.multilabel import train_multilabel

    rows = multi_label_rows()
    path = tmp_path / "multi.csv"
    path.write_text("text,labels\n" + "".join(f'"{t}",{lab}\n' for t, lab in rows))
    data = load_labelled(path, multi_label=True, min_per_class=3)
    config = TrainConfig(strategy="embed", model=BACKBONE, folds=3, diagnostics=False)
    result = train_multilabel(data, tmp_path / "model", config)
    entry = load_manifest(tmp_path / "model").prediction
    assert entry is not None and entry == result.prediction and entry.sample == len(rows)
    assert entry.engine in engines.TORCH_ENGINES


@pytest.mark.parametrize(
    ("entry", "line"),
    [
        (
            PredictionEntry(
                engine="torch-bf16", reason="2.1x faster than float32 on 64 training texts, same answers"
            ),
            "Prediction engine: torch-bf16 (2.1x faster than float32 on 64 training texts, same answers); "
            "`--engine torch` predicts exactly as evaluated.",
        ),
        (
            PredictionEntry(engine="torch", reason="bfloat16 was not faster on 64 training texts (0.90x)"),
            "Prediction engine: torch (float32, as evaluated): bfloat16 was not faster on 64 training texts (0.90x).",
        ),
    ],
)
def test_train_prints_the_engine_in_one_line(entry, line):
    console = Console(record=True, width=400)
    print_engine(console, entry)
    assert console.export_text().strip() == line


def test_a_slow_backbone_measures_fewer_texts():
    reviews = ["A long review of a kettle that boils fast but leaks at the seam. " * 12] * 100
    assert engines._sample_size("minilm@sha256:" + "0" * 64, reviews) == engines.SAMPLE
    gemma = engines._sample_size("embeddinggemma@sha256:" + "0" * 64, reviews)
    assert engines.MIN_SAMPLE <= gemma < engines.SAMPLE
    assert engines._sample_size("someone/model@sha256:" + "0" * 64, reviews) == engines.SAMPLE
    assert engines._sample_size(None, reviews) == engines.SAMPLE


def test_measuring_stops_when_one_float32_pass_is_too_slow(bf16_model, native, monkeypatch):
    result, _ = bf16_model
    monkeypatch.setattr(engines, "GIVE_UP_SECONDS", -1.0)  # any pass is too slow
    entry = engines.choose_engine(result.model, TEXTS)
    assert entry is not None and entry.engine == "torch" and entry.agreement is None
    assert entry.reason.startswith("not measured: one float32 pass over")


def test_engines_can_be_measured_on_a_loaded_model(bf16_model, native, monkeypatch):
    """A loaded model's strategy holds an encoder with a lock and a connection: copying it for each
    engine gives fresh encoders instead of failing."""
    _, out = bf16_model
    monkeypatch.setattr(engines, "_seconds", _fake_seconds)
    model = load_model(out, engine="torch")
    entry = engines.choose_engine(model, TEXTS)
    assert entry is not None and entry.engine == "torch-bf16" and entry.sample == len(TEXTS)
    assert model.predict(TEXTS[:2])[0] == load_model(out, engine="torch").predict(TEXTS[:2])[0]


def test_train_points_to_the_faster_export_for_a_backbone_model(bf16_model):
    """After the engine line, `train` names the command that makes prediction faster still."""
    from fewlabel.cli.commands import print_training

    result, out = bf16_model
    console = Console(record=True, width=400)
    print_training(result, LabelledTexts.from_lists(TEXTS, LABELS), console)
    text = console.export_text()
    assert f"Faster prediction: `fewlabel export {out}`" in text
    assert text.index("Prediction engine:") < text.index("Faster prediction:") < text.index("Took ")


def test_train_export_writes_the_fast_form_where_the_hint_was(bf16_model, tmp_path):
    """`train --export`: the saved model is exported (and predicts through it) instead of a hint."""
    import dataclasses

    pytest.importorskip("onnxruntime")
    from fewlabel.cli.commands import print_training

    result, out = bf16_model
    copy = tmp_path / "model"
    shutil.copytree(out, copy)
    console = Console(record=True, width=400)
    print_training(
        dataclasses.replace(result, model_dir=copy),
        LabelledTexts.from_lists(TEXTS, LABELS),
        console,
        export=True,
    )
    text = console.export_text()
    assert "Faster prediction" not in text
    assert (
        text.index("Prediction engine:")
        < text.index(f"Wrote {copy / 'onnx' / 'encoder.onnx'}")
        < text.index("Took ")
    )
    assert load_manifest(copy).onnx is not None
    assert load_model(copy).predict(TEXTS[:4])[0] == load_model(out, engine="torch").predict(TEXTS[:4])[0]


def test_train_export_is_refused_before_training_where_it_could_not_run(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import fewlabel.cli.commands
    from fewlabel.cli.main import app

    data = tmp_path / "data.csv"
    data.write_text("text,label\n" + "".join(f"t{i},{'ab'[i % 2]}\n" for i in range(20)), encoding="utf-8")
    monkeypatch.setattr(fewlabel.cli.commands, "train", lambda *a, **k: pytest.fail("trained"))
    runner = CliRunner()
    result = runner.invoke(app, ["train", str(data), "-o", str(tmp_path / "m"), "--export", "--multi-label"])
    assert result.exit_code == 2 and "--export works with single-label models only" in result.output
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a)
    )
    result = runner.invoke(app, ["train", str(data), "-o", str(tmp_path / "m"), "--export"])
    assert result.exit_code == 2 and "--export needs onnxscript" in result.output
    assert "pip install 'fewlabel[onnx]'" in result.output and not (tmp_path / "m").exists()


def test_train_export_of_a_model_without_an_encoder_says_there_is_nothing_to_export(tmp_path):
    from fewlabel.cli.commands import print_training

    data = LabelledTexts.from_lists(TEXTS, LABELS)
    result = train(data, tmp_path / "m", TrainConfig(strategy="tfidf", folds=3, diagnostics=False))
    console = Console(record=True, width=400)
    print_training(result, data, console, export=True)
    assert "Nothing to export: tfidf uses no neural encoder" in console.export_text()
    assert not (tmp_path / "m" / "onnx").exists()
