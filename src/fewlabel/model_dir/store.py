"""Saved models: a directory of JSON, .npz and safetensors files, written atomically, loaded without
running code.

Layout::

    MODEL_DIR/
      fewlabel.json      manifest: format, versions, strategy, backbone, labels, config, metrics,
                         training-data fingerprint, and the SHA-256 of every other file
      metrics.json       every number the training run measured
      strategy/          the strategy's own files (strategy.json + weights)

This module saves a fitted strategy and reads it back; which engine runs the encoder at prediction
time (PyTorch, bfloat16, ONNX) is chosen by :func:`fewlabel.inference.loading.load_model`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fewlabel.atomic import atomic_directory, write_text
from fewlabel.errors import ModelDirError
from fewlabel.model_dir.manifest import (
    file_entries,
    is_model_dir,
    read_manifest,
    verify_files,
    write_manifest,
)
from fewlabel.strategies import get_strategy_class
from fewlabel.strategies.base import Strategy


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
        from fewlabel.evaluation.calibration import apply_temperature

        return apply_temperature(self.strategy.predict_proba(list(texts)), self.temperature)

    @property
    def threshold(self) -> float | None:
        """Two classes: the probability of ``labels[1]`` from which it is the answer (None: 0.5)."""
        decision = self.manifest.get("decision")
        return float(decision["threshold"]) if decision else None

    def decide(self, proba: np.ndarray) -> np.ndarray:
        """The answer (a label index) for each row of calibrated probabilities."""
        from fewlabel.evaluation.threshold import decide

        return decide(proba, self.threshold)

    def predict(self, texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """Predicted labels and the probability of each predicted label."""
        proba = self.predict_proba(texts)
        if len(proba) == 0:
            return [], np.zeros(0)
        best = self.decide(proba)
        return [self.labels[i] for i in best], proba[np.arange(len(best)), best]


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
    with atomic_directory(directory) as tmp:
        strategy.save(tmp / "strategy")
        for name, content in (extra_json or {}).items():
            (tmp / name).write_text(json.dumps(content, indent=2, ensure_ascii=False), encoding="utf-8")
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
        write_manifest(tmp, {**manifest, "labels": labels, "files": file_entries(tmp)})
    return directory


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
        write_text(directory / name, text)
    return directory / "report.html"


def read_model(directory: str | Path, verify: bool = True) -> TrainedModel:
    """Read a saved model's strategy, labels and manifest; never unpickles or runs code from it.

    Args:
        verify: check every file against the manifest's size and SHA-256 first.
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    if verify:
        verify_files(directory, manifest)
    strategy = get_strategy_class(manifest["strategy"]["name"]).load(directory / "strategy")
    return TrainedModel(strategy, list(manifest["labels"]), manifest)
