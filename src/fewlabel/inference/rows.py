"""Predictions laid over a table's rows: the texts read from the model's text column, labels and
confidences spread back over every row (empty texts get none), and the output column names.
Shared by the local runner (:mod:`fewlabel.inference.predicting`) and Ray (:mod:`fewlabel.inference.distributed`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from fewlabel.data.files import TEXT_COLUMN_NAMES, Table, find_column
from fewlabel.data.labelled import MAX_TEXT_CHARS
from fewlabel.errors import ModelDirError
from fewlabel.model_dir.records import Manifest

PRED_COLUMN = "predicted_label"
CONF_COLUMN = "confidence"
BATCH = 512
ABSTAIN = "ABSTAIN"


def _text_column(table: Table, manifest: Manifest, wanted: str | None) -> str:
    trained_on = manifest.text_column
    if wanted is None and trained_on is not None and trained_on in table.columns:
        return trained_on
    return find_column(table, wanted, TEXT_COLUMN_NAMES, "texts", "--text-column")


def table_texts(table: Table, manifest: Manifest, text_column: str | None) -> list[str]:
    """The text of every row (stripped; empty where the row has none), from the model's text column.

    A text is cut at ``MAX_TEXT_CHARS``, as in training: one huge field must not take gigabytes
    (a 10 MB text took 2.5 GB in TF-IDF's character n-grams), and no model reads that far anyway.
    """
    column = _text_column(table, manifest, text_column)
    return [(row.get(column) or "").strip()[:MAX_TEXT_CHARS] for row in table.rows]


def long_texts(table: Table, manifest: Manifest, text_column: str | None) -> int:
    """How many of the table's texts :func:`table_texts` cuts."""
    column = _text_column(table, manifest, text_column)
    values = (row.get(column) or "" for row in table.rows)
    return sum(1 for v in values if len(v) > MAX_TEXT_CHARS and len(v.strip()) > MAX_TEXT_CHARS)


def check_temperature(manifest: Manifest, model_dir: str | Path) -> None:
    """Refuse a calibration temperature that is not a positive number: it would give NaN confidences."""
    temperature = manifest.temperature
    if not math.isfinite(temperature) or temperature <= 0:
        raise ModelDirError(
            f"{model_dir}: fewlabel.json gives the calibration temperature as {temperature!r}; it must be "
            "a positive number. Train the model again (or set it to 1.0 for uncalibrated confidences)."
        )


def fill_predictions(
    n_rows: int,
    todo: list[int],
    predicted: list[str],
    confidence: Any,
    threshold: float | None,
) -> tuple[list[str], list[float | None]]:
    """Spread the predictions for rows ``todo`` over all ``n_rows``; the others get no label."""
    labels: list[str] = [""] * n_rows
    confidences: list[float | None] = [None] * n_rows
    for i, label, c in zip(todo, predicted, confidence, strict=True):
        labels[i] = ABSTAIN if threshold is not None and c < threshold else label
        confidences[i] = float(c)
    return labels, confidences


# One predicted chunk: the table, its labels and confidences, and how many rows had no text.
Predicted = tuple[Table, list[str], list[float | None], int]
