"""Reading a strategy's saved files as untrusted input: JSON with limits, arrays checked before inflating.

A model directory may come from anywhere. An ``.npz`` is a zip archive: a member compressed a
thousandfold would inflate a 1 MB file into a gigabyte before any shape is looked at. fewlabel writes
its ``.npz`` files uncompressed (``np.savez``), so only stored members are accepted, and each
member's ``.npy`` header (dtype and shape) is read and checked against its size, and against what
the manifest recorded, before any array data is read. A ``.safetensors`` file declares every
tensor's dtype, shape and byte range in its header; those are checked the same way.
"""

from __future__ import annotations

import json
import re
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from fewlabel.errors import ModelDirError

MAX_JSON_BYTES = 64 << 20  # a TF-IDF vocabulary of 2 x 200,000 n-grams is about 10 MB
MAX_DEPTH = 32
_MAX_MEMBERS = 64
_MAX_HEADER = 1 << 20
_MEMBER = re.compile(r"[A-Za-z0-9_]{1,64}\.npy")
# Numeric arrays only: no objects (pickles), no structured or string dtypes.
_KINDS = "biuf"
_SAFETENSORS_DTYPES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
}  # fmt: skip

ArrayInfo = dict[str, dict[str, Any]]  # name -> {"dtype": str, "shape": [int, ...]}


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice")
        out[key] = value
    return out


def depth_exceeds(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether lists and objects nest deeper than ``limit`` (checked without recursion)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def parse_json(
    data: bytes, where: str, allow_nan: bool = True, damaged: str = "the model directory is damaged"
) -> Any:
    """Strict JSON: UTF-8, no repeated keys, nesting at most MAX_DEPTH; ModelDirError naming ``where``."""
    try:
        constant = None if allow_nan else _reject_constant
        value = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        reason = "nested too deeply" if isinstance(err, RecursionError) else str(err)[:200]
        raise ModelDirError(f"{where}: not valid JSON ({reason}); {damaged}") from None
    if depth_exceeds(value):
        raise ModelDirError(f"{where}: nested more than {MAX_DEPTH} levels deep; {damaged}")
    return value


def read_json(path: Path, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """A JSON file of a model directory, at most ``max_bytes``, parsed strictly."""
    try:
        with path.open("rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as err:
        raise ModelDirError(f"{path}: cannot read it ({err.strerror or err})") from None
    if len(data) > max_bytes:
        raise ModelDirError(f"{path}: larger than {max_bytes >> 20} MB; the model directory is damaged")
    return parse_json(data, str(path))


def _npy_header(member, size: int, where: str) -> dict[str, Any]:
    try:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise ValueError(f"unknown .npy version {version}")
    except (ValueError, SyntaxError, TypeError, EOFError, OSError) as err:
        raise ModelDirError(f"{where}: not a numeric array ({err})") from None
    del fortran  # either order holds the same bytes
    if dtype.hasobject or dtype.kind not in _KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise ModelDirError(f"{where}: holds {dtype} values; model arrays hold numbers only")
    header_bytes = member.tell()
    count = 1
    for n in shape:
        count *= int(n)
    if count * dtype.itemsize + header_bytes != size:
        raise ModelDirError(f"{where}: its size does not match its declared shape {list(shape)}")
    return {"dtype": dtype.str, "shape": [int(n) for n in shape]}


def npz_arrays(path: Path) -> ArrayInfo:
    """The dtype and shape of each array in an ``.npz``, read from the headers only.

    Refuses compressed members (fewlabel stores its arrays uncompressed, so an archive that is not
    can only be a decompression bomb), odd member names and sizes that do not match the shapes.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            if len(infos) > _MAX_MEMBERS:
                raise ModelDirError(f"{path}: {len(infos)} arrays; too many for a model")
            out: ArrayInfo = {}
            for info in infos:
                where = f"{path} ({info.filename})"
                if not _MEMBER.fullmatch(info.filename) or info.filename[:-4] in out:
                    raise ModelDirError(f"{where}: not an array name fewlabel writes")
                if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
                    raise ModelDirError(
                        f"{where}: a compressed array ({info.compress_size} bytes that inflate to "
                        f"{info.file_size}); fewlabel stores arrays uncompressed, so this file was not "
                        "written by fewlabel"
                    )
                with archive.open(info) as member:
                    out[info.filename[:-4]] = _npy_header(member, info.file_size, where)
            return out
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as err:
        raise ModelDirError(f"{path}: cannot read weights ({err})") from None


def safetensors_arrays(path: Path) -> ArrayInfo:
    """The dtype and shape of each tensor in a ``.safetensors`` file, from its header, checked against
    the file's size (tensors contiguous, in bounds, of the size their shape says)."""
    header, data_bytes = _safetensors_header(path)
    out: ArrayInfo = {}
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        spans.append(_tensor_span(path, name, entry))
        out[name] = {"dtype": entry["dtype"], "shape": entry["shape"]}
    position = 0
    for start, end in sorted(spans):
        if start != position:
            raise ModelDirError(f"{path}: tensors overlap or leave gaps; damaged")
        position = end
    if position != data_bytes:
        raise ModelDirError(f"{path}: tensors do not fill the file; damaged")
    return out


def _safetensors_header(path: Path) -> tuple[dict[str, Any], int]:
    """A ``.safetensors`` file's JSON header, and the number of bytes after it."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ModelDirError(f"{path}: too short for a safetensors file")
            (length,) = struct.unpack("<Q", head)
            if length > min(_MAX_HEADER, size - 8):
                raise ModelDirError(f"{path}: safetensors header of {length} bytes; damaged")
            header = parse_json(f.read(length), str(path))
    except OSError as err:
        raise ModelDirError(f"{path}: cannot read weights ({err.strerror or err})") from None
    if not isinstance(header, dict):
        raise ModelDirError(f"{path}: safetensors header is not an object")
    return header, size - 8 - length


def _tensor_span(path: Path, name: str, entry: Any) -> tuple[int, int]:
    """The byte offsets of one tensor, checked: a known dtype, a shape, and as many bytes as they need."""
    ok = isinstance(entry, dict) and entry.get("dtype") in _SAFETENSORS_DTYPES
    shape = entry.get("shape") if ok else None
    offsets = entry.get("data_offsets") if ok else None
    if not (
        isinstance(shape, list)
        and isinstance(offsets, list)
        and len(offsets) == 2
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in [*shape, *offsets])
    ):
        raise ModelDirError(f"{path}: tensor {name!r} has no valid dtype, shape and offsets")
    count = 1
    for n in shape:
        count *= n
    if offsets[1] - offsets[0] != count * _SAFETENSORS_DTYPES[entry["dtype"]]:
        raise ModelDirError(f"{path}: tensor {name!r} does not hold the bytes its shape needs")
    return offsets[0], offsets[1]


def array_info(path: Path) -> ArrayInfo | None:
    """Dtype and shape of every array in an ``.npz`` or ``.safetensors`` file; None for other files."""
    if path.suffix == ".npz":
        return npz_arrays(path)
    if path.suffix == ".safetensors":
        return safetensors_arrays(path)
    return None


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Read an .npz written by a strategy: headers checked first (:func:`npz_arrays`), no pickles."""
    npz_arrays(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ModelDirError(f"{path}: cannot read weights ({err})") from None
