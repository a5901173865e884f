"""Errors fewlabel raises for problems a user can fix.

The command line prints these as one clear message (no traceback), and operating-system errors
(a read-only or full disk, a path that is a directory) as one line through :func:`os_error_message`;
everything else is a bug.
"""

from __future__ import annotations

import errno


class FewlabelError(Exception):
    """A problem with the user's input or environment, explained in the message."""


class DataError(FewlabelError):
    """The data file cannot be used as given; the message names the file, row or field."""


class ModelDirError(FewlabelError):
    """A model directory is missing, not a fewlabel model, damaged or of an unknown format."""


class BackboneError(FewlabelError):
    """A backbone (embedding model) cannot be found or loaded."""


class OutputInUseError(FewlabelError):
    """Another run is writing the same output file; the message names its process and lock file."""


# What a user can do about the operating-system errors that reach the command line, by errno name.
_OS_ADVICE = {
    "EACCES": "permission denied; check its permissions, or choose a place you can write to",
    "EPERM": "operation not permitted; check its permissions, or choose a place you can write to",
    "EROFS": "the file system is read-only; choose a path on a writable disk",
    "ENOSPC": "no space left on the disk; free some space, or choose another disk",
    "EDQUOT": "disk quota exceeded; free some space, or choose another disk",
    "EFBIG": "the file is too large for this file system; choose another disk",
    "EISDIR": "is a directory; give a file path",
    "ENOTDIR": "part of the path is a file, not a directory; check the path",
    "ENOENT": "no such file or directory; check the path",
    "EEXIST": "already exists (a file where a directory is needed, or made by another run at the same "
    "time); check the path",
    "ENOTEMPTY": "was changed by another process at the same time (two runs saving to one place?); "
    "run again, one run at a time",
    "ENAMETOOLONG": "the name is too long; choose a shorter path",
    "EMFILE": "too many open files; raise the limit (ulimit -n) and run again",
    "EIO": "input/output error: the disk or network file system failed; check it and run again",
}


def os_error_message(err: OSError) -> str:
    """One line for an operating-system error: the path, what went wrong, and what to do."""
    advice = _OS_ADVICE.get(errno.errorcode.get(err.errno or 0, ""))
    if advice is None:
        advice = (err.strerror or str(err) or type(err).__name__).rstrip(".")
        advice = advice[:1].lower() + advice[1:]
    paths = [str(p) for p in (err.filename, err.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {advice}" if paths else advice
