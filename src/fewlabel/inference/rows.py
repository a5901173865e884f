"""Predictions laid over a table's rows: the texts read from the model's text column, labels and
confidences spread back over every row (empty texts get none), and the output column names.
Shared by the local runner (:mod:`fewlabel.inference.predicting`) and Ray (:mod:`fewlabel.inference.distributed`).
"""

from __future__ import annotations

from typing import Any

from fewlabel.data.files import TEXT_COLUMN_NAMES, Table, find_column

PRED_COLUMN = "predicted_label"
CONF_COLUMN = "confidence"
BATCH = 512
ABSTAIN = "ABSTAIN"


def _text_column(table: Table, manifest: dict[str, Any], wanted: str | None) -> str:
    trained_on = manifest.get("text_column")
    if wanted is None and trained_on in table.columns:
        return trained_on
    return find_column(table, wanted, TEXT_COLUMN_NAMES, "texts", "--text-column")


def table_texts(table: Table, manifest: dict[str, Any], text_column: str | None) -> list[str]:
    """The text of every row (stripped; empty where the row has none), from the model's text column."""
    column = _text_column(table, manifest, text_column)
    return [(row.get(column) or "").strip() for row in table.rows]


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
