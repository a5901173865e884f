"""The manifest, ``fewlabel.json``: what a model directory holds, and the checksum of every file.

This module is the one place that writes and reads it; saving a model, exporting an encoder and
loading all go through :func:`write_manifest`, :func:`read_manifest` and :func:`verify_files`.

A model directory is untrusted input. Format 2 (see docs/model-format.md) makes what loading reads
checkable: ``digest`` is the SHA-256 of the manifest itself (labels included), ``files`` lists the
size, SHA-256 and (for arrays) the dtype and shape of every file loading reads, and the backbone is
named by the content hash of its files. Format 1 models still load, with a warning, until
``fewlabel upgrade`` rewrites them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import stat
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn

from fewlabel.atomic import file_sha256, recover_directory, write_text
from fewlabel.errors import FewlabelError, ModelDirError
from fewlabel.model_dir.records import Manifest, manifest_record
from fewlabel.strategies.files import array_info, parse_json

FORMAT = "fewlabel-model"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
MANIFEST = "fewlabel.json"
METRICS = "metrics.json"
# Documents rebuilt by `fewlabel report`; not loaded by anything, so not checksummed.
REGENERATED = ("report.html", "README.md")
STRATEGY_DIR = "strategy"
ONNX_FILES = ("encoder.onnx", "tokenizer.json", "encoder.json")
MAX_MANIFEST_BYTES = 16 << 20
_MAX_ENTRIES = 100_000  # files and folders in a model directory

log = logging.getLogger("fewlabel.model_dir")


def is_model_dir(path: Path) -> bool:
    return (path / MANIFEST).is_file()


def file_entries(root: Path, under: str = "") -> dict[str, dict[str, Any]]:
    """Size and SHA-256 of every file below ``root`` (keys relative to the model directory), with the
    dtype and shape of each array in ``.npz`` and ``.safetensors`` files."""
    prefix = f"{under}/" if under else ""
    entries: dict[str, dict[str, Any]] = {}
    for p in sorted(root.rglob("*")):
        rel = prefix + p.relative_to(root).as_posix()
        if p.is_file() and rel not in REGENERATED and rel != MANIFEST:
            entries[rel] = {"sha256": file_sha256(p), "bytes": p.stat().st_size}
            arrays = array_info(p)
            if arrays is not None:
                entries[rel]["arrays"] = arrays
    return entries


def manifest_digest(manifest: dict[str, Any]) -> str:
    """SHA-256 of the manifest without its ``digest``: canonical JSON (sorted keys, no spaces, UTF-8)."""
    body = {k: v for k, v in manifest.items() if k != "digest"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Write ``fewlabel.json`` into ``directory`` atomically: format and version first, digest last.

    The digest is computed over the manifest as it will be read back (through JSON), so what a
    reader checks is exactly what was written.
    """
    version = manifest.get("format_version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise ModelDirError(
            f"{directory}: a format {version} model; upgrade it first (`fewlabel upgrade {directory}`)"
        )
    body = {k: v for k, v in manifest.items() if k not in ("format", "format_version", "digest")}
    content = json.loads(json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, **body}))
    content["digest"] = manifest_digest(content)
    write_text(directory / MANIFEST, json.dumps(content, indent=2, ensure_ascii=False))


def load_manifest(directory: str | Path, warn_old: bool = True) -> Manifest:
    """The checked manifest of a model directory as a typed :class:`Manifest` (see :func:`read_manifest`)."""
    return manifest_record(read_manifest(directory, warn_old), str(Path(directory) / MANIFEST))


def add_files(directory: Path, under: str, fields: dict[str, Any]) -> None:
    """Record the files now written below ``directory/under`` (e.g. an ONNX export) and set ``fields``
    in the manifest, rewritten atomically with a new digest."""
    manifest = read_manifest(directory)
    manifest["files"] = {**manifest.get("files", {}), **file_entries(directory / under, under=under)}
    write_manifest(directory, {**manifest, **fields})


def read_manifest(directory: str | Path, warn_old: bool = True) -> dict[str, Any]:
    """The checked manifest of a model directory; ModelDirError naming the file and field if it is not
    a fewlabel manifest, of an unknown format, malformed, or changed since it was written.

    Args:
        warn_old: log one warning line for a format 1 model (which still loads).
    """
    directory = Path(directory)
    path = directory / MANIFEST
    manifest = parse_json(
        _manifest_bytes(directory), str(path), damaged="damaged manifest, retrain or restore the model"
    )
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelDirError(f"{path}: not a fewlabel model manifest")
    version = manifest.get("format_version")
    if type(version) is not int or version not in READABLE_VERSIONS:
        raise ModelDirError(
            f"{directory}: model format version {str(version)[:20]}, but this fewlabel reads version "
            f"{' or '.join(map(str, READABLE_VERSIONS))}; retrain it or use the fewlabel version that wrote "
            f"it ({str(manifest.get('fewlabel_version', 'unknown'))[:40]})"
        )
    check_fields(path, manifest)
    if version >= 2:
        digest = manifest.get("digest")
        if digest != manifest_digest(manifest):
            raise ModelDirError(
                f"{path}: the manifest does not match its digest (edited since it was saved: labels, "
                "settings or file list); retrain or restore the model"
            )
    elif warn_old:
        log.warning(
            "%s: model format 1, whose manifest is not checksummed; "
            "`fewlabel upgrade %s` rewrites it in format 2",
            directory,
            directory,
        )
    return manifest


def _manifest_bytes(directory: Path) -> bytes:
    """The bytes of the directory's manifest: a plain file of a sane size, or ModelDirError saying why not."""
    if not directory.exists() and recover_directory(directory):
        log.warning("%s: restored the model an interrupted save had moved aside", directory)
    if not directory.exists():
        raise ModelDirError(
            f"{directory}: no such model directory; train one with `fewlabel train DATA -o {directory}`"
        )
    path = directory / MANIFEST
    try:
        info = path.lstat()
    except OSError:
        info = None
    if info is None or not directory.is_dir():
        raise ModelDirError(
            f"{directory}: not a fewlabel model (no {MANIFEST}); give the directory `fewlabel train` wrote"
        )
    if not stat.S_ISREG(info.st_mode):
        raise ModelDirError(f"{path}: not a plain file (a link?); a model directory holds plain files only")
    if info.st_size > MAX_MANIFEST_BYTES:
        raise ModelDirError(f"{path}: larger than {MAX_MANIFEST_BYTES >> 20} MB; damaged manifest")
    try:
        return path.read_bytes()
    except OSError as err:
        raise ModelDirError(f"{path}: damaged manifest ({err}); retrain the model") from None


# -- fields ---------------------------------------------------------------------------------------
def _fail(path: Path, field: str, what: str) -> NoReturn:
    raise ModelDirError(f"{path}: field {field!r} {what}; damaged manifest, retrain or restore the model")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 200 and value.isprintable()


def safe_relative(rel: Any) -> bool:
    """A relative, normalised POSIX path that stays inside the directory (no ``..``, ``.``, ``//``)."""
    if not isinstance(rel, str) or not rel or len(rel) > 1000 or "\\" in rel or rel.startswith("/"):
        return False
    parts = rel.split("/")
    return all(p not in ("", ".", "..") and p.isprintable() for p in parts) and ":" not in parts[0]


def _check_optional(path: Path, manifest: dict[str, Any], field: str, kind: type | tuple[type, ...]) -> None:
    value = manifest.get(field)
    if value is not None and not isinstance(value, kind):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        _fail(path, field, f"must be {names.replace('dict', 'an object').replace('str', 'a string')}")


def check_fields(path: Path, manifest: dict[str, Any]) -> None:
    """Every field loading or a command reads has the type it must have."""
    version = manifest["format_version"]
    _check_strategy(path, manifest.get("strategy"))
    _check_labels(path, manifest.get("labels"))
    if version >= 2 and not _is_sha256(manifest.get("digest")):
        _fail(path, "digest", "is missing or not a SHA-256")
    _check_files(path, manifest.get("files"), version)
    _check_backbone(path, manifest.get("backbone"), version)
    _check_probabilities(path, manifest.get("calibration"), manifest.get("decision"))
    _check_onnx(path, manifest.get("onnx"))
    _check_task(path, manifest)
    for field in ("config", "metrics", "training_data", "unlabelled", "prediction"):
        _check_optional(path, manifest, field, dict)
    for field in ("text_column", "label_column", "fewlabel_version", "created"):
        _check_optional(path, manifest, field, str)


def _check_strategy(path: Path, strategy: Any) -> None:
    from fewlabel.strategies import REGISTRY

    if not isinstance(strategy, dict):
        _fail(path, "strategy", "is missing or not an object (no strategy name)")
    name = strategy.get("name")
    if not isinstance(name, str):
        _fail(path, "strategy.name", "is missing or not a string (no strategy name)")
    if name not in REGISTRY:
        _fail(path, "strategy.name", f"names no known strategy ({name[:40]!r})")
    for key, kind in (("params", dict), ("description", str)):
        if key in strategy and not isinstance(strategy[key], kind):
            _fail(path, f"strategy.{key}", f"must be {'an object' if kind is dict else 'a string'}")


def _check_labels(path: Path, labels: Any) -> None:
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        _fail(path, "labels", "is missing or not a list of label names")
    if len(labels) < 2 or len(set(labels)) != len(labels):
        _fail(path, "labels", "must name two or more classes, each once")


def _check_probabilities(path: Path, calibration: Any, decision: Any) -> None:
    """The calibration temperature and the decision threshold, when the model has them."""
    if calibration is not None:
        temperature = calibration.get("temperature", 1.0) if isinstance(calibration, dict) else None
        if not (isinstance(temperature, int | float) and _is_number(temperature) and 0 < temperature <= 1e6):
            _fail(path, "calibration.temperature", "must be a positive number")
    if decision is not None:
        threshold = decision.get("threshold") if isinstance(decision, dict) else None
        if not (isinstance(threshold, int | float) and _is_number(threshold) and 0.0 <= threshold <= 1.0):
            _fail(path, "decision.threshold", "must be a number between 0 and 1")


def _check_task(path: Path, manifest: dict[str, Any]) -> None:
    """A multi-label model has one threshold in [0, 1] per label and a separator; others neither."""
    task = manifest.get("task", "single-label")
    if task not in ("single-label", "multi-label"):
        _fail(path, "task", "must be 'single-label' or 'multi-label'")
    thresholds, separator = manifest.get("thresholds"), manifest.get("label_separator")
    if task == "single-label":
        if thresholds is not None or separator is not None:
            _fail(path, "thresholds", "belongs to multi-label models only (field 'task')")
        return
    if manifest.get("decision") is not None:
        _fail(path, "decision", "belongs to single-label models only (field 'task')")
    if not isinstance(thresholds, dict) or set(thresholds) != set(manifest["labels"]):
        _fail(path, "thresholds", "must give one threshold per label")
    for label, value in thresholds.items():
        if not (_is_number(value) and 0.0 <= value <= 1.0):
            _fail(path, f"thresholds.{label}", "must be a number between 0 and 1")
    if not (isinstance(separator, str) and _is_name(separator) and separator.strip()):
        _fail(path, "label_separator", "must be the (visible) character that joins labels")


def _check_files(path: Path, files: Any, version: int) -> None:
    if not isinstance(files, dict):
        _fail(path, "files", "is missing or not an object")
    for rel, entry in files.items():
        if not safe_relative(rel) or rel == MANIFEST:
            raise ModelDirError(f"{path}: unsafe file path {rel[:200]!r} in field 'files'")
        ok = (
            isinstance(entry, dict)
            and _is_sha256(entry.get("sha256"))
            and _is_int(entry.get("bytes"))
            and entry["bytes"] >= 0
        )
        if not ok:
            _fail(path, f"files.{rel}", "must hold the file's sha256 and bytes")
        arrays = entry.get("arrays")
        needs_arrays = version >= 2 and PurePosixPath(rel).suffix in (".npz", ".safetensors")
        if arrays is None and needs_arrays:
            _fail(path, f"files.{rel}.arrays", "is missing (the dtype and shape of each array)")
        if arrays is not None and not (
            isinstance(arrays, dict)
            and all(
                isinstance(a, dict)
                and isinstance(a.get("dtype"), str)
                and isinstance(a.get("shape"), list)
                and all(_is_int(n) and n >= 0 for n in a["shape"])
                for a in arrays.values()
            )
        ):
            _fail(path, f"files.{rel}.arrays", "must give each array's dtype and shape")


def _check_backbone(path: Path, backbone: Any, version: int) -> None:
    if backbone is None:
        return
    if not isinstance(backbone, dict) or not _is_name(backbone.get("name")):
        _fail(path, "backbone", "must be an object with the backbone's name")
    if version >= 2 and not _is_sha256(backbone.get("sha256")):
        _fail(path, "backbone.sha256", "is missing or not a SHA-256")
    if backbone.get("hub_id") is not None and not isinstance(backbone["hub_id"], str):
        _fail(path, "backbone.hub_id", "must be a string")


def _check_onnx(path: Path, onnx: Any) -> None:
    if onnx is None:
        return
    if not isinstance(onnx, dict):
        _fail(path, "onnx", "must be an object")
    if not safe_relative(onnx.get("dir")):
        _fail(path, "onnx.dir", "must be a relative path inside the model directory")
    if not _is_int(onnx.get("max_tokens")) or not 1 <= onnx["max_tokens"] <= 100_000:
        _fail(path, "onnx.max_tokens", "must be a whole number of tokens")


# -- files ----------------------------------------------------------------------------------------
def _tree(directory: Path) -> dict[str, int]:
    """Size of every file in the model directory by relative path; links and special files refused."""
    found: dict[str, int] = {}
    seen = 0
    for root, dirs, names in os.walk(directory):
        for name in dirs + names:
            seen += 1
            full = Path(root) / name
            rel = full.relative_to(directory).as_posix()
            if seen > _MAX_ENTRIES:
                raise ModelDirError(f"{directory}: more than {_MAX_ENTRIES} files; not a model directory")
            info = full.lstat()
            if stat.S_ISLNK(info.st_mode):
                raise ModelDirError(
                    f"{directory}: {rel} is a symbolic link; a model directory holds plain files only"
                )
            if stat.S_ISREG(info.st_mode):
                found[rel] = info.st_size
            elif not stat.S_ISDIR(info.st_mode):
                raise ModelDirError(f"{directory}: {rel} is not a plain file")
    return found


def read_trees(manifest: dict[str, Any]) -> list[str]:
    """The folders whose files loading reads: the strategy's, and the exported encoder's."""
    trees = [STRATEGY_DIR]
    if manifest.get("onnx"):
        trees.append(manifest["onnx"]["dir"])
    return trees


def _digests(directory: Path, files: dict[str, Any], tree: dict[str, int]) -> dict[str, str]:
    """SHA-256 of each listed file that is present with its recorded size, several at a time: an
    exported model holds two 1.2 GB graphs, and hashing releases the interpreter lock."""
    from concurrent.futures import ThreadPoolExecutor

    wanted = [
        rel
        for rel, expected in files.items()
        if safe_relative(rel) and tree.get(rel) == expected.get("bytes")
    ]
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        return dict(zip(wanted, pool.map(lambda rel: file_sha256(directory / rel), wanted), strict=True))


def verify_files(directory: Path, manifest: dict[str, Any], hashes: bool = True) -> None:
    """Check the model directory against the manifest before anything in it is read.

    Every listed file is there (with its size and SHA-256 when ``hashes``); every file in a folder
    loading reads is listed; no link or special file anywhere; each array's dtype and shape (read
    from the headers, nothing inflated) is what the manifest records.
    """
    directory = Path(directory)
    try:
        tree = _tree(directory)
    except OSError as err:
        raise ModelDirError(f"{directory}: cannot read it ({err})") from None
    files: dict[str, Any] = manifest.get("files") or {}
    digests = _digests(directory, files, tree) if hashes else {}
    for rel, expected in files.items():
        if not safe_relative(rel):
            raise ModelDirError(f"{directory / MANIFEST}: unsafe file path {rel[:200]!r}")
        if rel not in tree:
            raise ModelDirError(f"{directory}: file {rel} is missing; the model directory is incomplete")
        path = directory / rel
        if hashes and (tree[rel] != expected["bytes"] or digests[rel] != expected["sha256"]):
            raise ModelDirError(
                f"{directory}: file {rel} does not match its checksum (truncated or changed since training); "
                "retrain or restore the model"
            )
        if "arrays" in expected and array_info(path) != expected["arrays"]:
            raise ModelDirError(
                f"{directory}: the arrays in {rel} are not those its manifest records (dtype or shape)"
            )
    trees = read_trees(manifest)
    for rel in tree:
        if any(rel.startswith(t + "/") for t in trees) and rel not in files:
            raise ModelDirError(
                f"{directory}: {rel} is not listed in the manifest; loading reads only listed files"
            )
    if manifest.get("onnx"):
        onnx_dir = manifest["onnx"]["dir"]
        missing = [name for name in ONNX_FILES if f"{onnx_dir}/{name}" not in files]
        if missing:
            raise ModelDirError(
                f"{directory}: the ONNX encoder's {', '.join(missing)} not listed in the manifest"
            )


def backbone_ref(directory: Path, manifest: Manifest | dict[str, Any]) -> str | None:
    """The pinned backbone (``NAME@sha256:HEX``) a model's manifest names; None when it names none.

    A format 1 manifest names its backbone by name only: ``minilm`` and ``mpnet`` are pinned to the
    installed ones; a directory or Hub id is refused (loading never reads either).
    """
    if isinstance(manifest, Manifest):
        manifest = manifest.to_json()
    entry = manifest.get("backbone")
    if not entry:
        return None
    if manifest["format_version"] >= 2:
        return f"{entry['name']}@sha256:{entry['sha256']}"
    from fewlabel.encoders.backbones import KNOWN, resolve

    if entry["name"] not in KNOWN:
        raise ModelDirError(
            f"{directory}: a format 1 model whose backbone is the directory or Hub id {entry['name'][:200]!r}, "
            "which fewlabel no longer loads from there; upgrade the model with that backbone "
            f"(`fewlabel upgrade {directory} --backbone SOURCE`)"
        )
    try:
        return resolve(entry["name"]).ref
    except FewlabelError as err:
        raise ModelDirError(f"{directory}: {err}") from None
