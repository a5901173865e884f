"""The one convention every command follows (docs/cli.md), checked over every command.

Outputs: a model directory is replaced whole; any other existing output only with --force, which
never overrides another run's lock; -o - is standard output, as CSV with a header. Help: every
registered strategy, every default, no "<bool>" after a flag. Options: declared once.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import conftest
from conftest import BACKBONE, NEW_NEGATIVE, NEW_POSITIVE
from fewlabel import atomic
from fewlabel.cli.main import app
from fewlabel.config import TrainConfig
from fewlabel.strategies import REGISTRY

ENV = {"COLUMNS": "1000", "FEWLABEL_PROGRESS": "0"}  # no wrapping: one option, one line
NEW = [*NEW_POSITIVE, *NEW_NEGATIVE]
OLD = "old content, kept unless --force\n"


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, *args: object, input: str | None = None):
    return runner.invoke(app, [str(a) for a in args], input=input, env=ENV)


def assert_one_line_error(result, *fragments: str) -> None:
    """As everywhere, and nothing on stdout: data goes there, so an error must not."""
    conftest.assert_one_line_error(result, *fragments)
    assert result.stdout == ""


@pytest.fixture
def texts_csv(tmp_path, write_csv) -> Path:
    return write_csv(tmp_path / "texts.csv", ["id", "text"], [[i, t] for i, t in enumerate(NEW)])


@pytest.fixture
def fake_export(monkeypatch) -> list[Path]:
    """Stands in for the ONNX export (slow, and needs a backbone): writes MODEL/onnx/encoder.onnx."""
    import fewlabel.inference.export as export

    calls: list[Path] = []

    def export_onnx(model_dir, quantize=None):
        calls.append(Path(model_dir))
        target = Path(model_dir) / export.ONNX_DIR
        target.mkdir(exist_ok=True)
        (target / "encoder.onnx").write_text("new export")
        return {"onnx": str(target / "encoder.onnx"), "bytes": 10, "quantize": quantize}

    monkeypatch.setattr(export, "export_onnx", export_onnx)
    return calls


def writing_commands(model: Path, texts: Path, tmp: Path) -> dict[str, tuple[list[object], Path]]:
    """Each command that writes something other than a model directory: its arguments and output."""
    onnx = model / "onnx"
    return {
        "predict": (["predict", model, texts, "-o", tmp / "out.csv"], tmp / "out.csv"),
        "suggest": (["suggest", model, texts, "-n", "2", "-o", tmp / "to_label.csv"], tmp / "to_label.csv"),
        "export": (["export", model], onnx),
    }


WRITERS = ["predict", "suggest", "export"]


def _existing(output: Path) -> None:
    if output.suffix:
        output.write_text(OLD, encoding="utf-8")
    else:  # the export directory
        output.mkdir()
        (output / "encoder.onnx").write_text(OLD, encoding="utf-8")


def _content(output: Path) -> str:
    return (output / "encoder.onnx" if output.is_dir() else output).read_text(encoding="utf-8")


@pytest.mark.parametrize("command", WRITERS)
def test_existing_output_needs_force(
    runner, command, model_copy, texts_csv, tmp_path, fake_export, monkeypatch
):
    import fewlabel.inference.loading as loading
    import fewlabel.inference.predicting as predicting

    args, output = writing_commands(model_copy, texts_csv, tmp_path)[command]
    _existing(output)

    def no_work(*args, **kwargs):
        raise AssertionError("the model was loaded before the output was checked")

    with monkeypatch.context() as patch:  # refused before any work
        patch.setattr(loading, "load_model", no_work)
        patch.setattr(predicting, "load_model", no_work)
        refused = invoke(runner, *args)
    assert_one_line_error(refused, str(output), "already exists", "--force")
    assert _content(output) == OLD and fake_export == []

    forced = invoke(runner, *args, "--force")
    assert forced.exit_code == 0, forced.output
    assert _content(output) != OLD
    assert not atomic.lock_path(output).exists()


@pytest.mark.parametrize("command", WRITERS)
def test_force_never_overrides_another_runs_lock(
    runner, command, model_copy, texts_csv, tmp_path, fake_export
):
    args, output = writing_commands(model_copy, texts_csv, tmp_path)[command]
    _existing(output)
    with atomic.output_lock(output):  # another run is writing this output
        result = invoke(runner, *args, "--force")
    assert_one_line_error(result, str(output), "another fewlabel run")
    assert _content(output) == OLD and fake_export == []


def test_a_model_directory_is_replaced_without_force(runner, model_copy, reviews_csv):
    before = json.loads((model_copy / "fewlabel.json").read_text(encoding="utf-8"))["config"]["folds"]
    args = ["-o", model_copy, "--strategy", "tfidf", "--model", BACKBONE, "--folds", "4", "--no-diagnostics"]
    result = invoke(runner, "train", reviews_csv, *args)
    assert result.exit_code == 0, result.output
    after = json.loads((model_copy / "fewlabel.json").read_text(encoding="utf-8"))["config"]["folds"]
    assert (before, after) == (3, 4)
    assert not [p for p in model_copy.parent.iterdir() if p.name.startswith(".model.")]  # no leftovers


@pytest.mark.parametrize("command", ["predict", "suggest"])
@pytest.mark.parametrize("dash", [True, False])
def test_tables_go_to_stdout_as_csv_with_a_header(
    runner, command, dash, tfidf_model_dir, texts_csv, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # where a file named "-" would appear
    extra = ["-n", "2"] if command == "suggest" else []
    result = invoke(runner, command, tfidf_model_dir, texts_csv, *extra, *(["-o", "-"] if dash else []))
    assert result.exit_code == 0, result.output
    added = ["predicted_label", "confidence"] if command == "predict" else ["suggest_rank", "suggest_score"]
    assert result.stdout.splitlines()[0] == ",".join(["id", "text", *added])
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == (len(NEW) if command == "predict" else 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["texts.csv"]  # nothing named "-"


def test_stdin_to_stdout_has_the_columns_of_a_file(runner, tfidf_model_dir, tmp_path):
    stdin = "\n".join(NEW) + "\n"
    to_stdout = invoke(runner, "predict", tfidf_model_dir, "-", "-o", "-", input=stdin)
    to_file = invoke(runner, "predict", tfidf_model_dir, "-", "-o", tmp_path / "out.csv", input=stdin)
    assert to_stdout.exit_code == 0 and to_file.exit_code == 0, to_stdout.output + to_file.output
    assert to_stdout.stdout.splitlines()[0] == "text,predicted_label,confidence"
    assert to_stdout.stdout == (tmp_path / "out.csv").read_text(encoding="utf-8")
    assert to_file.stdout == "" and "Wrote 4 rows" in to_file.stderr  # messages on stderr


# Help.


def _commands(group: object = None, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], object]]:
    group = group or typer.main.get_command(app)
    yield path, group
    for name, command in getattr(group, "commands", {}).items():
        yield from _commands(command, (*path, name))


COMMANDS = [path for path, _ in _commands()]


def _help(runner: CliRunner, path: tuple[str, ...]) -> str:
    result = invoke(runner, *path, "--help")
    assert result.exit_code == 0, result.output
    return result.stdout


def test_every_command_is_checked():
    names = {" ".join(path) for path in COMMANDS}
    expected = {"", "train", "predict", "evaluate", "demo", "export", "report", "serve", "suggest", "upgrade"}
    assert names >= expected | {"models", "models install"}


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "fewlabel")
def test_help_shows_flags_bare_and_every_default(runner, path):
    text = _help(runner, path)
    assert "<bool>" not in text and "<boolean>" not in text
    command = dict(_commands())[path]
    shown = 0
    for param in command.params:  # type: ignore[attr-defined]
        if param.param_type_name != "option" or param.hidden or param.required:
            continue
        off_flag = param.is_flag and not param.secondary_opts and param.default is False
        if param.show_default and param.default is not None and not off_flag:
            shown += 1
        elif not off_flag:  # no default to show: the help says what happens without the option
            assert "default" in (param.help or "").lower(), f"{' '.join(path)} {param.opts[0]}"
    assert text.count("[default: ") == shown


def test_strategy_help_names_every_registered_strategy(runner):
    text = _help(runner, ("train",))
    line = next(line for line in text.splitlines() if "--strategy" in line)
    for name in ["auto", *REGISTRY]:
        assert name in line, name


def test_flags_still_work(runner):
    version = invoke(runner, "--version")
    assert version.exit_code == 0 and version.stdout.startswith("fewlabel ")


# Options declared once.


SHARED = ["--text-column", "--label-column", "--sheet", "--quiet", "--force", "--seed", "--engine", "--model"]


def test_shared_options_read_the_same_everywhere():
    seen: dict[str, set[str]] = {}
    for path, command in _commands():
        for param in command.params:  # type: ignore[attr-defined]
            name = next((o for o in param.opts if o.startswith("--")), None)
            if name in SHARED:
                seen.setdefault(name, set()).add(param.help)
            if name == "--output" and path[0] in ("predict", "suggest"):
                assert param.default == "-", path
    assert set(seen) == set(SHARED)
    assert {name for name, helps in seen.items() if len(helps) > 1} == set()


def test_train_defaults_are_train_configs():
    train = typer.main.get_command(app).commands["train"]  # type: ignore[attr-defined]
    defaults = {p.name: p.default for p in train.params}
    config = TrainConfig()
    for name in ("strategy", "model", "seed", "folds", "diagnostics", "budget_minutes", "preset", "augment"):
        assert defaults[name] == getattr(config, name), name
    assert defaults["tune_threshold"] is config.tune_threshold and defaults["strict"] is config.strict


def test_top_level_help_does_not_import_the_registry():
    """The strategy names are read when a command's options are: the registry imports NumPy."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom fewlabel.cli.main import app\n"
        "assert CliRunner().invoke(app, ['--help']).exit_code == 0\n"
        "print('fewlabel.strategies' in sys.modules, 'numpy' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"]
