"""Atomic writes: a file or directory appears whole at its final path, or not at all.

Everything fewlabel writes for later use (model directories and their manifests, predictions,
suggestions, installed backbones, report pages) goes through here. It is written beside its target
(the same file system, so the rename is atomic), flushed to disk, then renamed over the target, and
the parent directory is flushed too: a crash or a kill at any point leaves either the old content or
the new, never a half-written file under the final name.

Files created here follow the umask (``0o666 & ~umask``), as ``open`` would create them, not
``tempfile``'s private ``0o600``: a service account or the Ray workers reading a shared disk must be
able to read what fewlabel wrote. An output written over a long run is also locked
(:func:`output_lock`), so two runs into one file refuse instead of interleaving, and the
temporaries a killed run left beside it are removed by the next (:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import tempfile
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import IO, Any

from fewlabel.errors import FewlabelError, OutputInUseError

try:
    import fcntl
except ImportError:  # Windows: outputs are not locked there
    fcntl = None  # type: ignore[assignment]


def _umask() -> int:
    # Read where the kernel tells it: setting the umask to read it back would race with other threads.
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks (model files and backbones are large)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def created_mode(directory: bool = False) -> int:
    """The permissions ``open`` or ``mkdir`` would give a new file or directory under the current umask."""
    return (0o777 if directory else 0o666) & ~_umask()


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
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise _naming(err, path) from None
    try:
        os.chmod(tmp, created_mode())
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding, newline=newline) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise _naming(err, path) from None
        raise
    fsync_dir(path.parent)


def _naming(err: OSError, path: Path) -> OSError:
    """``err`` with ``path`` as its file name when it has none (a failed write names no file)."""
    if err.filename is None or str(err.filename).startswith(str(path.parent / f".{path.name}.")):
        err.filename, err.filename2 = str(path), None
    return err


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_file(path) as handle:
        handle.write(text)


def write_json(path: str | Path, content: Any) -> None:
    """Write ``content`` as indented JSON (UTF-8, non-ASCII kept) to ``path`` atomically."""
    write_text(path, json.dumps(content, indent=2, ensure_ascii=False))


def check_output_file(given: str | Path) -> None:
    """Refuse, before any work, an output path that cannot become a file: a directory, a path ending in
    a separator (``newdir/`` names a folder, though ``Path`` drops the slash), or one under a file."""
    path = Path(given)
    if path.is_dir():
        raise FewlabelError(
            f"{path}: is a directory; give the path of a file to write, such as {path / 'out.csv'}"
        )
    if str(given).endswith(tuple(filter(None, (os.sep, os.altsep)))):
        raise FewlabelError(
            f"{given}: ends in a separator, so it names a folder; give the path of a file to write, "
            f"such as {path / 'out.csv'}"
        )
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise FewlabelError(f"{path}: {parent} is a file, not a directory; give another output path")
            return


def new_partial(path: Path) -> Path:
    """A fresh name beside ``path`` for a run's resumable ``.partial`` file; each run gets its own."""
    return path.parent / f".{path.name}.{secrets.token_hex(4)}.partial"


def remove_stale_temporaries(path: Path, sidecars: Collection[Path] = (), keep: Collection[Path] = ()) -> int:
    """Remove what killed runs left beside ``path``: its and ``sidecars``' temporaries, its partial files.

    Call it only while holding :func:`output_lock` for ``path``: then no other run is writing them.
    ``keep`` is spared (the partial file a resumed run goes on with). Returns how many were removed.
    """
    # mkstemp's names: the prefix, eight of [a-z0-9_], the suffix; new_partial's: eight hex digits.
    names = "|".join(re.escape(p.name) for p in (path, *sidecars))
    stale = re.compile(
        rf"\.(?:{names})\.[a-z0-9_]{{8}}\.tmp|\.{re.escape(path.name)}(?:\.[0-9a-f]{{8}})?\.partial"
    )
    kept = {p.name for p in keep}
    removed = 0
    for entry in os.scandir(path.parent):
        if stale.fullmatch(entry.name) and entry.name not in kept and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed += 1
    return removed


def lock_path(path: Path) -> Path:
    """The lock file of output ``path``: hidden, beside it."""
    return path.parent / f".{path.name}.lock"


@contextlib.contextmanager
def output_lock(path: str | Path) -> Iterator[Path]:
    """Hold the lock on writing ``path`` for the block; raise :class:`OutputInUseError` if another run does.

    The lock is an exclusive ``flock`` on a hidden lock file beside ``path`` that holds the holder's
    process id and host. The kernel releases it when the holder exits, however it exits, so a lock
    file left by a killed run is taken over. Where the file system cannot lock (some network file
    systems) or on Windows, the block runs unlocked.
    """
    path = Path(path)
    lock = lock_path(path)
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as err:  # named as the output: the lock file is an implementation detail
            err.filename, err.filename2 = str(path), None
            raise
        if fcntl is None:
            break
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode("utf-8", "replace").split()
            os.close(fd)
            who = " on ".join(holder[:2]) or "unknown"
            raise OutputInUseError(
                f"{path}: another fewlabel run (process {who}) is writing this file (lock file {lock}); "
                "wait for it to finish, or write to another file"
            ) from None
        except OSError:  # this file system cannot lock
            break
        try:  # the previous holder may have removed the file between our open and our lock
            if os.path.samestat(os.fstat(fd), os.stat(lock)):
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        yield lock
    finally:
        lock.unlink(missing_ok=True)  # removed while still held, so no one locks a file about to vanish
        os.close(fd)


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
    os.chmod(tmp, created_mode(directory=True))  # mkdtemp makes it 0700: follow the umask, as mkdir would
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
