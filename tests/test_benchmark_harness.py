"""The benchmark harness (benchmarks/run.py, benchmarks/systems.py), on tiny synthetic data.

Nothing here needs ../shared/datasets or a backbone: splits, the Markdown table and the scikit-learn
adapter (in process and in its own subprocess) are checked on a few dozen made-up texts.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from benchmarks import common
from benchmarks.run import markdown_table, splits, throughput_samples, write_markdown
from benchmarks.systems import Job, SklearnTfidfLogReg, metrics, run_isolated

from fewlabel.data.labelled import LabelledTexts

WORDS = {"pos": ["great", "love", "excellent", "perfect"], "neg": ["awful", "broke", "terrible", "refund"]}


def synthetic(n_per_class: int = 30) -> LabelledTexts:
    texts, labels = [], []
    for label, words in WORDS.items():
        for i in range(n_per_class):
            texts.append(f"review {i}: {words[i % 4]} product, {words[(i + 1) % 4]} again")
            labels.append(label)
    return LabelledTexts(texts, labels, list(range(len(texts))), "synthetic")


def test_same_seed_gives_same_splits():
    data = synthetic()
    first = splits(data, 20, seed=3)
    again = splits(data, 20, seed=3)
    other = splits(data, 20, seed=4)
    assert [s.texts for s in first] == [s.texts for s in again]
    assert first[0].texts != other[0].texts
    train, test = first
    assert sorted(train.labels) == ["neg"] * 10 + ["pos"] * 10  # class-balanced
    assert not set(train.texts) & set(test.texts)
    assert len(train) + len(test) == len(data)


def test_throughput_samples_are_fixed_and_exclude_training_texts():
    pool = {"short": [f"text {i}" for i in range(50)]}
    a = throughput_samples(pool, {"text 1", "text 2"}, n=10, warmup=4)
    b = throughput_samples(pool, {"text 1", "text 2"}, n=10, warmup=4)
    assert a == b
    warm, sample = a["short"]
    assert len(warm) == 4 and len(sample) == 10
    assert not {"text 1", "text 2"} & set(warm + sample)
    assert not set(warm) & set(sample)


def record() -> dict:
    def run(seed: int, system: str, acc: float, **extra) -> dict:
        return {
            "data": "tiny", "seed": seed, "train_size": 20, "test_size": 40, "system": system,
            "accuracy": acc, "macro_f1": acc - 0.01, "log_loss": 0.5, "train_seconds": 1.0,
            "peak_rss_mb": 100.0, "short_texts_per_second": 1000.0, "long_texts_per_second": 100.0,
            "info": {}, **extra,
        }  # fmt: skip

    return {
        "command": "python -m benchmarks.run --data tiny",
        "date": "2026-01-01T00:00:00+00:00",
        "commit": "abc1234",
        "machine": "x86_64, 2 CPU cores",
        "runs": [
            run(0, "sklearn/tfidf-logreg", 0.80),
            run(1, "sklearn/tfidf-logreg", 0.90),
            run(0, "hf/naive-finetune", 0.5, info={"validation_accuracy": 0.5}),
            {
                "data": "tiny",
                "seed": 1,
                "train_size": 20,
                "system": "hf/naive-finetune",
                "error": "RuntimeError: boom\nmore",
                "peak_rss_mb": 1.0,
            },
        ],  # fmt: skip
    }


def test_markdown_table_renders_mean_and_std_over_seeds(tmp_path):
    table = markdown_table([record()])
    assert "`python -m benchmarks.run --data tiny` — 2026-01-01T00:00:00+00:00, commit abc1234" in table
    rows = {line.split(" | ")[2]: line for line in table.splitlines() if line.startswith("| tiny")}
    assert rows["sklearn/tfidf-logreg"].startswith(
        "| tiny | 20 | sklearn/tfidf-logreg | 2 | 85.0 ± 5.0 | 84.0 ± 5.0 |"
    )
    assert "validation accuracy 50.0%" in rows["hf/naive-finetune"]
    assert "1 failed: RuntimeError: boom" in rows["hf/naive-finetune"]
    doc = tmp_path / "BENCHMARKS.md"
    write_markdown(doc, table)
    doc.write_text("intro\n" + doc.read_text() + "\nafter\n")
    write_markdown(doc, table)  # regenerating replaces the block and keeps the prose around it
    text = doc.read_text()
    assert text.startswith("intro\n") and text.endswith("\nafter\n") and text.count("| tiny | 20 |") == 2


def test_markdown_table_never_averages_runs_from_different_machines():
    cpu = record()
    gpu = {**record(), "machine": "x86_64, 16 CPU cores, GPU: NVIDIA H100"}
    gpu["runs"] = [{**run, "accuracy": 0.5} for run in gpu["runs"]]
    table = markdown_table([cpu, gpu])
    assert "On x86_64, 2 CPU cores:" in table and "On x86_64, 16 CPU cores, GPU: NVIDIA H100:" in table
    rows = [line for line in table.splitlines() if line.startswith("| tiny | 20 | sklearn/tfidf-logreg")]
    assert [row.split(" | ")[4] for row in rows] == ["85.0 ± 5.0", "50.0 ± 0.0"]


def test_sklearn_adapter_fits_and_predicts():
    train, test = splits(synthetic(), 20, seed=0)
    index = {"neg": 0, "pos": 1}
    y = np.array([index[label] for label in train.labels])
    adapter = SklearnTfidfLogReg(seed=0, backbone="unused")
    adapter.fit(train.texts, y, 2)
    proba = adapter.predict_proba(test.texts)
    assert proba.shape == (len(test), 2)
    scores = metrics([index[label] for label in test.labels], proba, 2)
    assert scores["accuracy"] > 0.9 and 0 <= scores["log_loss"] < 1


def test_sklearn_system_runs_in_its_own_subprocess():
    train, test = splits(synthetic(), 20, seed=0)
    index = {"neg": 0, "pos": 1}
    y = [index[label] for label in train.labels]
    samples = throughput_samples({"short": test.texts}, set(train.texts), n=8, warmup=2)
    job = Job("sklearn/tfidf-logreg", 0, {"backbone": "minilm", "train_model": "best"}, train.texts, y,
              test.texts, 2, samples)  # fmt: skip
    result = run_isolated(job, timeout=300)  # seconds on an idle machine; generous for a busy one
    assert "error" not in result, result.get("traceback")
    assert result["peak_rss_mb"] > 10 and result["short_texts_per_second"] > 0 and result["train_seconds"] > 0
    # Deterministic system, same split: the same predictions as a fit in this process.
    in_process = SklearnTfidfLogReg(seed=0, backbone="unused")
    in_process.fit(train.texts, np.array(y), 2)
    assert np.allclose(result["proba"], in_process.predict_proba(test.texts))


def test_result_files_written_in_the_same_second_do_not_overwrite_each_other(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    first, second = common.write_json("run", {"n": 1}), common.write_json("run", {"n": 2})
    assert first != second
    assert [json.loads(p.read_text())["n"] for p in (first, second)] == [1, 2]


def test_markdown_rows_follow_the_system_list_whatever_the_file_order():
    first, second = record(), record()
    first["runs"] = [run for run in first["runs"] if run["system"] == "hf/naive-finetune"]
    second["runs"] = [run for run in second["runs"] if run["system"] == "sklearn/tfidf-logreg"]
    table = markdown_table([first, second])
    systems = [line.split(" | ")[2] for line in table.splitlines() if line.startswith("| tiny")]
    assert systems == ["sklearn/tfidf-logreg", "hf/naive-finetune"]  # --list order


def test_superseded_runs_are_left_out_of_the_table():
    payload = record()
    payload["runs"][1]["superseded"] = "rerun in run-B.json"
    table = markdown_table([payload])
    row = next(line for line in table.splitlines() if "| sklearn/tfidf-logreg |" in line)
    assert row.startswith("| tiny | 20 | sklearn/tfidf-logreg | 1 | 80.0 |")


def test_setfit_default_step_count_matches_its_log():
    """setfit 1.2.0 printed "Num unique pairs = 125500" (7,844 steps of 16) for 250 texts per class."""
    pytest.importorskip("setfit")
    from benchmarks.setfit_steps import full_steps

    assert full_steps([0] * 250 + [1] * 250) == 7844
    # 10 per class: 55 positive pairs per class (self-pairs included), 110 in all, oversampled to
    # twice the larger side: 220 pairs, 14 batches of 16.
    assert full_steps([0] * 10 + [1] * 10) == 14


def test_label_curve_samples_are_nested_balanced_and_never_test_rows():
    from benchmarks.label_curve import jobs, nested_splits

    data = synthetic(30)
    train, test = nested_splits(data, [4, 8, 16], 10, seed=0)
    assert sorted(test.labels) == ["neg"] * 10 + ["pos"] * 10
    rows = {n: set(t.rows) for n, t in train.items()}
    assert rows[4] < rows[8] < rows[16] and not rows[16] & set(test.rows)
    assert all(sorted(t.labels) == sorted(["neg", "pos"] * (n // 2)) for n, t in train.items())
    assert nested_splits(data, [4, 8, 16], 10, seed=1)[1].rows != test.rows  # another seed, another test set
    with pytest.raises(SystemExit, match="too few rows"):
        nested_splits(data, [4, 50], 10, seed=0)

    class Args:
        sizes, seeds, many_seeds_up_to, data, systems = [8, 4, 16], 2, 8, ["d"], ["tfidf"]

    # Cheapest first (every size at seed 0), one seed above many_seeds_up_to.
    assert jobs(Args()) == [(4, 0, "d", "tfidf"), (8, 0, "d", "tfidf"), (16, 0, "d", "tfidf"),
                            (4, 1, "d", "tfidf"), (8, 1, "d", "tfidf")]  # fmt: skip


def test_cli_predict_times_both_engines_in_process_and_through_the_cli(
    tmp_path, monkeypatch, tfidf_model_dir, reviews_csv
):
    from benchmarks import cli_predict

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    assert cli_predict.main([str(tfidf_model_dir), str(reviews_csv), "--n", "20", "--repeats", "1"]) == 0
    record = json.loads(next(tmp_path.glob("cli_predict-*.json")).read_text())
    rows = {row["name"]: row for row in record["rows"]}
    assert set(rows) == {"in_process/auto", "cli/auto", "in_process/torch", "cli/torch"}
    assert record["n"] == 20 and len(record["one_text"]["seconds"]) == 1
    # A tfidf model predicts the same whatever the engine, in process or through the CLI.
    assert all(row["agreement_with_cli_torch"] == 1.0 for row in rows.values())
    assert all(row["texts_per_second"] > 0 and 0 <= row["accuracy"] <= 1 for row in rows.values())
    assert rows["cli/auto"]["wall_seconds"] > 0 and "cli_share_of_in_process_auto" in record["summary"]
