"""Reading multi-label data: label cells split on a separator, the same cleaning, checks naming the fix."""

from __future__ import annotations

import pytest

from conftest import multi_label_rows
from fewlabel.data.labelled import load_labelled
from fewlabel.data.multilabel import split_labels
from fewlabel.errors import DataError


def test_label_cells_are_split_stripped_and_counted_once(tmp_path, write_csv):
    rows = [[t, lab] for t, lab in multi_label_rows()]
    rows[0][1] = " tech |food| tech||"  # spaces, a repeat and empty pieces
    path = write_csv(tmp_path / "m.csv", ["text", "labels"], rows)
    data = load_labelled(path, multi_label=True, min_per_class=3)
    assert data.label_sets[0] == ["food", "tech"]
    assert data.label_sets[8] == [] and data.label_sets[1] == ["food"]  # empty cell: no labels
    assert data.classes == ["food", "sports", "tech"]
    assert data.label_column == "labels" and data.rows[:2] == [2, 3]
    matrix = data.indicator()
    assert matrix.shape == (40, 3) and matrix[0].tolist() == [1, 0, 1]
    assert matrix.sum(axis=0).tolist() == [21, 20, 21]
    assert data.label_counts() == {"food": 21, "sports": 20, "tech": 21}
    assert data.labels_per_text() == pytest.approx(62 / 40)
    assert len(data.fingerprint()) == 64


def test_another_separator(tmp_path, write_csv):
    rows = [[t, lab.replace("|", ";")] for t, lab in multi_label_rows()]
    path = write_csv(tmp_path / "m.csv", ["text", "labels"], rows)
    data = load_labelled(path, multi_label=True, label_separator=";")
    assert data.separator == ";" and data.label_sets[4] == ["food", "sports"]
    assert split_labels("a;b", "|") == ["a;b"]


def test_a_label_on_too_few_texts_is_named_with_its_count(tmp_path, write_csv):
    rows = [[t, lab] for t, lab in multi_label_rows()]
    rows[0][1] = "rare"
    rows[1][1] = "rare|food"
    path = write_csv(tmp_path / "m.csv", ["text", "labels"], rows)
    with pytest.raises(DataError) as err:
        load_labelled(path, multi_label=True, min_per_class=5)
    msg = str(err.value)
    assert "'rare' is on 2 text(s)" in msg and "at least 5" in msg
    assert "Drop those labels or label more texts" in msg and "m.csv" in msg


def test_one_label_overall_is_refused(tmp_path, write_csv):
    rows = [[f"text number {i}", "news" if i % 2 else ""] for i in range(10)]
    path = write_csv(tmp_path / "m.csv", ["text", "labels"], rows)
    with pytest.raises(DataError, match="only the label 'news'.*at least two labels"):
        load_labelled(path, multi_label=True)


def test_a_label_on_nearly_every_text_is_refused(tmp_path, write_csv):
    rows = [[f"text number {i}", "a|b" if i else "b"] for i in range(10)]
    path = write_csv(tmp_path / "m.csv", ["text", "labels"], rows)
    with pytest.raises(DataError, match="'a' is missing from only 1 text"):
        load_labelled(path, multi_label=True, min_per_class=2)


def test_duplicates_merged_and_conflicts_left_out(tmp_path, write_csv):
    rows = [[t, lab] for t, lab in multi_label_rows()]
    rows.append([rows[5][0], rows[5][1]])  # an exact duplicate
    rows.append([rows[6][0] + "  ", "food"])  # the same text with other labels
    path = write_csv(tmp_path / "m.csv", ["text", "labels"], rows)
    data = load_labelled(path, multi_label=True)
    assert data.report.duplicates_merged == 1
    assert data.report.conflicting_rows_removed == [8, 43]
    assert len(data) == 39 and any("different labels" in w for w in data.report.warnings)


def test_empty_texts_fail_unless_skipped(tmp_path, write_csv):
    rows = [[t, lab] for t, lab in multi_label_rows()] + [["  ", "food"]]
    path = write_csv(tmp_path / "m.csv", ["text", "labels"], rows)
    with pytest.raises(DataError, match="line\\(s\\) 42.*--skip-empty"):
        load_labelled(path, multi_label=True)
    assert len(load_labelled(path, multi_label=True, skip_empty=True)) == 40


def test_case_variants_refused_or_merged(tmp_path, write_csv):
    rows = [[t, lab] for t, lab in multi_label_rows()]
    rows[1][1] = "Food"
    path = write_csv(tmp_path / "m.csv", ["text", "labels"], rows)
    with pytest.raises(DataError, match="differ only by case.*--normalize-labels"):
        load_labelled(path, multi_label=True)
    merged = load_labelled(path, multi_label=True, normalize_labels=True)
    assert merged.classes == ["food", "sports", "tech"]


def test_single_label_loading_refuses_a_multi_label_file(multi_csv):
    with pytest.raises(DataError) as err:
        load_labelled(multi_csv)
    msg = str(err.value)
    assert "--multi-label" in msg and "--label-separator" in msg and "'labels'" in msg


@pytest.mark.parametrize("column", ["genres", "Tags", "categories", "topics"])
def test_usual_multi_label_column_names_are_found(tmp_path, write_csv, column):
    """docs/multi-label.md's movies.csv labels its texts in a `genres` column, without --label-column."""
    rows = [[i, t, lab] for i, (t, lab) in enumerate(multi_label_rows())]
    path = write_csv(tmp_path / "m.csv", ["id", "text", column], rows)
    data = load_labelled(path, multi_label=True)
    assert data.label_column == column and data.classes == ["food", "sports", "tech"]
    with pytest.raises(DataError, match=f"'{column}'.*--multi-label"):  # found, and looks multi-label
        load_labelled(path)
    both = write_csv(
        tmp_path / "b.csv", ["text", column, "label"], [[t, lab, "xy"[i % 2]] for i, t, lab in rows]
    )
    assert load_labelled(both).label_column == "label"  # the single-label names come first


def test_a_few_separators_in_single_label_data_are_fine(tmp_path, write_csv):
    rows = [[f"text {i}", "a|b" if i < 2 else ("x" if i % 2 else "y")] for i in range(30)]
    path = write_csv(tmp_path / "s.csv", ["text", "label"], rows)
    data = load_labelled(path)  # 2 cells in 30 (7%) hold '|': a label that happens to contain it
    assert data.classes == ["a|b", "x", "y"] and len(data) == 30
