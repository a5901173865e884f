"""Atomic writes: a file or directory appears whole at its final path, or not at all.

Everything fewlabel writes for later use (model directories and their manifests, predictions,
suggestions, installed backbones, report pages) goes through here. It is written beside its target
(the same file system, so the rename is atomic), flushed to disk, then renamed over the target, and
the parent directory is flushed too: a crash or a kill at any point leaves either the old content or
the new, never a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def fsync_dir(directory: Path) -> None:
    """Flush a directory's entries (the renames into it) to disk; a no-op where the OS cannot."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems (and Windows) do not sync directories
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    for directory in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
        fsync_dir(directory)
    fsync_dir(root)


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w", newline: str | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; it replaces ``path`` when the block ends.

    Text modes write UTF-8. If the block raises, the temporary file is removed and ``path`` is
    left as it was.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding, newline=newline) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_file(path) as handle:
        handle.write(text)


def write_json(path: str | Path, content: Any) -> None:
    """Write ``content`` as indented JSON (UTF-8, non-ASCII kept) to ``path`` atomically."""
    write_text(path, json.dumps(content, indent=2, ensure_ascii=False))


def publish(finished: Path, path: Path) -> None:
    """Rename a file written elsewhere in ``path``'s directory (a resumable ``.partial``) into place."""
    with finished.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(finished, path)
    fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``path``; it becomes ``path`` when the block ends.

    A directory already at ``path`` is kept until the new one is in place, then removed; if moving
    the new one in fails, the old one is put back. If the block raises, the temporary directory is
    removed and ``path`` is left as it was. A swap an earlier process left unfinished (killed
    between its two renames) is rolled back first, and once the new directory is in place every
    leftover of earlier saves to ``path`` is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_directory(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp
        _fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    swap_into_place(tmp, path)
    remove_leftovers(path)


def swap_into_place(new: Path, path: Path) -> None:
    """Rename directory ``new`` to ``path``; a directory already there is kept until ``new`` is in place.

    The previous directory waits in ``.NAME.old-*/previous`` between the two renames: a process
    killed there leaves no directory at ``path``, and :func:`recover_directory` puts it back.
    """
    old = None
    try:
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, old / "previous")
        os.replace(new, path)
    except BaseException:
        if old is not None and not path.exists() and (old / "previous").exists():
            os.replace(old / "previous", path)  # put the previous directory back
        shutil.rmtree(new, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        raise
    fsync_dir(path.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _leftovers(path: Path, kind: str) -> list[Path]:
    """``.NAME.tmp-*`` or ``.NAME.old-*`` directories beside ``path``, newest first."""
    prefix = f".{path.name}.{kind}-"
    try:
        entries = [Path(e.path) for e in os.scandir(path.parent) if e.name.startswith(prefix)]
    except OSError:
        return []
    found = [p for p in entries if p.is_dir() and not p.is_symlink()]
    return sorted(found, key=lambda p: p.stat().st_mtime_ns, reverse=True)


def recover_directory(path: str | Path) -> bool:
    """Roll back a swap killed between its two renames: no ``path``, but its previous directory waits.

    Returns whether a directory was put back. The new directory of that swap (``.NAME.tmp-*``) may
    be incomplete, so the previous one is restored rather than the new one finished; the next
    successful save removes what is left (:func:`remove_leftovers`).
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        return False
    for old in _leftovers(path, "old"):
        previous = old / "previous"
        if previous.is_dir() and not previous.is_symlink():
            os.replace(previous, path)
            fsync_dir(path.parent)
            shutil.rmtree(old, ignore_errors=True)
            return True
    return False


def remove_leftovers(path: str | Path) -> None:
    """Remove the temporary and previous directories that interrupted saves to ``path`` left beside it.

    Called once a save is in place. Two processes saving to the same ``path`` at once are not
    supported: the second to finish removes the first one's temporary directory.
    """
    path = Path(path)
    for kind in ("tmp", "old"):
        for leftover in _leftovers(path, kind):
            shutil.rmtree(leftover, ignore_errors=True)
