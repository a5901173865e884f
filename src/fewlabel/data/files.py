"""Reading tables from CSV, TSV, JSONL, Parquet and Excel workbooks (and pandas DataFrames) into string rows.

A binary file given where text is expected (a workbook, a PDF, a zip archive) is named for what it is,
never mistaken for text in the wrong encoding. Every problem is a :class:`~fewlabel.errors.DataError`
naming the file, the row (as a person counts it) and the field, plus a fix.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fewlabel.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

TEXT_COLUMN_NAMES = (
    "text", "review", "review_text", "reviewtext", "sentence", "content", "body", "comment",
    "message", "document", "utterance", "review_body", "tweet", "input", "sentence1",
)  # fmt: skip
# Last, the usual names of a multi-label column (`genres` of films, `tags` of posts): after the
# single-label names, so a file with both a `label` and a `tags` column still trains on `label`.
LABEL_COLUMN_NAMES = (
    "label", "labels", "sentiment", "class", "category", "target", "polarity", "y", "gold",
    "gold_label", "tag", "output", "genre", "genres", "tags", "categories", "topic", "topics",
)  # fmt: skip

SUFFIX_FORMATS = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".txt": "csv",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet",
    ".xlsx": "xlsx", ".xlsm": "xlsx",
}  # fmt: skip
FORMATS = ("csv", "tsv", "jsonl", "parquet", "xlsx")
XLSX_EXTRA = "pip install 'fewlabel[xlsx]'"
# How much of a file is looked at to tell binary from text. No text format holds a NUL byte, so one in
# the first 8 KB marks a binary file (the same test git and grep use).
SNIFF_BYTES = 8192
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
IMAGE_MAGIC = {b"\x89PNG": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF87a": "GIF", b"GIF89a": "GIF"}
# A cell starting with one of these can be taken for a formula by a spreadsheet program (OWASP's list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def neutralise_formula(value: Any) -> Any:
    """``value`` with a ``'`` in front if it is text a spreadsheet could run as a formula (CSV injection).

    A spreadsheet shows the text as written and evaluates nothing; plain numbers such as ``-3`` are
    left alone. For files fewlabel writes for people to read in a spreadsheet (``label_issues.csv``,
    ``suggest`` output), never for the user's own data in ``predict`` output.
    """
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


@dataclass
class Table:
    """Rows of a data file as strings, with the line number of each row in the file."""

    path: str
    columns: list[str]
    rows: list[dict[str, str]]
    line_numbers: list[int]
    format: str
    raw: list[dict] | None = None  # JSONL: the objects as parsed, so output keeps their JSON types


def is_dataframe(obj: object) -> bool:
    """Whether ``obj`` looks like a pandas DataFrame (checked by its methods: pandas is not imported)."""
    return hasattr(obj, "columns") and hasattr(obj, "itertuples")


def table_from_dataframe(df: pd.DataFrame) -> Table:
    """The rows of a DataFrame as strings, like a file's; missing values become empty strings."""
    if not is_dataframe(df):
        raise DataError(f"expected a file path or a pandas DataFrame, got {type(df).__name__}")
    columns = [str(c) for c in df.columns]
    dupes = [c for c, n in Counter(columns).items() if n > 1]
    if dupes:
        raise DataError(f"<DataFrame>: it has two columns named {dupes[0]!r}; rename one of them")
    rows = [
        dict(zip(columns, (scalar_to_str(v) for v in values), strict=True))
        for values in df.itertuples(index=False, name=None)
    ]
    return Table("<DataFrame>", columns, rows, list(range(1, len(rows) + 1)), "dataframe")


def parse_sheet(text: str | None) -> str | int | None:
    """A sheet as given on a command line: all digits is a 0-based index, anything else a name."""
    if text is not None and text.isascii() and text.isdigit():
        return int(text)
    return text


def detect_format(path: Path, format: str | None = None) -> str:
    if format:
        if format not in FORMATS:
            raise DataError(f"unknown format {format!r}; use one of {', '.join(FORMATS)}")
        return format
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in {".gz"}]
    return SUFFIX_FORMATS.get(suffixes[-1] if suffixes else "", "csv")


def read_table(path: str | Path, format: str | None = None, sheet: str | int | None = None) -> Table:
    """Read a CSV, TSV, JSONL, Parquet or Excel (.xlsx) file into string rows; raises DataError on any problem.

    Args:
        sheet: for a workbook, the sheet to read: its name or 0-based index (default: the first).
    """
    path = Path(path)
    _check_data_file(path)
    fmt = detect_format(path, format)
    if sheet is not None and fmt != "xlsx":
        raise DataError(
            f"{path}: a sheet ({sheet!r}) can only be chosen in an Excel workbook, and this file is read as {fmt}"
        )
    if fmt == "parquet":
        return _read_parquet(path)
    if fmt == "xlsx":
        return _read_xlsx(path, sheet)
    text = _read_text(path)
    if fmt == "jsonl":
        return _read_jsonl(text, path)
    return _read_delimited(text, path, "\t" if fmt == "tsv" else ",", fmt)


def _check_data_file(path: Path) -> None:
    """Refuse a missing path (suggesting close names beside it) or a directory."""
    if not path.exists():
        hint = ""
        if path.parent.exists():
            close = difflib.get_close_matches(path.name, [p.name for p in path.parent.iterdir()], n=3)
            if close:
                hint = f" Did you mean {', '.join(repr(str(path.parent / c)) for c in close)}?"
        raise DataError(f"{path}: file not found.{hint}")
    if path.is_dir():
        raise DataError(f"{path}: is a directory; give a CSV, TSV, JSONL, Parquet or Excel (.xlsx) file")


def _read_text(path: Path) -> str:
    """The whole text of a CSV, TSV or JSONL file (gunzipped if named .gz); refuses binary or empty files."""
    raw = path.read_bytes()
    if path.suffix.lower() == ".gz":
        import gzip

        if not raw.startswith(b"\x1f\x8b"):
            reject_binary(path, raw, raw)  # a workbook or PDF named .gz: say what it is
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise DataError(f"{path}: cannot decompress ({err}); is it really gzip?") from None
    reject_binary(path, raw, raw)
    text = _decode(raw, path)
    if not text.strip():
        raise DataError(f"{path}: the file is empty; it needs a header row and at least one data row")
    return text


def text_encoding(head: bytes) -> str:
    """The codec for a text file starting with ``head``: UTF-16 when it has that byte-order mark (as
    Excel's "Unicode Text" export does), else UTF-8 with or without a byte-order mark."""
    return "utf-16" if head.startswith(UTF16_BOMS) else "utf-8-sig"


def reject_binary(path: Path, head: bytes | None = None, whole: bytes | None = None) -> None:
    """Raise a DataError saying what ``path`` is and what to do, if its first bytes show a binary file.

    ``head`` holds the file's first bytes (read here when None); ``whole``, when given, the complete
    content, which stands in for the file when looking inside a zip archive (after decompression).
    """
    if head is None:
        with path.open("rb") as handle:
            head = handle.read(SNIFF_BYTES)
    kind = _binary_kind(head[:SNIFF_BYTES], path, whole)
    if kind:
        raise DataError(f"{path}: {kind}")


def _binary_kind(head: bytes, path: Path, whole: bytes | None = None) -> str | None:
    """What a file starting with ``head`` is and what to do with it; None for text."""
    formats = "CSV, TSV, JSONL, Parquet or Excel (.xlsx) file"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _zip_kind(*_zip_contents(whole if whole is not None else path), path)
    if head.startswith(b"%PDF"):
        return (
            "is a PDF document, not a data file. Export its table to CSV or .xlsx and give that file instead."
        )
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        return (
            "is an old Excel .xls or other Office file (this format is also used for password-protected "
            "workbooks), which fewlabel cannot read. Save it as .xlsx or CSV (without a password) and give that file."
        )
    if head.startswith(b"\x1f\x8b") and path.suffix.lower() != ".gz":
        return f"is gzip-compressed, but its name does not end in .gz. Rename it to {path.name}.gz and fewlabel will decompress it."
    if head.startswith(b"PAR1"):
        return (
            f"is a Parquet file, but its name does not end in .parquet. Rename it to {path.stem}.parquet "
            "or pass --format parquet."
        )
    image = next((name for magic, name in IMAGE_MAGIC.items() if head.startswith(magic)), None)
    if image:
        return f"is a {image} image, not a data file; a picture of a table cannot be read. Give a {formats} with a text column."
    if head.startswith(UTF16_BOMS) or b"\x00" not in head:
        return None
    codec = _utf16_without_bom(head)
    if codec:
        return (
            f"looks like UTF-16 text without a byte-order mark. Re-save it as UTF-8, for example with "
            f"`iconv -f {codec} -t utf-8 {path.name} > fixed.{path.suffix.lstrip('.') or 'csv'}`."
        )
    return f"is a binary file, not text (it holds NUL bytes near its start). Give a {formats}; export spreadsheets and databases to one of those first."


def _utf16_without_bom(head: bytes) -> str | None:
    """``utf-16le`` or ``utf-16be`` when every other byte is NUL, as in mostly-ASCII UTF-16 text."""
    sample = head[:2048]
    odd, even = sample[1::2].count(0), sample[0::2].count(0)
    if len(sample) < 8 or min(odd, even) > 0 or max(odd, even) < 0.9 * (len(sample) // 2):
        return None
    return "utf-16le" if odd else "utf-16be"


def _zip_contents(source: Path | bytes) -> tuple[set[str], str]:
    """The member names of a zip archive and its OpenDocument ``mimetype`` ("" if none or unreadable)."""
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source) as archive:
            names = set(archive.namelist())
            mimetype = (
                archive.read("mimetype")[:100].decode("ascii", "replace") if "mimetype" in names else ""
            )
    except (zipfile.BadZipFile, OSError, KeyError, ValueError):
        return set(), ""
    return names, mimetype


def _zip_kind(names: set[str], mimetype: str, path: Path) -> str:
    if "xl/workbook.xml" in names:
        how = (
            "read it with --format xlsx"
            if path.suffix.lower() == ".xlsx"
            else f"rename it to {path.stem}.xlsx or pass --format xlsx"
        )
        return f"is an Excel workbook (a zip archive), not a text file. To use it, {how} (this needs `{XLSX_EXTRA}`)."
    if "xl/workbook.bin" in names:
        return "is an Excel binary workbook (.xlsb, a zip archive), which fewlabel cannot read. Save it as .xlsx or CSV and give that file."
    if "word/document.xml" in names:
        return "is a Word document (.docx, a zip archive), not a data file. Copy its table into a spreadsheet and save that as .xlsx or CSV."
    if "ppt/presentation.xml" in names:
        return "is a PowerPoint presentation (.pptx, a zip archive), not a data file. Save its table as .xlsx or CSV."
    if "opendocument.spreadsheet" in mimetype:
        return "is an OpenDocument spreadsheet (.ods, a zip archive), which fewlabel cannot read. Save it as .xlsx or CSV and give that file."
    if "opendocument" in mimetype:
        return "is an OpenDocument file (a zip archive), not a data file. Save its table as .xlsx or CSV."
    return "is a zip archive, not a text file. Unzip it and give the CSV, TSV, JSONL, Parquet or .xlsx file inside."


def _decode(raw: bytes, path: Path) -> str:
    if text_encoding(raw) == "utf-16":
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError as err:
            raise DataError(
                f"{path}: starts like UTF-16 text but cannot be read as UTF-16 ({err.reason}); re-save it as UTF-8"
            ) from None
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


def _refuse_other_delimiter(path: str | Path, header: str) -> None:
    """DataError when a CSV's one-field header is column names joined by a tab or a semicolon: the file
    is tab-separated, or semicolon-separated as Excel saves "CSV" where the comma is the decimal mark."""
    if "\t" in header:
        raise DataError(
            f"{path}, line 1: the header ({header!r}) holds tabs, not commas: the file looks tab-separated. "
            "Pass --format tsv, or name it .tsv"
        )
    if len([name for name in header.split(";") if name.strip()]) > 1:
        convert = "import csv, sys; csv.writer(sys.stdout).writerows(csv.reader(sys.stdin, delimiter=';'))"
        raise DataError(
            f"{path}, line 1: the header ({header}) holds semicolons, not commas: the file looks "
            "semicolon-separated (spreadsheets save CSV so where the comma is the decimal mark). Convert it to "
            f'commas, for example with `python -c "{convert}" < {Path(path).name} > fixed.csv`, or save it '
            "from the spreadsheet as tab-separated text and pass --format tsv"
        )


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
    if len(header) == 1 and delimiter == ",":
        _refuse_other_delimiter(path, header[0])
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
        yield number, {str(k): scalar_to_str(v) for k, v in obj.items()}, obj


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
    rows = [{c: scalar_to_str(data[c][i]) for c in columns} for i in range(n)]
    return Table(str(path), columns, rows, list(range(1, n + 1)), "parquet")


def import_openpyxl(path: str | Path, doing: str) -> Any:
    """The openpyxl module, or a DataError saying how to install it (``doing``: "reading", "writing")."""
    try:
        import openpyxl
    except ImportError:
        raise DataError(
            f"{path}: {doing} an Excel workbook needs openpyxl; install it with `{XLSX_EXTRA}`, or use CSV instead"
        ) from None
    return openpyxl


def _read_xlsx(path: Path, sheet: str | int | None) -> Table:
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if not head.strip():
        raise DataError(f"{path}: the file is empty; it needs a header row and at least one data row")
    names, mimetype = _zip_contents(path) if head.startswith(b"PK\x03\x04") else (set(), "")
    if "xl/workbook.xml" not in names:
        kind = _zip_kind(names, mimetype, path) if names else _binary_kind(head, path)
        raise DataError(
            f"{path}: {kind}"
            if kind
            else f"{path}: is not an Excel workbook but text; rename it to .csv (or .tsv, .jsonl) or pass --format csv"
        )
    openpyxl = import_openpyxl(path, "reading")
    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as err:  # openpyxl raises many types for damaged files
        raise DataError(
            f"{path}: cannot read as an Excel workbook ({err}); open and re-save it in Excel"
        ) from None
    try:
        worksheet = _pick_sheet(workbook.worksheets, sheet, path)
        worksheet.reset_dimensions()  # some writers record a wrong size, which would cut rows short
        return _sheet_table(worksheet.iter_rows(values_only=True), f"{path}, sheet {worksheet.title!r}", path)
    finally:
        workbook.close()


def _pick_sheet(worksheets: list[Any], sheet: str | int | None, path: Path) -> Any:
    names = [ws.title for ws in worksheets]
    if not worksheets:
        raise DataError(f"{path}: the workbook has no worksheet (only charts); add a sheet with the data")
    if sheet is None:
        return worksheets[0]
    listed = ", ".join(f"{name!r} ({i})" for i, name in enumerate(names))
    if isinstance(sheet, int):
        if 0 <= sheet < len(worksheets):
            return worksheets[sheet]
        raise DataError(
            f"{path}: no sheet number {sheet} (counted from 0); its sheets are {listed}. Give a name or number from these."
        )
    by_lower = {name.strip().lower(): ws for name, ws in zip(names, worksheets, strict=True)}
    if sheet in names or sheet.strip().lower() in by_lower:
        return worksheets[names.index(sheet)] if sheet in names else by_lower[sheet.strip().lower()]
    close = difflib.get_close_matches(sheet, names, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise DataError(f"{path}: no sheet named {sheet!r}; its sheets are {listed}.{hint}")


def _column_letter(index: int) -> str:
    """The spreadsheet name of 0-based column ``index``: A, B, ..., Z, AA, ..."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def _sheet_table(rows: Iterable[Sequence[object]], where: str, path: Path) -> Table:
    """A worksheet's values as a Table: the first non-empty row is the header, empty rows are skipped."""
    header: list[str] | None = None
    header_row = 0
    records: list[dict[str, str]] = []
    numbers: list[int] = []
    for number, values in enumerate(rows, start=1):
        cells = [scalar_to_str(v) for v in values]
        if not any(c.strip() for c in cells):
            continue
        if header is None:
            header = [c.strip() for c in cells]
            while not header[-1]:
                header.pop()  # formatting can extend a sheet past its last named column
            if "" in header:
                column = _column_letter(header.index(""))
                raise DataError(f"{where}, row {number}: column {column} of the header has no name; name it")
            dupes = [h for h, n in Counter(header).items() if n > 1]
            if dupes:
                raise DataError(
                    f"{where}, row {number}: the header names column {dupes[0]!r} twice; rename one of them"
                )
            header_row = number
            continue
        stray = next((i for i in range(len(header), len(cells)) if cells[i].strip()), None)
        if stray is not None:
            raise DataError(
                f"{where}, row {number}: cell {_column_letter(stray)}{number} holds a value, but its column has "
                f"no name in the header (row {header_row}, the first row that is not empty); name the column "
                "or clear the cell"
            )
        cells += [""] * (len(header) - len(cells))
        records.append(dict(zip(header, cells[: len(header)], strict=True)))
        numbers.append(number)
    if header is None:
        raise DataError(f"{where}: the sheet is empty; it needs a header row and at least one data row")
    return Table(str(path), header, records, numbers, "xlsx")


def scalar_to_str(value: object) -> str:
    if getattr(getattr(value, "dtype", None), "kind", "") in {"b", "i", "u", "f"} and hasattr(value, "item"):
        value = value.item()  # a numpy scalar (from pandas): as the Python one, so NaN and 1.0 read alike
    if value is None or (isinstance(value, float) and value != value):  # None and NaN are missing values
        return ""
    if type(value).__name__ in {"NAType", "NaTType"}:  # pandas' missing values
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
