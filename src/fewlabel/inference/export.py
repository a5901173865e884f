"""ONNX export of a model's sentence encoder (:class:`fewlabel.encoders.onnx.OnnxEncoder` runs it).

The exported graph takes token ids and returns the L2-normalised sentence embedding from the
backbone's whole sentence-transformers pipeline (encoder, pooling, any dense layers); the prompt the
backbone puts before each text (EmbeddingGemma's classification prompt) goes into ``encoder.json``.
Prediction then needs only ``tokenizers`` and ``onnxruntime``: no PyTorch, no Transformers. A
fine-tuned classifier (``finetune``, ``setfit``) is exported whole: a graph from token windows to
their summed token states, pooled per text and put through the trained head in NumPy. An export
is kept only when the graph embeds (or classifies) a few check texts as PyTorch does. Optional int8 dynamic
quantisation of the matrix multiplications makes it several times faster on a CPU. With openvino
installed, OpenVINO is checked on the same texts and timed against ONNX Runtime; when it is faster the
graph is also kept in OpenVINO's format, which ``auto`` then runs (:func:`_openvino_check`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fewlabel.atomic import atomic_directory
from fewlabel.encoders.onnx import IR_FILES
from fewlabel.errors import FewlabelError
from fewlabel.model_dir.manifest import add_files, backbone_ref, load_manifest
from fewlabel.model_dir.records import Manifest

if TYPE_CHECKING:
    from fewlabel.encoders.backbones import Backbone
    from fewlabel.encoders.onnx import OnnxEncoder

ONNX_DIR = "onnx"


# Texts the exported graph must embed as PyTorch does before an export is kept: short, long (cut at
# the backbone's window) and non-English, so that a pipeline the graph leaves out (a dense layer, a
# prompt) or a tokenizer that adds other special tokens is caught instead of saved.
CHECK_TEXTS = (
    "Great value, works exactly as described.",
    "The battery died after two days and support never answered. " * 40,
    "Livre passionnant, je le recommande.",
    "x",
)
# Least cosine similarity between an exported embedding and PyTorch's, per quantisation.
MIN_COSINE = {None: 0.999, "int8": 0.9}
# A fine-tuned classifier is exported whole; its probabilities may move this much from PyTorch's.
MAX_PROBA_DIFF = {None: 0.01, "int8": 0.2}
FINE_TUNED = ("finetune", "setfit")


def _export_graph(model: Any, out: Path) -> list[str]:
    """Export the whole sentence-transformers pipeline of ``model`` (encoder, pooling, any dense
    layers, normalisation) to ``out``; returns the graph's input names."""
    tokenizer = model.tokenizer
    names: list[str] = [
        n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer.model_input_names
    ]
    wrapper = _sentence_encoder(model, names)
    _trace(wrapper, tokenizer, model.device, names, ["sentence_vector"], int(model.max_seq_length), out)
    return names


def _trace(
    module: Any, tokenizer: Any, device: Any, names: list[str], outputs: list[str], max_tokens: int, out: Path
) -> None:
    """``module`` (token tensors ``names`` in, ``outputs`` out) as a self-contained ONNX graph at
    ``out``, any batch size and any length up to ``max_tokens``."""
    import torch

    sample = tokenizer(
        ["a short one", "a somewhat longer example sentence for tracing", "x"],
        padding=True,
        return_tensors="pt",
    ).to(device)
    batch = torch.export.Dim("batch", min=1, max=4096)
    seq = torch.export.Dim("seq", min=1, max=max(max_tokens, 8))
    with torch.no_grad(), _quiet_tracer():
        torch.onnx.export(
            module,
            tuple(sample[n] for n in names),
            str(out),
            input_names=names,
            output_names=outputs,
            dynamic_shapes=tuple({0: batch, 1: seq} for _ in names),
            dynamo=True,
            external_data=False,
            verbose=False,
        )


@contextlib.contextmanager
def _quiet_tracer() -> Iterator[None]:
    """Silence what the ONNX tracer says about its own internals (torchvision missing, renamed axes,
    deprecations) for the export's duration: nothing a user can act on. The graph is then checked
    against PyTorch's answers, which is what tells whether the export is right."""
    import logging
    import warnings

    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        logger.setLevel(level)


def _sentence_encoder(model: Any, names: list[str]) -> Any:
    """The sentence-transformers ``model`` as a torch module over positional token tensors: token
    ids in, one unit vector per text out (every module of the pipeline runs, as in ``encode``)."""
    import torch

    def embed(features: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.nn.functional.normalize(model(features)["sentence_embedding"], p=2, dim=1)

    # torch.export needs named positional arguments, so one wrapper per input signature.
    class WithTokenTypes(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return embed(
                {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            )

    class WithoutTokenTypes(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return embed({"input_ids": input_ids, "attention_mask": attention_mask})

    wrapper = WithTokenTypes() if "token_type_ids" in names else WithoutTokenTypes()
    wrapper.eval()  # inference graph: no dropout
    return wrapper


def _prompt(model: Any, backbone: Backbone) -> str:
    """The prompt the encoder puts before every text (EmbeddingGemma's classification prompt), which
    the ONNX encoder must put there too; refuses a pipeline whose pooling leaves the prompt out
    (the graph cannot know where the prompt ends)."""
    prompt = (getattr(model, "prompts", None) or {}).get("Classification") or ""
    if prompt and any(getattr(module, "include_prompt", True) is False for module in model):
        raise FewlabelError(
            f"backbone {backbone.name!r} pools its embeddings without its prompt; fewlabel cannot "
            "export that to ONNX (predict with PyTorch: `--engine torch` or `torch-bf16`)"
        )
    return prompt


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
    final = model_dir / ONNX_DIR
    if manifest.strategy.name in FINE_TUNED:
        from fewlabel.model_dir.store import read_model

        trained = read_model(model_dir)
        with atomic_directory(final) as tmp_dir:
            settings = _export_finetuned_into(tmp_dir, trained.strategy, backbone, quantize)
    else:
        model = load_sentence_model(backbone)
        with atomic_directory(final) as tmp_dir:
            settings = _export_into(tmp_dir, backbone, model, quantize)
    refused = settings.pop("openvino_refused", None)
    add_files(model_dir, ONNX_DIR, {"onnx": {"dir": ONNX_DIR, **settings}})
    info = {"onnx": str(final / "encoder.onnx"), "bytes": (final / "encoder.onnx").stat().st_size, **settings}
    return {**info, "openvino_refused": refused} if refused else info


def _exportable_backbone(model_dir: Path, manifest: Manifest) -> Backbone:
    """The model's backbone, from the store; FewlabelError when the model has no encoder to export."""
    from fewlabel.encoders.backbones import find

    name = manifest.strategy.name
    if manifest.backbone is None:
        raise FewlabelError(
            f"{model_dir}: strategy {name!r} uses no neural encoder; it is already fast and has nothing to export"
        )
    backbone = find(backbone_ref(model_dir, manifest) or "")  # pinned by hash: from the store only
    if not backbone.is_local:
        raise FewlabelError(
            f"backbone {backbone.name!r} is a Hub id; download it to a local directory to export it"
        )
    return backbone


def _export_into(tmp_dir: Path, backbone: Backbone, model: Any, quantize: str | None) -> dict[str, Any]:
    """Write ``encoder.onnx``, ``tokenizer.json`` and ``encoder.json`` into ``tmp_dir``, and nothing
    else, once the graph embeds :data:`CHECK_TEXTS` as PyTorch does; returns the settings
    ``encoder.json`` holds."""
    prompt = _prompt(model, backbone)
    try:
        names = _export_graph(model, tmp_dir / "float32.onnx")
    except Exception as err:  # torch.export raises many kinds; the user needs one clear line
        raise FewlabelError(
            f"ONNX export of backbone {backbone.name!r} failed: {type(err).__name__}: {err}"
        ) from None
    _quantize(tmp_dir, quantize)
    shutil.copy(Path(backbone.location) / "tokenizer.json", tmp_dir / "tokenizer.json")
    settings = {
        "inputs": names,
        "max_tokens": int(model.max_seq_length),
        "quantize": quantize,
        "backbone": backbone.name,
        "prompt": prompt,
    }
    (tmp_dir / "encoder.json").write_text(json.dumps(settings, indent=2), encoding="utf-8")
    _remove_leftovers(tmp_dir)
    return {**settings, **_check_against_torch(tmp_dir, backbone, quantize)}


def _remove_leftovers(tmp_dir: Path) -> None:
    for leftover in tmp_dir.iterdir():
        if leftover.name not in {"encoder.onnx", "tokenizer.json", "encoder.json"}:
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()


def _quantize(tmp_dir: Path, quantize: str | None) -> None:
    """``float32.onnx`` in ``tmp_dir`` becomes ``encoder.onnx``, quantised as asked."""
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
        (tmp_dir / "float32.onnx").unlink()
    else:
        os.replace(tmp_dir / "float32.onnx", target)


def _export_finetuned_into(
    tmp_dir: Path, strategy: Any, backbone: Backbone, quantize: str | None
) -> dict[str, Any]:
    """Export a fine-tuned classifier (``finetune``, ``setfit``): a graph from token ids to each
    window's summed token states and token count; pooling over a text's windows and the linear head
    run in NumPy (:class:`fewlabel.inference.onnx_classifier.OnnxFineTuned`). Kept only when it gives PyTorch's
    float32 probabilities on :data:`CHECK_TEXTS`."""
    strategy.use_precision("fp32")  # the graph and the reference both in float32
    net, recipe = strategy.tuner_.net, strategy.tuner_.recipe
    tokenizer = net.tokenizer
    if not hasattr(tokenizer, "backend_tokenizer"):
        raise FewlabelError(
            f"backbone {backbone.name!r} has no fast tokenizer; it cannot be exported to ONNX"
        )
    names = ["input_ids", "attention_mask"]
    try:
        _export_window_sums(net, names, int(recipe.max_tokens), tmp_dir / "float32.onnx")
    except Exception as err:  # torch.export raises many kinds; the user needs one clear line
        raise FewlabelError(
            f"ONNX export of the fine-tuned {backbone.name!r} failed: {type(err).__name__}: {err}"
        ) from None
    _quantize(tmp_dir, quantize)
    (tmp_dir / "tokenizer.json").write_text(tokenizer.backend_tokenizer.to_str(), encoding="utf-8")
    settings = {
        "kind": "finetuned",
        "inputs": names,
        "max_tokens": int(recipe.max_tokens),
        "long_texts": recipe.long_texts,
        "head_fraction": float(recipe.head_fraction),
        "pad_id": int(tokenizer.pad_token_id or 0),
        "quantize": quantize,
        "backbone": backbone.name,
        "prompt": "",
    }
    (tmp_dir / "encoder.json").write_text(json.dumps(settings, indent=2), encoding="utf-8")
    _remove_leftovers(tmp_dir)
    from fewlabel.inference.onnx_classifier import OnnxFineTuned

    texts = list(CHECK_TEXTS)
    reference = strategy.tuner_.predict_proba(texts)

    def gap(probabilities: np.ndarray) -> float:
        return float(np.abs(probabilities - reference).max())

    weight, bias = strategy.head_arrays()
    seconds: dict[str, float] = {}  # ONNX Runtime's, against which OpenVINO is timed
    exported = gap(_time_answers(OnnxFineTuned(tmp_dir, weight, bias), texts, seconds))
    if exported > MAX_PROBA_DIFF[quantize]:
        raise FewlabelError(
            f"ONNX export of the fine-tuned {backbone.name!r}: the graph's probabilities differ from "
            f"PyTorch's by {exported:.3f} on a check text (at most {MAX_PROBA_DIFF[quantize]}); nothing was "
            "exported. Predict with PyTorch (`--engine torch`)."
        )

    def run() -> OnnxFineTuned:
        return OnnxFineTuned(tmp_dir, weight, bias, runtime="openvino")

    return {**settings, **_openvino_check(tmp_dir, run, gap, MAX_PROBA_DIFF[None], quantize, seconds)}


def _export_window_sums(net: Any, names: list[str], max_tokens: int, out: Path) -> None:
    """The fine-tuned encoder of ``net`` as ONNX: token ids in; each window's sum of token states
    and its token count out (float32)."""
    import torch

    class WindowSums(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = net.model

        def forward(self, input_ids, attention_mask):
            states = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state.float()
            mask = attention_mask.unsqueeze(-1).to(states.dtype)
            return (states * mask).sum(1), mask.sum(1)

    _trace(
        WindowSums().eval(),
        net.tokenizer,
        net.device,
        names,
        ["window_sums", "window_counts"],
        max_tokens,
        out,
    )


def _check_against_torch(onnx_dir: Path, backbone: Backbone, quantize: str | None) -> dict[str, Any]:
    """Refuse an export whose embeddings of :data:`CHECK_TEXTS` are not PyTorch's (float32); the
    OpenVINO record (:func:`_openvino_check`) when it passes."""
    from fewlabel.encoders.onnx import OnnxEncoder
    from fewlabel.encoders.sentence import Encoder

    texts = list(CHECK_TEXTS)
    seconds: dict[str, float] = {}  # ONNX Runtime's, against which OpenVINO is timed
    exported = _time_answers(OnnxEncoder(onnx_dir), texts, seconds)
    reference = Encoder(backbone, cache=False).encode(texts)
    if exported.shape != reference.shape:
        raise FewlabelError(
            f"ONNX export of backbone {backbone.name!r}: the graph gives vectors of shape "
            f"{exported.shape[1:]}, PyTorch {reference.shape[1:]}; nothing was exported"
        )
    cosine = float(np.min(np.sum(exported * reference, axis=1)))
    if cosine < MIN_COSINE[quantize]:
        raise FewlabelError(
            f"ONNX export of backbone {backbone.name!r}: the graph's embeddings differ from PyTorch's "
            f"(cosine {cosine:.3f} on a check text, at least {MIN_COSINE[quantize]} needed); nothing was "
            "exported. Predict with PyTorch (`--engine torch` or `torch-bf16`)."
        )

    def gap(vectors: np.ndarray) -> float:
        return 1.0 - float(np.min(np.sum(vectors * reference, axis=1)))

    def run() -> OnnxEncoder:
        return OnnxEncoder(onnx_dir, runtime="openvino")

    return _openvino_check(onnx_dir, run, gap, 1.0 - MIN_COSINE[None], quantize, seconds)


def _openvino_check(
    tmp_dir: Path,
    load: Callable[[], OnnxEncoder],
    gap: Callable[[np.ndarray], float],
    limit: float,
    quantize: str | None,
    seconds: dict[str, float],
) -> dict[str, Any]:
    """Whether OpenVINO may run the float32 graph, checked as ONNX Runtime was.

    The graph is also written in OpenVINO's format (:data:`IR_FILES`; it loads in a second where
    converting the graph takes several), and OpenVINO runs that on :data:`CHECK_TEXTS`: when its
    answers are within ``limit`` of PyTorch's (``gap``), ``{"openvino": {...}}`` with the precision
    it chose and its speed against ONNX Runtime's there (each timed on a second pass; the first
    builds kernels). The IR is kept only when OpenVINO was faster (``auto`` then runs it).
    ``{"openvino_refused": why}`` when it answered otherwise; ``{}`` when openvino is not installed or
    the graph is quantised (ONNX Runtime's int8 operators). ``seconds`` holds ONNX Runtime's time,
    taken by the caller's own check, whose session is gone by now: one runtime in memory at a time.
    """
    if quantize is not None:
        return {}
    try:
        import openvino as ov
    except ImportError:
        return {}
    texts = list(CHECK_TEXTS)
    network = ov.Core().read_model(str(tmp_dir / "encoder.onnx"))
    ov.save_model(network, str(tmp_dir / IR_FILES[0]), compress_to_fp16=False)  # float32, as the graph
    del network
    settings_file = tmp_dir / "encoder.json"
    settings = json.loads(settings_file.read_text(encoding="utf-8"))
    settings_file.write_text(json.dumps({**settings, "openvino_ir": True}, indent=2), encoding="utf-8")
    encoder = load()
    distance = gap(_time_answers(encoder, texts, seconds))
    speedup = seconds["onnxruntime"] / seconds["openvino"]
    if distance > limit or speedup <= 1:
        for name in IR_FILES:
            (tmp_dir / name).unlink()
        settings_file.write_text(json.dumps(settings, indent=2), encoding="utf-8")
    if distance > limit:
        return {
            "openvino_refused": f"OpenVINO's answers differ from PyTorch's by {distance:.4f} on a check text"
        }
    record = {"precision": encoder.session.precision, "gap": distance, "speedup": speedup}
    return {"openvino": record, **({"openvino_ir": True} if speedup > 1 else {})}


def _time_answers(encoder: OnnxEncoder, texts: list[str], seconds: dict[str, float]) -> np.ndarray:
    encoder.answers(texts)
    start = time.perf_counter()
    answers = encoder.answers(texts)
    seconds[encoder.runtime] = time.perf_counter() - start
    return answers
