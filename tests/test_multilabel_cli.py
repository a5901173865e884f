"""The command line with multi-label data and models: train, predict in every format, clear refusals."""

from __future__ import annotations

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from conftest import BACKBONE, assert_one_line_error
from fewlabel.cli.main import app

ENV = {"COLUMNS": "200", "FEWLABEL_PROGRESS": "0"}


def invoke(*args: object, input: str | None = None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input, env=ENV)


def train_tfidf(data, output):
    """`fewlabel train DATA -o OUTPUT --multi-label` with tfidf, 4 folds, quietly."""
    return invoke(
        "train",
        data,
        "-o",
        output,
        "--multi-label",
        "--strategy",
        "tfidf",
        "--folds",
        "4",
        "--model",
        BACKBONE,
        "-q",
    )


def test_train_multi_label_prints_the_table_and_headline(multi_csv, tmp_path):
    result = train_tfidf(multi_csv, tmp_path / "m")
    assert result.exit_code == 0, result.output
    for fragment in ("micro-F1", "Hamming loss", "each label's majority", "Expected micro-F1", "Model saved"):
        assert fragment in result.stdout, fragment
    assert json.loads((tmp_path / "m" / "fewlabel.json").read_text())["task"] == "multi-label"


def test_a_rare_label_is_warned_about_before_training(multi_csv, tmp_path):
    rows = multi_csv.read_text().splitlines()
    rows = [rows[0], *(r + ("|rare" if i < 4 else "") for i, r in enumerate(rows[1:]))]
    multi_csv.write_text("\n".join(rows) + "\n")
    result = train_tfidf(multi_csv, tmp_path / "m")
    assert result.exit_code == 0, result.output
    warning = "Label 'rare' is on only 4 texts"
    assert result.stdout.count(warning) == 1 and result.stdout.index(warning) < result.stdout.index(
        "micro-F1"
    )


def test_train_without_the_flag_names_it(multi_csv, tmp_path):
    result = invoke("train", multi_csv, "-o", tmp_path / "m", "--model", BACKBONE, "-q")
    assert_one_line_error(result, "--multi-label", "--label-separator", "'labels'")


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--strategy", "finetune"],
            "single-label only; multi-label training works with tfidf, embed, ensemble",
        ),
        (["--augment", "eda"], "augmentation is single-label only"),
        (["--unlabelled", "x.csv"], "--unlabelled is single-label only"),
    ],
)
def test_unsupported_options_are_refused(multi_csv, tmp_path, extra, message):
    result = invoke("train", multi_csv, "-o", tmp_path / "m", "--multi-label", "--model", BACKBONE, *extra)
    assert_one_line_error(result, message)
    assert not (tmp_path / "m").exists()


def test_label_separator_needs_multi_label(multi_csv, tmp_path):
    result = invoke("train", multi_csv, "-o", tmp_path / "m", "--label-separator", ";")
    assert_one_line_error(result, "--label-separator applies with --multi-label only")


def test_predict_to_stdout_adds_the_label_set_and_a_confidence_per_label(multi_model_dir):
    result = invoke("predict", multi_model_dir, "-", input="the pasta and the goal\n\nthe laptop screen\n")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == [
        "text",
        "predicted_labels",
        "confidence_food",
        "confidence_sports",
        "confidence_tech",
    ]
    assert rows[0]["predicted_labels"] == "food|sports" and rows[2]["predicted_labels"] == "tech"
    assert rows[1]["predicted_labels"] == rows[1]["confidence_food"] == ""  # an empty line: no prediction
    assert float(rows[0]["confidence_food"]) > 0.5 > float(rows[0]["confidence_tech"])


@pytest.mark.parametrize("suffix", ["csv", "tsv", "jsonl", "xlsx"])
def test_predict_into_each_file_format(multi_model_dir, tmp_path, suffix):
    source = tmp_path / "in.csv"
    source.write_text("id,text\n1,the oven and the recipe\n2,the keyboard battery\n")
    out = tmp_path / f"out.{suffix}"
    result = invoke("predict", multi_model_dir, source, "-o", out, "-q")
    assert result.exit_code == 0, result.output
    assert "Wrote 2 rows" in result.stderr
    if suffix == "jsonl":
        records = [json.loads(line) for line in out.read_text().splitlines()]
        assert records[0]["predicted_labels"] == ["food"] and records[1]["id"] == "2"
        assert set(records[1]) >= {"confidence_food", "confidence_sports", "confidence_tech"}
    elif suffix == "xlsx":
        from openpyxl import load_workbook

        sheet = load_workbook(out).active
        values = [[c.value for c in row] for row in sheet.iter_rows()]
        assert values[0][:3] == ["id", "text", "predicted_labels"] and values[2][2] == "tech"
    else:
        rows = list(csv.DictReader(io.StringIO(out.read_text()), delimiter="\t" if suffix == "tsv" else ","))
        assert [r["predicted_labels"] for r in rows] == ["food", "tech"]


@pytest.mark.parametrize(
    "extra, message",
    [(["--threshold", "0.5"], "--threshold is single-label only"), (["--runner", "ray"], "Ray runner")],
)
def test_predict_refuses_single_label_options(multi_model_dir, extra, message):
    result = invoke("predict", multi_model_dir, "-", *extra, input="the pasta\n")
    assert_one_line_error(result, message)


def test_evaluate_scores_a_multi_label_model(multi_model_dir, multi_csv, tmp_path):
    result = invoke("evaluate", multi_model_dir, multi_csv, "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["task"] == "multi-label" and found["n"] == 40
    assert found["micro_f1"]["value"] > 0.9 and found["majority_baseline"]["micro_f1"]["value"] == 0.0
    assert found["per_label"]["food"]["support"] == 20
    assert found["cv_estimate_at_training"]["value"] > 0.9
    shown = invoke("evaluate", multi_model_dir, multi_csv)
    assert shown.exit_code == 0 and "Hamming loss" in shown.stdout and "Per label" in shown.stdout
    unknown = tmp_path / "u.csv"
    unknown.write_text("text,labels\nthe pasta,food|drama\n")
    assert_one_line_error(
        invoke("evaluate", multi_model_dir, unknown), "'drama'", "not among the model's labels"
    )


def test_report_rebuilds(multi_model_dir, tmp_path):
    import shutil

    copy = tmp_path / "m"
    shutil.copytree(multi_model_dir, copy)
    (copy / "report.html").unlink()
    result = invoke("report", copy)
    assert result.exit_code == 0, result.output
    assert "micro-F1" in (copy / "report.html").read_text()
