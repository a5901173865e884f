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


def test_backbone_prompt_goes_into_the_export(tmp_path, embed_model, demo_texts, monkeypatch):
    """A backbone with a classification prompt (as EmbeddingGemma has): PyTorch puts it before every
    text, so the exported encoder must too, or its embeddings (and answers) would differ."""
    from fewlabel.encoders.backbones import find
    from fewlabel.encoders.sentence import load_sentence_model
    from fewlabel.model_dir.manifest import backbone_ref, load_manifest

    copy = tmp_path / "model"
    shutil.copytree(embed_model, copy)
    model = load_sentence_model(find(backbone_ref(copy, load_manifest(copy)) or ""))
    prompt = "task: classification | query: "
    monkeypatch.setattr(model, "prompts", {**(model.prompts or {}), "Classification": prompt})
    export_onnx(copy)
    assert json.loads((copy / "onnx" / "encoder.json").read_text(encoding="utf-8"))["prompt"] == prompt
    texts = demo_texts[:40]
    p_torch = load_model(copy, engine="torch").predict_proba(texts)
    p_onnx = load_model(copy, engine="onnx").predict_proba(texts)
    assert np.abs(p_torch - p_onnx).max() <= 1e-4

    # An export from before the prompt was kept, of embeddinggemma: its embeddings were wrong.
    from fewlabel.encoders.onnx import OnnxEncoder
    from fewlabel.errors import ModelDirError

    old = tmp_path / "old-onnx"
    shutil.copytree(copy / "onnx", old)
    settings = json.loads((old / "encoder.json").read_text(encoding="utf-8"))
    del settings["prompt"]
    (old / "encoder.json").write_text(
        json.dumps({**settings, "backbone": "embeddinggemma"}), encoding="utf-8"
    )
    with pytest.raises(ModelDirError, match="export it again"):
        OnnxEncoder(old)


def test_export_that_disagrees_with_pytorch_is_refused(tmp_path, embed_model, monkeypatch):
    """A graph that leaves part of the pipeline out (here: everything after the word embeddings)
    gives other embeddings: the export is refused and the model directory stays as it was."""
    import torch

    from fewlabel.inference import export

    def partial(model, names):
        class WordEmbeddingsOnly(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.words = model[0].auto_model.get_input_embeddings()

            def forward(self, input_ids, attention_mask, token_type_ids=None):
                mask = attention_mask.unsqueeze(-1).float()
                pooled = (self.words(input_ids) * mask).sum(1) / mask.sum(1)
                return torch.nn.functional.normalize(pooled, p=2, dim=1)

        return WordEmbeddingsOnly().eval()

    copy = tmp_path / "model"
    shutil.copytree(embed_model, copy)
    before = (copy / MANIFEST).read_bytes()
    monkeypatch.setattr(export, "_sentence_encoder", partial)
    with pytest.raises(FewlabelError, match="differ from PyTorch"):
        export_onnx(copy)
    assert not (copy / "onnx").exists()
    assert (copy / MANIFEST).read_bytes() == before
    assert not [p for p in copy.iterdir() if p.name.startswith(".onnx-")]


@pytest.fixture(
    scope="module", params=[("finetune", "head_tail"), ("finetune", "chunks"), ("setfit", "head_tail")]
)
def fine_tuned_model(request, tmp_path_factory, reviews):
    """A fine-tuned model (float32 throughout, so PyTorch and the graph can be compared closely) with
    a window so short that most reviews are cut, in the way the parameter says."""
    from conftest import BACKBONE
    from fewlabel.config import TrainConfig
    from fewlabel.data.labelled import LabelledTexts
    from fewlabel.training import train

    strategy, long_texts = request.param
    texts, labels = reviews
    out = tmp_path_factory.mktemp("fine-tuned") / f"{strategy}-{long_texts}"
    recipe = {
        "epochs": 1,
        "max_tokens": 24,
        "freeze_layers": 3,
        "precision": "fp32",
        "long_texts": long_texts,
    }
    config = TrainConfig(
        strategy=strategy,
        model=BACKBONE,
        strategy_params={strategy: recipe},
        diagnostics=False,
        choose_engine=False,
    )
    train(LabelledTexts.from_lists(texts, labels), out, config)
    return out


def test_fine_tuned_model_exports_whole_and_predicts_as_pytorch(tmp_path, fine_tuned_model, reviews):
    copy = tmp_path / "model"
    shutil.copytree(fine_tuned_model, copy)
    info = export_onnx(copy)
    settings = json.loads((copy / "onnx" / "encoder.json").read_text(encoding="utf-8"))
    assert info["kind"] == settings["kind"] == "finetuned" and settings["max_tokens"] == 24
    texts = reviews[0] + [" ".join(reviews[0])]  # one text of many windows
    torch_model = load_model(copy, engine="torch")
    onnx_model = load_model(copy, engine="onnx")  # verifies the checksums the export added
    assert type(onnx_model.strategy.__dict__.get("attached_encoder_")).__name__ == "OnnxFineTuned"
    p_torch = torch_model.predict_proba(texts)
    p_onnx = onnx_model.predict_proba(texts)
    assert np.abs(p_torch - p_onnx).max() <= 1e-3
    assert load_model(copy).predict(texts)[0] == onnx_model.predict(texts)[0]  # auto runs the export
