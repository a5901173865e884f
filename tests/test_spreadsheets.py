"""Spreadsheets and data frames: .xlsx in (any sheet) and out, binary files named for what they are,
and pandas DataFrames in place of a file."""

from __future__ import annotations

import gzip
import io
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import NEW_NEGATIVE, NEW_POSITIVE, REVIEWS
from fewlabel.data.files import parse_sheet, read_table
from fewlabel.data.labelled import LabelledTexts, load_labelled, load_unlabelled
from fewlabel.errors import DataError
from fewlabel.inference.predicting import predict_file

ENV = {"COLUMNS": "200", "FEWLABEL_PROGRESS": "0"}
EXTRA = "pip install 'fewlabel[xlsx]'"
FORMULAS = ["=1+1", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)"]


@pytest.fixture
def openpyxl():
    return pytest.importorskip("openpyxl")


def write_workbook(openpyxl, path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for title, rows in sheets.items():
        sheet = workbook.create_sheet(title)
        for row in rows:
            sheet.append(row)
    workbook.save(path)
    return path


def reviews_sheet() -> list[list[object]]:
    """Two blank rows, the header (row 3), then the fixture rows with a blank row after the 4th."""
    rows: list[list[object]] = [[], [None], ["Text", "Sentiment"]]
    for i, (text, label) in enumerate(REVIEWS):
        rows.append([text, label])
        if i == 3:
            rows.append([None, None])
    return rows


# --- reading .xlsx ---------------------------------------------------------------------------------


def test_xlsx_round_trip_keeps_sheet_row_numbers(tmp_path, openpyxl):
    rows = [["text", "label"], *([t, 1 if lab == "positive" else 0] for t, lab in REVIEWS)]
    rows.insert(3, [None, "  "])  # a row of nothing but blanks is skipped
    path = write_workbook(openpyxl, tmp_path / "data.xlsx", {"Sheet1": rows})
    data = load_labelled(path)
    assert data.texts == [t for t, _ in REVIEWS]
    assert data.labels == ["1" if lab == "positive" else "0" for _, lab in REVIEWS]  # 1.0 would read "1"
    assert data.rows == [2, 3, *range(5, len(REVIEWS) + 3)]  # the spreadsheet's own row numbers
    assert read_table(path).format == "xlsx"


def test_first_non_empty_row_is_the_header(tmp_path, openpyxl):
    path = write_workbook(
        openpyxl, tmp_path / "d.xlsx", {"Data": [[], [None, None], ["text", "label"], ["a", "b"]]}
    )
    table = read_table(path)
    assert table.columns == ["text", "label"] and table.line_numbers == [4]


def test_sheet_by_name_by_index_and_default_first(tmp_path, openpyxl):
    path = write_workbook(
        openpyxl, tmp_path / "book.xlsx", {"Notes": [["note"], ["read me"]], "Reviews": reviews_sheet()}
    )
    by_name = load_labelled(path, sheet="Reviews", text_column="Text")
    by_index = load_labelled(path, sheet=1, text_column="Text")
    assert by_name.texts == by_index.texts == [t for t, _ in REVIEWS]
    assert by_name.rows[:5] == [4, 5, 6, 7, 9]
    assert by_name.label_column == "Sentiment"
    assert read_table(path).columns == ["note"]  # no sheet given: the first
    assert parse_sheet("1") == 1 and parse_sheet("Reviews") == "Reviews" and parse_sheet(None) is None


@pytest.mark.parametrize("sheet", ["Reveiws", 7])
def test_missing_sheet_names_file_sheet_and_sheets(tmp_path, openpyxl, sheet):
    path = write_workbook(openpyxl, tmp_path / "book.xlsx", {"Notes": [["note"]], "Reviews": reviews_sheet()})
    with pytest.raises(DataError) as err:
        load_labelled(path, sheet=sheet)
    msg = str(err.value)
    assert str(path) in msg and "'Notes'" in msg and "'Reviews'" in msg
    if isinstance(sheet, str):
        assert "no sheet named 'Reveiws'" in msg and "Did you mean 'Reviews'?" in msg
    else:
        assert "no sheet number 7" in msg


def test_sheet_on_a_text_file_is_refused(tmp_path, reviews_csv):
    with pytest.raises(DataError, match="can only be chosen in an Excel workbook"):
        read_table(reviews_csv, sheet="Data")


def test_header_gaps_and_stray_cells_are_named(tmp_path, openpyxl):
    gap = write_workbook(openpyxl, tmp_path / "gap.xlsx", {"S": [["text", None, "label"], ["a", "", "b"]]})
    with pytest.raises(DataError, match=r"sheet 'S', row 1: column B of the header has no name"):
        read_table(gap)
    stray = write_workbook(openpyxl, tmp_path / "stray.xlsx", {"S": [["text", "label"], ["a", "b", "note"]]})
    with pytest.raises(DataError, match=r"sheet 'S', row 2: cell C2 holds a value"):
        read_table(stray)


def test_missing_openpyxl_names_the_extra(tmp_path, openpyxl, monkeypatch):
    path = write_workbook(openpyxl, tmp_path / "data.xlsx", {"S": [["text", "label"], ["a", "b"]]})
    monkeypatch.setitem(sys.modules, "openpyxl", None)  # as if it were not installed
    with pytest.raises(DataError) as err:
        load_labelled(path)
    assert str(path) in str(err.value) and EXTRA in str(err.value)


def test_text_file_named_xlsx_is_called_text(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_text("text,label\na,b\n", encoding="utf-8")
    with pytest.raises(DataError, match="not an Excel workbook but text; rename it to .csv"):
        read_table(path)


# --- binary files are named, never given encoding advice ------------------------------------------


def _zip(members: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


BINARIES = {
    "xlsx": (
        _zip({"[Content_Types].xml": "<x/>", "xl/workbook.xml": "<x/>"}),
        ["Excel workbook", "zip archive", "data.xlsx", "--format xlsx", EXTRA],
    ),
    "docx": (_zip({"word/document.xml": "<x/>"}), ["Word document"]),
    "ods": (
        _zip({"mimetype": "application/vnd.oasis.opendocument.spreadsheet"}),
        ["OpenDocument spreadsheet"],
    ),
    "zip": (_zip({"data.csv": "text,label\n"}), ["zip archive", "Unzip it"]),
    "pdf": (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", ["PDF document"]),
    "xls": (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64,
        ["old Excel .xls", "Save it as .xlsx or CSV"],
    ),
    "gzip": (gzip.compress(b"text,label\ncaf\xe9,x\n"), ["gzip-compressed", "data.csv.gz"]),
    "parquet": (b"PAR1\x15\x04\x15\x10", ["Parquet file", "data.parquet", "--format parquet"]),
    "png": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", ["PNG image"]),
    "jpeg": (b"\xff\xd8\xff\xe0\x00\x10JFIF", ["JPEG image"]),
    "gif": (b"GIF89a\x01\x00\x01\x00\x80", ["GIF image"]),
    "nul": (b"text,label\nab\x00\xff\xfe\x01cd,x\n", ["a binary file, not text"]),
}


@pytest.mark.parametrize("kind", sorted(BINARIES))
def test_binary_files_are_named_not_decoded(tmp_path, kind, tfidf_model_dir):
    content, fragments = BINARIES[kind]
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    readers = [
        lambda: load_labelled(path),
        lambda: load_unlabelled(path),
        lambda: predict_file(tfidf_model_dir, str(path), str(tmp_path / "out.csv")),  # the streaming reader
    ]
    for read in readers:
        with pytest.raises(DataError) as err:
            read()
        msg = str(err.value)
        assert msg.startswith(f"{path}: "), msg
        assert all(f in msg for f in fragments), msg
        assert "iconv" not in msg and "UTF-8" not in msg, msg
    assert not (tmp_path / "out.csv").exists()


def test_utf16_text_is_read_and_latin1_still_gets_encoding_advice(tmp_path):
    body = "text,label\n" + "".join(f'"{t}",{lab}\n' for t, lab in REVIEWS[:6])
    utf16 = tmp_path / "unicode.csv"
    utf16.write_bytes(body.encode("utf-16"))  # Excel's "Unicode Text": NUL bytes, but text
    assert load_labelled(utf16).texts == [t for t, _ in REVIEWS[:6]]
    latin1 = tmp_path / "latin.csv"
    latin1.write_bytes(body.encode("utf-8") + b"caf\xe9,positive\n")
    with pytest.raises(DataError, match="iconv"):
        load_labelled(latin1)


# --- predict -o out.xlsx ---------------------------------------------------------------------------


def test_cli_predict_writes_a_workbook_with_formulas_as_text(tmp_path, openpyxl, tfidf_model_dir, write_csv):
    from fewlabel.cli.main import app

    texts = [*NEW_POSITIVE, *NEW_NEGATIVE, *FORMULAS]
    src = write_csv(tmp_path / "in.csv", ["id", "text"], [[f"r{i}", t] for i, t in enumerate(texts)])
    out = tmp_path / "out.xlsx"
    result = CliRunner().invoke(app, ["predict", str(tfidf_model_dir), str(src), "-o", str(out)], env=ENV)
    assert result.exit_code == 0, result.output
    workbook = openpyxl.load_workbook(out)  # not data_only: a formula would load as one
    rows = list(workbook.worksheets[0].iter_rows())
    assert [c.value for c in rows[0]] == ["id", "text", "predicted_label", "confidence"]
    assert [r[0].value for r in rows[1:]] == [f"r{i}" for i in range(len(texts))]
    assert [r[1].value for r in rows[1:]] == texts
    assert [r[2].value for r in rows[1:5]] == ["positive"] * 2 + ["negative"] * 2
    assert all(isinstance(r[3].value, float) and 0.5 <= r[3].value <= 1 for r in rows[1:])
    assert all(r[1].data_type == "s" for r in rows[1:])  # "=1+1" is stored as text, never a formula
    assert not list(tmp_path.glob(".out.xlsx*"))  # nothing left beside it


def test_predict_reads_a_sheet_and_writes_csv_to_stdout(tmp_path, openpyxl, tfidf_model_dir):
    rows = [["id", "text"], *([i, t] for i, t in enumerate([*NEW_POSITIVE, *NEW_NEGATIVE]))]
    path = write_workbook(openpyxl, tmp_path / "in.xlsx", {"Notes": [["x"]], "New": rows})
    stdout = io.StringIO()
    summary = predict_file(tfidf_model_dir, str(path), None, sheet="New", stdout=stdout)
    assert summary["rows"] == 4
    lines = stdout.getvalue().splitlines()
    assert lines[0] == "id,text,predicted_label,confidence" and lines[1].startswith("0,")


def test_predict_to_xlsx_without_openpyxl_refuses_before_predicting(
    tmp_path, tfidf_model_dir, reviews_csv, monkeypatch
):
    import fewlabel.inference.predicting as predicting

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(predicting, "load_model", no_model)
    monkeypatch.setitem(sys.modules, "openpyxl", None)
    with pytest.raises(DataError) as err:
        predict_file(tfidf_model_dir, str(reviews_csv), str(tmp_path / "out.xlsx"))
    assert "out.xlsx" in str(err.value) and EXTRA in str(err.value)
    assert not (tmp_path / "out.xlsx").exists()


def test_suggest_refuses_an_xlsx_output(tmp_path, tfidf_model_dir, reviews_csv):
    from fewlabel.inference.suggest import suggest_file

    with pytest.raises(DataError, match="written as CSV, TSV or JSONL"):
        suggest_file(tfidf_model_dir, reviews_csv, tmp_path / "s.xlsx")


def test_cli_evaluate_reads_a_sheet_by_index(tmp_path, openpyxl, tfidf_model_dir):
    from fewlabel.cli.main import app

    rows = [["text", "label"], *([t, lab] for t, lab in REVIEWS)]
    path = write_workbook(openpyxl, tmp_path / "test.xlsx", {"Notes": [["x"]], "Test": rows})
    args = ["evaluate", str(tfidf_model_dir), str(path), "--sheet", "1", "--json"]
    result = CliRunner().invoke(app, args, env=ENV)
    assert result.exit_code == 0, result.output
    assert '"n": 48' in result.output


# --- pandas DataFrames -----------------------------------------------------------------------------


def test_dataframe_input_detects_columns_and_treats_missing_as_empty():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(
        {
            "id": range(len(REVIEWS)),
            "review": [t for t, _ in REVIEWS],
            "sentiment": [lab for _, lab in REVIEWS],
        }
    )
    data = LabelledTexts.from_dataframe(df)
    assert (data.text_column, data.label_column) == ("review", "sentiment")
    assert data.texts == [t for t, _ in REVIEWS] and data.source == "<DataFrame>"
    assert load_labelled(df).labels == data.labels

    gaps = df.copy()
    gaps.loc[1, "review"] = None
    gaps.loc[2, "sentiment"] = float("nan")
    with pytest.raises(DataError, match=r"empty or whitespace-only 'review' on line\(s\) 2"):
        load_labelled(gaps)
    assert len(load_labelled(gaps, skip_empty=True)) == len(REVIEWS) - 2

    pool = load_unlabelled(pd.DataFrame({"text": ["one", None, "one", "two"]}))
    assert pool.texts == ["one", "two"] and pool.empty == 1 and pool.repeated == 1
    with pytest.raises(DataError, match="describe a file"):
        load_labelled(df, sheet=0)
