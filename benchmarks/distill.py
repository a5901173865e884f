"""Benchmark ``fewlabel distill``: a small student of the default model, against that teacher, on real data.

For each data set and seed: 500 class-balanced labelled rows, 600 class-balanced test rows, and every
other row of the set as unlabelled text. The teacher is ``fewlabel train`` with its defaults on the
500 (or ``--teacher-strategy`` / ``--teacher-model``); the student (``--student``, on ``--model``)
learns from the teacher's probabilities on the unlabelled texts and from the 500. Both saved models
are scored on the test rows, which neither saw; the student's estimate (cross-fitted on the 500) is
checked against its test accuracy, and its speed is timed through ``fewlabel predict`` in a fresh
process on the test texts (process start and model loading included, as a user would see them).

    python -m benchmarks.distill --data blitzer_books blitzer_dvd --seeds 3
    python -m benchmarks.distill --data uci_amazon --seeds 1 --quick   # a smoke run, seconds

Columns: the teacher (strategy/backbone), teacher (T) and student (S) test accuracy and their
difference in points, the student's estimate with its 95% interval and whether the test accuracy is
inside it, the student's out-of-fold agreement with its teacher, ``fewlabel predict`` texts per
second, the student's training seconds (``distill``), and the 1-minute load average at the start.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, load_dataset, run_record, subset
from fewlabel import progress
from fewlabel.atomic import write_json
from fewlabel.config import TrainConfig
from fewlabel.data.labelled import LabelledTexts, UnlabelledTexts
from fewlabel.distill import distill
from fewlabel.inference.loading import load_model
from fewlabel.model_dir.store import TrainedModel
from fewlabel.training import train

# --quick: a smoke run of the whole path on small numbers, cheap strategies and no fine-tuning.
QUICK = {
    "train_size": 100,
    "test_size": 100,
    "max_unlabelled": 200,
    "teacher_strategy": "tfidf",
    "student": "tfidf",
}


def three_way_split(
    data: LabelledTexts, train_size: int, test_size: int, seed: int, max_unlabelled: int | None = None
) -> tuple[LabelledTexts, LabelledTexts, list[str]]:
    """Class-balanced labelled and test rows; every other row (up to ``max_unlabelled``) unlabelled."""
    rng = np.random.default_rng(seed)
    labels = np.array(data.labels)
    k = len(data.classes)
    train_rows, test_rows, rest = [], [], []
    for c in data.classes:
        idx = rng.permutation(np.flatnonzero(labels == c))
        train_rows.extend(idx[: train_size // k])
        test_rows.extend(idx[train_size // k : train_size // k + test_size // k])
        rest.extend(idx[train_size // k + test_size // k :])
    pool = [data.texts[i] for i in sorted(rest)][:max_unlabelled]
    return subset(data, train_rows), subset(data, test_rows), pool


def accuracy(model: TrainedModel, test: LabelledTexts) -> float:
    predicted, _ = model.predict(test.texts)
    return float(np.mean([p == t for p, t in zip(predicted, test.labels, strict=True)]))


def predict_speed(model_dir: Path, texts: list[str], tmp: Path) -> float:
    """Texts per second of ``fewlabel predict`` in a fresh process (start and model loading included)."""
    source, out = tmp / "test.csv", tmp / "predicted.csv"
    with source.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text"])
        writer.writerows([t] for t in texts)
    start = time.perf_counter()
    command = [sys.executable, "-m", "fewlabel", "predict", str(model_dir), str(source), "-o", str(out), "-q"]
    subprocess.run(command, check=True, capture_output=True, text=True)
    return len(texts) / (time.perf_counter() - start)


def run_one(name: str, seed: int, args: argparse.Namespace) -> dict:
    data = load_dataset(name)
    labelled, test, pool = three_way_split(data, args.train_size, args.test_size, seed, args.max_unlabelled)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        start = time.perf_counter()
        config = TrainConfig(seed=seed, strategy=args.teacher_strategy, model=args.teacher_model)
        teacher = train(labelled, tmp_path / "teacher", config)
        teacher_seconds = time.perf_counter() - start
        start = time.perf_counter()
        unlabelled = UnlabelledTexts(pool, "pool", len(pool))
        result = distill(
            tmp_path / "teacher", unlabelled, labelled, tmp_path / "student",
            student=args.student, model=args.model, seed=seed, honest_teacher=args.honest_teacher,
        )  # fmt: skip
        student_seconds = time.perf_counter() - start
        # The teacher as evaluated (in memory: float32, embedding cache on, so a slow backbone does not
        # encode the test texts again for every seed); the student as saved and loaded.
        teacher_acc = accuracy(teacher.model, test)
        student_acc = accuracy(load_model(tmp_path / "student"), test)
        speed = predict_speed(tmp_path / "student", test.texts, tmp_path)
    exp = result.expected
    return {
        "data": name,
        "seed": seed,
        "labelled": len(labelled),
        "test": len(test),
        "unlabelled": len(result.unlabelled.texts),
        "teacher": f"{teacher.chosen}/{teacher.model.strategy.params.get('backbone', '-')}",
        "teacher_estimate": teacher.expected.model_dump(),
        "teacher_test_accuracy": teacher_acc,
        "student": f"{args.student}/{args.model}",
        "student_test_accuracy": student_acc,
        "difference": student_acc - teacher_acc,
        "student_estimate": exp.model_dump(),
        "test_in_ci": bool(exp.ci95_low <= student_acc <= exp.ci95_high),
        "teacher_refitted": result.teacher_refitted,
        "splits": result.splits,
        "agreement": result.agreement.to_dict(),
        "student_predict_texts_per_second": speed,
        "teacher_train_seconds": teacher_seconds,
        "student_train_seconds": student_seconds,
        "load_1min_at_start": load,
        "warnings": result.warnings,
        "notes": result.notes,
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", nargs="+", default=["blitzer_books", "blitzer_dvd"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=500)
    parser.add_argument("--test-size", type=int, default=600)
    parser.add_argument("--max-unlabelled", type=int, default=None, help="default: every other row")
    parser.add_argument("--teacher-strategy", default="auto")
    parser.add_argument("--teacher-model", default="best")
    parser.add_argument("--student", default="finetune", choices=["tfidf", "embed", "finetune"])
    parser.add_argument("--model", default="minilm", help="the student's backbone")
    parser.add_argument("--honest-teacher", action="store_true", help="refit a fine-tuned teacher once")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: " + ", ".join(f"{k}={v}" for k, v in QUICK.items())
    )
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    progress.set_enabled(False)
    print(
        f"{'data':<14}{'seed':>5}{'teacher':>23}{'T test':>9}{'S test':>9}{'diff':>7}{'estimate':>9}{'95% CI':>13}"
        f"{'in CI':>7}{'agree':>7}{'pred/s':>8}{'train s':>9}{'load':>6}"
    )
    runs: list[dict] = []
    record = {**run_record("distill", argv), "settings": vars(args), "runs": runs}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"distill-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    for name in args.data:
        for seed in range(args.seeds):
            r = run_one(name, seed, args)
            runs.append(r)
            write_json(path, record)  # after every run: a stopped benchmark keeps what it measured
            e = r["student_estimate"]
            print(
                f"{name:<14}{seed:>5}{r['teacher']:>23}{100 * r['teacher_test_accuracy']:>8.1f}%"
                f"{100 * r['student_test_accuracy']:>8.1f}%{100 * r['difference']:>+7.1f}{100 * e['value']:>8.1f}%"
                f"{100 * e['ci95_low']:>7.1f}-{100 * e['ci95_high']:.1f}{'yes' if r['test_in_ci'] else 'no':>7}"
                f"{100 * r['agreement']['value']:>6.1f}%{r['student_predict_texts_per_second']:>8.1f}"
                f"{r['student_train_seconds']:>9.1f}{r['load_1min_at_start']:>6.1f}",
                flush=True,
            )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
