"""Saved models: a directory of JSON, .npz and safetensors files, written atomically, loaded without
running code.

Layout::

    MODEL_DIR/
      fewlabel.json      manifest: format, versions, strategy, backbone (pinned by content hash),
                         labels, config, metrics, training-data fingerprint, the size and SHA-256
                         of every other file, and its own digest (docs/model-format.md)
      metrics.json       every number the training run measured
      strategy/          the strategy's own files (strategy.json + weights)

This module saves a fitted strategy and reads it back; which engine runs the encoder at prediction
time (PyTorch, bfloat16, ONNX) is chosen by :func:`fewlabel.inference.loading.load_model`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fewlabel.atomic import atomic_directory, write_text
from fewlabel.errors import FewlabelError, ModelDirError
from fewlabel.model_dir.manifest import (
    FORMAT_VERSION,
    MANIFEST,
    MAX_MANIFEST_BYTES,
    METRICS,
    STRATEGY_DIR,
    backbone_ref,
    file_entries,
    is_model_dir,
    load_manifest,
    read_manifest,
    verify_files,
    write_manifest,
)
from fewlabel.model_dir.records import (
    Manifest,
    Metrics,
    MultiLabelMetrics,
    manifest_record,
    parse_metrics,
    parse_multilabel_metrics,
)
from fewlabel.strategies import get_strategy_class
from fewlabel.strategies.base import Strategy
from fewlabel.strategies.files import parse_json


@dataclass
class TrainedModel:
    """A fitted strategy with its label names and manifest; what ``predict`` and ``evaluate`` use."""

    strategy: Strategy
    labels: list[str]
    manifest: Manifest

    @property
    def backbone_ref(self) -> str | None:
        """The pinned backbone (``NAME@sha256:HEX``) the strategy embeds with; None if it embeds nothing."""
        return self.strategy.backbone_ref() if self.strategy.uses_backbone else None

    @property
    def temperature(self) -> float:
        return self.manifest.temperature

    @property
    def multi_label(self) -> bool:
        """Whether the model answers a set of labels per text (see :meth:`predict_label_sets`)."""
        return self.manifest.task == "multi-label"

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Calibrated class probabilities, columns in the order of ``labels``; multi-label: each
        label's own probability."""
        from fewlabel.evaluation.calibration import apply_temperature

        if self.multi_label:
            return self.strategy.predict_proba(list(texts))
        return apply_temperature(self.strategy.predict_proba(list(texts)), self.temperature)

    @property
    def threshold(self) -> float | None:
        """Two classes: the probability of ``labels[1]`` from which it is the answer (None: 0.5)."""
        decision = self.manifest.decision
        return decision.threshold if decision else None

    @property
    def label_thresholds(self) -> np.ndarray:
        """Multi-label: each label's threshold, in the order of ``labels``."""
        thresholds = self.manifest.thresholds
        if thresholds is None:
            raise FewlabelError("a single-label model has no per-label thresholds")
        return np.array([thresholds[label] for label in self.labels])

    def predict_label_sets(self, texts: Sequence[str]) -> tuple[list[list[str]], np.ndarray]:
        """Multi-label: the labels of each text (each label whose probability reaches its threshold,
        in label order; possibly none) and the probabilities, shape (texts, labels)."""
        if not self.multi_label:
            raise FewlabelError("a single-label model answers one label per text: use predict()")
        proba = self.predict_proba(texts)
        chosen = proba >= self.label_thresholds
        return [[self.labels[j] for j in np.flatnonzero(row)] for row in chosen], proba

    def decide(self, proba: np.ndarray) -> np.ndarray:
        """The answer (a label index) for each row of calibrated probabilities."""
        from fewlabel.evaluation.threshold import decide

        if self.multi_label:
            raise FewlabelError(
                "a multi-label model answers a set of labels per text: use predict_label_sets()"
            )
        return decide(proba, self.threshold)

    def predict(self, texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """Predicted labels and the probability of each predicted label (single-label models)."""
        if self.multi_label:
            raise FewlabelError(
                "a multi-label model answers a set of labels per text: use predict_label_sets()"
            )
        proba = self.predict_proba(texts)
        if len(proba) == 0:
            return [], np.zeros(0)
        best = self.decide(proba)
        return [self.labels[i] for i in best], proba[np.arange(len(best)), best]


def check_target(directory: Path, option: str = "") -> None:
    """Refuse a model destination that is a file, or a directory holding something other than a model.

    ``option`` names where the path came from (a CLI option), for the message.
    """
    where = f" ({option})" if option else ""
    if directory.exists() and not directory.is_dir():
        raise ModelDirError(f"{directory}: exists and is a file; give a directory path for the model{where}")
    if directory.is_dir() and any(directory.iterdir()) and not is_model_dir(directory):
        raise ModelDirError(
            f"{directory}: exists and is not a fewlabel model; refusing to overwrite it. "
            f"Choose a new or empty directory{where}."
        )


def save_model(
    directory: str | Path,
    strategy: Strategy,
    labels: list[str],
    manifest: Manifest | dict[str, Any],
    extra_json: dict | None = None,
    extra_files: dict[str, str] | None = None,
) -> Path:
    """Write a model directory atomically: into a temporary sibling, then renamed into place.

    An existing fewlabel model at ``directory`` is replaced only once the new one is complete; any
    other existing non-empty directory is refused. A save an earlier process left unfinished is
    rolled back first, and its leftovers removed once this one is in place.
    """
    directory = Path(directory)
    check_target(directory)
    if isinstance(manifest, Manifest):
        manifest = manifest.to_json()
    with atomic_directory(directory) as tmp:
        strategy.save(tmp / STRATEGY_DIR)
        for name, content in (extra_json or {}).items():
            (tmp / name).write_text(json.dumps(content, indent=2, ensure_ascii=False), encoding="utf-8")
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
        _write_manifest(tmp, strategy, labels, manifest)
    return directory


def _write_manifest(tmp: Path, strategy: Strategy, labels: list[str], manifest: dict[str, Any]) -> None:
    """The manifest of a directory whose files are all written: the backbone as the strategy pins it."""
    from fewlabel.encoders.backbones import find, manifest_entry

    fitted = getattr(strategy, "fitted", strategy)
    backbone = manifest.get("backbone")
    if fitted.uses_backbone:
        backbone = {**(backbone or {}), **manifest_entry(find(fitted.backbone_ref()))}
    write_manifest(tmp, {**manifest, "backbone": backbone, "labels": labels, "files": file_entries(tmp)})


def upgrade_model(directory: str | Path, backbone: str | None = None) -> dict[str, Any]:
    """Rewrite a format 1 model in the current format, after verifying it; atomic, like a save.

    Every file is checked against the format 1 manifest and the strategy is loaded (shapes checked)
    before anything is written; the model is then saved again with the same strategy, labels and
    files, its manifest digested and its backbone pinned by content hash.

    Args:
        backbone: for a model whose backbone is a directory or a Hub id (not ``minilm`` or
            ``mpnet``): that backbone, imported into the backbone store now. Giving it is trusting it.
    """
    from fewlabel.encoders.backbones import resolve

    directory = Path(directory)
    manifest = read_manifest(directory, warn_old=False)
    version = manifest["format_version"]
    if version == FORMAT_VERSION:
        if backbone is not None:
            raise ModelDirError(
                f"{directory}: already in format {version}, its backbone pinned by content hash; "
                "there is no backbone to give"
            )
        return {"model": str(directory), "from_version": version, "to_version": version, "changed": False}
    if backbone is not None and not manifest.get("backbone"):
        raise ModelDirError(f"{directory}: strategy {manifest['strategy']['name']!r} uses no backbone")
    verify_files(directory, manifest)
    ref = resolve(backbone).ref if backbone is not None else backbone_ref(directory, manifest)
    model = _load_strategy(directory, manifest, ref)
    kept = {
        k: v
        for k, v in manifest.items()
        if k not in ("format", "format_version", "digest", "files", "labels")
    }
    with atomic_directory(directory) as tmp:
        model.strategy.save(tmp / STRATEGY_DIR)
        for rel in _other_files(directory):
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(directory / rel, tmp / rel)
        _write_manifest(tmp, model.strategy, model.labels, kept)
    read_model(directory)  # the rewritten model loads
    return {"model": str(directory), "from_version": version, "to_version": FORMAT_VERSION, "changed": True}


def _other_files(directory: Path) -> list[str]:
    """The files of a verified model directory besides its manifest and strategy (so no links)."""
    out = []
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory).as_posix()
        if path.is_file() and rel != MANIFEST and not rel.startswith(STRATEGY_DIR + "/"):
            out.append(rel)
    return out


def rebuild_documents(directory: str | Path) -> Path:
    """Write report.html and README.md again from the manifest and metrics.json; returns the report path."""
    from fewlabel.report import model_card, render_report

    directory = Path(directory)
    manifest = load_manifest(directory)
    if manifest.task == "multi-label":
        from fewlabel.multilabel_report import multilabel_model_card, render_multilabel_report

        found = read_multilabel_metrics(directory)
        documents = (
            ("report.html", render_multilabel_report(manifest, found)),
            ("README.md", multilabel_model_card(manifest, found)),
        )
    else:
        metrics = read_metrics(directory)
        documents = (
            ("report.html", render_report(manifest, metrics)),
            ("README.md", model_card(manifest, metrics)),
        )
    for name, text in documents:
        write_text(directory / name, text)
    return directory / "report.html"


def read_metrics(directory: str | Path) -> Metrics:
    """A model's ``metrics.json`` as :class:`Metrics`; ModelDirError naming the file and field if damaged."""
    path = Path(directory) / METRICS
    return parse_metrics(_metrics_json(directory), str(path))


def read_multilabel_metrics(directory: str | Path) -> MultiLabelMetrics:
    """A multi-label model's ``metrics.json`` as :class:`MultiLabelMetrics` (ModelDirError if damaged)."""
    return parse_multilabel_metrics(_metrics_json(directory), str(Path(directory) / METRICS))


def _metrics_json(directory: str | Path) -> Any:
    """The parsed ``metrics.json`` of a model directory (ModelDirError if unreadable or too large)."""
    path = Path(directory) / METRICS
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise ModelDirError(f"{path}: larger than {MAX_MANIFEST_BYTES >> 20} MB; damaged metrics")
        data = path.read_bytes()
    except OSError as err:
        raise ModelDirError(f"{Path(directory)}: cannot read {METRICS} ({err.strerror or err})") from None
    return parse_json(data, str(path), damaged="damaged metrics, retrain the model")


def read_model(directory: str | Path, verify: bool = True) -> TrainedModel:
    """Read a saved model's strategy, labels and manifest; never unpickles or runs code from it.

    The manifest is checked (fields, digest), then the directory against it (no links, nothing
    unlisted in the folders loading reads, array shapes), then the strategy is loaded from the
    files so checked. Its backbone is the one the manifest pins by content hash.

    Args:
        verify: check every file's SHA-256 too (sizes, shapes and the rest are always checked).
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    verify_files(directory, manifest, hashes=verify)
    return _load_strategy(directory, manifest, backbone_ref(directory, manifest))


def _load_strategy(directory: Path, manifest: dict[str, Any], ref: str | None) -> TrainedModel:
    record = manifest_record(manifest, str(directory / MANIFEST))
    name, labels = record.strategy.name, list(record.labels)
    cls = get_strategy_class(name)
    if cls.uses_backbone and ref is None:
        raise ModelDirError(
            f"{directory / MANIFEST}: strategy {name!r} embeds with a backbone, but field 'backbone' is empty"
        )
    try:
        strategy = cls.load(directory / STRATEGY_DIR, backbone=ref if cls.uses_backbone else None)
    except ModelDirError:
        raise
    except FewlabelError as err:
        raise ModelDirError(f"{directory}: {err}") from None
    if strategy.n_classes_ != len(labels):
        raise ModelDirError(
            f"{directory}: the strategy answers {strategy.n_classes_} classes but the manifest names "
            f"{len(labels)} labels"
        )
    if strategy.multi_label_ != (record.task == "multi-label"):
        raise ModelDirError(
            f"{directory}: the manifest's task is {record.task}, but the strategy was fitted "
            f"{'multi' if strategy.multi_label_ else 'single'}-label"
        )
    return TrainedModel(strategy, labels, record)
