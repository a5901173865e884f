"""Functions small enough to read in one sitting: none in ``src/`` longer than ``MAX_LINES``.

Counted from the ``def`` line to the last line, docstring included. ruff's C901 (max complexity 12,
in pyproject.toml) bounds the branches; this bounds the length.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "fewlabel"
MAX_LINES = 60
# Functions allowed to be longer because they are flat lists (a table of options, say); none today.
FLAT_LISTS: set[str] = set()


def long_functions(source: str) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            lines = node.end_lineno - node.lineno + 1
            if lines > MAX_LINES:
                found.append((node.name, lines))
    return found


def test_no_function_in_src_is_longer_than_60_lines():
    offences = [
        f"{path.relative_to(PACKAGE.parent)}: {name} ({lines} lines)"
        for path in sorted(PACKAGE.rglob("*.py"))
        for name, lines in long_functions(path.read_text(encoding="utf-8"))
        if f"{path.relative_to(PACKAGE.parent)}:{name}" not in FLAT_LISTS
    ]
    assert not offences, f"split these into named steps (at most {MAX_LINES} lines each):\n" + "\n".join(
        offences
    )


def test_the_check_counts_a_long_function():
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    assert long_functions(f"def f():\n{body}\n") == [("f", MAX_LINES + 1)]
    assert long_functions("def g():\n    return 1\n") == []
