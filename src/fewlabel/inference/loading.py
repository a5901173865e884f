"""Loading a saved model for prediction, with the engine that runs its encoder.

The model directory itself is read by :mod:`fewlabel.model_dir.store`; this module only decides how
the encoder runs: PyTorch in float32 (exactly as evaluated), PyTorch with bfloat16 matrix products,
or an exported ONNX encoder; without a choice, the one training recorded.
"""

from __future__ import annotations

from pathlib import Path

from fewlabel.errors import ModelDirError
from fewlabel.model_dir.engines import recorded_engine, run_with
from fewlabel.model_dir.store import TrainedModel, read_model

ENGINES = ("auto", "onnx", "torch", "torch-bf16")


def load_model(directory: str | Path, verify: bool = True, engine: str = "auto") -> TrainedModel:
    """Load a saved model; never unpickles or runs code from the directory.

    Args:
        engine: ``auto`` runs an exported ONNX encoder when the model has one and ONNX Runtime is
            installed, else the PyTorch engine training recorded for it (``torch-bf16`` when it was
            faster there and answered alike, and this hardware has bfloat16 natively too;
            :mod:`fewlabel.model_dir.engines`), else ``torch``; ``onnx`` requires the ONNX encoder;
            ``torch`` ignores both and predicts exactly as the model was evaluated; ``torch-bf16``
            runs PyTorch with bfloat16 matrix products: about 2x faster on CPUs that have them
            natively (AMX, AVX512-BF16) and on GPUs, probabilities within about 0.01 (slower elsewhere).
    """
    if engine not in ENGINES:
        raise ModelDirError(f"unknown engine {engine!r}; use {', '.join(ENGINES)}")
    directory = Path(directory)
    model = read_model(directory, verify)
    if engine == "onnx" and not model.manifest.onnx:
        raise ModelDirError(
            f"{directory}: has no ONNX encoder; run `fewlabel export {directory} --format onnx`"
        )
    if engine in ("auto", "onnx") and _attach_onnx(model, directory, engine):
        return model
    if engine == "auto":
        engine = recorded_engine(model.manifest)
    run_with(model.strategy, engine, model.backbone_ref)
    return model


def _attach_onnx(model: TrainedModel, directory: Path, engine: str) -> bool:
    """Run the model's exported ONNX encoder, if it has one and ONNX Runtime is installed (required
    with ``engine="onnx"``); whether it does."""
    onnx = model.manifest.onnx
    if not onnx:
        return False
    try:
        from fewlabel.encoders.onnx import OnnxEncoder
        from fewlabel.inference.onnx_classifier import OnnxFineTuned
        from fewlabel.strategies.finetune import FineTunedEncoder

        # onnx.dir is a checked relative path, and its files are listed and verified.
        strategy = model.strategy
        if isinstance(strategy, FineTunedEncoder):  # the whole classifier: encoder, pooling, head
            encoder: OnnxEncoder = OnnxFineTuned(directory / onnx.dir, *strategy.head_arrays())
        else:
            encoder = OnnxEncoder(directory / onnx.dir)
    except ImportError:
        if engine == "onnx":
            raise ModelDirError(
                "the ONNX engine needs onnxruntime and onnx: `pip install 'fewlabel[onnx]'`"
            ) from None
        return False
    model.strategy.attach_encoder(encoder)
    return True
