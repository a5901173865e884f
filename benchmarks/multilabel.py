"""Multi-label: one model with a head per label (``train_multilabel``) against one single-label model
per label (``train`` with labels yes/no), on MovieLens titles -> genres.

    python -m benchmarks.movielens_genres          # once: the data, into ~/.cache/fewlabel/bench-data
    python -m benchmarks.multilabel --seeds 0 1 2

The data are movie titles only (a substitute: benchmarks/PROVENANCE-movielens-genres.md), so absolute
scores say little about text classification; the comparison of the two ways of training holds. For
each seed: the 8 most frequent genres are kept, 1,000 training and 1,000 test titles drawn at random
(the labels per text of the sample are reported, and must exceed 1.2). (a) ``train_multilabel`` with
``auto`` over tfidf, embed and ensemble (backbone minilm); (b) ``train`` once per genre, labels
``yes``/``no``, same settings and candidates. Both are scored on the test titles by micro-F1 and
macro-F1 (95% intervals, row bootstrap), with their wall time. One JSON file in
benchmarks/results/, rewritten after every seed.
"""

from __future__ import annotations

import argparse
import collections
import csv
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.common import run_record, write_json
from fewlabel import progress
from fewlabel.config import TrainConfig
from fewlabel.data.labelled import LabelledTexts
from fewlabel.data.multilabel import MultiLabelledTexts
from fewlabel.evaluation.multilabel import multilabel_scores
from fewlabel.multilabel import train_multilabel
from fewlabel.training import train

DEFAULT_DATA = Path.home() / ".cache" / "fewlabel" / "bench-data" / "movielens_titles_genres.csv"
FAST = ["tfidf", "embed", "ensemble"]
MIN_LABELS_PER_TEXT = 1.2


def read(path: Path, top: int) -> tuple[list[str], list[list[str]], list[str]]:
    """Titles, their genres among the ``top`` most frequent, and those genres."""
    if not path.exists():
        raise SystemExit(f"{path}: not found; run `python -m benchmarks.movielens_genres` first")
    with path.open(encoding="utf-8", newline="") as f:
        rows = [(r["text"], r["labels"].split("|")) for r in csv.DictReader(f)]
    counts = collections.Counter(g for _, labels in rows for g in labels)
    kept = sorted(g for g, _ in counts.most_common(top))
    return [t for t, _ in rows], [sorted(set(labels) & set(kept)) for _, labels in rows], kept


def matrix(sets: list[list[str]], labels: list[str]) -> np.ndarray:
    return np.array([[int(label in s) for label in labels] for s in sets], dtype=np.int64)


def run_multilabel(texts, sets, test_texts, config: TrainConfig) -> tuple[list[list[str]], float, str]:
    data = MultiLabelledTexts(texts, sets, list(range(2, len(texts) + 2)), source="movielens sample")
    start = time.perf_counter()
    result = train_multilabel(data, None, config)
    predicted, _ = result.model.predict_label_sets(test_texts)
    return predicted, time.perf_counter() - start, result.chosen


def run_binary(texts, sets, test_texts, labels, config: TrainConfig) -> tuple[list[list[str]], float, dict]:
    """One single-label yes/no model per label; a text gets each label whose model answers yes."""
    start = time.perf_counter()
    answers, chosen = [], {}
    for label in labels:
        data = LabelledTexts.from_lists(texts, ["yes" if label in s else "no" for s in sets])
        result = train(data, None, config)
        answers.append(result.model.predict(test_texts)[0])
        chosen[label] = result.chosen
    predicted = [
        [lab for lab, a in zip(labels, row, strict=True) if a == "yes"] for row in zip(*answers, strict=True)
    ]
    return predicted, time.perf_counter() - start, chosen


def one_seed(titles, sets, labels, seed: int, n: int) -> dict:
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(titles), 2 * n, replace=False)
    train_rows, test_rows = rows[:n], rows[n:]
    texts, train_sets = [titles[i] for i in train_rows], [sets[i] for i in train_rows]
    test_texts, truth = [titles[i] for i in test_rows], matrix([sets[i] for i in test_rows], labels)
    per_text = sum(len(s) for s in train_sets) / n
    if per_text <= MIN_LABELS_PER_TEXT:
        raise SystemExit(
            f"seed {seed}: {per_text:.2f} labels per text in the sample, not above {MIN_LABELS_PER_TEXT}"
        )
    config = TrainConfig(model="minilm", seed=seed, candidates=FAST, diagnostics=False)
    out: dict = {
        "seed": seed,
        "load_1min_at_start": os.getloadavg()[0],  # the machine is shared: timings depend on it
        "labels_per_text": per_text,
        "train_label_counts": dict(collections.Counter(g for s in train_sets for g in s)),
    }
    multi, multi_s, multi_chosen = run_multilabel(texts, train_sets, test_texts, config)
    binary, binary_s, binary_chosen = run_binary(texts, train_sets, test_texts, labels, config)
    for name, predicted, seconds, chosen in (
        ("multilabel", multi, multi_s, multi_chosen),
        ("binary_per_label", binary, binary_s, binary_chosen),
    ):
        scores = multilabel_scores(truth, matrix(predicted, labels), seed)
        out[name] = {**scores.to_dict(), "seconds": seconds, "chosen": chosen}
    return out


def print_table(runs: list[dict]) -> None:
    print(
        f"{'seed':>4} {'labels/text':>11}  {'method':<18} {'micro-F1 (95% CI)':<22} {'macro-F1':>8} {'time':>8}"
    )
    for run in runs:
        for name in ("multilabel", "binary_per_label"):
            r = run[name]
            micro = r["micro_f1"]
            print(
                f"{run['seed']:>4} {run['labels_per_text']:>11.2f}  {name:<18} "
                f"{micro['value']:.3f} ({micro['ci95_low']:.3f}-{micro['ci95_high']:.3f})  "
                f"{r['macro_f1']['value']:>8.3f} {r['seconds']:>7.0f}s"
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="movielens_titles_genres.csv")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n", type=int, default=1000, help="training titles, and as many test titles")
    parser.add_argument("--top", type=int, default=8, help="the most frequent genres kept")
    args = parser.parse_args(argv)
    titles, sets, labels = read(args.data, args.top)
    progress.set_enabled(False)
    record = {
        **run_record("multilabel", argv),
        "labels": labels,
        "n_train": args.n,
        "n_test": args.n,
        "runs": [],
    }
    path = None
    for seed in args.seeds:
        record["runs"].append(one_seed(titles, sets, labels, seed, args.n))
        path = write_json("multilabel", record) if path is None else _rewrite(path, record)
        print_table(record["runs"][-1:])
    print(f"Wrote {path}")


def _rewrite(path: Path, record: dict) -> Path:
    import json

    path.write_text(json.dumps(record, indent=2))
    return path


if __name__ == "__main__":
    main()
