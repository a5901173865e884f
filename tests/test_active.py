"""`fewlabel suggest`: uncertain and diverse picks, the output file, and clear errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import NEW_NEGATIVE, NEW_POSITIVE
from fewlabel.cli.main import app
from fewlabel.errors import DataError
from fewlabel.inference.suggest import (
    RANK_COLUMN,
    SCORE_COLUMN,
    margin_uncertainty,
    select_batch,
    suggest_file,
)

ENV = {"COLUMNS": "200", "FEWLABEL_PROGRESS": "0"}
POOL = [
    *NEW_POSITIVE,
    *NEW_NEGATIVE,
    "The blender is fine I guess, it works but it is loud.",
    "Arrived on time. The colour is not what the picture showed.",
    "It does what it says, nothing more.",
    "Decent speaker for the price but the bass is weak.",
    "The kettle is okay, the lid is a bit stiff.",
    "Not bad, not great, an average pair of shoes.",
]


def test_margin_uncertainty():
    two = margin_uncertainty(np.array([[0.5, 0.5], [1.0, 0.0], [0.7, 0.3]]))
    assert two == pytest.approx([1.0, 0.0, 0.6])
    assert margin_uncertainty(np.array([[0.4, 0.35, 0.25]])) == pytest.approx([0.95])


def _clusters(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Five well-separated groups of 20 points in 2-D; group 0 is the most uncertain, and all are uncertain."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10], [5, 20]], dtype=float)
    group = np.repeat(np.arange(5), 20)
    vectors = centres[group] + rng.normal(scale=0.3, size=(100, 2))
    p = np.where(group == 0, 0.5, 0.6) + rng.uniform(0, 0.02, size=100)  # group 0: coin tosses
    return vectors, np.column_stack([p, 1 - p]), group


def test_select_batch_spreads_over_clusters_where_uncertainty_alone_does_not():
    vectors, proba, group = _clusters()
    diverse = select_batch(proba, vectors, 5, seed=0)
    assert sorted(group[[s.index for s in diverse]]) == [0, 1, 2, 3, 4]
    plain = select_batch(proba, vectors, 5, seed=0, prefilter=1)
    assert set(group[[s.index for s in plain]]) == {0}


def test_select_batch_ranks_scores_and_determinism():
    vectors, proba, _ = _clusters()
    first = select_batch(proba, vectors, 7, seed=3)
    again = select_batch(proba, vectors, 7, seed=3)
    assert [s.index for s in first] == [s.index for s in again]
    assert [s.rank for s in first] == list(range(1, 8))
    assert len({s.index for s in first}) == 7
    scores = [s.score for s in first]
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)


def test_select_batch_small_pool_returns_everything_most_uncertain_first():
    proba = np.array([[0.9, 0.1], [0.5, 0.5], [0.7, 0.3]])
    got = select_batch(proba, np.eye(3), 10)
    assert [s.index for s in got] == [1, 2, 0]


def test_select_batch_rejects_bad_arguments():
    with pytest.raises(Exception, match="at least 1"):
        select_batch(np.array([[0.5, 0.5]]), np.zeros((1, 2)), 0)
    with pytest.raises(Exception, match="vectors"):
        select_batch(np.array([[0.5, 0.5]]), np.zeros((2, 2)), 1)


@pytest.fixture
def pool_csv(tmp_path, write_csv):
    rows = [[f"u{i}", text] for i, text in enumerate(POOL)]
    rows.append(["dup", POOL[0]])  # a repeat is never suggested twice
    rows.append(["empty", "  "])
    return write_csv(tmp_path / "pool.csv", ["id", "text"], rows)


def _read(path):
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_suggest_file_writes_original_rows_with_rank_and_score(tfidf_model_dir, pool_csv, tmp_path):
    out = tmp_path / "to_label.csv"
    summary = suggest_file(tfidf_model_dir, pool_csv, out, n=4)
    rows = _read(out)
    assert summary["suggested"] == 4 and summary["candidates"] == len(POOL)
    assert list(rows[0]) == ["id", "text", RANK_COLUMN, SCORE_COLUMN]
    assert [r[RANK_COLUMN] for r in rows] == ["1", "2", "3", "4"]
    by_id = {f"u{i}": t for i, t in enumerate(POOL)}
    assert all(by_id[r["id"]] == r["text"] for r in rows)
    assert len({r["text"] for r in rows}) == 4
    scores = [float(r[SCORE_COLUMN]) for r in rows]
    assert scores == sorted(scores, reverse=True)


def test_suggest_never_overwrites_without_force(tfidf_model_dir, pool_csv, tmp_path):
    out = tmp_path / "to_label.csv"
    out.write_text("keep me\n", encoding="utf-8")
    with pytest.raises(DataError, match="already exists.*--force"):
        suggest_file(tfidf_model_dir, pool_csv, out, n=2)
    assert out.read_text(encoding="utf-8") == "keep me\n"
    suggest_file(tfidf_model_dir, pool_csv, out, n=2, force=True)
    assert len(_read(out)) == 2


def test_suggest_errors_name_the_file_and_column(tfidf_model_dir, tmp_path, write_csv):
    bad = write_csv(tmp_path / "bad.csv", ["id", "words"], [["1", "hello"]])
    with pytest.raises(DataError, match=r"bad\.csv.*cannot tell which column"):
        suggest_file(tfidf_model_dir, bad, tmp_path / "o.csv")
    with pytest.raises(DataError, match=r"no column named 'txt'"):
        suggest_file(tfidf_model_dir, bad, tmp_path / "o.csv", text_column="txt")
    clash = write_csv(tmp_path / "clash.csv", ["text", RANK_COLUMN], [["hello", "1"]])
    with pytest.raises(DataError, match=RANK_COLUMN):
        suggest_file(tfidf_model_dir, clash, tmp_path / "o.csv")
    assert not (tmp_path / "o.csv").exists()


def test_suggest_exclude_and_jsonl(tfidf_model_dir, pool_csv, tmp_path, write_csv):
    labelled = write_csv(tmp_path / "labelled.csv", ["text", "label"], [[POOL[4], "x"], [POOL[5], "y"]])
    out = tmp_path / "s.jsonl"
    suggest_file(tfidf_model_dir, pool_csv, out, n=50, exclude_path=labelled)
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(records) == len(POOL) - 2
    assert {POOL[4], POOL[5]}.isdisjoint(r["text"] for r in records)
    assert [r[RANK_COLUMN] for r in records] == list(range(1, len(records) + 1))


def test_suggest_cli(tfidf_model_dir, pool_csv, tmp_path):
    runner = CliRunner()
    out = tmp_path / "to_label.csv"
    args = ["suggest", str(tfidf_model_dir), str(pool_csv), "-n", "3", "-o", str(out)]
    result = runner.invoke(app, args, env=ENV)
    assert result.exit_code == 0, result.output
    assert "Wrote 3 suggestions" in result.stderr
    assert len(_read(out)) == 3
    again = runner.invoke(app, args, env=ENV)
    assert again.exit_code == 2 and "already exists" in again.stderr and "Traceback" not in again.output
    assert runner.invoke(app, [*args, "--force"], env=ENV).exit_code == 0


def test_suggest_cli_missing_input(tfidf_model_dir, tmp_path):
    result = CliRunner().invoke(
        app,
        ["suggest", str(tfidf_model_dir), str(tmp_path / "nope.csv"), "-o", str(tmp_path / "o.csv")],
        env=ENV,
    )
    assert result.exit_code == 2 and "nope.csv: file not found" in result.stderr
