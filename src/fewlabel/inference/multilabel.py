"""Predicting with a multi-label model: every input row kept, the label set and one confidence per label
added (``predicted_labels``, joined by the model's separator; ``confidence_<label>``).

Rows are read, predicted and written in chunks as for a single-label model, into CSV, TSV, JSONL
(where ``predicted_labels`` is a JSON list) or xlsx, or to standard output. A file output appears
whole when complete (it is written beside its place and renamed); an interrupted run starts again
from the first row: resuming, ``--threshold`` and the Ray runner are single-label only.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import IO, Any

import numpy as np

from fewlabel.data.files import Table
from fewlabel.errors import DataError
from fewlabel.inference.rows import BATCH, long_texts, table_texts
from fewlabel.model_dir.store import TrainedModel

LABELS_COLUMN = "predicted_labels"
CONFIDENCE_PREFIX = "confidence_"


def added_columns(model: TrainedModel) -> list[str]:
    """The columns a multi-label prediction adds, in order."""
    return [LABELS_COLUMN, *(CONFIDENCE_PREFIX + label for label in model.labels)]


def predict_rows(
    model: TrainedModel, table: Table, text_column: str | None
) -> tuple[list[list[str] | None], list[list[float] | None]]:
    """Each row's label set and per-label probabilities; None for a row with an empty text."""
    texts = table_texts(table, model.manifest, text_column)
    todo = [i for i, t in enumerate(texts) if t]
    sets: list[list[str] | None] = [None] * len(texts)
    probabilities: list[list[float] | None] = [None] * len(texts)
    for start in range(0, len(todo), BATCH):
        chunk = todo[start : start + BATCH]
        found, proba = model.predict_label_sets([texts[i] for i in chunk])
        for i, labels, row in zip(chunk, found, proba, strict=True):
            sets[i], probabilities[i] = labels, [float(p) for p in row]
    return sets, probabilities


class MultiLabelWriter:
    """Writes predicted chunks as CSV, TSV or JSONL text, or into a worksheet (``sheet``: an object with
    ``cell(value)`` and ``sheet.append(row)``, as :mod:`fewlabel.inference.predicting` makes for xlsx)."""

    def __init__(self, model: TrainedModel, fmt: str, out: IO[Any] | None = None, sheet: Any = None):
        self.columns = added_columns(model)
        self.separator = model.manifest.label_separator or "|"
        self.fmt, self.out, self.sheet = fmt, out, sheet
        self.csv = (
            csv.writer(out, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n") if out else None
        )

    def cells(self, labels: list[str] | None, proba: list[float] | None) -> list[Any]:
        if labels is None or proba is None:
            return [None] * len(self.columns)
        return [self.separator.join(labels), *(round(p, 6) for p in proba)]

    def write(self, table: Table, sets: list, probabilities: list, header: bool) -> None:
        clash = sorted(set(self.columns) & set(table.columns))
        if clash:
            raise DataError(
                f"{table.path}: already has a column {clash[0]!r}; rename it so predictions do not replace it"
            )
        if self.fmt == "jsonl":
            assert self.out is not None
            for row, labels, proba in zip(table.raw or table.rows, sets, probabilities, strict=True):
                added = dict(zip(self.columns, self.cells(labels, proba), strict=True))
                added[LABELS_COLUMN] = labels  # a JSON list; None for an empty text
                self.out.write(json.dumps({**row, **added}, ensure_ascii=False) + "\n")
            return
        rows = [
            [*(row.get(c, "") for c in table.columns), *self.cells(labels, proba)]
            for row, labels, proba in zip(table.rows, sets, probabilities, strict=True)
        ]
        if self.sheet is not None:
            cell = self.sheet.cell
            for values in [[*table.columns, *self.columns]] * header + rows:
                self.sheet.sheet.append([cell(v) for v in values])
            return
        assert self.csv is not None
        if header:
            self.csv.writerow([*table.columns, *self.columns])
        self.csv.writerows(
            [["" if v is None else (f"{v:.6f}" if isinstance(v, float) else v) for v in r] for r in rows]
        )


def write_predictions(
    model: TrainedModel, chunks: Iterator[Table], writer: MultiLabelWriter, text_column: str | None
) -> dict[str, Any]:
    """Predict each chunk and write it with ``writer``; the rows, empty texts and label counts."""
    from fewlabel import progress

    done: dict[str, Any] = {"rows": 0, "empty_texts": 0, "predicted": {}, "cut_texts": 0}
    with progress.bar("Predicting (rows)", None) as advance:
        for number, table in enumerate(chunks):
            sets, probabilities = predict_rows(model, table, text_column)
            writer.write(table, sets, probabilities, header=number == 0)
            done["rows"] += len(table.rows)
            done["empty_texts"] += sum(s is None for s in sets)
            done["cut_texts"] += long_texts(table, model.manifest, text_column)
            for labels in sets:
                for label in labels or []:
                    done["predicted"][label] = done["predicted"].get(label, 0) + 1
            advance(len(table.rows))
    return done


def evaluate_multilabel(
    model: TrainedModel, table: Table, text_column: str | None, label_column: str | None
) -> dict[str, Any]:
    """A multi-label model's scores on a labelled table: micro- and macro-F1, subset accuracy and
    Hamming loss with 95% intervals, per-label scores, and each label's majority as a baseline."""
    from fewlabel.data.multilabel import multi_labelled_from_table
    from fewlabel.evaluation.multilabel import majority_predictions, multilabel_scores, per_label

    trained = model.manifest
    text_column = text_column or (trained.text_column if trained.text_column in table.columns else None)
    label_column = label_column or (trained.label_column if trained.label_column in table.columns else None)
    data = multi_labelled_from_table(
        table,
        text_column,
        label_column,
        separator=trained.label_separator or "|",
        min_per_label=0,
        dedupe=False,
        min_labels=0,
    )
    unknown = sorted(set(data.classes) - set(model.labels))
    if unknown:
        raise DataError(
            f"{table.path}: label(s) {', '.join(map(repr, unknown))} are not among the model's labels "
            f"({', '.join(map(repr, model.labels))}); fix them or train on data that has them"
        )
    Y = np.array([[int(label in s) for label in model.labels] for s in data.label_sets], dtype=np.int64)
    _, proba = model.predict_label_sets(data.texts)
    pred = (proba >= model.label_thresholds).astype(np.int64)
    micro = trained.metrics.micro_f1 if trained.metrics is not None else None
    return {
        "task": "multi-label",
        **multilabel_scores(Y, pred).to_dict(),
        "labels": model.labels,
        "per_label": per_label(Y, pred, model.labels),
        "majority_baseline": multilabel_scores(Y, majority_predictions(Y)).to_dict(),
        "cv_estimate_at_training": micro.model_dump() if micro is not None else None,
    }
