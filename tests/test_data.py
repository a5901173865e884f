"""Reading labelled data: every bad input is a DataError naming the file, the line or field, and a fix."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import pytest

from conftest import REVIEWS
from fewlabel.data.files import read_table
from fewlabel.data.labelled import LONG_TEXT_WORDS, MAX_TEXT_CHARS, LabelledTexts, load_labelled
from fewlabel.errors import DataError

GOOD_ROWS = [[t, lab] for t, lab in REVIEWS[:12]]  # 6 positive, 6 negative


def test_good_csv_loads_with_rows_and_report(tmp_path, write_csv):
    path = write_csv(tmp_path / "ok.csv", ["text", "label"], GOOD_ROWS)
    data = load_labelled(path)
    assert data.texts == [r[0] for r in GOOD_ROWS]
    assert data.labels == [r[1] for r in GOOD_ROWS]
    assert data.rows == list(range(2, 2 + len(GOOD_ROWS)))  # header is line 1
    assert data.classes == ["negative", "positive"]
    assert data.class_counts() == {"negative": 6, "positive": 6}
    assert data.report.rows_read == data.report.rows_used == 12
    assert data.report.warnings == []
    assert data.source == str(path)
    assert len(data.fingerprint()) == 64


def test_missing_file_suggests_close_name(tmp_path, write_csv):
    write_csv(tmp_path / "reviews.csv", ["text", "label"], GOOD_ROWS)
    with pytest.raises(DataError) as err:
        load_labelled(tmp_path / "reveiws.csv")
    msg = str(err.value)
    assert "reveiws.csv" in msg and "not found" in msg
    assert "Did you mean" in msg and "reviews.csv" in msg


def test_missing_file_without_similar_names_has_no_suggestion(tmp_path):
    with pytest.raises(DataError) as err:
        load_labelled(tmp_path / "nothing_like_it.csv")
    assert "not found" in str(err.value)
    assert "Did you mean" not in str(err.value)


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(DataError, match="is a directory"):
        load_labelled(tmp_path)


def test_unknown_text_column_lists_columns_and_suggests(tmp_path, write_csv):
    path = write_csv(tmp_path / "d.csv", ["review_text", "label"], GOOD_ROWS)
    with pytest.raises(DataError) as err:
        load_labelled(path, text_column="review_txt")
    msg = str(err.value)
    assert str(path) in msg
    assert "'review_txt'" in msg and "--text-column" in msg
    assert "The columns are: 'review_text', 'label'" in msg
    assert "Did you mean 'review_text'?" in msg


def test_column_name_matches_case_insensitively(tmp_path, write_csv):
    path = write_csv(tmp_path / "d.csv", ["Text", "Label"], GOOD_ROWS)
    data = load_labelled(path, text_column="text", label_column="label")
    assert (data.text_column, data.label_column) == ("Text", "Label")


def test_undetectable_columns_ask_for_option(tmp_path, write_csv):
    path = write_csv(tmp_path / "d.csv", ["words", "label"], GOOD_ROWS)
    with pytest.raises(DataError) as err:
        load_labelled(path)
    msg = str(err.value)
    assert str(path) in msg and "'words'" in msg and "--text-column" in msg


def test_auto_detects_review_and_sentiment_columns(tmp_path, write_csv):
    path = write_csv(
        tmp_path / "d.csv", ["id", "Review", "Sentiment"], [[i, *r] for i, r in enumerate(GOOD_ROWS)]
    )
    data = load_labelled(path)
    assert (data.text_column, data.label_column) == ("Review", "Sentiment")
    assert data.texts[0] == GOOD_ROWS[0][0]


def test_header_only_file(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("text,label\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_labelled(path)
    assert str(path) in str(err.value) and "no data rows" in str(err.value)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("  \n", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        load_labelled(path)


def test_empty_and_whitespace_texts_name_their_lines(tmp_path, write_csv):
    rows = [*GOOD_ROWS[:4], ["", "positive"], *GOOD_ROWS[4:8], ["   \t ", "negative"], *GOOD_ROWS[8:]]
    path = write_csv(tmp_path / "d.csv", ["text", "label"], rows)
    with pytest.raises(DataError) as err:
        load_labelled(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "line(s) 6, 11" in msg  # header = line 1, so rows 5 and 10 are lines 6 and 11
    assert "--skip-empty" in msg


def test_empty_label_names_its_line(tmp_path, write_csv):
    rows = [*GOOD_ROWS[:2], ["A fine text without a label.", ""], *GOOD_ROWS[2:]]
    path = write_csv(tmp_path / "d.csv", ["text", "label"], rows)
    with pytest.raises(DataError) as err:
        load_labelled(path)
    assert "empty 'label' on line(s) 4" in str(err.value)


def test_skip_empty_skips_with_warning(tmp_path, write_csv):
    rows = [*GOOD_ROWS[:4], ["", "positive"], *GOOD_ROWS[4:8], ["  ", "negative"], *GOOD_ROWS[8:]]
    path = write_csv(tmp_path / "d.csv", ["text", "label"], rows)
    data = load_labelled(path, skip_empty=True)
    assert len(data) == len(GOOD_ROWS)
    assert data.report.rows_read == len(rows)
    assert sorted(data.report.empty_rows_skipped) == [6, 11]
    assert any("skipped" in w and "6" in w and "11" in w for w in data.report.warnings)
    assert "" not in data.texts


def test_single_class_is_refused(tmp_path, write_csv):
    rows = [[t, "positive"] for t, lab in REVIEWS if lab == "positive"][:6]
    path = write_csv(tmp_path / "d.csv", ["text", "label"], rows)
    with pytest.raises(DataError) as err:
        load_labelled(path)
    msg = str(err.value)
    assert str(path) in msg and "'positive'" in msg and "two classes" in msg


def test_class_too_small_for_min_per_class(tmp_path, write_csv):
    rows = [*GOOD_ROWS, ["Cheerful yellow colour.", "neutral"], ["Plain grey box.", "neutral"]]
    path = write_csv(tmp_path / "d.csv", ["text", "label"], rows)
    with pytest.raises(DataError) as err:
        load_labelled(path, min_per_class=5)
    msg = str(err.value)
    assert str(path) in msg and "'neutral' has 2" in msg and "at least 5" in msg and "--folds" in msg
    assert load_labelled(path, min_per_class=2).class_counts()["neutral"] == 2


def test_check_folds_asks_one_row_of_each_class_per_fold(tmp_path, write_csv):
    """For data read without min_per_class: train's folds, in the words of the check when reading."""
    rows = [*GOOD_ROWS, ["Arrived on Tuesday.", "neutral"], ["It is grey.", "neutral"], ["A box.", "neutral"]]
    data = load_labelled(write_csv(tmp_path / "d.csv", ["text", "label"], rows))
    data.check_folds(3)
    with pytest.raises(DataError) as err:
        data.check_folds(5)
    with pytest.raises(DataError) as reading:
        load_labelled(data.source, min_per_class=5)
    assert str(err.value) == str(reading.value)
    assert "'neutral' has 3 (each class needs at least 5, one per fold)" in str(err.value)


def test_undecodable_bytes_name_the_line(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(b"text,label\ngood thing,positive\nbad thing,negative\ncaf\xe9 was great,positive\n")
    with pytest.raises(DataError) as err:
        load_labelled(path)
    msg = str(err.value)
    assert str(path) in msg and "line 4" in msg and "0xe9" in msg and "UTF-8" in msg and "iconv" in msg


def test_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.csv"
    body = "text,label\n" + "".join(
        f"{t},{lab}\n" for t, lab in [("nice", "p"), ("great", "p"), ("bad", "n"), ("awful", "n")]
    )
    path.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    assert load_labelled(path).text_column == "text"


def test_labels_differing_by_case_or_space_error_then_merge(tmp_path, write_csv):
    rows = [[t, lab] for t, lab in GOOD_ROWS]
    rows[0][1] = "Positive"
    rows[2][1] = "POSITIVE"
    path = write_csv(tmp_path / "d.csv", ["text", "label"], rows)
    with pytest.raises(DataError) as err:
        load_labelled(path)
    msg = str(err.value)
    assert str(path) in msg and "'Positive'" in msg and "'positive'" in msg and "--normalize-labels" in msg

    data = load_labelled(path, normalize_labels=True)
    assert data.classes == ["negative", "positive"]  # merged into the most common spelling
    assert data.class_counts() == {"negative": 6, "positive": 6}
    assert any("Merged label spellings" in w for w in data.report.warnings)


def test_labels_differing_by_inner_whitespace_are_variants(tmp_path, write_csv):
    rows = [["good one", "very good"], ["great one", "very good"], ["superb", "very  good"],
            ["bad one", "bad"], ["awful one", "bad"]]  # fmt: skip
    path = write_csv(tmp_path / "d.csv", ["text", "label"], rows)
    with pytest.raises(DataError, match="differ only by case or spaces"):
        load_labelled(path)
    assert load_labelled(path, normalize_labels=True).class_counts() == {"bad": 2, "very good": 3}


def test_exact_duplicates_merged(tmp_path, write_csv):
    rows = [*GOOD_ROWS, GOOD_ROWS[0], GOOD_ROWS[1], GOOD_ROWS[0]]
    path = write_csv(tmp_path / "d.csv", ["text", "label"], rows)
    data = load_labelled(path)
    assert data.report.duplicates_merged == 3
    assert len(data) == len(GOOD_ROWS)
    assert data.rows == list(range(2, 2 + len(GOOD_ROWS)))  # the first copy is kept
    assert any("duplicate" in w for w in data.report.warnings)


def test_conflicting_duplicates_removed_and_listed(tmp_path, write_csv):
    conflicting = GOOD_ROWS[0][0]
    rows = [*GOOD_ROWS, [conflicting, "negative"]]  # line 2 and line 14 disagree
    path = write_csv(tmp_path / "d.csv", ["text", "label"], rows)
    data = load_labelled(path)
    assert sorted(data.report.conflicting_rows_removed) == [2, 14]
    assert conflicting not in data.texts
    assert len(data) == len(GOOD_ROWS) - 1
    warning = next(w for w in data.report.warnings if "different label" in w)
    assert "2" in warning and "14" in warning and "d.csv" in warning


def test_long_and_very_long_texts_are_counted_and_cut(tmp_path, write_csv):
    long_text = " ".join(["word"] * (LONG_TEXT_WORDS + 5))
    huge_text = "great " * (MAX_TEXT_CHARS // 6 + 100)
    rows = [*GOOD_ROWS, [long_text, "positive"], [huge_text, "positive"]]
    path = write_csv(tmp_path / "d.csv", ["text", "label"], rows)
    data = load_labelled(path)
    assert data.report.cut_texts == 1
    assert max(len(t) for t in data.texts) == MAX_TEXT_CHARS
    assert data.report.long_texts == 2  # both are above LONG_TEXT_WORDS words
    assert any("longer than" in w and "words" in w for w in data.report.warnings)
    assert any("were cut" in w for w in data.report.warnings)


def test_wrong_field_count_names_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\ngood,positive\nbad,negative\nnice, really nice,positive\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_labelled(path)
    msg = str(err.value)
    assert str(path) in msg and "line 4" in msg and "3 fields" in msg and "double quotes" in msg


def test_line_numbers_count_multiline_quoted_fields(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('text,label\n"two\nlines",positive\nbad,negative\nbroken,row,here\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 5"):
        load_labelled(path)


def test_tsv_read_by_suffix(tmp_path, write_csv):
    rows = [[t + ", with a comma", lab] for t, lab in GOOD_ROWS]
    path = write_csv(tmp_path / "d.tsv", ["text", "label"], rows, delimiter="\t")
    data = load_labelled(path)
    assert data.texts == [r[0] for r in rows]
    assert read_table(path).format == "tsv"


def test_tsv_given_as_csv_explains(tmp_path, write_csv):
    path = write_csv(tmp_path / "d.csv", ["text", "label"], GOOD_ROWS, delimiter="\t")
    with pytest.raises(DataError, match="--format tsv"):
        load_labelled(path)
    assert len(load_labelled(path, format="tsv")) == len(GOOD_ROWS)


@pytest.mark.parametrize("commas", [True, False], ids=["texts-with-commas", "texts-without"])
def test_semicolon_separated_csv_explains_and_the_fix_works(tmp_path, write_csv, commas):
    """Not "line 4: 3 fields ... quote texts that contain the delimiter (comma)", nor "cannot tell which
    column holds the texts" when no text holds a comma: the file is named for what it is."""
    rows = [[t if commas else t.replace(",", ""), lab] for t, lab in GOOD_ROWS]
    path = write_csv(tmp_path / "d.csv", ["text", "label"], rows, delimiter=";")
    with pytest.raises(DataError) as err:
        load_labelled(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}, line 1: the header (text;label)") and "semicolon-separated" in msg
    command = msg.split("`")[1].replace("python", shlex.quote(sys.executable), 1)
    subprocess.run(command, shell=True, cwd=tmp_path, check=True)
    assert load_labelled(tmp_path / "fixed.csv").texts == [r[0] for r in rows]


def test_a_semicolon_in_a_one_column_header_is_a_name(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text;\ngood\nbad\n", encoding="utf-8")
    assert read_table(path).columns == ["text;"]


def test_unknown_format_option(tmp_path, write_csv):
    path = write_csv(tmp_path / "d.csv", ["text", "label"], GOOD_ROWS)
    with pytest.raises(DataError, match="unknown format 'xml'"):
        load_labelled(path, format="xml")


def test_jsonl_with_numeric_labels(tmp_path, write_jsonl):
    records = [{"text": t, "label": 1 if lab == "positive" else 0, "score": 0.5} for t, lab in GOOD_ROWS]
    path = write_jsonl(tmp_path / "d.jsonl", records)
    data = load_labelled(path)
    assert data.classes == ["0", "1"]
    assert data.labels == ["1" if lab == "positive" else "0" for _, lab in GOOD_ROWS]
    assert data.rows == list(range(1, len(records) + 1))  # JSONL has no header: first record is line 1


def test_jsonl_float_and_bool_labels_become_strings(tmp_path, write_jsonl):
    records = [{"text": f"text number {i}", "label": float(i % 2)} for i in range(6)]
    records += [{"text": f"other text {i}", "label": True} for i in range(2)]
    data = load_labelled(write_jsonl(tmp_path / "d.jsonl", records))
    assert data.class_counts() == {"0": 3, "1": 3, "true": 2}


def test_bad_json_line_named(tmp_path):
    path = tmp_path / "d.jsonl"
    lines = [json.dumps({"text": t, "label": lab}) for t, lab in GOOD_ROWS[:3]]
    lines.insert(2, '{"text": "oops", "label": ')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_labelled(path)
    msg = str(err.value)
    assert (
        str(path) in msg and "line 3" in msg and "not valid JSON" in msg and "one JSON object per line" in msg
    )


def test_json_line_that_is_not_an_object(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n["a", "x"]\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 2: expected a JSON object"):
        load_labelled(path)


def test_jsonl_text_with_unicode_line_separator(tmp_path, write_jsonl):
    # json.dumps(ensure_ascii=False) writes U+2028 raw; it is valid inside a JSON string.
    records = [{"text": f"good item {i}\u2028really good", "label": "pos"} for i in range(3)]
    records += [{"text": f"bad item {i}", "label": "neg"} for i in range(3)]
    data = load_labelled(write_jsonl(tmp_path / "d.jsonl", records))
    assert data.texts[0] == "good item 0\u2028really good"
    assert data.rows == [1, 2, 3, 4, 5, 6]


def test_parquet_reads_or_explains(tmp_path):
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        path = tmp_path / "d.parquet"
        path.write_bytes(b"PAR1 not really")
        with pytest.raises(DataError, match="pyarrow"):
            load_labelled(path)
        return
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": [r[0] for r in GOOD_ROWS], "label": [r[1] for r in GOOD_ROWS]}), path)
    assert load_labelled(path).texts == [r[0] for r in GOOD_ROWS]


def test_from_lists_checks_like_a_file():
    texts = [t for t, _ in REVIEWS[:10]]
    labels = [lab for _, lab in REVIEWS[:10]]
    data = LabelledTexts.from_lists(texts, labels)
    assert data.texts == texts and data.labels == labels
    assert data.source == "<memory>"
    assert data.rows == list(range(1, 11))

    with pytest.raises(DataError, match="10 texts but 9 labels"):
        LabelledTexts.from_lists(texts, labels[:9])
    with pytest.raises(DataError, match="two classes"):
        LabelledTexts.from_lists(texts, ["positive"] * 10)
    with pytest.raises(DataError, match="line\\(s\\) 3"):
        LabelledTexts.from_lists(texts[:2] + [" "] + texts[3:], labels)
    with pytest.raises(DataError, match="too few examples"):
        LabelledTexts.from_lists(texts, labels, min_per_class=6)


def test_from_lists_does_not_dedupe():
    data = LabelledTexts.from_lists(["same", "same", "other", "another"], ["a", "a", "b", "b"])
    assert len(data) == 4 and data.report.duplicates_merged == 0


def test_fingerprint_depends_on_texts_and_labels():
    a = LabelledTexts.from_lists(["x one", "y two", "z three", "w four"], ["a", "a", "b", "b"])
    b = LabelledTexts.from_lists(["x one", "y two", "z three", "w four"], ["a", "b", "a", "b"])
    c = LabelledTexts.from_lists(["x one", "y two", "z three", "w four"], ["a", "a", "b", "b"])
    assert a.fingerprint() == c.fingerprint() != b.fingerprint()


def test_from_lists_treats_missing_values_as_empty():
    texts = [t for t, _ in REVIEWS[:8]] + ["Arrived today.", "Opened the box.", "Looks ok.", "Fine."]
    labels = [lab for _, lab in REVIEWS[:8]] + [None, None, float("nan"), float("nan")]
    with pytest.raises(DataError, match="empty 'label' on line\\(s\\) 9, 10, 11, 12"):
        LabelledTexts.from_lists(texts, labels)
    data = LabelledTexts.from_lists(texts, labels, skip_empty=True)
    assert data.classes == ["negative", "positive"] and len(data) == 8


def test_gzipped_csv(tmp_path):
    import gzip

    body = "text,label\n" + "".join(f'"{t}",{lab}\n' for t, lab in REVIEWS[:8])
    path = tmp_path / "reviews.csv.gz"
    path.write_bytes(gzip.compress(body.encode("utf-8")))
    assert load_labelled(path).texts == [t for t, _ in REVIEWS[:8]]
