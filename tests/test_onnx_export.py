"""ONNX export: the exported encoder agrees with PyTorch, and the model directory stays verifiable."""

from __future__ import annotations

import csv
import json
import shutil
from importlib import resources

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from fewlabel.errors import FewlabelError  # noqa: E402
from fewlabel.inference.export import export_onnx  # noqa: E402
from fewlabel.inference.loading import load_model  # noqa: E402
from fewlabel.model_dir.manifest import MANIFEST


@pytest.fixture(scope="module")
def demo_texts() -> list[str]:
    with resources.as_file(resources.files("fewlabel") / "demo" / "reviews.csv") as path:
        return [row["text"] for row in csv.DictReader(path.open(encoding="utf-8"))]


@pytest.fixture(scope="module")
def embed_model(demo_embed_model):
    return demo_embed_model


@pytest.mark.parametrize(("quantize", "atol", "min_agreement"), [(None, 1e-4, 1.0), ("int8", 0.2, 0.98)])
def test_exported_encoder_agrees_with_pytorch(
    tmp_path, embed_model, demo_texts, quantize, atol, min_agreement
):
    copy = tmp_path / "model"
    shutil.copytree(embed_model, copy)
    info = export_onnx(copy, quantize)
    assert info["quantize"] == quantize and (copy / "onnx" / "encoder.onnx").exists()

    torch_model = load_model(copy, engine="torch")
    onnx_model = load_model(copy, engine="onnx")  # verifies the checksums the export added
    p_torch = torch_model.predict_proba(demo_texts)
    p_onnx = onnx_model.predict_proba(demo_texts)
    agreement = float((p_torch.argmax(1) == p_onnx.argmax(1)).mean())
    assert agreement >= min_agreement
    assert np.abs(p_torch - p_onnx).max() <= atol


def test_export_records_files_in_manifest_and_tampering_is_caught(tmp_path, embed_model):
    copy = tmp_path / "model"
    shutil.copytree(embed_model, copy)
    export_onnx(copy, "int8")
    manifest = json.loads((copy / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["onnx"]["quantize"] == "int8"
    assert {"onnx/encoder.onnx", "onnx/tokenizer.json", "onnx/encoder.json"} <= set(manifest["files"])
    assert not [p for p in copy.iterdir() if p.name.startswith(".onnx-")]  # no temporary directory left
    with (copy / "onnx" / "encoder.onnx").open("r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    from fewlabel.errors import ModelDirError

    with pytest.raises(ModelDirError, match="checksum"):
        load_model(copy)


def test_tfidf_model_has_nothing_to_export(model_copy):
    with pytest.raises(FewlabelError, match="nothing to export"):
        export_onnx(model_copy)


def test_onnx_engine_without_export_is_a_clear_error(embed_model):
    from fewlabel.errors import ModelDirError

    with pytest.raises(ModelDirError, match="fewlabel export"):
        load_model(embed_model, engine="onnx")
