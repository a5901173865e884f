"""Loading a saved model for prediction, with the engine that runs its encoder.

The model directory itself is read by :mod:`fewlabel.model_dir.store`; this module only decides how
the encoder runs: PyTorch in float32 (exactly as evaluated), PyTorch with bfloat16 matrix products,
or an exported ONNX encoder.
"""

from __future__ import annotations

from pathlib import Path

from fewlabel.errors import ModelDirError
from fewlabel.model_dir.store import TrainedModel, read_model

ENGINES = ("auto", "onnx", "torch", "torch-bf16")


def load_model(directory: str | Path, verify: bool = True, engine: str = "auto") -> TrainedModel:
    """Load a saved model; never unpickles or runs code from the directory.

    Args:
        engine: ``auto`` runs an exported ONNX encoder when the model has one and ONNX Runtime is
            installed, else PyTorch; ``onnx`` requires the ONNX encoder; ``torch`` ignores it and
            predicts exactly as the model was evaluated; ``torch-bf16`` runs PyTorch with bfloat16
            matrix products: about 2x faster on CPUs that have them natively (AMX, AVX512-BF16) and
            on GPUs, probabilities within about 0.01 (slower elsewhere).
    """
    if engine not in ENGINES:
        raise ModelDirError(f"unknown engine {engine!r}; use {', '.join(ENGINES)}")
    directory = Path(directory)
    model = read_model(directory, verify)
    strategy, manifest = model.strategy, model.manifest
    if engine == "torch-bf16":
        strategy.use_precision("bf16")
    onnx = manifest.onnx
    if engine == "onnx" and not onnx:
        raise ModelDirError(
            f"{directory}: has no ONNX encoder; run `fewlabel export {directory} --format onnx`"
        )
    attached = False
    if onnx and not engine.startswith("torch"):
        try:
            from fewlabel.encoders.onnx import OnnxEncoder

            # onnx.dir is a checked relative path, and its files are listed and verified.
            strategy.attach_encoder(OnnxEncoder(directory / onnx.dir))
            attached = True
        except ImportError:
            if engine == "onnx":
                raise ModelDirError(
                    "the ONNX engine needs onnxruntime and onnx: `pip install 'fewlabel[onnx]'`"
                ) from None
    ref = model.backbone_ref
    if ref and not attached:
        from fewlabel.encoders.backbones import find
        from fewlabel.encoders.sentence import Encoder

        # The backbone the manifest pins by hash, found now (in the backbone store, or packaged) and
        # loaded on first use. Predicting keeps no embedding cache: memory stays flat over millions
        # of texts.
        precision = "bf16" if engine == "torch-bf16" else "fp32"
        strategy.attach_encoder(Encoder(find(ref), cache=False, precision=precision))
    return model
