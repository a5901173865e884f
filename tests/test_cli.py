"""The command line: each command on the fixture data, clear errors (exit 2, no traceback), and the demo."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from conftest import BACKBONE, NEW_NEGATIVE, NEW_POSITIVE
from fewlabel import __version__
from fewlabel.cli.main import app
from fewlabel.inference.loading import load_model

ENV = {"COLUMNS": "200", "FEWLABEL_PROGRESS": "0"}  # wide tables, so names are not wrapped


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, *args: str, input: str | None = None):
    return runner.invoke(app, [str(a) for a in args], input=input, env=ENV)


def assert_clean_error(result, *fragments: str) -> None:
    """A user error: exit code 2, one 'Error:' message on stderr, no traceback."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Error:" in result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_help(runner):
    result = invoke(runner, "--help")
    assert result.exit_code == 0
    for command in ("train", "predict", "evaluate", "demo", "models"):
        assert command in result.stdout


@pytest.mark.parametrize("command", ["train", "predict", "evaluate", "demo"])
def test_command_help(runner, command):
    result = invoke(runner, command, "--help")
    assert result.exit_code == 0 and "Usage" in result.stdout


def test_version(runner):
    result = invoke(runner, "--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"fewlabel {__version__}"


def test_train_writes_model_and_prints_results(runner, tmp_path, reviews_csv):
    out = tmp_path / "model"
    result = invoke(
        runner, "train", reviews_csv, "-o", out, "--strategy", "tfidf", "--model", BACKBONE, "--folds", "3"
    )
    assert result.exit_code == 0, result.output
    assert "Results on texts each model did not see" in result.stdout
    assert "tfidf *" in result.stdout and "majority class" in result.stdout
    assert "Expected accuracy on new texts" in result.stdout
    assert f"Model saved to {out}" in result.stdout
    model = load_model(out)
    assert model.manifest.strategy.name == "tfidf"
    assert model.manifest.config["folds"] == 3
    assert model.predict(NEW_POSITIVE + NEW_NEGATIVE)[0] == ["positive"] * 2 + ["negative"] * 2


def test_train_with_few_labels_on_a_weak_backbone_says_so_before_training(runner, tmp_path, reviews_csv):
    args = ["-o", tmp_path / "m", "--model", BACKBONE, "--folds", "3"]
    result = invoke(runner, "train", reviews_csv, *args, "--no-diagnostics")
    assert result.exit_code == 0, result.output
    warning = result.stdout.index("Only 48 labelled texts")
    assert warning < result.stdout.index("Results on texts each model did not see")  # before, not after
    assert result.stdout.count("Only 48 labelled texts") == 1 and "embeddinggemma" in result.stdout


def test_train_missing_file_is_a_clean_error(runner, tmp_path, reviews_csv):
    result = invoke(
        runner, "train", reviews_csv.with_name("reveiws.csv"), "-o", tmp_path / "m", "--model", BACKBONE
    )
    assert_clean_error(result, "file not found", "Did you mean")
    assert not (tmp_path / "m").exists()


def test_train_bad_column_is_a_clean_error(runner, tmp_path, reviews_csv):
    args = ["-o", tmp_path / "m", "--model", BACKBONE, "--strategy", "tfidf", "--text-column", "txet"]
    result = invoke(runner, "train", reviews_csv, *args)
    assert_clean_error(result, "no column named 'txet'", "Did you mean 'text'")


def test_train_with_unlabelled_texts(runner, tmp_path, reviews_csv, write_csv):
    pool = write_csv(tmp_path / "pool.csv", ["text"], [["Lovely, works great."], ["Awful, broke at once."]])
    args = ["-o", tmp_path / "m", "--model", BACKBONE, "--strategy", "tfidf", "--folds", "3"]
    result = invoke(runner, "train", reviews_csv, *args, "--unlabelled", pool, "--no-diagnostics")
    assert result.exit_code == 0, result.output
    assert "Self-training on 2 unlabelled texts from pool.csv" in result.stdout
    assert load_model(tmp_path / "m").manifest.unlabelled["texts"] == 2
    missing = invoke(
        runner, "train", reviews_csv, "-o", tmp_path / "m2", "--unlabelled", tmp_path / "nope.csv"
    )
    assert_clean_error(missing, "nope.csv")


def test_train_unknown_strategy_suggests(runner, tmp_path, reviews_csv):
    result = invoke(
        runner, "train", reviews_csv, "-o", tmp_path / "m", "--model", BACKBONE, "--strategy", "tfdif"
    )
    assert_clean_error(result, "unknown strategy 'tfdif'", "Did you mean 'tfidf'?")


def test_train_too_few_per_class_for_folds(runner, tmp_path, write_csv):
    rows = [[f"good thing {i}", "positive"] for i in range(4)]
    rows += [[f"bad thing {i}", "negative"] for i in range(6)]
    src = write_csv(tmp_path / "small.csv", ["text", "label"], rows)
    result = invoke(runner, "train", src, "-o", tmp_path / "m", "--model", BACKBONE, "--strategy", "tfidf")
    assert_clean_error(result, "too few examples", "'positive' has 4", "at least 5", "--folds")
    assert not (tmp_path / "m").exists()


def test_train_refuses_non_model_directory(runner, tmp_path, reviews_csv):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "keep.txt").write_text("mine", encoding="utf-8")
    args = ["-o", tmp_path / "m", "--model", BACKBONE, "--strategy", "tfidf", "--folds", "3"]
    result = invoke(runner, "train", reviews_csv, *args)
    assert_clean_error(result, "refusing to overwrite")
    assert (tmp_path / "m" / "keep.txt").read_text(encoding="utf-8") == "mine"


def test_predict_writes_output(runner, tmp_path, tfidf_model_dir, write_csv):
    src = write_csv(tmp_path / "in.csv", ["text"], [[t] for t in NEW_POSITIVE + NEW_NEGATIVE])
    out = tmp_path / "out.csv"
    result = invoke(runner, "predict", tfidf_model_dir, src, "-o", out)
    assert result.exit_code == 0, result.output
    with out.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["predicted_label"] for r in rows] == ["positive"] * 2 + ["negative"] * 2
    assert "Wrote 4 rows" in result.stderr and "negative: 2, positive: 2" in result.stderr
    assert result.stdout == ""


def test_predict_stdin(runner, tfidf_model_dir):
    """Texts on stdin, predictions on stdout: CSV with the columns a file would have."""
    result = invoke(runner, "predict", tfidf_model_dir, "-", input=f"{NEW_POSITIVE[0]}\n{NEW_NEGATIVE[0]}\n")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["text"] for r in rows] == [NEW_POSITIVE[0], NEW_NEGATIVE[0]]
    assert [r["predicted_label"] for r in rows] == ["positive", "negative"]


def test_predict_given_a_text_instead_of_a_file_shows_how_to_pipe_it(runner, tfidf_model_dir):
    result = invoke(runner, "predict", tfidf_model_dir, "Broke after a week")
    assert_clean_error(result, "'Broke after a week': file not found", "echo 'Broke after a week' | fewlabel")
    piped = invoke(runner, "predict", tfidf_model_dir, "-", input="Broke after a week\n")  # what it suggests
    assert piped.exit_code == 0, piped.output


def test_predict_missing_model_is_a_clean_error(runner, tmp_path, reviews_csv):
    result = invoke(runner, "predict", tmp_path / "no-model", reviews_csv, "-o", tmp_path / "out.csv")
    assert_clean_error(result, "no such model directory")
    assert not (tmp_path / "out.csv").exists()


def test_predict_damaged_model_is_a_clean_error(runner, tmp_path, model_copy, reviews_csv):
    weights = model_copy / "strategy" / "tfidf_weights.npz"
    weights.write_bytes(weights.read_bytes()[:-10])
    result = invoke(runner, "predict", model_copy, reviews_csv, "-o", tmp_path / "out.csv")
    assert_clean_error(result, "does not match its checksum")


def test_evaluate_json(runner, tfidf_model_dir, reviews_csv):
    result = invoke(runner, "evaluate", tfidf_model_dir, reviews_csv, "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert 0.9 <= metrics["accuracy"]["value"] <= 1.0
    assert metrics["n"] == 48 and metrics["labels"] == ["negative", "positive"]


def test_evaluate_table(runner, tfidf_model_dir, reviews_csv):
    result = invoke(runner, "evaluate", tfidf_model_dir, reviews_csv)
    assert result.exit_code == 0, result.output
    fragments = [
        "accuracy",
        "balanced accuracy",
        "macro-F1",
        "log loss",
        "majority baseline",
        "Per class",
        "positive",
        "negative",
    ]
    for fragment in [*fragments, "Cross-validated estimate at training time"]:
        assert fragment in result.stdout


def test_evaluate_unknown_label_is_a_clean_error(runner, tmp_path, tfidf_model_dir, write_csv):
    src = write_csv(tmp_path / "d.csv", ["text", "label"], [["ok", "positive"], ["meh", "neutral"]])
    assert_clean_error(invoke(runner, "evaluate", tfidf_model_dir, src), "'neutral'")


def test_models_lists_backbones(runner):
    result = invoke(runner, "models")
    assert result.exit_code == 0, result.output
    assert "minilm" in result.stdout and "mpnet" in result.stdout
    assert "sentence-transformers/all-MiniLM-L6-v2" in result.stdout
    assert "installed" in result.stdout


def test_models_install_unknown_is_a_clean_error(runner):
    assert_clean_error(invoke(runner, "models", "install", "bert"), "nothing to install for 'bert'")


def test_models_install_minilm_reports_path(runner):
    result = invoke(runner, "models", "install", "minilm")
    assert result.exit_code == 0 and "minilm is installed:" in result.stdout


def test_cli_import_does_not_load_torch():
    code = "import sys, fewlabel.cli.main; print('torch' in sys.modules, 'sklearn' in sys.modules)"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    torch_loaded, _ = proc.stdout.split()
    assert torch_loaded == "False"


def test_help_does_not_load_heavy_modules():
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom fewlabel.cli.main import app\n"
        "r = CliRunner().invoke(app, ['train', '--help'])\nassert r.exit_code == 0, r.output\n"
        "heavy = ('torch', 'sklearn', 'transformers', 'sentence_transformers')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.slow
def test_demo_end_to_end(runner, tmp_path):
    """The shipped demo set (440 rows), auto on minilm: nested CV, then fine-tuning. The slowest test."""
    out = tmp_path / "demo-model"
    result = invoke(runner, "demo", "--model", BACKBONE, "-o", out)
    assert result.exit_code == 0, result.output
    assert "440 synthetic product reviews" in result.stdout
    assert "auto (nested CV)" in result.stdout
    assert "The saved model on new reviews" in result.stdout
    model = load_model(out)
    manifest = model.manifest
    assert manifest.training_data.rows == 440
    assert manifest.training_data.class_counts == {"negative": 220, "positive": 220}
    assert manifest.config["model"] == BACKBONE and manifest.config["strategy"] == "auto"
    metrics = json.loads((out / "metrics.json").read_text())
    assert "finetune" in metrics["strategies"]  # 440 rows: fine-tuning joins auto
    if manifest.strategy.name == "finetune":  # kept only if it beat the CV winner on its held-out rows
        assert manifest.metrics.estimate_source.startswith("the 88 validation rows finetune held out")
    else:
        assert manifest.metrics.estimate_source == "nested cross-validation of the auto procedure"
    accuracy = manifest.metrics.accuracy
    assert accuracy.value > 0.7
    assert accuracy.ci95_low <= accuracy.value <= accuracy.ci95_high
    labels, _ = model.predict(["Battery died after two days and support never answered. Returning it."])
    assert labels == ["negative"]


@pytest.mark.slow  # CI runs it on every landing: the cheapest path through auto's fine-tuning
def test_train_auto_with_finetuning_unlabelled_and_long_texts(runner, tmp_path, write_csv, monkeypatch):
    """`train --unlabelled` with auto choosing fine-tuning, on texts longer than its window.

    The path that crashed after 15 minutes on real data (the truncation note read the recipe of the
    self-training wrapper). Auto admits fine-tuning from 40 rows here instead of 200, and the robust
    recipe stops after one epoch, so the whole path runs in seconds.
    """
    from conftest import NEGATIVE, POSITIVE
    from fewlabel import finetuning, training

    monkeypatch.setattr(training, "MIN_ROWS_FOR_HOLDOUT", 40)
    monkeypatch.setitem(finetuning.PRESETS, "robust", {"epochs": 1})
    padding = " ".join(["It arrived on a Tuesday in a plain cardboard box with the manual."] * 30)
    rows = [[f"{p} {padding}" if i % 4 == 0 else p, "positive"] for i, p in enumerate(POSITIVE)]
    rows += [[f"{n} {padding}" if i % 4 == 0 else n, "negative"] for i, n in enumerate(NEGATIVE)]
    data = write_csv(tmp_path / "long.csv", ["text", "label"], rows)
    pool = write_csv(
        tmp_path / "pool.csv",
        ["text"],
        [[t] for t in [*NEW_POSITIVE, *NEW_NEGATIVE, f"Lovely, works great. {padding}"]],
    )
    out = tmp_path / "model"
    args = ["-o", out, "--model", BACKBONE, "--folds", "3", "--no-diagnostics", "--unlabelled", pool]
    result = invoke(runner, "train", data, *args)
    assert result.exit_code == 0, result.output
    manifest = load_model(out).manifest
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert "finetune" in metrics["strategies"]  # fine-tuning ran within auto
    assert "longer than 256 tokens (head_tail)" in result.stdout
    assert manifest.unlabelled["texts"] == 5
