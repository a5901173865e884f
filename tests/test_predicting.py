"""predict_file keeps every input row and column and adds two; evaluate_file scores a saved model."""

from __future__ import annotations

import csv
import io
import json

import pytest

from conftest import NEW_NEGATIVE, NEW_POSITIVE, REVIEWS
from fewlabel.errors import DataError
from fewlabel.inference.predicting import evaluate_file, predict_file

NEW = [*NEW_POSITIVE, *NEW_NEGATIVE]
EXPECTED = ["positive"] * len(NEW_POSITIVE) + ["negative"] * len(NEW_NEGATIVE)


def read_csv(path, delimiter=","):
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        return reader.fieldnames, list(reader)


def test_csv_keeps_columns_and_order_and_adds_two(tmp_path, tfidf_model_dir, write_csv):
    src = write_csv(
        tmp_path / "in.csv", ["id", "text", "note"], [[f"r{i}", t, f"n,{i}"] for i, t in enumerate(NEW)]
    )
    before = src.read_bytes()
    summary = predict_file(tfidf_model_dir, str(src), str(tmp_path / "out.csv"))
    columns, rows = read_csv(tmp_path / "out.csv")
    assert columns == ["id", "text", "note", "predicted_label", "confidence"]
    assert [r["id"] for r in rows] == [f"r{i}" for i in range(len(NEW))]
    assert [r["text"] for r in rows] == NEW and [r["note"] for r in rows] == [
        f"n,{i}" for i in range(len(NEW))
    ]
    assert [r["predicted_label"] for r in rows] == EXPECTED
    assert all(0.5 <= float(r["confidence"]) <= 1.0 for r in rows)
    assert summary == {
        "rows": 4,
        "empty_texts": 0,
        "predicted": {"positive": 2, "negative": 2},
        "output": str(tmp_path / "out.csv"),
        "resumed_rows": 0,
        "cut_texts": 0,
    }
    assert src.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.csv"]  # no temporary file left


def test_tsv_in_tsv_out(tmp_path, tfidf_model_dir, write_csv):
    src = write_csv(tmp_path / "in.tsv", ["text", "source"], [[t, "web"] for t in NEW], delimiter="\t")
    predict_file(tfidf_model_dir, str(src), str(tmp_path / "out.tsv"))
    columns, rows = read_csv(tmp_path / "out.tsv", delimiter="\t")
    assert columns == ["text", "source", "predicted_label", "confidence"]
    assert [r["predicted_label"] for r in rows] == EXPECTED


def test_jsonl_in_and_out(tmp_path, tfidf_model_dir, write_jsonl):
    records = [{"text": t, "id": f"x{i}", "lang": "en"} for i, t in enumerate(NEW)]
    src = write_jsonl(tmp_path / "in.jsonl", records)
    predict_file(tfidf_model_dir, str(src), str(tmp_path / "out.jsonl"))
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(out) == len(records)
    for rec, got, label in zip(records, out, EXPECTED, strict=True):
        assert {k: got[k] for k in rec} == rec
        assert got["predicted_label"] == label
        assert isinstance(got["confidence"], float) and 0.5 <= got["confidence"] <= 1.0


def test_jsonl_output_keeps_value_types(tmp_path, tfidf_model_dir, write_jsonl):
    records = [{"id": 7, "text": NEW[0], "verified": True, "extra": None}]
    src = write_jsonl(tmp_path / "in.jsonl", records)
    predict_file(tfidf_model_dir, str(src), str(tmp_path / "out.jsonl"))
    got = json.loads((tmp_path / "out.jsonl").read_text(encoding="utf-8"))
    assert {k: got[k] for k in records[0]} == records[0]


def test_csv_in_jsonl_out(tmp_path, tfidf_model_dir, write_csv):
    src = write_csv(tmp_path / "in.csv", ["text"], [[t] for t in NEW])
    predict_file(tfidf_model_dir, str(src), str(tmp_path / "out.jsonl"))
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [o["predicted_label"] for o in out] == EXPECTED


def test_stdout_when_no_output(tmp_path, tfidf_model_dir, write_csv):
    src = write_csv(tmp_path / "in.csv", ["text"], [[t] for t in NEW])
    buffer = io.StringIO()
    summary = predict_file(tfidf_model_dir, str(src), stdout=buffer)
    rows = list(csv.DictReader(io.StringIO(buffer.getvalue())))
    assert [r["predicted_label"] for r in rows] == EXPECTED
    assert summary["output"] == "-"


def test_stdin_one_text_per_line(tfidf_model_dir):
    """stdin in, stdout out: CSV with a header and a text column, as a file output gets."""
    stdin = io.StringIO(f"{NEW[0]}\n\n{NEW[2]}\r\n{NEW[1]}\n")
    stdout = io.StringIO()
    summary = predict_file(tfidf_model_dir, "-", stdin=stdin, stdout=stdout)
    lines = stdout.getvalue().split("\n")
    assert lines[0] == "text,predicted_label,confidence"
    assert lines[-1] == "" and len(lines) == 6  # a header, then one row per input line, blank kept
    rows = list(csv.DictReader(io.StringIO(stdout.getvalue())))
    assert [r["text"] for r in rows] == [NEW[0], "", NEW[2], NEW[1]]
    assert [r["predicted_label"] for r in rows] == ["positive", "", "negative", "positive"]
    assert rows[1]["confidence"] == ""
    assert all(0.5 <= float(r["confidence"]) <= 1.0 for r in rows if r["predicted_label"])
    assert summary["rows"] == 4 and summary["empty_texts"] == 1


def test_stdin_to_stdout_matches_a_file_output(tmp_path, tfidf_model_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where a file named "-" would appear
    stdout = io.StringIO()
    predict_file(tfidf_model_dir, "-", "-", stdin=io.StringIO("\n".join(NEW) + "\n"), stdout=stdout)
    predict_file(tfidf_model_dir, "-", str(tmp_path / "out.csv"), stdin=io.StringIO("\n".join(NEW) + "\n"))
    assert stdout.getvalue() == (tmp_path / "out.csv").read_text(encoding="utf-8")
    assert list(tmp_path.iterdir()) == [tmp_path / "out.csv"]  # nothing named "-"


def test_stdin_to_csv_file(tmp_path, tfidf_model_dir):
    predict_file(tfidf_model_dir, "-", str(tmp_path / "out.csv"), stdin=io.StringIO("\n".join(NEW) + "\n"))
    columns, rows = read_csv(tmp_path / "out.csv")
    assert columns == ["text", "predicted_label", "confidence"]
    assert [r["text"] for r in rows] == NEW and [r["predicted_label"] for r in rows] == EXPECTED


def test_empty_texts_get_no_prediction(tmp_path, tfidf_model_dir, write_csv):
    src = write_csv(tmp_path / "in.csv", ["id", "text"], [[1, NEW[0]], [2, ""], [3, "   "], [4, NEW[2]]])
    summary = predict_file(tfidf_model_dir, str(src), str(tmp_path / "out.csv"))
    _, rows = read_csv(tmp_path / "out.csv")
    assert [r["id"] for r in rows] == ["1", "2", "3", "4"]
    assert [(r["predicted_label"], r["confidence"]) for r in rows[1:3]] == [("", ""), ("", "")]
    assert rows[0]["predicted_label"] == "positive" and rows[3]["predicted_label"] == "negative"
    assert summary["empty_texts"] == 2 and summary["predicted"] == {"positive": 1, "negative": 1}


def test_refuses_to_write_over_input(tmp_path, tfidf_model_dir, write_csv):
    src = write_csv(tmp_path / "in.csv", ["text"], [[t] for t in NEW])
    before = src.read_bytes()
    with pytest.raises(DataError, match="is the input file"):
        predict_file(tfidf_model_dir, str(src), str(tmp_path / "." / "in.csv"))
    assert src.read_bytes() == before


@pytest.mark.parametrize("clash", ["predicted_label", "confidence"])
def test_input_with_prediction_column_errors(tmp_path, tfidf_model_dir, write_csv, clash):
    src = write_csv(tmp_path / "in.csv", ["text", clash], [[t, "old"] for t in NEW])
    with pytest.raises(DataError) as err:
        predict_file(tfidf_model_dir, str(src), str(tmp_path / "out.csv"))
    assert str(src) in str(err.value) and repr(clash) in str(err.value) and "rename" in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]  # nothing written, no temporary left


def test_text_column_detection_and_option(tmp_path, tfidf_model_dir, write_csv):
    src = write_csv(tmp_path / "in.csv", ["body", "comment"], [[t, "ignore me"] for t in NEW])
    predict_file(tfidf_model_dir, str(src), str(tmp_path / "a.csv"))  # 'body' comes first among known names
    assert [r["predicted_label"] for r in read_csv(tmp_path / "a.csv")[1]] == EXPECTED
    predict_file(tfidf_model_dir, str(src), str(tmp_path / "b.csv"), text_column="body")
    assert [r["predicted_label"] for r in read_csv(tmp_path / "b.csv")[1]] == EXPECTED
    with pytest.raises(DataError, match="no column named 'bdoy'.*Did you mean 'body'"):
        predict_file(tfidf_model_dir, str(src), str(tmp_path / "c.csv"), text_column="bdoy")


def test_refuses_parquet_output(tmp_path, tfidf_model_dir, write_csv):
    src = write_csv(tmp_path / "in.csv", ["text"], [[t] for t in NEW])
    with pytest.raises(DataError, match="Parquet"):
        predict_file(tfidf_model_dir, str(src), str(tmp_path / "out.parquet"))


def test_evaluate_file_metrics(tmp_path, tfidf_model_dir, reviews_csv):
    metrics = evaluate_file(tfidf_model_dir, str(reviews_csv))
    assert set(metrics) >= {
        "data", "model", "n", "accuracy", "macro_f1", "log_loss", "majority_baseline_accuracy", "labels",
        "per_class", "confusion_matrix", "cv_estimate_at_training",
    }  # fmt: skip
    assert metrics["n"] == len(REVIEWS)
    assert metrics["labels"] == ["negative", "positive"]
    assert metrics["accuracy"]["value"] >= 0.9  # its own training data
    acc = metrics["accuracy"]
    assert acc["ci95_low"] <= acc["value"] <= acc["ci95_high"]
    assert metrics["majority_baseline_accuracy"] == 0.5
    assert sum(map(sum, metrics["confusion_matrix"])) == len(REVIEWS)
    assert metrics["per_class"]["positive"]["support"] == 24
    assert metrics["cv_estimate_at_training"]["value"] > 0.5
    json.dumps(metrics)  # serialisable for `evaluate --json`


def test_evaluate_file_on_new_data_with_other_column_names(tmp_path, tfidf_model_dir, write_csv):
    src = write_csv(
        tmp_path / "held.csv",
        ["review", "sentiment"],
        [[t, lab] for t, lab in zip(NEW, EXPECTED, strict=True)],
    )
    metrics = evaluate_file(tfidf_model_dir, str(src))
    assert metrics["n"] == 4 and metrics["accuracy"]["value"] == 1.0


def test_evaluate_file_unknown_label(tmp_path, tfidf_model_dir, write_csv):
    rows = [[NEW[0], "positive"], [NEW[2], "negative"], ["It is fine I guess.", "neutral"]]
    src = write_csv(tmp_path / "held.csv", ["text", "label"], rows)
    with pytest.raises(DataError) as err:
        evaluate_file(tfidf_model_dir, str(src))
    msg = str(err.value)
    assert str(src) in msg and "'neutral'" in msg and "'negative', 'positive'" in msg


def test_evaluate_file_on_a_single_class(tmp_path, tfidf_model_dir, write_csv):
    src = write_csv(tmp_path / "held.csv", ["text", "label"], [[t, "positive"] for t in NEW_POSITIVE])
    metrics = evaluate_file(tfidf_model_dir, str(src))
    assert metrics["n"] == 2 and metrics["accuracy"]["value"] == 1.0


def test_large_input_streams_in_chunks_and_matches_whole_prediction(tmp_path, tfidf_model_dir, write_csv):
    texts = [f"{t} (copy {i})" for i in range(60) for t in NEW]
    src = write_csv(tmp_path / "in.csv", ["id", "text"], [[i, t] for i, t in enumerate(texts)])
    predict_file(tfidf_model_dir, str(src), str(tmp_path / "whole.csv"), chunk_rows=10_000)
    predict_file(tfidf_model_dir, str(src), str(tmp_path / "chunked.csv"), chunk_rows=7)
    assert (tmp_path / "whole.csv").read_bytes() == (tmp_path / "chunked.csv").read_bytes()


def test_interrupted_run_resumes_without_redoing_or_duplicating_rows(
    tmp_path, tfidf_model_dir, write_csv, monkeypatch
):
    import fewlabel.inference.predicting as predicting

    texts = [f"{t} (copy {i})" for i in range(30) for t in NEW]
    src = write_csv(tmp_path / "in.csv", ["id", "text"], [[i, t] for i, t in enumerate(texts)])
    predict_file(tfidf_model_dir, str(src), str(tmp_path / "reference.csv"), chunk_rows=10)

    real = predicting.predict_table
    calls = {"n": 0}

    def dies_on_fifth_chunk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(predicting, "predict_table", dies_on_fifth_chunk)
    out = tmp_path / "out.csv"
    with pytest.raises(KeyboardInterrupt):
        predict_file(tfidf_model_dir, str(src), str(out), chunk_rows=10)
    assert not out.exists()  # the output appears only when complete
    assert len(list(tmp_path.glob(".out.csv.*.partial"))) == 1  # this run's own partial file

    predicted_rows = []

    def counting(model, table, *args, **kwargs):
        predicted_rows.extend(r["id"] for r in table.rows)
        return real(model, table, *args, **kwargs)

    monkeypatch.setattr(predicting, "predict_table", counting)
    summary = predict_file(tfidf_model_dir, str(src), str(out), chunk_rows=10)
    assert summary["resumed_rows"] == 40 and summary["rows"] == len(texts)
    assert predicted_rows[0] == "40" and len(predicted_rows) == len(texts) - 40  # nothing redone
    assert out.read_bytes() == (tmp_path / "reference.csv").read_bytes()  # nothing duplicated or lost
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.csv", "reference.csv"]
