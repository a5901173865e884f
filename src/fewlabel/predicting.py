"""Predicting with a saved model (every input row kept, two columns added) and evaluating it."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from fewlabel.data import (
    TEXT_COLUMN_NAMES,
    Table,
    detect_format,
    find_column,
    labelled_from_table,
    read_lines,
    read_table,
)
from fewlabel.errors import DataError
from fewlabel.evaluation import per_class, score
from fewlabel.persistence import TrainedModel, load_model

PRED_COLUMN = "predicted_label"
CONF_COLUMN = "confidence"
BATCH = 512
ABSTAIN = "ABSTAIN"


def _text_column(table: Table, model: TrainedModel, wanted: str | None) -> str:
    trained_on = model.manifest.get("text_column")
    if wanted is None and trained_on in table.columns:
        return trained_on
    return find_column(table, wanted, TEXT_COLUMN_NAMES, "texts", "--text-column")


def predict_table(
    model: TrainedModel, table: Table, text_column: str | None = None, threshold: float | None = None
) -> tuple[list[str], list[float | None], int]:
    """Labels and confidences for every row; rows with an empty text get neither. Returns also their count.

    With ``threshold``, a prediction whose confidence is below it is replaced by ``ABSTAIN`` (the
    confidence is kept), so uncertain rows can go to a person instead.
    """
    from fewlabel import progress

    column = _text_column(table, model, text_column)
    texts = [(row.get(column) or "").strip() for row in table.rows]
    labels: list[str] = [""] * len(texts)
    confidences: list[float | None] = [None] * len(texts)
    todo = [i for i, t in enumerate(texts) if t]
    with progress.bar("Predicting", len(todo)) as advance:
        for start in range(0, len(todo), BATCH):
            chunk = todo[start : start + BATCH]
            pred, conf = model.predict([texts[i] for i in chunk])
            for i, label, c in zip(chunk, pred, conf, strict=True):
                labels[i] = ABSTAIN if threshold is not None and c < threshold else label
                confidences[i] = float(c)
            advance(len(chunk))
    return labels, confidences, len(texts) - len(todo)


def _write(table: Table, labels: list[str], confidences: list[float | None], out: TextIO, fmt: str) -> None:
    for clash in (PRED_COLUMN, CONF_COLUMN):
        if clash in table.columns:
            raise DataError(
                f"{table.path}: already has a column {clash!r}; rename it so predictions do not replace it"
            )
    if fmt == "jsonl":
        for row, label, conf in zip(table.raw or table.rows, labels, confidences, strict=True):
            record = {
                **row,
                PRED_COLUMN: label or None,
                CONF_COLUMN: None if conf is None else round(conf, 6),
            }
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        return
    if fmt == "lines":
        for label, conf in zip(labels, confidences, strict=True):
            out.write(f"{label}\t{'' if conf is None else f'{conf:.4f}'}\n")
        return
    writer = csv.writer(out, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
    writer.writerow([*table.columns, PRED_COLUMN, CONF_COLUMN])
    for row, label, conf in zip(table.rows, labels, confidences, strict=True):
        writer.writerow(
            [*(row.get(c, "") for c in table.columns), label, "" if conf is None else f"{conf:.6f}"]
        )


def predict_file(
    model_dir: str | Path,
    input_path: str,
    output_path: str | None = None,
    text_column: str | None = None,
    format: str | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    threshold: float | None = None,
    engine: str = "auto",
) -> dict[str, Any]:
    """Predict every row of ``input_path`` (``-``: one text per line on stdin) into ``output_path``.

    The output holds every input column plus ``predicted_label`` and ``confidence`` (the probability
    of the predicted label). It is written to a temporary file and renamed, and never over the input.
    """
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise DataError(f"--threshold must be between 0 and 1, got {threshold}")
    model = load_model(model_dir, engine=engine)
    if ABSTAIN in model.labels and threshold is not None:
        raise DataError(f"the model has a class named {ABSTAIN!r}; --threshold cannot mark abstentions")
    if input_path == "-":
        table = read_lines(stdin or sys.stdin)
        in_fmt = "lines"
    else:
        table = read_table(input_path, format)
        in_fmt = table.format if table.format != "parquet" else "csv"
    labels, confidences, empty = predict_table(model, table, text_column, threshold)
    if output_path is None:
        out_fmt = in_fmt
        _write(table, labels, confidences, stdout or sys.stdout, out_fmt)
    else:
        out = Path(output_path)
        if input_path != "-" and out.resolve() == Path(input_path).resolve():
            raise DataError(f"{out}: is the input file; write predictions to a new file so the input is kept")
        out_fmt = detect_format(out) if out.suffix else in_fmt
        if out_fmt == "parquet":
            raise DataError(f"{out}: writing Parquet is not supported; use .csv, .tsv or .jsonl")
        if out_fmt == "lines":
            out_fmt = "csv"
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
                _write(table, labels, confidences, handle, out_fmt)
            os.replace(tmp, out)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    counts: dict[str, int] = {}
    for label in labels:
        if label:
            counts[label] = counts.get(label, 0) + 1
    return {"rows": len(table.rows), "empty_texts": empty, "predicted": counts, "output": output_path or "-"}


def evaluate_file(
    model_dir: str | Path,
    data_path: str,
    text_column: str | None = None,
    label_column: str | None = None,
    format: str | None = None,
) -> dict[str, Any]:
    """Accuracy, macro-F1 and log loss (with 95% intervals), per-class scores and the confusion matrix."""
    model = load_model(model_dir)
    table = read_table(data_path, format)
    text_column = text_column or (
        model.manifest.get("text_column") if model.manifest.get("text_column") in table.columns else None
    )
    label_column = label_column or (
        model.manifest.get("label_column") if model.manifest.get("label_column") in table.columns else None
    )
    data = labelled_from_table(table, text_column, label_column, dedupe=False, min_per_class=1, min_classes=1)
    unknown = sorted(set(data.labels) - set(model.labels))
    if unknown:
        raise DataError(
            f"{data_path}: label(s) {', '.join(repr(u) for u in unknown)} are not among the model's labels "
            f"({', '.join(repr(m) for m in model.labels)}); fix them or train on data that has them"
        )
    index = {label: i for i, label in enumerate(model.labels)}
    y = np.array([index[label] for label in data.labels])
    proba = model.predict_proba(data.texts)
    scores = score(y, proba)
    majority = float(np.bincount(y, minlength=len(model.labels)).max() / len(y))
    return {
        "data": data_path,
        "model": str(model_dir),
        **scores.to_dict(),
        "majority_baseline_accuracy": majority,
        "labels": model.labels,
        **per_class(y, proba.argmax(axis=1), model.labels),
        "cv_estimate_at_training": model.manifest.get("metrics", {}).get("accuracy"),
    }


def to_jsonl_string(rows: list[dict]) -> str:
    buffer = io.StringIO()
    for row in rows:
        buffer.write(json.dumps(row) + "\n")
    return buffer.getvalue()
