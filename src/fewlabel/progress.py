"""Progress bars for long work, written to stderr so they never mix with data on stdout."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

_enabled = os.environ.get("FEWLABEL_PROGRESS", "1") != "0"


def set_enabled(enabled: bool) -> None:
    """Turn progress bars on or off for this process (the CLI's ``--quiet`` turns them off)."""
    global _enabled
    _enabled = enabled


@contextlib.contextmanager
def bar(description: str, total: float | None) -> Iterator[Callable[..., None]]:
    """A progress bar; yields ``advance(n)``. Shows nothing when disabled or stderr is not a terminal."""
    if not _enabled:
        yield lambda n=1: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda n=1: None
        return
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)


@contextlib.contextmanager
def tracker(description: str) -> Iterator[Callable[..., None]]:
    """A bar whose total is learned on the way; yields ``update(done, total, stage)``."""
    if not _enabled:
        yield lambda done, total, stage="": None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda done, total, stage="": None
        return
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int, stage: str = "") -> None:
            label = f"{description} ({stage})" if stage else description
            progress.update(task, completed=done, total=total or None, description=label)

        yield update
