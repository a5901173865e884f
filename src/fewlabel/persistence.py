"""Saved models: a directory of JSON and .npz files, written atomically, loaded without running code.

Layout::

    MODEL_DIR/
      fewlabel.json      manifest: format, versions, strategy, backbone, labels, config, metrics,
                         training-data fingerprint, and the SHA-256 of every other file
      metrics.json       every number the training run measured
      strategy/          the strategy's own files (strategy.json + weights)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fewlabel.errors import ModelDirError
from fewlabel.strategies import get_strategy_class
from fewlabel.strategies.base import Strategy

FORMAT = "fewlabel-model"
FORMAT_VERSION = 1
MANIFEST = "fewlabel.json"
# Documents rebuilt by `fewlabel report`; not loaded by anything, so not checksummed.
REGENERATED = ("report.html", "README.md")


@dataclass
class TrainedModel:
    """A fitted strategy with its label names and manifest; what ``predict`` and ``evaluate`` use."""

    strategy: Strategy
    labels: list[str]
    manifest: dict[str, Any]

    @property
    def temperature(self) -> float:
        return float((self.manifest.get("calibration") or {}).get("temperature", 1.0))

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Calibrated class probabilities, columns in the order of ``labels``."""
        from fewlabel.calibration import apply_temperature

        return apply_temperature(self.strategy.predict_proba(list(texts)), self.temperature)

    def predict(self, texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """Predicted labels and the probability of each predicted label."""
        proba = self.predict_proba(texts)
        if len(proba) == 0:
            return [], np.zeros(0)
        best = proba.argmax(axis=1)
        return [self.labels[i] for i in best], proba[np.arange(len(best)), best]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def is_model_dir(path: Path) -> bool:
    return (path / MANIFEST).is_file()


def _check_target(directory: Path) -> None:
    if directory.exists() and not directory.is_dir():
        raise ModelDirError(f"{directory}: exists and is a file; give a directory path for the model")
    if directory.is_dir() and any(directory.iterdir()) and not is_model_dir(directory):
        raise ModelDirError(
            f"{directory}: exists and is not a fewlabel model; refusing to overwrite it. "
            "Choose a new or empty directory."
        )


def save_model(
    directory: str | Path,
    strategy: Strategy,
    labels: list[str],
    manifest: dict[str, Any],
    extra_json: dict | None = None,
    extra_files: dict[str, str] | None = None,
) -> Path:
    """Write a model directory atomically: into a temporary sibling, then renamed into place.

    An existing fewlabel model at ``directory`` is replaced only once the new one is complete; any
    other existing non-empty directory is refused.
    """
    directory = Path(directory)
    _check_target(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        strategy.save(tmp / "strategy")
        for name, content in (extra_json or {}).items():
            (tmp / name).write_text(json.dumps(content, indent=2, ensure_ascii=False), encoding="utf-8")
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
        files = {
            str(p.relative_to(tmp)): {"sha256": file_sha256(p), "bytes": p.stat().st_size}
            for p in sorted(tmp.rglob("*"))
            if p.is_file() and str(p.relative_to(tmp)) not in REGENERATED
        }
        full = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            **manifest,
            "labels": labels,
            "files": files,
        }
        (tmp / MANIFEST).write_text(json.dumps(full, indent=2, ensure_ascii=False), encoding="utf-8")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap_into_place(tmp, directory)
    return directory


def _swap_into_place(new: Path, directory: Path) -> None:
    """Rename ``new`` to ``directory``; an old model there is kept until the new one is in place."""
    old = None
    try:
        if directory.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
            os.replace(directory, old / "model")
        os.replace(new, directory)
    except BaseException:
        if old is not None and not directory.exists() and (old / "model").exists():
            os.replace(old / "model", directory)  # put the previous model back
        shutil.rmtree(new, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def rebuild_documents(directory: str | Path) -> Path:
    """Write report.html and README.md again from the manifest and metrics.json; returns the report path."""
    from fewlabel.report import model_card, render_report

    directory = Path(directory)
    manifest = read_manifest(directory)
    try:
        metrics = json.loads((directory / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ModelDirError(f"{directory}: cannot read metrics.json ({err})") from None
    for name, text in (
        ("report.html", render_report(manifest, metrics)),
        ("README.md", model_card(manifest, metrics)),
    ):
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, directory / name)
    return directory / "report.html"


def read_manifest(directory: str | Path) -> dict[str, Any]:
    directory = Path(directory)
    if not directory.exists():
        raise ModelDirError(
            f"{directory}: no such model directory; train one with `fewlabel train DATA -o {directory}`"
        )
    if not is_model_dir(directory):
        raise ModelDirError(
            f"{directory}: not a fewlabel model (no {MANIFEST}); give the directory `fewlabel train` wrote"
        )
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelDirError(f"{directory / MANIFEST}: damaged manifest ({err}); retrain the model") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelDirError(f"{directory / MANIFEST}: not a fewlabel model manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelDirError(
            f"{directory}: model format version {version}, but this fewlabel reads version {FORMAT_VERSION}; "
            "retrain it or use the fewlabel version that wrote it "
            f"({manifest.get('fewlabel_version', 'unknown')})"
        )
    strategy = manifest.get("strategy")
    labels = manifest.get("labels")
    if (
        not isinstance(strategy, dict)
        or not isinstance(strategy.get("name"), str)
        or not isinstance(labels, list)
    ):
        raise ModelDirError(
            f"{directory / MANIFEST}: damaged manifest (no strategy name or labels); retrain the model"
        )
    return manifest


def verify_files(directory: Path, manifest: dict[str, Any]) -> None:
    """Check every file listed in the manifest against its size and SHA-256."""
    for rel, expected in manifest.get("files", {}).items():
        path = directory / rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise ModelDirError(f"{directory / MANIFEST}: unsafe file path {rel!r}")
        if not path.is_file():
            raise ModelDirError(f"{directory}: file {rel} is missing; the model directory is incomplete")
        if path.stat().st_size != expected["bytes"] or file_sha256(path) != expected["sha256"]:
            raise ModelDirError(
                f"{directory}: file {rel} does not match its checksum (truncated or changed since training); "
                "retrain or restore the model"
            )


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
    manifest = read_manifest(directory)
    if verify:
        verify_files(directory, manifest)
    cls = get_strategy_class(manifest["strategy"]["name"])
    strategy = cls.load(directory / "strategy")
    if engine == "torch-bf16":
        strategy.use_precision("bf16")
    onnx = manifest.get("onnx")
    if engine == "onnx" and not onnx:
        raise ModelDirError(
            f"{directory}: has no ONNX encoder; run `fewlabel export {directory} --format onnx`"
        )
    attached = False
    if onnx and not engine.startswith("torch"):
        try:
            from fewlabel.onnx_export import OnnxEncoder

            strategy.attach_encoder(OnnxEncoder(directory / onnx["dir"]))
            attached = True
        except ImportError:
            if engine == "onnx":
                raise ModelDirError(
                    "the ONNX engine needs onnxruntime: `pip install 'fewlabel[onnx]'`"
                ) from None
    backbone = manifest.get("backbone")
    if backbone and not attached:
        from fewlabel.embeddings import Encoder

        # Predicting keeps no embedding cache: memory stays flat over millions of texts.
        precision = "bf16" if engine == "torch-bf16" else "fp32"
        strategy.attach_encoder(Encoder(backbone["name"], cache=False, precision=precision))
    return TrainedModel(strategy, list(manifest["labels"]), manifest)
