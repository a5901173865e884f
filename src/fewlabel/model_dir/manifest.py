"""The manifest, ``fewlabel.json``: what a model directory holds, and the checksum of every file.

This module is the one place that writes and reads it; saving a model, exporting an encoder and
loading all go through :func:`write_manifest`, :func:`read_manifest` and :func:`verify_files`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from fewlabel.atomic import write_json
from fewlabel.errors import ModelDirError

FORMAT = "fewlabel-model"
FORMAT_VERSION = 1
MANIFEST = "fewlabel.json"
# Documents rebuilt by `fewlabel report`; not loaded by anything, so not checksummed.
REGENERATED = ("report.html", "README.md")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def is_model_dir(path: Path) -> bool:
    return (path / MANIFEST).is_file()


def file_entries(root: Path, under: str = "") -> dict[str, dict[str, Any]]:
    """Size and SHA-256 of every file below ``root`` (keys relative to the model directory)."""
    prefix = f"{under}/" if under else ""
    return {
        prefix + str(p.relative_to(root)): {"sha256": file_sha256(p), "bytes": p.stat().st_size}
        for p in sorted(root.rglob("*"))
        if p.is_file() and prefix + str(p.relative_to(root)) not in REGENERATED
    }


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Write ``fewlabel.json`` into ``directory`` atomically, with the format and its version first."""
    write_json(directory / MANIFEST, {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest})


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
