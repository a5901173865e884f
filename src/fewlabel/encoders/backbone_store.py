"""The backbone store: sentence encoders kept under their content hash, checked before each load.

A model names its backbone by the SHA-256 of the backbone's files, never by a path or a Hub id, so a
model directory cannot make fewlabel read a file or run code from anywhere else. A directory or a
Hub model is accepted only when training: it is checked (sentence-transformers modules only,
safetensors weights only, no custom code), its files are copied into
``$FEWLABEL_HOME/backbones/<sha256>/`` and hashed once. Loading looks a backbone up there by hash
(or finds a packaged one, ``minilm`` or ``mpnet``, and checks it against the hash) and re-checks
each file's size and modification time against the record written when it was hashed: a few
``stat`` calls, not 90 MB of hashing, before every load.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from fewlabel.atomic import atomic_directory, file_sha256, write_json
from fewlabel.errors import BackboneError

# The modules a backbone's modules.json may name: sentence-transformers' own, under their names
# before 6.0 and from 6.0 on. Anything else would be imported from wherever Python finds it (by 5.x
# even from the backbone directory), so it is refused whatever the installed version would do.
MODULE_TYPES = frozenset(
    {
        "sentence_transformers.models.Transformer",
        "sentence_transformers.models.Pooling",
        "sentence_transformers.models.Normalize",
        "sentence_transformers.models.Dense",
        "sentence_transformers.models.LayerNorm",
        "sentence_transformers.base.modules.transformer.Transformer",
        "sentence_transformers.sentence_transformer.modules.pooling.Pooling",
        "sentence_transformers.base.modules.normalize.Normalize",
        "sentence_transformers.base.modules.dense.Dense",
        "sentence_transformers.sentence_transformer.modules.layer_norm.LayerNorm",
    }
)
# What a backbone is made of: configs, vocabularies, tokenizers and safetensors weights. Python
# files, pickles (.bin, .pt, .pkl) and other formats are never copied, so nothing can load them.
SUFFIXES = (".json", ".txt", ".safetensors", ".model")
# Configs read with the model: none may ask for custom code.
_CONFIGS = {
    "config.json",
    "tokenizer_config.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "modules.json",
}
_MAX_CONFIG_BYTES = 4 << 20
_MAX_FILES = 200


def fewlabel_home() -> Path:
    """Where fewlabel keeps assembled models and the embedding cache (``$FEWLABEL_HOME`` overrides)."""
    env = os.environ.get("FEWLABEL_HOME")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fewlabel"


def store_root() -> Path:
    return fewlabel_home() / "backbones"


def _records() -> Path:
    return store_root() / "records"


def is_sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _safe_relative(rel: str) -> bool:
    parts = PurePosixPath(rel).parts
    return (
        bool(rel)
        and "\\" not in rel
        and not rel.startswith("/")
        and all(p not in ("", ".", "..") for p in parts)
        and str(PurePosixPath(*parts)) == rel
    )


def _read_config(path: Path, where: str) -> Any:
    try:
        if path.stat().st_size > _MAX_CONFIG_BYTES:
            raise BackboneError(f"{where}: {path.name} is too large for a configuration file")
        return json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise BackboneError(f"{where}: cannot read {path.name} ({err})") from None


def _asks_for_code(value: Any, depth: int = 0) -> str | None:
    """The first key that would make Transformers or sentence-transformers run custom code."""
    if depth > 32:
        return "nesting"
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "auto_map" or (key == "trust_remote_code" and item):
                return key
            found = _asks_for_code(item, depth + 1)
            if found:
                return found
    elif isinstance(value, list):
        for item in value:
            found = _asks_for_code(item, depth + 1)
            if found:
                return found
    return None


def _module_dirs(directory: Path, where: str) -> list[str]:
    """The module folders modules.json names ("" is the directory itself), each type checked."""
    path = directory / "modules.json"
    if not path.is_file():
        return [""]  # a plain Transformers model: sentence-transformers adds mean pooling itself
    modules = _read_config(path, where)
    if not isinstance(modules, list) or not modules:
        raise BackboneError(f"{where}: modules.json is not a list of modules")
    folders = [""]
    for module in modules:
        kind = module.get("type") if isinstance(module, dict) else None
        folder = module.get("path") if isinstance(module, dict) else None
        if kind not in MODULE_TYPES:
            raise BackboneError(
                f"{where}: modules.json names the module {kind!r}, which is not one of "
                "sentence-transformers' own (Transformer, Pooling, Normalize, Dense, LayerNorm); "
                "fewlabel loads no code a model brings"
            )
        if not isinstance(folder, str) or (folder and not _safe_relative(folder)):
            raise BackboneError(f"{where}: modules.json has the unsafe module path {folder!r}")
        if folder not in folders:
            folders.append(folder)
    return folders


def backbone_files(directory: Path, where: str | None = None, packaged: bool = False) -> list[str]:
    """The files that make up the backbone in ``directory``, checked: relative POSIX paths, sorted.

    Raises :class:`BackboneError` if the backbone names a module that is not sentence-transformers'
    own, asks for custom code, or has no safetensors weights. ``packaged``: a backbone fewlabel
    installed itself from a checksummed archive (``mpnet``), whose PyTorch weights are trusted.
    """
    where = where or str(directory)
    if not directory.is_dir():
        raise BackboneError(f"{where}: not a directory")
    files = []
    for folder in _module_dirs(directory, where):
        base = directory / folder if folder else directory
        if not base.is_dir():
            continue  # Normalize keeps no files; its folder may be absent
        for entry in sorted(base.iterdir()):
            if entry.suffix in SUFFIXES and entry.is_file():
                files.append(f"{folder}/{entry.name}" if folder else entry.name)
    if len(files) > _MAX_FILES:
        raise BackboneError(f"{where}: too many files for a sentence encoder ({len(files)})")
    if packaged and not any(PurePosixPath(f).suffix == ".safetensors" for f in files):
        files += [e.name for e in sorted(directory.glob("*.bin")) if e.is_file()]
    if not any(PurePosixPath(f).suffix in (".safetensors", ".bin") for f in files):
        raise BackboneError(
            f"{where}: no safetensors weights; fewlabel loads no pickled weights (pytorch_model.bin). "
            "Save the model with safetensors (model.save_pretrained(dir, safe_serialization=True))"
        )
    for rel in files:
        if PurePosixPath(rel).name in _CONFIGS:
            key = _asks_for_code(_read_config(directory / rel, where))
            if key:
                raise BackboneError(
                    f"{where}: {rel} asks for custom code ({key!r}); fewlabel loads no code a model brings"
                )
    return sorted(set(files))


def content_hash(directory: Path, files: list[str]) -> tuple[str, dict[str, list[int]]]:
    """The backbone's SHA-256 (over each file's path, size and SHA-256) and each file's size and mtime."""
    total = hashlib.sha256()
    stats: dict[str, list[int]] = {}
    for rel in sorted(files):
        path = directory / rel
        st = path.stat()
        total.update(f"{rel}\0{st.st_size}\0{file_sha256(path)}\n".encode())
        stats[rel] = [st.st_size, st.st_mtime_ns]
    return total.hexdigest(), stats


def _stats(directory: Path, files: list[str]) -> dict[str, list[int]] | None:
    out = {}
    for rel in files:
        try:
            st = (directory / rel).stat()
        except OSError:
            return None
        out[rel] = [st.st_size, st.st_mtime_ns]
    return out


def _read_record(name: str) -> dict[str, Any] | None:
    try:
        record = json.loads((_records() / f"{name}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and is_sha256(record.get("sha256")) else None


def _write_record(name: str, record: dict[str, Any]) -> None:
    try:
        _records().mkdir(parents=True, exist_ok=True)
        write_json(_records() / f"{name}.json", record)
    except OSError:
        pass  # a read-only home only costs hashing again next time


def verified_hash(directory: Path, record: str, where: str | None = None, packaged: bool = False) -> str:
    """The content hash of the backbone in ``directory``: hashed once, then trusted while each file's
    size and mtime are those recorded in ``record`` when it was hashed."""
    files = backbone_files(directory, where, packaged)
    stats = _stats(directory, files)
    known = _read_record(record)
    location = str(directory.resolve())
    if known and known.get("location") == location and known.get("files") == stats:
        return str(known["sha256"])
    sha, stats = content_hash(directory, files)
    _write_record(record, {"sha256": sha, "location": location, "files": stats})
    return sha


def _entry_files(entry: Path) -> list[str]:
    """Every file below a store entry; a link or anything else that is not a plain file is refused."""
    found = []
    for root, dirs, names in os.walk(entry):
        for name in dirs + names:
            path = Path(root) / name
            if path.is_symlink() or not (path.is_dir() or path.is_file()):
                raise BackboneError(f"backbone store entry {entry}: {path} is not a plain file")
        found += [str((Path(root) / n).relative_to(entry).as_posix()) for n in names]
        if len(found) > _MAX_FILES:
            raise BackboneError(f"backbone store entry {entry}: too many files")
    return sorted(found)


def lookup(sha: str) -> Path | None:
    """The store's directory for backbone ``sha``, checked; None when the store does not hold it."""
    if not is_sha256(sha):
        raise BackboneError(f"{sha!r} is not a SHA-256")
    entry = store_root() / sha
    if not entry.is_dir() or entry.is_symlink():
        return None
    files = _entry_files(entry)
    known = _read_record(sha)
    if known and known.get("sha256") == sha and known.get("files") == _stats(entry, files):
        return entry
    # Touched or copied since it was recorded: hash it again, and trust it only if unchanged.
    if (
        content_hash(entry, files)[0] != sha
        or backbone_files(entry, f"backbone store entry {entry}") != files
    ):
        raise BackboneError(
            f"backbone store entry {entry} no longer matches its hash (changed on disk); remove it "
            "and train again with that backbone to import it afresh"
        )
    _write_record(
        sha, {"sha256": sha, "location": str(entry.resolve()), "files": content_hash(entry, files)[1]}
    )
    return entry


def import_directory(source: Path, label: str, origin: str) -> str:
    """Copy the backbone in ``source`` into the store (once) and return its content hash.

    Args:
        label: a short name for it (shown in descriptions).
        origin: where it came from (a path or a Hub id), kept in the store's record.
    """
    source = source.resolve()
    where = f"backbone {origin}"
    source_record = "source-" + hashlib.sha256(str(source).encode()).hexdigest()[:24]
    sha = verified_hash(source, source_record, where)
    try:
        if lookup(sha) is not None:
            return sha
    except BackboneError:
        pass  # a damaged entry: replaced by a fresh copy below
    files = backbone_files(source, where)
    entry = store_root() / sha
    with atomic_directory(entry) as tmp:
        for rel in files:
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / rel, tmp / rel)
        copied, stats = content_hash(tmp, files)
        if copied != sha:
            raise BackboneError(f"{where} changed while it was being copied; try again")
    stats = _stats(entry, files) or stats  # the rename keeps mtimes, but read them where they are now
    _write_record(
        sha,
        {"sha256": sha, "location": str(entry.resolve()), "files": stats, "label": label, "origin": origin},
    )
    return sha


def origin_of(sha: str) -> dict[str, Any]:
    """What the store recorded about backbone ``sha`` when it was imported (label, origin)."""
    record = _read_record(sha) or {}
    return {k: record[k] for k in ("label", "origin") if isinstance(record.get(k), str)}
