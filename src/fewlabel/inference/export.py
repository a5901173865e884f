"""ONNX export of a model's sentence encoder (:class:`fewlabel.encoders.onnx.OnnxEncoder` runs it).

The exported graph takes token ids and returns the pooled, L2-normalised sentence embedding, so
prediction needs only ``tokenizers`` and ``onnxruntime``: no PyTorch, no Transformers. Optional int8
dynamic quantisation of the matrix multiplications makes it several times faster on a CPU.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fewlabel.atomic import atomic_directory
from fewlabel.errors import FewlabelError
from fewlabel.model_dir.manifest import add_files, backbone_ref, load_manifest
from fewlabel.model_dir.records import Manifest

if TYPE_CHECKING:
    from fewlabel.encoders.backbones import Backbone

ONNX_DIR = "onnx"


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
    names: list[str] = [
        n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer.model_input_names
    ]
    wrapper = _sentence_encoder(model, "token_type_ids" in names, _pooling_mode(backbone_dir))
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


def _sentence_encoder(model: Any, token_types: bool, pooling: str) -> Any:
    """``model`` with its pooling and L2 normalisation, as a torch module: token ids in, one unit
    vector per text out."""
    import torch

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

    wrapper = WithTokenTypes() if token_types else WithoutTokenTypes()
    wrapper.eval()  # inference graph: no dropout
    return wrapper


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
    from fewlabel.encoders.sentence import load_sentence_model

    model_dir = Path(model_dir)
    manifest = load_manifest(model_dir)
    if manifest.task == "multi-label":
        raise FewlabelError(
            f"{model_dir}: a multi-label model; ONNX export works with single-label models only"
        )
    backbone = _exportable_backbone(model_dir, manifest)
    max_tokens = int(load_sentence_model(backbone).max_seq_length)
    final = model_dir / ONNX_DIR
    with atomic_directory(final) as tmp_dir:
        settings = _export_into(tmp_dir, backbone, max_tokens, quantize)
    add_files(model_dir, ONNX_DIR, {"onnx": {"dir": ONNX_DIR, **settings}})
    return {"onnx": str(final / "encoder.onnx"), "bytes": (final / "encoder.onnx").stat().st_size, **settings}


def _exportable_backbone(model_dir: Path, manifest: Manifest) -> Backbone:
    """The model's backbone, from the store; FewlabelError when the model has no encoder to export."""
    from fewlabel.encoders.backbones import find

    name = manifest.strategy.name
    if manifest.backbone is None:
        raise FewlabelError(
            f"{model_dir}: strategy {name!r} uses no neural encoder; it is already fast and has nothing to export"
        )
    if name in ("finetune", "setfit"):
        raise FewlabelError(
            f"{model_dir}: ONNX export covers frozen-encoder strategies (embed, ensemble); a "
            f"{name} model runs with PyTorch (`predict` and `serve` use it as it is)"
        )
    backbone = find(backbone_ref(model_dir, manifest) or "")  # pinned by hash: from the store only
    if not backbone.is_local:
        raise FewlabelError(
            f"backbone {backbone.name!r} is a Hub id; download it to a local directory to export it"
        )
    return backbone


def _export_into(tmp_dir: Path, backbone: Backbone, max_tokens: int, quantize: str | None) -> dict[str, Any]:
    """Write ``encoder.onnx``, ``tokenizer.json`` and ``encoder.json`` into ``tmp_dir``, and nothing
    else; returns the settings ``encoder.json`` holds."""
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
    return settings
