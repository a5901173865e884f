"""Reading labelled and unlabelled texts from CSV, TSV, JSONL and Parquet, with checks a user can act on.

Every problem is reported as a :class:`~fewlabel.errors.DataError` naming the file, the row (as a
person counts it: the header is line 1 of a CSV, the first record line 2) and the field, plus a fix.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import json
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fewlabel.errors import DataError

TEXT_COLUMN_NAMES = (
    "text", "review", "review_text", "reviewtext", "sentence", "content", "body", "comment",
    "message", "document", "utterance", "review_body", "tweet", "input", "sentence1",
)  # fmt: skip
LABEL_COLUMN_NAMES = (
    "label", "labels", "sentiment", "class", "category", "target", "polarity", "y", "gold",
    "gold_label", "tag", "output",
)  # fmt: skip

# Texts are cut at this many characters when read: far beyond any encoder's window (a few thousand
# characters), but it bounds memory if a file holds a stray megabyte-long cell.
MAX_TEXT_CHARS = 100_000
# A text above this many words is "long": an encoder with a 256-token window sees only its start.
LONG_TEXT_WORDS = 200
SUFFIX_FORMATS = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".txt": "csv",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet",
}  # fmt: skip


@dataclass
class Table:
    """Rows of a data file as strings, with the line number of each row in the file."""

    path: str
    columns: list[str]
    rows: list[dict[str, str]]
    line_numbers: list[int]
    format: str
    raw: list[dict] | None = None  # JSONL: the objects as parsed, so output keeps their JSON types


@dataclass
class DataReport:
    """What loading did to the data: counts and plain-language warnings."""

    rows_read: int = 0
    rows_used: int = 0
    duplicates_merged: int = 0
    conflicting_rows_removed: list[int] = field(default_factory=list)
    empty_rows_skipped: list[int] = field(default_factory=list)
    long_texts: int = 0
    cut_texts: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "rows_read": self.rows_read,
            "rows_used": self.rows_used,
            "duplicates_merged": self.duplicates_merged,
            "conflicting_rows_removed": len(self.conflicting_rows_removed),
            "empty_rows_skipped": len(self.empty_rows_skipped),
            "long_texts": self.long_texts,
            "cut_texts": self.cut_texts,
            "warnings": list(self.warnings),
        }


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

    def fingerprint(self) -> str:
        """SHA-256 of the texts and labels as used for training, to tie a model to its data."""
        digest = hashlib.sha256()
        for text, label in zip(self.texts, self.labels, strict=True):
            digest.update(text.encode("utf-8") + b"\x1f" + label.encode("utf-8") + b"\x1e")
        return digest.hexdigest()

    @classmethod
    def from_lists(cls, texts: Sequence[str], labels: Sequence[str], **kwargs) -> LabelledTexts:
        """Build from Python lists, with the same checks as a file (without de-duplication)."""
        if len(texts) != len(labels):
            raise DataError(f"got {len(texts)} texts but {len(labels)} labels; give one label per text")
        rows = [
            {"text": _scalar_to_str(t), "label": _scalar_to_str(lab)}
            for t, lab in zip(texts, labels, strict=True)
        ]
        table = Table("<memory>", ["text", "label"], rows, list(range(1, len(rows) + 1)), "memory")
        return labelled_from_table(table, "text", "label", dedupe=False, **kwargs)


def detect_format(path: Path, format: str | None = None) -> str:
    if format:
        if format not in {"csv", "tsv", "jsonl", "parquet"}:
            raise DataError(f"unknown format {format!r}; use one of csv, tsv, jsonl, parquet")
        return format
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in {".gz"}]
    return SUFFIX_FORMATS.get(suffixes[-1] if suffixes else "", "csv")


def read_table(path: str | Path, format: str | None = None) -> Table:
    """Read a CSV, TSV, JSONL or Parquet file into string rows; raises DataError on any problem."""
    path = Path(path)
    if not path.exists():
        hint = ""
        if path.parent.exists():
            close = difflib.get_close_matches(path.name, [p.name for p in path.parent.iterdir()], n=3)
            if close:
                hint = f" Did you mean {', '.join(repr(str(path.parent / c)) for c in close)}?"
        raise DataError(f"{path}: file not found.{hint}")
    if path.is_dir():
        raise DataError(f"{path}: is a directory; give a CSV, TSV, JSONL or Parquet file")
    fmt = detect_format(path, format)
    if fmt == "parquet":
        return _read_parquet(path)
    raw = path.read_bytes()
    if path.suffix.lower() == ".gz":
        import gzip

        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise DataError(f"{path}: cannot decompress ({err}); is it really gzip?") from None
    text = _decode(raw, path)
    if not text.strip():
        raise DataError(f"{path}: the file is empty; it needs a header row and at least one data row")
    if fmt == "jsonl":
        return _read_jsonl(text, path)
    return _read_delimited(text, path, "\t" if fmt == "tsv" else ",", fmt)


def _decode(raw: bytes, path: Path) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        byte = raw[err.start : err.start + 1].hex()
        raise DataError(
            f"{path}, line {line}: byte 0x{byte} is not valid UTF-8 (the file may be Latin-1 or Windows-1252). "
            "Re-save it as UTF-8, for example with "
            f"`iconv -f cp1252 -t utf-8 {path.name} > fixed.{path.suffix.lstrip('.') or 'csv'}`."
        ) from None


def iter_delimited(
    handle: Iterable[str], path: str | Path, delimiter: str, fmt: str, chunk_rows: int | None = None
) -> Iterator[Table]:
    """CSV or TSV rows as Tables of at most ``chunk_rows`` rows (all in one when None), header checked."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    reader = csv.reader(handle, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(
            f"{path}: the file is empty; it needs a header row and at least one data row"
        ) from None
    except csv.Error as err:
        raise DataError(f"{path}, line 1: cannot parse the header ({err})") from None
    header = [h.strip() for h in header]
    if len(header) == 1 and delimiter == "," and "\t" in header[0]:
        raise DataError(f"{path}: the header holds tabs, not commas; is it a TSV file? Pass --format tsv")
    if any(not h for h in header):
        raise DataError(f"{path}, line 1: column {header.index('') + 1} of the header has no name")
    dupes = [h for h, n in Counter(header).items() if n > 1]
    if dupes:
        raise DataError(f"{path}, line 1: the header names column {dupes[0]!r} twice; rename one of them")
    rows: list[dict[str, str]] = []
    lines: list[int] = []
    line = reader.line_num + 1
    try:
        for record in reader:
            if not record or (len(record) == 1 and not record[0].strip() and len(header) > 1):
                line = reader.line_num + 1
                continue  # blank line
            if len(record) != len(header):
                raise DataError(
                    f"{path}, line {line}: {len(record)} fields, but the header has {len(header)} "
                    f"({', '.join(header)}). Quote texts that contain the delimiter "
                    f"({'tab' if delimiter == chr(9) else 'comma'}) with double quotes."
                )
            rows.append(dict(zip(header, record, strict=True)))
            lines.append(line)
            line = reader.line_num + 1
            if chunk_rows is not None and len(rows) >= chunk_rows:
                yield Table(str(path), header, rows, lines, fmt)
                rows, lines = [], []
    except csv.Error as err:
        raise DataError(f"{path}, line {line}: cannot parse the row ({err}); check its quotes") from None
    yield Table(str(path), header, rows, lines, fmt)


def iter_jsonl(lines: Iterable[str], path: str | Path) -> Iterator[tuple[int, dict[str, str], dict]]:
    """(line number, row as strings, object as parsed) for each non-blank line of a JSONL stream."""
    for number, line in enumerate(lines, start=1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(
                f"{path}, line {number}: not valid JSON ({err.msg}, column {err.colno}); "
                "a JSONL file holds one JSON object per line"
            ) from None
        if not isinstance(obj, dict):
            raise DataError(
                f'{path}, line {number}: expected a JSON object like {{"text": ..., "label": ...}}'
            )
        yield number, {str(k): _scalar_to_str(v) for k, v in obj.items()}, obj


def iter_jsonl_tables(
    lines: Iterable[str], path: str | Path, chunk_rows: int | None = None
) -> Iterator[Table]:
    """JSONL records as Tables of at most ``chunk_rows`` rows (all in one when None)."""
    rows: list[dict[str, str]] = []
    raw: list[dict] = []
    numbers: list[int] = []
    columns: dict[str, None] = {}
    for number, row, obj in iter_jsonl(lines, path):
        columns.update(dict.fromkeys(row))
        rows.append(row)
        raw.append(obj)
        numbers.append(number)
        if chunk_rows is not None and len(rows) >= chunk_rows:
            yield Table(str(path), list(columns), rows, numbers, "jsonl", raw)
            rows, raw, numbers = [], [], []
    yield Table(str(path), list(columns), rows, numbers, "jsonl", raw)


def _read_delimited(text: str, path: Path, delimiter: str, fmt: str) -> Table:
    return next(iter_delimited(io.StringIO(text, newline=""), path, delimiter, fmt))


def _read_jsonl(text: str, path: Path) -> Table:
    # split on "\n" only: str.splitlines() also breaks at U+2028 and friends, which JSON strings may hold.
    return next(iter_jsonl_tables(text.split("\n"), path))


def _read_parquet(path: Path) -> Table:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            f"{path}: reading Parquet needs pyarrow; install it with `pip install 'fewlabel[parquet]'` "
            "or convert the file to CSV"
        ) from None
    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises many types for damaged files
        raise DataError(f"{path}: cannot read as Parquet ({err})") from None
    columns = [str(c) for c in table.column_names]
    data = table.to_pydict()
    n = table.num_rows
    rows = [{c: _scalar_to_str(data[c][i]) for c in columns} for i in range(n)]
    return Table(str(path), columns, rows, list(range(1, n + 1)), "parquet")


def _scalar_to_str(value: object) -> str:
    if value is None or (isinstance(value, float) and value != value):  # None and NaN are missing values
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def find_column(table: Table, wanted: str | None, candidates: Sequence[str], role: str, option: str) -> str:
    """The column holding ``role`` (text or label): the one named, or the first common name present."""
    if wanted is not None:
        if wanted in table.columns:
            return wanted
        by_lower = {c.lower(): c for c in table.columns}
        if wanted.lower() in by_lower:
            return by_lower[wanted.lower()]
        close = difflib.get_close_matches(wanted, table.columns, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise DataError(
            f"{table.path}: no column named {wanted!r} (given with {option}). "
            f"The columns are: {', '.join(repr(c) for c in table.columns)}.{hint}"
        )
    by_lower = {c.lower().strip(): c for c in table.columns}
    for name in candidates:
        if name in by_lower:
            return by_lower[name]
    raise DataError(
        f"{table.path}: cannot tell which column holds the {role}; the columns are "
        f"{', '.join(repr(c) for c in table.columns)}. Name it with {option} COLUMN."
    )


def _clean_text(text: str) -> str:
    return text.strip()


def _dedupe_key(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _rows_list(rows: Sequence[int], limit: int = 8) -> str:
    shown = ", ".join(str(r) for r in rows[:limit])
    return shown + (f" and {len(rows) - limit} more" if len(rows) > limit else "")


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

    texts: list[str] = []
    labels: list[str] = []
    rows: list[int] = []
    empty_text: list[int] = []
    empty_label: list[int] = []
    for row, line in zip(table.rows, table.line_numbers, strict=True):
        text = _clean_text(row.get(text_col, "") or "")
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
    if empty_text or empty_label:
        if not skip_empty:
            parts = []
            if empty_text:
                parts.append(f"empty or whitespace-only {text_col!r} on line(s) {_rows_list(empty_text)}")
            if empty_label:
                parts.append(f"empty {label_col!r} on line(s) {_rows_list(empty_label)}")
            raise DataError(
                f"{table.path}: {'; '.join(parts)}. Fill them in or remove those rows, "
                "or pass --skip-empty to leave them out."
            )
        report.empty_rows_skipped = empty_text + empty_label
        report.warnings.append(
            f"{len(report.empty_rows_skipped)} row(s) with an empty text or label were skipped "
            f"(lines {_rows_list(sorted(report.empty_rows_skipped))})."
        )

    labels = _check_label_variants(labels, rows, table.path, label_col, normalize_labels, report)

    if dedupe:
        texts, labels, rows = _dedupe(texts, labels, rows, table.path, report)

    counts = Counter(labels)
    if len(counts) < min_classes:
        only = next(iter(counts), "nothing")
        raise DataError(
            f"{table.path}: every usable row has the label {only!r} in column {label_col!r}; a classifier needs "
            "at least two classes. Add examples of the other class(es)."
        )
    small = {c: n for c, n in counts.items() if n < min_per_class}
    if small:
        desc = ", ".join(f"{c!r} has {n}" for c, n in sorted(small.items()))
        raise DataError(
            f"{table.path}: too few examples for cross-validation: {desc} (each class needs at least "
            f"{min_per_class}, one per fold). Add examples, merge or drop the rare class, or use fewer folds (--folds)."
        )
    report.long_texts = sum(1 for t in texts if len(t.split()) > LONG_TEXT_WORDS)
    if report.long_texts:
        report.warnings.append(
            f"{report.long_texts} text(s) are longer than {LONG_TEXT_WORDS} words; embedding strategies read "
            "only the first ~256 tokens of each, TF-IDF reads them whole."
        )
    if report.cut_texts:
        report.warnings.append(
            f"{report.cut_texts} text(s) longer than {MAX_TEXT_CHARS:,} characters were cut."
        )
    report.rows_used = len(texts)
    return LabelledTexts(texts, labels, rows, table.path, text_col, label_col, report)


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
        by_key[_dedupe_key(text)].append(i)
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
            f"lines {_rows_list(r, 4)} ({' / '.join(sorted(labs))})" for r, labs in conflicts[:5]
        )
        more = f" and {len(conflicts) - 5} more groups" if len(conflicts) > 5 else ""
        report.warnings.append(
            f"{len(report.conflicting_rows_removed)} row(s) repeat a text with a different label and were left out "
            f"of training: {shown}{more}. Fix their labels in {Path(path).name} to use them."
        )
    return [texts[i] for i in keep], [labels[i] for i in keep], [rows[i] for i in keep]


def load_labelled(
    path: str | Path,
    text_column: str | None = None,
    label_column: str | None = None,
    *,
    format: str | None = None,
    skip_empty: bool = False,
    normalize_labels: bool = False,
    min_per_class: int = 2,
) -> LabelledTexts:
    """Read a labelled data file and check it; raises :class:`DataError` with a fix on bad input."""
    table = read_table(path, format)
    return labelled_from_table(
        table,
        text_column,
        label_column,
        skip_empty=skip_empty,
        normalize_labels=normalize_labels,
        min_per_class=min_per_class,
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


def load_unlabelled(
    path: str | Path,
    text_column: str | None = None,
    *,
    labelled: LabelledTexts | None = None,
    format: str | None = None,
) -> UnlabelledTexts:
    """Read texts to self-train on: one column of a CSV, TSV, JSONL or Parquet file (a label column,
    if any, is ignored). Empty and repeated texts, and texts that are also in ``labelled``, are left out.
    """
    table = read_table(path, format)
    if not table.rows:
        raise DataError(f"{table.path}: the file has a header but no data rows")
    if text_column is None and labelled is not None and labelled.text_column in table.columns:
        column = labelled.text_column
    else:
        column = find_column(table, text_column, TEXT_COLUMN_NAMES, "texts", "--unlabelled-column")
    known = {_dedupe_key(t) for t in labelled.texts} if labelled is not None else set()
    out = UnlabelledTexts([], Path(table.path).name, len(table.rows))
    seen: set[str] = set()
    for row in table.rows:
        text = _clean_text(row.get(column) or "")
        key = _dedupe_key(text)
        if not key:
            out.empty += 1
        elif key in known:
            out.labelled += 1
        elif key in seen:
            out.repeated += 1
        else:
            seen.add(key)
            out.texts.append(text)
    if not out.texts:
        raise DataError(
            f"{table.path}: no unlabelled text is left in column {column!r} ({out.empty} empty, "
            f"{out.repeated} repeated, {out.labelled} also in the labelled data)"
        )
    return out
