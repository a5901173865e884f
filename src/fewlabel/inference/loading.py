"""Loading a saved model for prediction, with the engine that runs its encoder.

The model directory itself is read by :mod:`fewlabel.model_dir.store`; this module only decides how
the encoder runs: PyTorch in float32 (exactly as evaluated), PyTorch with bfloat16 matrix products,
or an exported ONNX encoder; without a choice, the one training recorded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fewlabel.errors import ModelDirError
from fewlabel.model_dir.engines import recorded_engine, run_with
from fewlabel.model_dir.store import TrainedModel, read_model

if TYPE_CHECKING:
    from fewlabel.encoders.onnx import OnnxEncoder

ENGINES = ("auto", "onnx", "openvino", "torch", "torch-bf16")


def load_model(directory: str | Path, verify: bool = True, engine: str = "auto") -> TrainedModel:
    """Load a saved model; never unpickles or runs code from the directory.

    Args:
        engine: ``auto`` runs an exported ONNX encoder when the model has one: with OpenVINO when
            ``fewlabel export`` found it answering as PyTorch and faster than ONNX Runtime, and it is
            installed here; else with ONNX Runtime when that is installed; else the PyTorch engine
            training recorded for it (``torch-bf16`` when it was faster there and answered alike, and
            this hardware has bfloat16 natively too; :mod:`fewlabel.model_dir.engines`), else
            ``torch``; ``onnx`` requires the ONNX encoder and ONNX Runtime, ``openvino`` the ONNX
            encoder and OpenVINO;
            ``torch`` ignores both and predicts exactly as the model was evaluated; ``torch-bf16``
            runs PyTorch with bfloat16 matrix products: about 2x faster on CPUs that have them
            natively (AMX, AVX512-BF16) and on GPUs, probabilities within about 0.01 (slower elsewhere).
    """
    if engine not in ENGINES:
        raise ModelDirError(f"unknown engine {engine!r}; use {', '.join(ENGINES)}")
    directory = Path(directory)
    model = read_model(directory, verify)
    if engine in ("onnx", "openvino") and not model.manifest.onnx:
        raise ModelDirError(
            f"{directory}: has no ONNX encoder; run `fewlabel export {directory} --format onnx`"
        )
    if engine in ("auto", "onnx", "openvino") and _attach_onnx(model, directory, engine):
        return model
    if engine == "auto":
        engine = recorded_engine(model.manifest)
    run_with(model.strategy, engine, model.backbone_ref)
    return model


def _attach_onnx(model: TrainedModel, directory: Path, engine: str) -> bool:
    """Run the model's exported ONNX encoder, if it has one and its runtime is installed (required
    with ``engine="onnx"`` or ``"openvino"``); whether it does."""
    onnx = model.manifest.onnx
    if not onnx:
        return False
    runtimes = {"onnx": ["onnxruntime"], "openvino": ["openvino"]}.get(engine, ["onnxruntime"])
    if engine == "auto" and onnx.openvino and onnx.openvino.speedup > 1 and _installed("openvino"):
        runtimes = ["openvino", "onnxruntime"]
    for runtime in runtimes:
        try:
            encoder = _onnx_encoder(model, directory / onnx.dir, runtime)
        except ImportError:
            continue
        model.strategy.attach_encoder(encoder)
        return True
    if engine == "onnx":
        raise ModelDirError("the ONNX engine needs onnxruntime and onnx: `pip install 'fewlabel[onnx]'`")
    if engine == "openvino":
        raise ModelDirError("the OpenVINO engine needs openvino and onnx: `pip install 'fewlabel[openvino]'`")
    return False


def _onnx_encoder(model: TrainedModel, onnx_dir: Path, runtime: str) -> OnnxEncoder:
    """The model's exported encoder run by ``runtime``; ImportError when that is not installed."""
    from fewlabel.encoders.onnx import OnnxEncoder
    from fewlabel.inference.onnx_classifier import OnnxFineTuned
    from fewlabel.strategies.finetune import FineTunedEncoder

    # onnx_dir is a checked relative path, and its files are listed and verified.
    strategy = model.strategy
    if isinstance(strategy, FineTunedEncoder):  # the whole classifier: encoder, pooling, head
        weight, bias = strategy.head_arrays()
        return OnnxFineTuned(onnx_dir, weight, bias, runtime=runtime)
    return OnnxEncoder(onnx_dir, runtime=runtime)


def _installed(module: str) -> bool:
    from importlib.util import find_spec

    return find_spec(module) is not None
