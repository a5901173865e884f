"""Labelled and unlabelled texts read from a table, with checks a user can act on.

Every problem is reported as a :class:`~fewlabel.errors.DataError` naming the file, the row (as a
person counts it: the header is line 1 of a CSV, the first record line 2; a workbook's own row
numbers) and the field, plus a fix: missing columns (with close matches), empty texts or labels,
too few classes or rows per class, labels differing only by case, duplicates and conflicts.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, overload

from fewlabel.data.cleaning import (
    LONG_TEXT_WORDS as LONG_TEXT_WORDS,
)
from fewlabel.data.cleaning import (
    MAX_TEXT_CHARS,
    DataReport,
    clean_text,
    dedupe_key,
    rows_list,
)
from fewlabel.data.files import (
    LABEL_COLUMN_NAMES,
    TEXT_COLUMN_NAMES,
    Table,
    find_column,
    is_dataframe,
    read_table,
    scalar_to_str,
    table_from_dataframe,
)
from fewlabel.data.multilabel import (
    DEFAULT_SEPARATOR,
    SEPARATOR_SHARE,
    MultiLabelledTexts,
    multi_labelled_from_table,
    separator_share,
)
from fewlabel.errors import DataError

if TYPE_CHECKING:
    import pandas as pd


def is_imbalanced(counts: Sequence[int]) -> bool:
    """The smallest class has less than half of its fair share (1/k of the rows for k classes)."""
    present = [int(c) for c in counts if c > 0]
    return len(present) > 1 and min(present) < 0.5 * sum(present) / len(present)


@dataclass
class LabelledTexts:
    """Texts with one label each, ready for training: cleaned, de-duplicated and checked."""

    texts: list[str]
    labels: list[str]
    rows: list[int]
    source: str = "<memory>"
    text_column: str = "text"
    label_column: str = "label"
    report: DataReport = field(default_factory=DataReport)

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def classes(self) -> list[str]:
        """Sorted distinct labels."""
        return sorted(set(self.labels))

    def class_counts(self) -> dict[str, int]:
        counts = Counter(self.labels)
        return {c: counts[c] for c in self.classes}

    def imbalance(self) -> str | None:
        """A warning with per-class counts when the classes are imbalanced (see :func:`is_imbalanced`)."""
        counts = self.class_counts()
        if not is_imbalanced(list(counts.values())):
            return None
        rare = min(counts, key=lambda c: counts[c])
        shares = ", ".join(f"{c}: {n} ({n / len(self):.1%})" for c, n in counts.items())
        return (
            f"Imbalanced classes ({shares}; an even share is {1 / len(counts):.1%}). fewlabel weighs "
            "every class equally in fitting, chooses and stops early by balanced accuracy (the mean "
            "recall per class), and tunes the decision threshold for two classes. Labelling more "
            f"{rare!r} texts is what helps most."
        )

    def fingerprint(self) -> str:
        """SHA-256 of the texts and labels as used for training, to tie a model to its data."""
        digest = hashlib.sha256()
        for text, label in zip(self.texts, self.labels, strict=True):
            digest.update(text.encode("utf-8") + b"\x1f" + label.encode("utf-8") + b"\x1e")
        return digest.hexdigest()

    def check_folds(self, folds: int) -> None:
        """Raise :class:`DataError` when a class has fewer rows than ``folds``: cross-validation needs one
        per fold. The check ``load_labelled(..., min_per_class=folds)`` makes, for data read without it."""
        _check_classes(Counter(self.labels), self.source, self.label_column, 2, folds)

    @classmethod
    def from_lists(cls, texts: Sequence[str], labels: Sequence[str], **kwargs) -> LabelledTexts:
        """Build from Python lists, with the same checks as a file (without de-duplication)."""
        if len(texts) != len(labels):
            raise DataError(f"got {len(texts)} texts but {len(labels)} labels; give one label per text")
        rows = [
            {"text": scalar_to_str(t), "label": scalar_to_str(lab)}
            for t, lab in zip(texts, labels, strict=True)
        ]
        table = Table("<memory>", ["text", "label"], rows, list(range(1, len(rows) + 1)), "memory")
        return labelled_from_table(table, "text", "label", dedupe=False, **kwargs)

    @classmethod
    def from_dataframe(
        cls, df: pd.DataFrame, text_column: str | None = None, label_column: str | None = None, **kwargs
    ) -> LabelledTexts:
        """Build from a pandas DataFrame, with the same column detection and checks as a file.

        Missing values (NaN, None, ``pd.NA``) count as empty. Rows are numbered from 1 in the frame's
        order (row 1 is ``df.iloc[0]``). ``kwargs`` are those of :func:`labelled_from_table`.
        """
        return labelled_from_table(table_from_dataframe(df), text_column, label_column, **kwargs)


def labelled_from_table(
    table: Table,
    text_column: str | None = None,
    label_column: str | None = None,
    *,
    skip_empty: bool = False,
    normalize_labels: bool = False,
    dedupe: bool = True,
    min_per_class: int = 2,
    min_classes: int = 2,
) -> LabelledTexts:
    """Check and clean a table into :class:`LabelledTexts`; see the module docstring for the rules."""
    text_col = find_column(table, text_column, TEXT_COLUMN_NAMES, "texts", "--text-column")
    label_col = find_column(table, label_column, LABEL_COLUMN_NAMES, "labels", "--label-column")
    if text_col == label_col:
        raise DataError(
            f"{table.path}: the text and label columns are both {text_col!r}; name two different columns"
        )
    report = DataReport(rows_read=len(table.rows))
    if not table.rows:
        raise DataError(f"{table.path}: the file has a header but no data rows")
    texts, labels, rows = _filled_rows(table, text_col, label_col, skip_empty, report)
    labels = _check_label_variants(labels, rows, table.path, label_col, normalize_labels, report)
    if dedupe:
        texts, labels, rows = _dedupe(texts, labels, rows, table.path, report)
    _check_classes(Counter(labels), table.path, label_col, min_classes, min_per_class)
    report.note_lengths(texts)
    report.rows_used = len(texts)
    return LabelledTexts(texts, labels, rows, table.path, text_col, label_col, report)


def _filled_rows(
    table: Table, text_col: str, label_col: str, skip_empty: bool, report: DataReport
) -> tuple[list[str], list[str], list[int]]:
    """The texts (cut at MAX_TEXT_CHARS), labels and line numbers of the rows with both filled in.

    A row with an empty text or label fails the whole table, or with ``skip_empty`` is left out
    with a warning.
    """
    texts: list[str] = []
    labels: list[str] = []
    rows: list[int] = []
    empty_text: list[int] = []
    empty_label: list[int] = []
    for row, line in zip(table.rows, table.line_numbers, strict=True):
        text = clean_text(row.get(text_col, "") or "")
        label = (row.get(label_col, "") or "").strip()
        if not text:
            empty_text.append(line)
            continue
        if not label:
            empty_label.append(line)
            continue
        if len(text) > MAX_TEXT_CHARS:
            text = text[:MAX_TEXT_CHARS]
            report.cut_texts += 1
        texts.append(text)
        labels.append(label)
        rows.append(line)
    if (empty_text or empty_label) and not skip_empty:
        parts = []
        if empty_text:
            parts.append(f"empty or whitespace-only {text_col!r} on line(s) {rows_list(empty_text)}")
        if empty_label:
            parts.append(f"empty {label_col!r} on line(s) {rows_list(empty_label)}")
        raise DataError(
            f"{table.path}: {'; '.join(parts)}. Fill them in or remove those rows, "
            "or pass --skip-empty to leave them out."
        )
    if empty_text or empty_label:
        report.empty_rows_skipped = empty_text + empty_label
        report.warnings.append(
            f"{len(report.empty_rows_skipped)} row(s) with an empty text or label were skipped "
            f"(lines {rows_list(sorted(report.empty_rows_skipped))})."
        )
    return texts, labels, rows


def _check_classes(
    counts: Counter[str], path: str, label_col: str, min_classes: int, min_per_class: int
) -> None:
    """Refuse too few classes, or a class with too few rows to appear in every fold."""
    if len(counts) < min_classes:
        only = next(iter(counts), "nothing")
        raise DataError(
            f"{path}: every usable row has the label {only!r} in column {label_col!r}; a classifier needs "
            "at least two classes. Add examples of the other class(es)."
        )
    small = {c: n for c, n in counts.items() if n < min_per_class}
    if small:
        desc = ", ".join(f"{c!r} has {n}" for c, n in sorted(small.items()))
        raise DataError(
            f"{path}: too few examples for cross-validation: {desc} (each class needs at least "
            f"{min_per_class}, one per fold). Add examples, merge or drop the rare class, or use fewer folds (--folds)."
        )


def _check_label_variants(
    labels: list[str], rows: list[int], path: str, column: str, normalize: bool, report: DataReport
) -> list[str]:
    groups: dict[str, Counter[str]] = defaultdict(Counter)
    for label in labels:
        groups[re.sub(r"\s+", " ", label).lower()][label] += 1
    variants = {k: v for k, v in groups.items() if len(v) > 1}
    if not variants:
        return labels
    desc = "; ".join(
        " vs ".join(f"{lab!r} ({n} rows)" for lab, n in v.most_common()) for v in variants.values()
    )
    if not normalize:
        raise DataError(
            f"{path}: labels in column {column!r} differ only by case or spaces: {desc}. Make them identical, "
            "or pass --normalize-labels to merge each group into its most common spelling."
        )
    canonical = {k: v.most_common(1)[0][0] for k, v in groups.items()}
    report.warnings.append(f"Merged label spellings that differ only by case or spaces: {desc}.")
    return [canonical[re.sub(r"\s+", " ", lab).lower()] for lab in labels]


def _dedupe(
    texts: list[str], labels: list[str], rows: list[int], path: str, report: DataReport
) -> tuple[list[str], list[str], list[int]]:
    by_key: dict[str, list[int]] = defaultdict(list)
    for i, text in enumerate(texts):
        by_key[dedupe_key(text)].append(i)
    keep: list[int] = []
    conflicts: list[tuple[list[int], set[str]]] = []
    for indices in by_key.values():
        group_labels = {labels[i] for i in indices}
        if len(group_labels) > 1:
            conflicts.append(([rows[i] for i in indices], group_labels))
            report.conflicting_rows_removed.extend(rows[i] for i in indices)
            continue
        keep.append(indices[0])
        report.duplicates_merged += len(indices) - 1
    keep.sort()
    if report.duplicates_merged:
        report.warnings.append(
            f"{report.duplicates_merged} exact duplicate row(s) (same text and label) were merged, so that no "
            "text sits in both a training and a validation fold."
        )
    if conflicts:
        shown = "; ".join(
            f"lines {rows_list(r, 4)} ({' / '.join(sorted(labs))})" for r, labs in conflicts[:5]
        )
        more = f" and {len(conflicts) - 5} more groups" if len(conflicts) > 5 else ""
        report.warnings.append(
            f"{len(report.conflicting_rows_removed)} row(s) repeat a text with a different label and were left out "
            f"of training: {shown}{more}. Fix their labels in {Path(path).name} to use them."
        )
    return [texts[i] for i in keep], [labels[i] for i in keep], [rows[i] for i in keep]


def _table_of(source: str | Path | pd.DataFrame, format: str | None, sheet: str | int | None) -> Table:
    if not is_dataframe(source):
        return read_table(source, format, sheet)
    if format is not None or sheet is not None:
        raise DataError("format and sheet describe a file; leave them out when giving a DataFrame")
    return table_from_dataframe(source)


@overload
def load_labelled(
    path: str | Path | pd.DataFrame,
    text_column: str | None = None,
    label_column: str | None = None,
    *,
    format: str | None = None,
    sheet: str | int | None = None,
    skip_empty: bool = False,
    normalize_labels: bool = False,
    min_per_class: int = 2,
    multi_label: Literal[False] = False,
    label_separator: str = DEFAULT_SEPARATOR,
) -> LabelledTexts: ...


@overload
def load_labelled(
    path: str | Path | pd.DataFrame,
    text_column: str | None = None,
    label_column: str | None = None,
    *,
    format: str | None = None,
    sheet: str | int | None = None,
    skip_empty: bool = False,
    normalize_labels: bool = False,
    min_per_class: int = 2,
    multi_label: Literal[True],
    label_separator: str = DEFAULT_SEPARATOR,
) -> MultiLabelledTexts: ...


def load_labelled(
    path: str | Path | pd.DataFrame,
    text_column: str | None = None,
    label_column: str | None = None,
    *,
    format: str | None = None,
    sheet: str | int | None = None,
    skip_empty: bool = False,
    normalize_labels: bool = False,
    min_per_class: int = 2,
    multi_label: bool = False,
    label_separator: str = DEFAULT_SEPARATOR,
) -> LabelledTexts | MultiLabelledTexts:
    """Read a labelled data file (or a pandas DataFrame) and check it; raises :class:`DataError` with a
    fix on bad input. ``sheet`` chooses the sheet of an Excel workbook (name or 0-based index).
    ``min_per_class``: the least number of rows each class needs; give the folds you will train with
    (``fewlabel train`` does), so that every class is in every fold.

    With ``multi_label``, each label cell holds zero or more labels joined by ``label_separator``
    (see :mod:`fewlabel.data.multilabel`); ``min_per_class`` is then the least number of texts each
    label needs. Without it, a file whose label cells often hold the separator is refused: it is
    almost certainly multi-label.
    """
    table = _table_of(path, format, sheet)
    if multi_label:
        return multi_labelled_from_table(
            table,
            text_column,
            label_column,
            separator=label_separator,
            skip_empty=skip_empty,
            normalize_labels=normalize_labels,
            min_per_label=min_per_class,
        )
    _refuse_multi_label_cells(table, label_column, label_separator)
    return labelled_from_table(
        table,
        text_column,
        label_column,
        skip_empty=skip_empty,
        normalize_labels=normalize_labels,
        min_per_class=min_per_class,
    )


def _refuse_multi_label_cells(table: Table, label_column: str | None, separator: str) -> None:
    """DataError when many label cells hold the separator: the file looks multi-label."""
    if not table.rows:
        return  # labelled_from_table says so
    try:
        column = find_column(table, label_column, LABEL_COLUMN_NAMES, "labels", "--label-column")
    except DataError:
        return  # labelled_from_table names what is missing
    share = separator_share(table, column, separator)
    if share >= SEPARATOR_SHARE:
        raise DataError(
            f"{table.path}: {share:.0%} of the cells in column {column!r} hold {separator!r}, as in "
            "'action|comedy': the file looks multi-label (several labels per text). Train with "
            "--multi-label (and --label-separator if the labels are joined by another character), or "
            "give each text a single label."
        )


@dataclass
class UnlabelledTexts:
    """Texts without labels for self-training, and what was left out of the file and why."""

    texts: list[str]
    source: str
    rows: int
    empty: int = 0
    repeated: int = 0
    labelled: int = 0  # also in the labelled data: left out so no validation text gets a pseudo-label

    def summary(self) -> str:
        dropped = [
            f"{n} {why}"
            for n, why in (
                (self.empty, "empty"),
                (self.repeated, "repeated"),
                (self.labelled, "also in the labelled data"),
            )
            if n
        ]
        return f"{len(self.texts)} unlabelled texts from {self.source}" + (
            f" ({', '.join(dropped)} left out)" if dropped else ""
        )


def unlabelled_texts(texts: Sequence[str], source: str, known: set[str] | None = None) -> UnlabelledTexts:
    """``texts`` cleaned, with empty and repeated ones left out and those whose key is in ``known``
    (:func:`dedupe_key` of the labelled texts) too, each counted by why."""
    out = UnlabelledTexts([], source, len(texts))
    seen: set[str] = set()
    for text in map(clean_text, texts):
        key = dedupe_key(text)
        if not key:
            out.empty += 1
        elif known and key in known:
            out.labelled += 1
        elif key in seen:
            out.repeated += 1
        else:
            seen.add(key)
            out.texts.append(text)
    return out


def load_unlabelled(
    path: str | Path | pd.DataFrame,
    text_column: str | None = None,
    *,
    labelled: LabelledTexts | None = None,
    format: str | None = None,
    sheet: str | int | None = None,
) -> UnlabelledTexts:
    """Read texts to self-train on: one column of a CSV, TSV, JSONL, Parquet or Excel file, or of a
    pandas DataFrame (a label column, if any, is ignored). Empty and repeated texts, and texts that are
    also in ``labelled``, are left out. ``sheet`` chooses the sheet of a workbook (name or 0-based index).
    """
    table = _table_of(path, format, sheet)
    if not table.rows:
        raise DataError(f"{table.path}: the file has a header but no data rows")
    if text_column is None and labelled is not None and labelled.text_column in table.columns:
        column = labelled.text_column
    else:
        column = find_column(table, text_column, TEXT_COLUMN_NAMES, "texts", "--unlabelled-column")
    known = {dedupe_key(t) for t in labelled.texts} if labelled is not None else set()
    out = unlabelled_texts([row.get(column) or "" for row in table.rows], Path(table.path).name, known)
    if not out.texts:
        raise DataError(
            f"{table.path}: no unlabelled text is left in column {column!r} ({out.empty} empty, "
            f"{out.repeated} repeated, {out.labelled} also in the labelled data)"
        )
    return out
