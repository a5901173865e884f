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
    import logging
    import warnings

    copy = tmp_path / "model"
    shutil.copytree(embed_model, copy)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_onnx(copy, "int8")
    # The tracer's remarks on its own internals (renamed axes, deprecations) are not shown to users.
    assert not [w for w in caught if "torch" in w.filename], [str(w.message) for w in caught]
    assert logging.getLogger("torch.onnx").level == logging.NOTSET  # its logger is quiet only meanwhile
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
    if info.get("openvino"):  # openvino installed and it answered as PyTorch on the check texts
        p_openvino = load_model(copy, engine="openvino").predict_proba(texts)
        assert np.abs(p_torch - p_openvino).max() <= 0.02


def test_train_export_exports_a_fine_tuned_model_too(tmp_path, fine_tuned_model):
    """`train` decides what can be exported by the saved model's encoder, as `fewlabel export` does: a
    fine-tuned model (which records no engine measurement) gets the hint, and with --export its graph."""
    from types import SimpleNamespace

    from rich.console import Console

    from fewlabel.cli.commands import _print_fast_form
    from fewlabel.model_dir.manifest import load_manifest

    copy = tmp_path / "model"
    shutil.copytree(fine_tuned_model, copy)
    result = SimpleNamespace(model_dir=copy, chance_warning=None, chosen="finetune", prediction=None)
    console = Console(record=True, width=400)
    _print_fast_form(result, console, export=False)  # type: ignore[arg-type]
    assert f"Faster prediction: `fewlabel export {copy}`" in console.export_text()
    if fine_tuned_model.name != "finetune-head_tail":
        return  # one export is enough to show the path; the others are exported above
    _print_fast_form(result, console, export=True)  # type: ignore[arg-type]
    text = console.export_text()
    assert "Nothing to export" not in text and f"Wrote {copy / 'onnx' / 'encoder.onnx'}" in text
    assert load_manifest(copy).onnx is not None


def _runtime(model) -> str:
    return model.strategy.__dict__["attached_encoder_"].runtime


@pytest.mark.parametrize("openvino_faster", [True, False])
def test_openvino_is_checked_at_export_and_runs_the_graph_as_pytorch(
    tmp_path, embed_model, demo_texts, monkeypatch, openvino_faster
):
    """With openvino installed, export checks it on the check texts as it checks ONNX Runtime and
    records what it found, keeping OpenVINO's own format of the graph (the IR) only when OpenVINO was
    the faster there (timings faked here: on the tiny test backbone either may win); ``--engine
    openvino`` answers as PyTorch does, from the IR or from the graph."""
    pytest.importorskip("openvino")
    from fewlabel.inference import export
    from fewlabel.model_dir.manifest import load_manifest

    def timed(encoder, texts, seconds):
        answers = time_answers(encoder, texts, seconds)
        seconds[encoder.runtime] = 1.0 if (encoder.runtime == "openvino") == openvino_faster else 2.0
        return answers

    time_answers = export._time_answers
    monkeypatch.setattr(export, "_time_answers", timed)
    copy = tmp_path / "model"
    shutil.copytree(embed_model, copy)
    info = export_onnx(copy)
    manifest = load_manifest(copy)
    record = manifest.onnx.openvino
    assert record is not None and info["openvino"]["speedup"] == record.speedup == (
        2.0 if openvino_faster else 0.5
    )
    assert 0 <= record.gap <= 1e-3 and record.precision in ("bf16", "f32")
    settings = json.loads((copy / "onnx" / "encoder.json").read_text(encoding="utf-8"))
    assert settings.get("openvino_ir", False) == openvino_faster
    assert (copy / "onnx" / "openvino.bin").exists() == openvino_faster
    assert ("onnx/openvino.xml" in manifest.files) == openvino_faster
    assert _runtime(load_model(copy)) == ("openvino" if openvino_faster else "onnxruntime")
    model = load_model(copy, engine="openvino")
    assert _runtime(model) == "openvino"
    p_torch = load_model(copy, engine="torch").predict_proba(demo_texts)
    p_openvino = model.predict_proba(demo_texts)
    assert np.abs(p_torch - p_openvino).max() <= 0.02
    assert float((p_torch.argmax(1) == p_openvino.argmax(1)).mean()) >= 0.98


@pytest.mark.parametrize(
    ("speedup", "installed", "runtime"),
    [(2.0, True, "openvino"), (0.8, True, "onnxruntime"), (2.0, False, "onnxruntime")],
)
def test_auto_runs_openvino_only_where_export_found_it_faster_and_it_is_installed(
    tmp_path, embed_model, monkeypatch, speedup, installed, runtime
):
    pytest.importorskip("openvino")
    from fewlabel.inference import loading
    from fewlabel.model_dir.manifest import add_files, load_manifest

    copy = tmp_path / "model"
    shutil.copytree(embed_model, copy)
    export_onnx(copy)
    entry = load_manifest(copy).onnx.model_dump()
    entry["openvino"] = {"precision": "bf16", "gap": 0.0, "speedup": speedup}
    add_files(copy, "onnx", {"onnx": entry})
    monkeypatch.setattr(loading, "_installed", lambda module: installed)
    assert _runtime(load_model(copy)) == runtime


def test_openvino_engine_needs_an_export_and_openvino(tmp_path, embed_model, monkeypatch):
    from fewlabel.encoders import onnx
    from fewlabel.errors import ModelDirError

    with pytest.raises(ModelDirError, match="fewlabel export"):
        load_model(embed_model, engine="openvino")
    copy = tmp_path / "model"
    shutil.copytree(embed_model, copy)
    export_onnx(copy)

    def missing() -> None:
        raise ImportError("No module named 'openvino'")

    monkeypatch.setattr(onnx._OpenVinoSession, "check_installed", staticmethod(missing))
    with pytest.raises(ModelDirError, match=r"fewlabel\[openvino\]"):
        load_model(copy, engine="openvino")
    assert _runtime(load_model(copy)) == "onnxruntime"  # auto: ONNX Runtime, no error


def test_predicting_with_an_export_imports_no_scikit_learn(tmp_path, embed_model):
    """A one-text `fewlabel predict` of an exported model spends its time starting: scikit-learn
    alone took 1.3 s of it. The command's imports and the model's loading must not pull it in."""
    import subprocess
    import sys

    copy = tmp_path / "model"
    shutil.copytree(embed_model, copy)
    export_onnx(copy)
    script = (
        "import sys\n"
        "import fewlabel.cli.main, fewlabel.cli.commands\n"
        "from fewlabel.inference.loading import load_model\n"
        f"model = load_model({str(copy)!r}, engine='onnx')\n"
        "print(model.predict(['Broke after a week.'])[0][0])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'torch', 'transformers')))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    label, modules = out.strip().splitlines()
    assert label in ("positive", "negative") and modules == "[]"
