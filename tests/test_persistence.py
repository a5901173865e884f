"""Saved models: complete manifest, atomic writes, checksums, and clear errors for damaged directories."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

import fewlabel
from conftest import BACKBONE, NEW_NEGATIVE, NEW_POSITIVE
from fewlabel.config import TrainConfig
from fewlabel.data.labelled import LabelledTexts, load_labelled
from fewlabel.errors import ModelDirError
from fewlabel.evaluation.calibration import apply_temperature
from fewlabel.inference.loading import load_model
from fewlabel.model_dir.manifest import FORMAT_VERSION, MANIFEST, REGENERATED
from fewlabel.model_dir.store import save_model
from fewlabel.strategies import make_strategy
from fewlabel.training import train

PROBE = NEW_POSITIVE + NEW_NEGATIVE + ["An unrelated sentence about trains and zzqx."]


def read_manifest(directory: Path) -> dict:
    return json.loads((directory / MANIFEST).read_text(encoding="utf-8"))


def fitted_tfidf(texts, labels):
    classes = sorted(set(labels))
    return make_strategy("tfidf").fit(texts, np.array([classes.index(x) for x in labels])), classes


def test_round_trip_gives_identical_predictions(tmp_path, reviews_csv):
    data = load_labelled(reviews_csv)
    result = train(data, tmp_path / "m", TrainConfig(strategy="tfidf", model=BACKBONE, folds=3))
    assert result.model_dir == tmp_path / "m"
    model = load_model(tmp_path / "m")
    assert model.labels == ["negative", "positive"]
    raw = result.strategy.predict_proba(PROBE)
    assert np.allclose(model.strategy.predict_proba(PROBE), raw, atol=1e-6)
    # The saved model answers calibrated probabilities, with the temperature train() fitted.
    assert model.temperature == pytest.approx(result.calibration["temperature"])
    assert np.allclose(model.predict_proba(PROBE), apply_temperature(raw, model.temperature), atol=1e-6)
    assert (model.predict_proba(PROBE).argmax(1) == raw.argmax(1)).all()
    labels, confidence = model.predict(PROBE[:4])
    assert labels == ["positive", "positive", "negative", "negative"]
    assert np.all((confidence >= 0.5) & (confidence <= 1.0))
    assert model.predict([]) == ([], pytest.approx(np.zeros(0)))


def test_manifest_is_complete(tfidf_model_dir, reviews_csv):
    manifest = read_manifest(tfidf_model_dir)
    assert manifest["format"] == "fewlabel-model"
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["fewlabel_version"] == fewlabel.__version__
    assert manifest["strategy"]["name"] == "tfidf"
    assert manifest["strategy"]["params"]["C"] == 10.0
    assert manifest["labels"] == ["negative", "positive"]
    assert manifest["config"]["strategy"] == "tfidf" and manifest["config"]["model"] == BACKBONE
    assert manifest["config"]["folds"] == 3
    assert manifest["backbone"] is None  # tfidf uses no backbone
    assert manifest["calibration"]["method"] == "temperature"
    assert 0.05 <= manifest["calibration"]["temperature"] <= 20.0
    assert (manifest["text_column"], manifest["label_column"]) == ("text", "label")
    acc = manifest["metrics"]["accuracy"]
    assert acc["ci95_low"] <= acc["value"] <= acc["ci95_high"]
    assert set(manifest["metrics"]) >= {"accuracy", "macro_f1", "log_loss", "majority_baseline_accuracy"}
    data = load_labelled(reviews_csv)
    assert manifest["training_data"]["sha256"] == data.fingerprint()
    assert manifest["training_data"]["rows"] == len(data)
    assert manifest["training_data"]["class_counts"] == {"negative": 24, "positive": 24}
    files = manifest["files"]
    assert {"metrics.json", "strategy/strategy.json"} <= set(files)
    on_disk = {str(p.relative_to(tfidf_model_dir)) for p in tfidf_model_dir.rglob("*") if p.is_file()}
    # Everything is checksummed except the documents `fewlabel report` rebuilds.
    assert on_disk == set(files) | {MANIFEST, *REGENERATED}
    for rel, entry in files.items():
        content = (tfidf_model_dir / rel).read_bytes()
        assert entry["sha256"] == hashlib.sha256(content).hexdigest()
        assert entry["bytes"] == len(content)
    metrics = json.loads((tfidf_model_dir / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["chosen_strategy"] == "tfidf"
    assert {k: metrics["expected_accuracy"][k] for k in acc} == acc
    assert metrics["estimate"]["accuracy"] == manifest["metrics"]["cv_accuracy"]


def test_embed_model_records_its_backbone(tmp_path, reviews):
    texts, labels = reviews
    data = LabelledTexts.from_lists(texts, labels)
    result = train(data, tmp_path / "m", TrainConfig(strategy="embed", model=BACKBONE, folds=2))
    manifest = read_manifest(tmp_path / "m")
    pinned = {"name": "minilm", "hub_id": "sentence-transformers/all-MiniLM-L6-v2"}
    assert {k: manifest["backbone"][k] for k in pinned} == pinned
    assert len(manifest["backbone"]["sha256"]) == 64  # the backbone's files, by content hash
    assert manifest["strategy"]["params"]["backbone"] == "minilm"
    model = load_model(tmp_path / "m", engine="torch")  # float32: auto may run the bfloat16 training chose
    assert np.allclose(model.strategy.predict_proba(PROBE), result.strategy.predict_proba(PROBE), atol=1e-6)


def test_refuses_to_overwrite_other_directory(tmp_path, reviews):
    target = tmp_path / "precious"
    target.mkdir()
    (target / "notes.txt").write_text("do not delete", encoding="utf-8")
    (target / "sub").mkdir()
    (target / "sub" / "data.bin").write_bytes(b"\x00\x01")
    before = sorted(
        (str(p.relative_to(target)), p.read_bytes() if p.is_file() else None) for p in target.rglob("*")
    )
    strategy, classes = fitted_tfidf(*reviews)
    with pytest.raises(ModelDirError) as err:
        save_model(target, strategy, classes, {})
    assert str(target) in str(err.value) and "refusing to overwrite" in str(err.value)
    after = sorted(
        (str(p.relative_to(target)), p.read_bytes() if p.is_file() else None) for p in target.rglob("*")
    )
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"]  # no temporary sibling left


def test_refuses_a_file_as_target(tmp_path, reviews):
    target = tmp_path / "file"
    target.write_text("x", encoding="utf-8")
    strategy, classes = fitted_tfidf(*reviews)
    with pytest.raises(ModelDirError, match="is a file"):
        save_model(target, strategy, classes, {})
    assert target.read_text(encoding="utf-8") == "x"


def test_saves_into_an_empty_directory(tmp_path, reviews):
    (tmp_path / "empty").mkdir()
    strategy, classes = fitted_tfidf(*reviews)
    save_model(tmp_path / "empty", strategy, classes, {"strategy": {"name": "tfidf"}, "note": 1})
    assert load_model(tmp_path / "empty").manifest.extra("note") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_overwrites_existing_model_and_leaves_no_temporaries(tmp_path, reviews, three_class):
    target = tmp_path / "model"
    strategy, classes = fitted_tfidf(*reviews)
    save_model(target, strategy, classes, {"strategy": {"name": "tfidf"}, "run": 1})
    (target / "stale.txt").write_text("from the old model", encoding="utf-8")
    strategy3, classes3 = fitted_tfidf(*three_class)
    save_model(target, strategy3, classes3, {"strategy": {"name": "tfidf"}, "run": 2})
    model = load_model(target)
    assert model.manifest.extra("run") == 2 and model.labels == ["cooking", "sport", "weather"]
    assert model.predict_proba(["Bake the bread in the oven."]).shape == (1, 3)
    assert not (target / "stale.txt").exists()  # replaced as a whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_failed_save_leaves_nothing_behind(tmp_path):
    unfitted = make_strategy("tfidf")
    with pytest.raises(fewlabel.FewlabelError):
        save_model(tmp_path / "m", unfitted, ["a", "b"], {})
    assert list(tmp_path.iterdir()) == []


def test_failed_swap_keeps_the_old_model(tmp_path, reviews, monkeypatch):
    target = tmp_path / "model"
    strategy, classes = fitted_tfidf(*reviews)
    save_model(target, strategy, classes, {"strategy": {"name": "tfidf"}, "run": 1})
    real_replace = os.replace
    calls = []

    def flaky_replace(src, dst):
        calls.append((src, dst))
        if Path(src).name.startswith(".model.tmp-"):  # the final rename of the new model into place
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", flaky_replace)
    with pytest.raises(KeyboardInterrupt):
        save_model(target, strategy, classes, {"strategy": {"name": "tfidf"}, "run": 2})
    monkeypatch.undo()
    assert calls  # the swap was attempted
    assert load_model(target).manifest.extra("run") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


@pytest.mark.parametrize(
    "rel", ["strategy/tfidf_weights.npz", "strategy/tfidf_vocabulary.json", "metrics.json"]
)
def test_flipped_byte_is_detected(model_copy, rel):
    path = model_copy / rel
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF
    path.write_bytes(bytes(content))
    with pytest.raises(ModelDirError) as err:
        load_model(model_copy)
    msg = str(err.value)
    assert rel in msg and "checksum" in msg and str(model_copy) in msg


def test_truncated_file_is_detected(model_copy):
    path = model_copy / "strategy" / "tfidf_weights.npz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ModelDirError, match="tfidf_weights.npz does not match its checksum"):
        load_model(model_copy)


def test_missing_file_is_detected(model_copy):
    (model_copy / "strategy" / "strategy.json").unlink()
    with pytest.raises(ModelDirError) as err:
        load_model(model_copy)
    assert "strategy/strategy.json is missing" in str(err.value)


def test_damaged_weights_without_verification_still_give_model_dir_error(model_copy):
    path = model_copy / "strategy" / "tfidf_weights.npz"
    path.write_bytes(b"not a zip file at all")
    with pytest.raises(ModelDirError, match="cannot read weights"):
        load_model(model_copy, verify=False)


def edit_manifest(directory: Path, **changes) -> None:
    manifest = read_manifest(directory)
    manifest.update(changes)
    (directory / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")


def test_unknown_format_version(model_copy):
    edit_manifest(model_copy, format_version=99)
    with pytest.raises(ModelDirError) as err:
        load_model(model_copy)
    msg = str(err.value)
    assert "format version 99" in msg and f"reads version 1 or {FORMAT_VERSION}" in msg and "retrain" in msg


def test_not_a_fewlabel_manifest(model_copy):
    edit_manifest(model_copy, format="something-else")
    with pytest.raises(ModelDirError, match="not a fewlabel model manifest"):
        load_model(model_copy)


def test_damaged_manifest(model_copy):
    (model_copy / MANIFEST).write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelDirError, match="damaged manifest"):
        load_model(model_copy)


@pytest.mark.parametrize("key", ["strategy", "labels"])
def test_manifest_missing_a_required_key(model_copy, key):
    manifest = read_manifest(model_copy)
    del manifest[key]
    (model_copy / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(ModelDirError, match=key):
        load_model(model_copy)


def test_unsafe_manifest_path(model_copy):
    manifest = read_manifest(model_copy)
    manifest["files"]["../outside.txt"] = {"sha256": "0" * 64, "bytes": 1}
    (model_copy / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(ModelDirError, match="unsafe file path"):
        load_model(model_copy)


def test_missing_and_non_model_directories(tmp_path):
    with pytest.raises(ModelDirError, match="no such model directory"):
        load_model(tmp_path / "nope")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ModelDirError, match="not a fewlabel model"):
        load_model(tmp_path / "plain")


def test_non_ascii_model_saves_and_loads_under_a_legacy_locale(tmp_path, monkeypatch):
    """Simulate Windows' default text encoding (cp1252) for calls that do not name an encoding."""
    real_write, real_read = Path.write_text, Path.read_text

    def write_text(self, data, encoding=None, errors=None, newline=None):
        return real_write(self, data, encoding=encoding or "cp1252", errors=errors, newline=newline)

    def read_text(self, encoding=None, errors=None):
        return real_read(self, encoding=encoding or "cp1252", errors=errors)

    monkeypatch.setattr(Path, "write_text", write_text)
    monkeypatch.setattr(Path, "read_text", read_text)
    texts = [
        "café très bon",
        "crème délicieuse",
        "gâteau réussi",
        "pâte infâme",
        "thé amer raté",
        "goût répugnant",
    ]
    labels = ["positif", "positif", "positif", "négatif", "négatif", "négatif"]
    data = LabelledTexts.from_lists(texts, labels)
    result = train(data, tmp_path / "m", TrainConfig(strategy="tfidf", model=BACKBONE, folds=2))
    model = load_model(tmp_path / "m")
    assert model.labels == ["négatif", "positif"]
    assert np.allclose(model.strategy.predict_proba(texts), result.strategy.predict_proba(texts), atol=1e-6)
