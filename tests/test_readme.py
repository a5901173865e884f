"""The README as a newcomer meets it: every command it shows must work, every link must lead somewhere.

Commands that need no file of the reader's own run as written (`fewlabel --help`, `fewlabel models`,
the Python example on the demo set that ships with fewlabel; `fewlabel demo` with --runslow). The
others (`fewlabel train reviews.csv ...`) are parsed by the command line itself, so an option or an
argument the CLI no longer takes fails here, and their `--help` must run. CI runs the Quick start's
two lines separately (.ci/run); here they are only checked to be the two lines it expects.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from fewlabel.cli.main import app

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DIAGNOSTICS = REPO / "docs" / "diagnostics.md"  # holds the whole output of one `fewlabel demo` run
DEMO_SECTION = "What the demo prints"  # the README's excerpt of it
# Pages that link and are linked to: README, docs/ (with its experiment logs) and BENCHMARKS.md.
LINKING_PAGES = [README, REPO / "BENCHMARKS.md", *sorted((REPO / "docs").rglob("*.md"))]
# Shell operators that end one command and start another on the same line.
OPERATORS = {"&&", "||", "|", ";", "&"}


def readme() -> str:
    return README.read_text(encoding="utf-8")


def fenced_blocks(text: str, language: str) -> list[str]:
    """The bodies of the ```language blocks in ``text``, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.M | re.S)


def section(text: str, heading: str) -> str:
    """The text under ``## heading`` up to the next ``## ``."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"README has no '## {heading}' section"
    return match.group(1)


def fewlabel_commands(text: str) -> list[list[str]]:
    """Every `fewlabel ...` invocation in the README's shell blocks, as its arguments after `fewlabel`."""
    commands = []
    for block in fenced_blocks(text, "bash"):
        for line in block.splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            lexer.commenters = "#"
            words: list[str] = []
            for token in [*lexer, ";"]:
                if token in OPERATORS:
                    if words[:1] == ["fewlabel"]:
                        commands.append(words[1:])
                    words = []
                else:
                    words.append(token)
    return commands


COMMANDS = fewlabel_commands(readme())


def command_id(args: list[str]) -> str:
    return " ".join(["fewlabel", *args])


def resolve(args: list[str]):
    """The command that ``fewlabel ARGS`` runs, and the arguments left for it, as the CLI resolves them."""
    command = get_command(app)
    ctx = command.context_class(command, info_name="fewlabel")
    path = ["fewlabel"]
    rest = list(args)
    while hasattr(command, "get_command") and rest and not rest[0].startswith("-"):
        name, rest = rest[0], rest[1:]
        sub = command.get_command(ctx, name)
        assert sub is not None, f"`{' '.join(path)}` has no command {name!r}"
        path.append(name)
        command = sub
        ctx = command.context_class(command, info_name=name, parent=ctx)
    return command, ctx, path, rest


def test_readme_is_under_10000_characters():
    size = len(README.read_bytes())  # as `wc -c README.md` counts
    assert size < 10_000, f"README.md is {size} bytes; move detail into docs/"


def test_quick_start_is_one_block_of_two_commands_as_ci_reads_it():
    """.ci/run takes the first fenced block under '## Quick start' and needs exactly two lines."""
    quick_start = section(readme(), "Quick start")
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", quick_start, flags=re.M | re.S)
    assert len(blocks) == 1, "the Quick start must hold exactly one fenced block"
    lines = blocks[0].splitlines()
    assert len(lines) == 2 and all(line.strip() for line in lines), lines
    assert any(line.startswith("pip install") and "fewlabel demo" in line for line in lines)


def test_readme_shows_the_main_commands():
    shown = {args[0] for args in COMMANDS}
    assert {"train", "predict", "evaluate", "demo", "models"} <= shown, shown


@pytest.mark.parametrize("args", COMMANDS, ids=[command_id(a) for a in COMMANDS])
def test_readme_command_parses_and_its_help_runs(args):
    """Each command as the README writes it is accepted by the CLI's own parser (options, arguments)."""
    command, ctx, path, rest = resolve(args)
    # Raises on an unknown option, a missing argument or one too many.
    command.make_context(path[-1], rest, parent=ctx.parent)
    result = CliRunner().invoke(app, [*path[1:], "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_fewlabel_help_runs_and_lists_every_command_shown(tmp_path):
    proc = _fewlabel(tmp_path, "--help")
    assert proc.returncode == 0, proc.stderr
    for name in {args[0] for args in COMMANDS}:
        assert re.search(rf"\b{name}\b", proc.stdout), f"`fewlabel --help` does not list {name}"


def test_fewlabel_models_runs_as_shown(tmp_path):
    assert ["models"] in COMMANDS
    proc = _fewlabel(tmp_path, "models")
    assert proc.returncode == 0, proc.stderr
    assert "minilm" in proc.stdout and "mpnet" in proc.stdout


def test_readme_python_example_runs_as_written(tmp_path):
    """The README's Python blocks, in order, as one script, in an empty directory: no edits."""
    blocks = fenced_blocks(readme(), "python")
    assert blocks, "README has no Python example"
    script = "\n".join(blocks)
    assert "FewlabelClassifier" in script and "train(" in script
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd=tmp_path, env=_env()
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The headline estimate with its interval, printed as the example formats it.
    assert re.search(r"\d+\.\d% \(95% CI \d+\.\d% to \d+\.\d%\)", proc.stdout), proc.stdout
    assert (tmp_path / "my-model" / "fewlabel.json").is_file()


def _docs_imports() -> list[tuple[str, str]]:
    """(page, statement) for each import of fewlabel in the Python blocks of README.md and docs/."""
    found = []
    for page in [README, *sorted((REPO / "docs").rglob("*.md"))]:
        for block in fenced_blocks(page.read_text(encoding="utf-8"), "python"):
            for node in ast.walk(ast.parse(block)):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
                if any(name.split(".")[0] == "fewlabel" for name in names):
                    found.append((str(page.relative_to(REPO)), ast.unparse(node)))
    return found


@pytest.mark.parametrize(
    ("page", "statement"), _docs_imports(), ids=[f"{p}: {s}" for p, s in _docs_imports()]
)
def test_docs_python_imports_work(page, statement):
    """Every ``from fewlabel... import ...`` a Python example shows imports what it names (the examples
    themselves need files of the reader's own, all but the README's)."""
    exec(statement, {})


def test_readme_demo_excerpt_is_cut_from_the_full_output():
    """The README's sample lines are lines of the whole `fewlabel demo` output kept in docs/."""
    excerpts = fenced_blocks(section(readme(), DEMO_SECTION), "text")
    assert len(excerpts) == 1, "the Quick start shows one sample of `fewlabel demo` output"
    full = _demo_output_in_docs()
    for line in excerpts[0].splitlines():
        assert line in full.splitlines(), f"not in docs/diagnostics.md's demo output: {line!r}"


def _demo_output_in_docs() -> str:
    text = DIAGNOSTICS.read_text(encoding="utf-8")
    blocks = [b for b in fenced_blocks(text, "text") if b.startswith("$ fewlabel demo\n")]
    assert len(blocks) == 1, "docs/diagnostics.md must hold one `$ fewlabel demo` output block"
    return blocks[0]


def _table_rows(output: str) -> list[str]:
    """The strategy names in the first column of the results table, without the chosen marker."""
    start = output.index("Results on texts each model did not see")
    rows = []
    for line in output[start:].splitlines()[1:]:
        if line.startswith("└"):
            break
        if line.startswith("│"):
            rows.append(line.split("│")[1].strip().removesuffix(" *").strip())
    return rows


def test_docs_demo_output_has_a_finetune_row():
    """The demo fine-tunes; a sample without that row would be stale."""
    rows = _table_rows(_demo_output_in_docs())
    assert "finetune (held out)" in rows and "auto (nested CV)" in rows, rows


@pytest.mark.slow
def test_demo_runs_as_the_quick_start_runs_it(tmp_path):
    """`fewlabel demo` as the Quick start writes it; its table has the rows of the sample in docs/.

    This session's FEWLABEL_HOME has no `mpnet`, so the demo runs on `minilm` here.
    """
    [demo] = [args for args in COMMANDS if args[:1] == ["demo"]]
    proc = subprocess.run(
        [sys.executable, "-m", "fewlabel", *demo],
        capture_output=True,
        text=True,
        timeout=1200,
        cwd=tmp_path,
        env=_env(COLUMNS="100"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "Model saved to fewlabel-demo-model" in out
    assert re.search(r"^Chosen: .*Expected accuracy on new texts like these: \d", out, flags=re.M), out
    assert _table_rows(out) == _table_rows(_demo_output_in_docs()), out
    assert (tmp_path / "fewlabel-demo-model" / "report.html").is_file()


def _fewlabel(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m fewlabel ARGS`` in ``cwd``, as a newcomer's shell would run it."""
    return subprocess.run(
        [sys.executable, "-m", "fewlabel", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=_env(),
    )


def _env(**extra: str) -> dict[str, str]:
    """This session's environment (offline, its own FEWLABEL_HOME), with this checkout's src first."""
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    return env


# Links --------------------------------------------------------------------------------------------


def github_anchor(heading: str) -> str:
    """The fragment GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", text, flags=re.M):
        anchor = github_anchor(heading)
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        out.add(anchor if count == 0 else f"{anchor}-{count}")
    return out


def _without_code(text: str) -> str:
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def relative_links(page: Path) -> list[str]:
    text = _without_code(page.read_text(encoding="utf-8"))
    links = re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", text)
    return [link for link in links if not re.match(r"[a-z][a-z0-9+.-]*:", link)]


def _link_cases() -> list[tuple[Path, str]]:
    return [(page, link) for page in LINKING_PAGES for link in relative_links(page)]


@pytest.mark.parametrize(
    "page,link", _link_cases(), ids=[f"{p.relative_to(REPO)}->{link}" for p, link in _link_cases()]
)
def test_relative_link_resolves(page, link):
    target, _, fragment = link.partition("#")
    path = (page.parent / target).resolve() if target else page
    assert path.is_file(), f"{page.relative_to(REPO)} links to {link}: no such file"
    if fragment and path.suffix == ".md":
        assert fragment in anchors(path), f"{page.relative_to(REPO)} links to {link}: no such heading"


def test_readme_links_every_guide():
    linked = {link.partition("#")[0] for link in relative_links(README)}
    guides = {
        "docs/finetuning.md",
        "docs/diagnostics.md",
        "docs/self-training-and-augmentation.md",
        "docs/prediction-and-serving.md",
        "docs/cli.md",
        "SECURITY.md",
        "docs/model-format.md",
        "docs/data.md",
        "docs/imbalanced.md",
        "docs/python.md",
        "docs/layout.md",
        "BENCHMARKS.md",
    }
    assert guides <= linked, sorted(guides - linked)
