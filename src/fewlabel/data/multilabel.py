"""Texts with zero or more labels each (multi-label), read from a table and checked.

The label cell holds the labels joined by a separator (``|`` by default): ``action|comedy``. Labels
are stripped, a label repeated in one cell counts once, and an empty cell means "none of the labels"
(a text that is a negative example for every label, which is information, not a missing value).
The same cleaning as single-label data applies (:mod:`fewlabel.data.cleaning`): texts stripped and
cut, exact duplicates merged, texts repeated with different label sets left out with a warning.
Each label must have at least ``min_per_label`` texts with it and as many without it, so that every
label can be learned and scored in cross-validation. A 0/1 label matrix (``from_matrix``, what
``FewlabelClassifier`` is given) goes through the same cleaning and checks, its labels kept in the
matrix's column order.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fewlabel.data.cleaning import MAX_TEXT_CHARS, DataReport, clean_text, dedupe_key, rows_list
from fewlabel.data.files import LABEL_COLUMN_NAMES, TEXT_COLUMN_NAMES, Table, find_column, scalar_to_str
from fewlabel.errors import DataError

DEFAULT_SEPARATOR = "|"
# Single-label loading stops when at least this share of the label cells hold the separator: such a
# file is almost certainly multi-label, and training on "action|comedy" as one class would be wrong.
SEPARATOR_SHARE = 0.10


@dataclass
class MultiLabelledTexts:
    """Texts with a set of labels each, ready for multi-label training: cleaned, de-duplicated, checked."""

    texts: list[str]
    label_sets: list[list[str]]  # sorted, each label once; may be empty
    rows: list[int]
    source: str = "<memory>"
    text_column: str = "text"
    label_column: str = "labels"
    separator: str = DEFAULT_SEPARATOR
    report: DataReport = field(default_factory=DataReport)
    label_order: list[str] | None = None  # from_matrix: the matrix's columns (None: sorted)

    @classmethod
    def from_matrix(
        cls, texts: Sequence[str], Y: np.ndarray, labels: Sequence[str], min_per_label: int = 2
    ) -> MultiLabelledTexts:
        """Build from texts and a 0/1 matrix (texts x labels; 1: the text has the label) whose columns
        are ``labels``, with the same checks as a file (without de-duplication); :attr:`classes` and
        :meth:`indicator` keep the columns' order."""
        if len(texts) != len(Y):
            raise DataError(f"got {len(texts)} texts but {len(Y)} rows of labels; give one row per text")
        _check_label_names(list(labels))
        rows = [
            {"text": scalar_to_str(text), "labels": DEFAULT_SEPARATOR.join(np.asarray(labels)[row == 1])}
            for text, row in zip(texts, np.asarray(Y), strict=True)
        ]
        table = Table("<memory>", ["text", "labels"], rows, list(range(1, len(rows) + 1)), "memory")
        # Checked below in the columns' order, where a label on no text still counts.
        data = multi_labelled_from_table(table, "text", "labels", dedupe=False, min_per_label=0, min_labels=0)
        data.label_order = list(labels)
        _check_labels(data, min_per_label)
        return data

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def classes(self) -> list[str]:
        """Distinct labels: sorted, or a label matrix's columns in order (:meth:`from_matrix`)."""
        if self.label_order is not None:
            return list(self.label_order)
        return sorted({label for labels in self.label_sets for label in labels})

    def indicator(self) -> np.ndarray:
        """The (texts x labels) 0/1 matrix, columns in the order of :attr:`classes`."""
        index = {label: i for i, label in enumerate(self.classes)}
        matrix = np.zeros((len(self.texts), len(index)), dtype=np.int64)
        for row, labels in enumerate(self.label_sets):
            matrix[row, [index[label] for label in labels]] = 1
        return matrix

    def label_counts(self) -> dict[str, int]:
        """How many texts carry each label."""
        counts = Counter(label for labels in self.label_sets for label in labels)
        return {c: counts[c] for c in self.classes}

    def labels_per_text(self) -> float:
        return sum(len(labels) for labels in self.label_sets) / max(len(self), 1)

    def fingerprint(self) -> str:
        """SHA-256 of the texts and label sets as used for training, to tie a model to its data."""
        digest = hashlib.sha256()
        for text, labels in zip(self.texts, self.label_sets, strict=True):
            digest.update(text.encode("utf-8") + b"\x1f" + "\x1d".join(labels).encode("utf-8") + b"\x1e")
        return digest.hexdigest()

    def rare_labels(self, below: int) -> dict[str, int]:
        """Labels with fewer than ``below`` texts, with their counts."""
        return {c: n for c, n in self.label_counts().items() if n < below}


def split_labels(cell: str, separator: str) -> list[str]:
    """The labels of one cell: split, stripped, empty pieces dropped, each once, sorted."""
    return sorted({part.strip() for part in cell.split(separator) if part.strip()})


def separator_share(table: Table, label_column: str, separator: str = DEFAULT_SEPARATOR) -> float:
    """The share of non-empty label cells that hold ``separator``."""
    cells = [(row.get(label_column) or "").strip() for row in table.rows]
    filled = [c for c in cells if c]
    return sum(separator in c for c in filled) / len(filled) if filled else 0.0


def multi_labelled_from_table(
    table: Table,
    text_column: str | None = None,
    label_column: str | None = None,
    *,
    separator: str = DEFAULT_SEPARATOR,
    skip_empty: bool = False,
    normalize_labels: bool = False,
    min_per_label: int = 2,
    dedupe: bool = True,
    min_labels: int = 2,
) -> MultiLabelledTexts:
    """Check and clean a table into :class:`MultiLabelledTexts`; see the module docstring for the rules.

    ``dedupe`` and ``min_labels`` (labels needed overall) are for training; scoring a model on a
    labelled file turns them off (every row counts, a file may hold one label).
    """
    if not separator.strip():
        raise DataError(f"the label separator must be a visible character, got {separator!r}")
    text_col = find_column(table, text_column, TEXT_COLUMN_NAMES, "texts", "--text-column")
    label_col = find_column(table, label_column, LABEL_COLUMN_NAMES, "labels", "--label-column")
    if text_col == label_col:
        raise DataError(
            f"{table.path}: the text and label columns are both {text_col!r}; name two different columns"
        )
    if not table.rows:
        raise DataError(f"{table.path}: the file has a header but no data rows")
    report = DataReport(rows_read=len(table.rows))
    texts, label_sets, rows = _filled_rows(table, text_col, label_col, separator, skip_empty, report)
    label_sets = _check_variants(label_sets, table.path, label_col, normalize_labels, report)
    if dedupe:
        texts, label_sets, rows = _dedupe(texts, label_sets, rows, table.path, report)
    data = MultiLabelledTexts(texts, label_sets, rows, table.path, text_col, label_col, separator, report)
    _check_labels(data, min_per_label, min_labels)
    report.note_lengths(texts)
    report.rows_used = len(texts)
    return data


def _filled_rows(
    table: Table, text_col: str, label_col: str, separator: str, skip_empty: bool, report: DataReport
) -> tuple[list[str], list[list[str]], list[int]]:
    """Texts (cut at MAX_TEXT_CHARS), label sets and line numbers of the rows with a text.

    An empty label cell is an empty set; an empty text fails the table, or with ``skip_empty`` is
    left out with a warning.
    """
    texts: list[str] = []
    label_sets: list[list[str]] = []
    rows: list[int] = []
    empty: list[int] = []
    for row, line in zip(table.rows, table.line_numbers, strict=True):
        text = clean_text(row.get(text_col, "") or "")
        if not text:
            empty.append(line)
            continue
        if len(text) > MAX_TEXT_CHARS:
            text = text[:MAX_TEXT_CHARS]
            report.cut_texts += 1
        texts.append(text)
        label_sets.append(split_labels(row.get(label_col, "") or "", separator))
        rows.append(line)
    if empty and not skip_empty:
        raise DataError(
            f"{table.path}: empty or whitespace-only {text_col!r} on line(s) {rows_list(empty)}. Fill them "
            "in or remove those rows, or pass --skip-empty to leave them out."
        )
    if empty:
        report.empty_rows_skipped = empty
        report.warnings.append(
            f"{len(empty)} row(s) with an empty text were skipped (lines {rows_list(empty)})."
        )
    return texts, label_sets, rows


def _check_variants(
    label_sets: list[list[str]], path: str, column: str, normalize: bool, report: DataReport
) -> list[list[str]]:
    """Refuse (or with ``normalize`` merge) labels that differ only by case or spaces."""
    groups: dict[str, Counter[str]] = defaultdict(Counter)
    for labels in label_sets:
        for label in labels:
            groups[re.sub(r"\s+", " ", label).lower()][label] += 1
    variants = [v for v in groups.values() if len(v) > 1]
    if not variants:
        return label_sets
    desc = "; ".join(" vs ".join(f"{lab!r} ({n} texts)" for lab, n in v.most_common()) for v in variants)
    if not normalize:
        raise DataError(
            f"{path}: labels in column {column!r} differ only by case or spaces: {desc}. Make them identical, "
            "or pass --normalize-labels to merge each group into its most common spelling."
        )
    canonical = {k: v.most_common(1)[0][0] for k, v in groups.items()}
    report.warnings.append(f"Merged label spellings that differ only by case or spaces: {desc}.")
    return [sorted({canonical[re.sub(r"\s+", " ", lab).lower()] for lab in labels}) for labels in label_sets]


def _dedupe(
    texts: list[str], label_sets: list[list[str]], rows: list[int], path: str, report: DataReport
) -> tuple[list[str], list[list[str]], list[int]]:
    """Merge exact duplicates (same text, same labels); leave out texts repeated with other labels."""
    by_key: dict[str, list[int]] = defaultdict(list)
    for i, text in enumerate(texts):
        by_key[dedupe_key(text)].append(i)
    keep: list[int] = []
    conflicts: list[list[int]] = []
    for indices in by_key.values():
        if len({tuple(label_sets[i]) for i in indices}) > 1:
            conflicts.append([rows[i] for i in indices])
            report.conflicting_rows_removed.extend(rows[i] for i in indices)
            continue
        keep.append(indices[0])
        report.duplicates_merged += len(indices) - 1
    keep.sort()
    if report.duplicates_merged:
        report.warnings.append(
            f"{report.duplicates_merged} exact duplicate row(s) (same text and labels) were merged, so that no "
            "text sits in both a training and a validation fold."
        )
    if conflicts:
        shown = "; ".join(f"lines {rows_list(r, 4)}" for r in conflicts[:5])
        report.warnings.append(
            f"{len(report.conflicting_rows_removed)} row(s) repeat a text with different labels and were left "
            f"out of training: {shown}. Fix their labels in {Path(path).name} to use them."
        )
    return [texts[i] for i in keep], [label_sets[i] for i in keep], [rows[i] for i in keep]


def _check_label_names(labels: list[str]) -> None:
    """Label names a model can save and answer with: distinct, visible, no surrounding spaces, and
    without the separator that joins a text's labels in predictions."""
    bad = [
        name
        for name in labels
        if not isinstance(name, str) or not name.strip() or name != name.strip() or DEFAULT_SEPARATOR in name
    ]
    if bad:
        raise DataError(
            f"label name(s) {', '.join(map(repr, bad))}: a label name must be a non-empty string without "
            f"surrounding spaces or {DEFAULT_SEPARATOR!r} (it joins a text's labels in predictions); rename them"
        )
    twice = sorted(name for name, n in Counter(labels).items() if n > 1)
    if twice:
        raise DataError(
            f"label name(s) {', '.join(map(repr, twice))} name two columns; give each column its own"
        )


def _check_labels(data: MultiLabelledTexts, min_per_label: int, min_labels: int = 2) -> None:
    """At least ``min_labels`` labels; each on at least ``min_per_label`` texts and missing from as many."""
    counts = data.label_counts()
    where = f"{data.source}: column {data.label_column!r}"
    if len(counts) < min_labels:
        found = f"only the label {next(iter(counts))!r}" if counts else "no labels at all"
        raise DataError(
            f"{where} holds {found} (split on {data.separator!r}); multi-label training needs at least two "
            "labels. Label more texts, or check --label-separator."
        )
    rare = {c: n for c, n in counts.items() if n < min_per_label}
    if rare:
        desc = ", ".join(f"{c!r} is on {n} text(s)" for c, n in sorted(rare.items()))
        raise DataError(
            f"{where}: too few texts for cross-validation: {desc} (each label needs at least {min_per_label}, "
            "one per fold). Drop those labels or label more texts with them, or use fewer folds (--folds)."
        )
    common = {c: len(data) - n for c, n in counts.items() if len(data) - n < min_per_label}
    if common:
        desc = ", ".join(f"{c!r} is missing from only {n} text(s)" for c, n in sorted(common.items()))
        raise DataError(
            f"{where}: {desc}; a label on (nearly) every text cannot be learned (each needs at least "
            f"{min_per_label} texts without it). Drop it or add texts without it."
        )
