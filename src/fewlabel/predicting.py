"""Predicting with a saved model (every input row kept, two columns added) and evaluating it."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from fewlabel.data import (
    TEXT_COLUMN_NAMES,
    Table,
    detect_format,
    find_column,
    iter_delimited,
    iter_jsonl_tables,
    labelled_from_table,
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
    model: TrainedModel,
    table: Table,
    text_column: str | None = None,
    threshold: float | None = None,
    show_progress: bool = True,
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
    bar = progress.bar("Predicting", len(todo)) if show_progress else contextlib.nullcontext(lambda n=1: None)
    with bar as advance:
        for start in range(0, len(todo), BATCH):
            chunk = todo[start : start + BATCH]
            pred, conf = model.predict([texts[i] for i in chunk])
            for i, label, c in zip(chunk, pred, conf, strict=True):
                labels[i] = ABSTAIN if threshold is not None and c < threshold else label
                confidences[i] = float(c)
            advance(len(chunk))
    return labels, confidences, len(texts) - len(todo)


def _write(
    table: Table,
    labels: list[str],
    confidences: list[float | None],
    out: TextIO,
    fmt: str,
    header: bool = True,
) -> None:
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
    if header:
        writer.writerow([*table.columns, PRED_COLUMN, CONF_COLUMN])
    for row, label, conf in zip(table.rows, labels, confidences, strict=True):
        writer.writerow(
            [*(row.get(c, "") for c in table.columns), label, "" if conf is None else f"{conf:.6f}"]
        )


CHUNK_ROWS = 2048  # rows read, predicted and written at a time: memory stays flat on any input size


def _stream_lines(handle: TextIO, chunk_rows: int) -> Iterator[Table]:
    rows, lines = [], []
    for number, line in enumerate(handle, start=1):
        rows.append({"text": line.rstrip("\n").rstrip("\r")})
        lines.append(number)
        if len(rows) >= chunk_rows:
            yield Table("<stdin>", ["text"], rows, lines, "lines")
            rows, lines = [], []
    yield Table("<stdin>", ["text"], rows, lines, "lines")


def stream_table(path: str, format: str | None, chunk_rows: int = CHUNK_ROWS, stdin: TextIO | None = None):
    """Yield the input as Tables of at most ``chunk_rows`` rows, never holding the whole file."""
    if path == "-":
        yield from _stream_lines(stdin or sys.stdin, chunk_rows)
        return
    file = Path(path)
    fmt = detect_format(file, format)
    if not file.exists() or file.is_dir() or fmt == "parquet" or file.suffix.lower() == ".gz":
        yield read_table(path, format)  # read_table explains a missing file; Parquet and gzip are read whole
        return
    try:
        with file.open("r", encoding="utf-8-sig", newline="") as handle:
            if fmt == "jsonl":
                yield from iter_jsonl_tables(handle, file, chunk_rows)
            else:
                yield from iter_delimited(handle, file, "\t" if fmt == "tsv" else ",", fmt, chunk_rows)
    except UnicodeDecodeError:
        read_table(path, format)  # re-read to name the line with the bad byte
        raise


def _model_fingerprint(model: TrainedModel) -> str:
    files = model.manifest.get("files", {})
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


@dataclass
class _Progress:
    rows: int = 0
    empty: int = 0
    counts: dict[str, int] = field(default_factory=dict)


def _predict_stream(
    model: TrainedModel,
    chunks: Iterator[Table],
    out: TextIO,
    out_fmt: str,
    done: _Progress,
    skip: int,
    header: bool,
    text_column: str | None,
    threshold: float | None,
    on_chunk: Callable[[], None] | None = None,
) -> None:
    """Predict chunk by chunk, writing each before reading the next; the first ``skip`` rows were done."""
    from fewlabel import progress

    with progress.bar("Predicting (rows)", None) as advance:
        for table in chunks:
            if skip >= len(table.rows):
                skip -= len(table.rows)
                continue
            if skip:
                raw = table.raw[skip:] if table.raw else None
                table = Table(
                    table.path, table.columns, table.rows[skip:], table.line_numbers[skip:], table.format, raw
                )
                skip = 0
            labels, confidences, empty = predict_table(
                model, table, text_column, threshold, show_progress=False
            )
            _write(table, labels, confidences, out, out_fmt, header=header)
            header = False
            done.rows += len(table.rows)
            done.empty += empty
            for label in labels:
                if label:
                    done.counts[label] = done.counts.get(label, 0) + 1
            if on_chunk:
                on_chunk()
            advance(len(table.rows))


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
    chunk_rows: int = CHUNK_ROWS,
    resume: bool = True,
) -> dict[str, Any]:
    """Predict every row of ``input_path`` (``-``: one text per line on stdin) into ``output_path``.

    The output holds every input column plus ``predicted_label`` and ``confidence`` (the probability
    of the predicted label). Rows are read, predicted and written in chunks, so inputs larger than
    memory work. A file output is built in a hidden ``.partial`` file beside it, with a progress
    record after every chunk: an interrupted run started again with the same input and model goes
    on where it stopped, without redoing or duplicating rows; the output appears only when complete,
    and never over the input.
    """
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise DataError(f"--threshold must be between 0 and 1, got {threshold}")
    model = load_model(model_dir, engine=engine)
    if ABSTAIN in model.labels and threshold is not None:
        raise DataError(f"the model has a class named {ABSTAIN!r}; --threshold cannot mark abstentions")
    in_fmt = "lines" if input_path == "-" else detect_format(Path(input_path), format)
    in_fmt = "csv" if in_fmt == "parquet" else in_fmt
    done = _Progress()
    chunks = stream_table(input_path, format, chunk_rows, stdin)

    if output_path is None:
        _predict_stream(model, chunks, stdout or sys.stdout, in_fmt, done, 0, True, text_column, threshold)
        return {"rows": done.rows, "empty_texts": done.empty, "predicted": done.counts, "output": "-"}

    out = Path(output_path)
    if input_path != "-" and out.resolve() == Path(input_path).resolve():
        raise DataError(f"{out}: is the input file; write predictions to a new file so the input is kept")
    out_fmt = detect_format(out) if out.suffix else in_fmt
    if out_fmt == "parquet":
        raise DataError(f"{out}: writing Parquet is not supported; use .csv, .tsv or .jsonl")
    out_fmt = "csv" if out_fmt == "lines" else out_fmt
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.parent / f".{out.name}.partial"
    state_path = out.parent / f".{out.name}.progress.json"
    source = Path(input_path)
    identity = {
        "input": str(source.resolve()) if input_path != "-" else "-",
        "input_bytes": source.stat().st_size if source.is_file() else None,
        "input_mtime_ns": source.stat().st_mtime_ns if source.is_file() else None,
        "model": _model_fingerprint(model),
        "format": out_fmt,
        "threshold": threshold,
        "text_column": text_column,
    }
    skip, offset, resumed = 0, 0, 0
    if resume and input_path != "-" and state_path.exists() and partial.exists():
        try:
            state = json.loads(state_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            state = {}
        if state.get("identity") == identity and 0 <= state.get("bytes", -1) <= partial.stat().st_size:
            skip = resumed = int(state["rows"])
            offset = int(state["bytes"])
            done = _Progress(int(state["rows"]), int(state.get("empty", 0)), dict(state.get("counts", {})))

    try:
        with open(partial, "r+" if offset else "w", encoding="utf-8", newline="") as handle:
            handle.seek(offset)
            handle.truncate()  # drop whatever a stopped run wrote after its last checkpoint

            def checkpoint() -> None:
                handle.flush()
                os.fsync(handle.fileno())
                record = {
                    "identity": identity,
                    "rows": done.rows,
                    "bytes": handle.tell(),
                    "counts": done.counts,
                    "empty": done.empty,
                }
                fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(record, f)
                os.replace(tmp, state_path)

            _predict_stream(
                model, chunks, handle, out_fmt, done, skip, offset == 0, text_column, threshold, checkpoint
            )
    except DataError:
        # Bad input will not get better by resuming: leave nothing behind.
        partial.unlink(missing_ok=True)
        state_path.unlink(missing_ok=True)
        raise
    os.replace(partial, out)
    state_path.unlink(missing_ok=True)
    return {
        "rows": done.rows,
        "empty_texts": done.empty,
        "predicted": done.counts,
        "output": output_path,
        "resumed_rows": resumed,
    }


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
