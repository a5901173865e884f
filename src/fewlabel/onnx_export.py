"""ONNX export of a model's sentence encoder, and an encoder that runs it with ONNX Runtime.

The exported graph takes token ids and returns the pooled, L2-normalised sentence embedding, so
prediction needs only ``tokenizers`` and ``onnxruntime``: no PyTorch, no Transformers. Optional int8
dynamic quantisation of the matrix multiplications makes it several times faster on a CPU.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fewlabel.errors import FewlabelError
from fewlabel.persistence import MANIFEST, file_sha256, read_manifest

ONNX_DIR = "onnx"
BATCH = 32


def _pooling_mode(backbone_dir: Path) -> str:
    config = backbone_dir / "1_Pooling" / "config.json"
    if not config.exists():
        return "mean"  # sentence-transformers' default for a plain Hugging Face model
    settings = json.loads(config.read_text(encoding="utf-8"))
    if settings.get("pooling_mode_cls_token"):
        return "cls"
    if settings.get("pooling_mode_mean_tokens", True):
        return "mean"
    raise FewlabelError(f"{config}: only mean or CLS pooling can be exported to ONNX")


def _export_graph(backbone_dir: Path, out: Path, max_tokens: int) -> list[str]:
    """Export encoder + pooling + normalisation to ``out``; returns the graph's input names."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tokenizer = AutoTokenizer.from_pretrained(backbone_dir)
    model = AutoModel.from_pretrained(backbone_dir).eval()
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer.model_input_names]
    pooling = _pooling_mode(backbone_dir)

    def pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1)

    # torch.export needs named positional arguments, so one wrapper per input signature.
    class WithTokenTypes(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            return pool(hidden, attention_mask)

    class WithoutTokenTypes(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return pool(
                self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state,
                attention_mask,
            )

    wrapper = WithTokenTypes() if "token_type_ids" in names else WithoutTokenTypes()
    wrapper.eval()  # inference graph: no dropout

    sample = tokenizer(
        ["a short one", "a somewhat longer example sentence for tracing", "x"],
        padding=True,
        return_tensors="pt",
    )
    batch = torch.export.Dim("batch", min=1, max=4096)
    seq = torch.export.Dim("seq", min=1, max=max(max_tokens, 8))
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            tuple(sample[n] for n in names),
            str(out),
            input_names=names,
            output_names=["sentence_vector"],
            dynamic_shapes=tuple({0: batch, 1: seq} for _ in names),
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    return names


def export_onnx(model_dir: str | Path, quantize: str | None = None) -> dict[str, Any]:
    """Export the encoder of a saved model to ``MODEL_DIR/onnx`` and record it in the manifest.

    Args:
        model_dir: a directory written by ``fewlabel train``.
        quantize: ``None`` for float32, or ``"int8"`` for dynamic int8 quantisation.
    """
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise FewlabelError(
            "ONNX export needs onnx, onnxscript and onnxruntime: `pip install 'fewlabel[onnx]'`"
        ) from None
    if quantize not in (None, "int8"):
        raise FewlabelError(f"unknown quantisation {quantize!r}; use int8 or leave it out")
    from fewlabel.backbones import resolve
    from fewlabel.embeddings import load_sentence_model

    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    backbone_entry = manifest.get("backbone")
    if not backbone_entry:
        raise FewlabelError(
            f"{model_dir}: strategy {manifest['strategy']['name']!r} uses no neural encoder; it is already fast "
            "and has nothing to export"
        )
    if manifest["strategy"]["name"] in ("finetune", "setfit"):
        raise FewlabelError(
            f"{model_dir}: ONNX export covers frozen-encoder strategies (embed, ensemble); a "
            f"{manifest['strategy']['name']} model runs with PyTorch (`predict` and `serve` use it as it is)"
        )
    backbone = resolve(backbone_entry["name"])
    if not backbone.is_local:
        raise FewlabelError(
            f"backbone {backbone.name!r} is a Hub id; download it to a local directory to export it"
        )
    max_tokens = int(load_sentence_model(backbone).max_seq_length)

    tmp_dir = Path(tempfile.mkdtemp(dir=model_dir, prefix=".onnx-"))
    try:
        try:
            names = _export_graph(Path(backbone.location), tmp_dir / "float32.onnx", max_tokens)
        except Exception as err:  # torch.export raises many kinds; the user needs one clear line
            raise FewlabelError(
                f"ONNX export of backbone {backbone.name!r} failed: {type(err).__name__}: {err}"
            ) from None
        target = tmp_dir / "encoder.onnx"
        if quantize == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            # MatMul only, per channel: the embedding lookup and layer norms stay float, which keeps
            # embeddings within a few percent cosine of float32 while the heavy products run in int8.
            quantize_dynamic(
                str(tmp_dir / "float32.onnx"),
                str(target),
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["MatMul"],
                per_channel=True,
            )
        else:
            os.replace(tmp_dir / "float32.onnx", target)
        shutil.copy(Path(backbone.location) / "tokenizer.json", tmp_dir / "tokenizer.json")
        settings = {
            "inputs": names,
            "max_tokens": max_tokens,
            "quantize": quantize,
            "backbone": backbone.name,
        }
        (tmp_dir / "encoder.json").write_text(json.dumps(settings, indent=2), encoding="utf-8")
        for leftover in tmp_dir.iterdir():
            if leftover.name not in {"encoder.onnx", "tokenizer.json", "encoder.json"}:
                shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        final = model_dir / ONNX_DIR
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp_dir, final)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise

    files = dict(manifest.get("files", {}))
    for path in sorted(final.iterdir()):
        files[f"{ONNX_DIR}/{path.name}"] = {"sha256": file_sha256(path), "bytes": path.stat().st_size}
    manifest["files"] = files
    manifest["onnx"] = {"dir": ONNX_DIR, **settings}
    fd, tmp_manifest = tempfile.mkstemp(prefix=f".{MANIFEST}.", dir=model_dir)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2, ensure_ascii=False)
    os.replace(tmp_manifest, model_dir / MANIFEST)
    return {"onnx": str(final / "encoder.onnx"), "bytes": (final / "encoder.onnx").stat().st_size, **settings}


class OnnxEncoder:
    """Sentence embeddings from an exported encoder, with ``tokenizers`` and ONNX Runtime only."""

    def __init__(self, onnx_dir: str | Path, threads: int | None = None):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        onnx_dir = Path(onnx_dir)
        self.settings = json.loads((onnx_dir / "encoder.json").read_text(encoding="utf-8"))
        self.tokenizer = Tokenizer.from_file(str(onnx_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(int(self.settings["max_tokens"]))
        self.tokenizer.no_padding()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(onnx_dir / "encoder.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.inputs = [i.name for i in self.session.get_inputs()]

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        del show_progress  # predict shows its own bar
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths pad less
        out: np.ndarray | None = None
        for start in range(0, len(texts), BATCH):
            idx = order[start : start + BATCH]
            encodings = self.tokenizer.encode_batch([texts[i] for i in idx])
            width = max(len(e.ids) for e in encodings)
            arrays = {name: np.zeros((len(idx), width), dtype=np.int64) for name in self.inputs}
            for row, enc in enumerate(encodings):
                n = len(enc.ids)
                arrays["input_ids"][row, :n] = enc.ids
                arrays["attention_mask"][row, :n] = 1
                if "token_type_ids" in arrays:
                    arrays["token_type_ids"][row, :n] = enc.type_ids
            vectors = self.session.run(None, arrays)[0]
            if out is None:
                out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
            out[idx] = vectors
        assert out is not None
        return out
