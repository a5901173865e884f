"""What does ``--unlabelled`` add to the *default* ``fewlabel train``? The same split, with and without.

For each data set and seed: 300 test texts per class are held back, 500 class-balanced texts are
labelled, and every other text of the set is the unlabelled pool (the split of
``benchmarks.semi_supervised``). The default ``train`` (auto, best backbone, 15-minute budget) runs on
the 500 alone, then on the 500 with the pool as ``unlabelled``; both final models are scored on the
test texts, which neither saw. One JSON file, rewritten after every run, so a stopped run keeps its rows.

    python -m benchmarks.unlabelled_default --data blitzer_books blitzer_dvd --seeds 3
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from benchmarks.common import RESULTS, load_dataset, run_record, subset
from fewlabel import progress
from fewlabel.atomic import write_json
from fewlabel.config import TrainConfig
from fewlabel.data.labelled import LabelledTexts, UnlabelledTexts
from fewlabel.training import train


def _split(y: np.ndarray, seed: int, labelled: int, test_per_class: int):
    rng = np.random.default_rng(seed)
    by_class = [rng.permutation(np.flatnonzero(y == c)) for c in range(int(y.max()) + 1)]
    per = labelled // len(by_class)
    test = np.concatenate([m[:test_per_class] for m in by_class])
    train_rows = np.concatenate([m[test_per_class : test_per_class + per] for m in by_class])
    pool = np.setdiff1d(np.arange(len(y)), np.concatenate([test, train_rows]))
    return np.sort(train_rows), np.sort(test), pool


def _run(data: LabelledTexts, rows, y, test, seed: int, pool: list[str] | None) -> dict:
    labelled = subset(data, rows)
    unlabelled = UnlabelledTexts(pool, "pool", len(pool)) if pool else None
    load = os.getloadavg()[0]
    start = time.perf_counter()
    result = train(labelled, None, TrainConfig(seed=seed), unlabelled=unlabelled)
    seconds = time.perf_counter() - start
    index = {c: i for i, c in enumerate(result.labels)}
    proba = result.strategy.predict_proba([data.texts[i] for i in test])
    truth = np.array([index[data.labels[i]] for i in test])
    acc = result.evaluation.scores.accuracy
    return {
        "chosen": result.chosen,
        "backbone": getattr(result.strategy, "fitted", result.strategy).params.get("backbone"),
        "test_accuracy": float((proba.argmax(1) == truth).mean()),
        "estimate": acc.value,
        "estimate_low": acc.low,
        "estimate_high": acc.high,
        "expected": result.expected.model_dump(),  # the headline estimate and interval the model reports
        "pseudo_labels": (result.unlabelled or {}).get("pseudo_labels_in_final_model"),
        "seconds": seconds,
        "load_1min_at_start": load,
        "notes": result.notes,
        "warnings": result.warnings,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", nargs="+", default=["blitzer_books", "blitzer_dvd"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--labelled", type=int, default=500)
    parser.add_argument("--test-per-class", type=int, default=300)
    args = parser.parse_args(argv)
    progress.set_enabled(False)
    record = {**run_record("unlabelled_default", argv), "rows": []}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"unlabelled_default-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    print(
        f"{'data':<14}{'seed':>5}{'pool':>6}{'plain':>8}{'+unlab.':>9}{'diff':>7}  chosen (plain / unlabelled)"
    )
    for name in args.data:
        data = load_dataset(name)
        classes = {c: i for i, c in enumerate(data.classes)}
        y = np.array([classes[lab] for lab in data.labels])
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            rows, test, pool = _split(y, seed, args.labelled, args.test_per_class)
            plain = _run(data, rows, y, test, seed, None)
            with_pool = _run(data, rows, y, test, seed, [data.texts[i] for i in pool])
            record["rows"].append(
                {"data": name, "seed": seed, "labelled": len(rows), "test_size": len(test),
                 "unlabelled": len(pool), "plain": plain, "with_unlabelled": with_pool}
            )  # fmt: skip
            write_json(out, record)
            diff = with_pool["test_accuracy"] - plain["test_accuracy"]
            print(
                f"{name:<14}{seed:>5}{len(pool):>6}{100 * plain['test_accuracy']:>7.1f}%"
                f"{100 * with_pool['test_accuracy']:>8.1f}%{100 * diff:>+7.1f}  "
                f"{plain['chosen']}/{plain['backbone']} {plain['seconds']:.0f}s / "
                f"{with_pool['chosen']}/{with_pool['backbone']} {with_pool['seconds']:.0f}s",
                flush=True,
            )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
