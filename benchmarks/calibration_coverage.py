"""Benchmark the honesty of fewlabel's numbers (issue targets for diagnostics).

For each data set and seed: a class-balanced training sample of 500, the rest (class-balanced) as
test rows; ``train`` with defaults; then on the test rows:
- is the test accuracy inside the reported 95% interval?
- the expected calibration error (ECE) of the saved model's ``confidence``;
- how long rebuilding the report takes.
Plus a label-noise check: 5% of the training labels flipped at random; the share of flipped rows
among the top 10% of reported label issues.

    python -m benchmarks.calibration_coverage --data uci_amazon uci_yelp cr blitzer_books --seeds 5
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from benchmarks.common import balanced_split, load_dataset, run_record, write_json
from benchmarks.train_default import cold_embedding_cache
from fewlabel import progress
from fewlabel.config import TrainConfig
from fewlabel.data.labelled import LabelledTexts
from fewlabel.evaluation.calibration import reliability
from fewlabel.evaluation.diagnostics import label_quality_ranking
from fewlabel.inference.loading import load_model
from fewlabel.model_dir.store import rebuild_documents
from fewlabel.training import train


def coverage_run(name: str, seed: int, train_size: int) -> dict:
    data = load_dataset(name)
    train_set, test_set = balanced_split(data, train_size, seed)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = train(train_set, f"{tmp}/model", TrainConfig(seed=seed))
        train_seconds = time.perf_counter() - start
        start = time.perf_counter()
        rebuild_documents(f"{tmp}/model")
        report_seconds = time.perf_counter() - start
        model = load_model(f"{tmp}/model")
        proba = model.predict_proba(test_set.texts)
    y = np.array([model.labels.index(label) for label in test_set.labels])
    test_acc = float((proba.argmax(axis=1) == y).mean())
    exp = result.expected  # what fewlabel reports to the user: the saved model's expected accuracy
    return {
        "data": name,
        "seed": seed,
        "backbone": result.config.model,
        "chosen": result.chosen,
        "cv_accuracy": exp.value,
        "cv_ci95": [exp.ci95_low, exp.ci95_high],
        "raw_cv_accuracy": exp.cv_accuracy,
        "test_accuracy": test_acc,
        "test_in_ci": bool(exp.ci95_low <= test_acc <= exp.ci95_high),
        "test_ece": reliability(proba, y)["ece"],
        "test_ece_uncalibrated": reliability(model.strategy.predict_proba(test_set.texts), y)["ece"],
        "train_seconds": train_seconds,
        "report_seconds": report_seconds,
    }


def noise_run(name: str, seed: int, train_size: int, rate: float = 0.05) -> dict:
    data = load_dataset(name)
    train_set, _ = balanced_split(data, train_size, seed)
    rng = np.random.default_rng(1000 + seed)
    flip = rng.choice(len(train_set), size=int(round(rate * len(train_set))), replace=False)
    classes = train_set.classes
    labels = list(train_set.labels)
    for i in flip:
        others = [c for c in classes if c != labels[i]]
        labels[i] = others[rng.integers(len(others))]
    noisy = LabelledTexts(train_set.texts, labels, train_set.rows, train_set.source)
    result = train(noisy, None, TrainConfig(seed=seed))
    y = np.array([result.labels.index(label) for label in labels])
    ranking = label_quality_ranking(result.results[result.chosen].oof_proba, y)
    top = set(ranking[: int(round(0.10 * len(y)))].tolist())
    caught = sum(1 for i in flip if int(i) in top)
    flagged = {issue["row"] for issue in result.diagnostics["all_label_issues"]}
    return {
        "data": name,
        "seed": seed,
        "flipped": len(flip),
        "flipped_in_top10pct": caught,
        "share": caught / len(flip),
        "flipped_flagged_as_issues": sum(1 for i in flip if train_set.rows[i] in flagged),
        "issues_reported": len(flagged),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", nargs="+", default=["uci_amazon", "uci_yelp", "cr", "blitzer_books"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--train-size", type=int, default=500)
    parser.add_argument("--noise-data", default="uci_amazon")
    parser.add_argument("--noise-seeds", type=int, default=3)
    args = parser.parse_args(argv)
    progress.set_enabled(False)
    cold_embedding_cache()
    runs = []
    header = f"{'data':<14}{'seed':>5}{'chosen':>10}{'CV acc':>8}{'95% CI':>13}{'test':>7}{'in CI':>6}{'ECE':>7}{'ECE raw':>8}{'train s':>8}{'report s':>9}"
    print(header)
    for name in args.data:
        for seed in range(args.seeds):
            r = coverage_run(name, seed, args.train_size)
            runs.append(r)
            print(
                f"{name:<14}{seed:>5}{r['chosen']:>10}{100 * r['cv_accuracy']:>7.1f}%"
                f"{100 * r['cv_ci95'][0]:>7.1f}-{100 * r['cv_ci95'][1]:<5.1f}{100 * r['test_accuracy']:>6.1f}%"
                f"{'yes' if r['test_in_ci'] else 'no':>6}{r['test_ece']:>7.3f}{r['test_ece_uncalibrated']:>8.3f}"
                f"{r['train_seconds']:>8.0f}{r['report_seconds']:>9.2f}",
                flush=True,
            )
    noise = []
    for seed in range(args.noise_seeds):
        n = noise_run(args.noise_data, seed, args.train_size)
        noise.append(n)
        print(
            f"noise {n['data']} seed {seed}: {n['flipped_in_top10pct']}/{n['flipped']} flipped rows in the top 10% "
            f"of label issues; {n['flipped_flagged_as_issues']} flagged among {n['issues_reported']} issues",
            flush=True,
        )
    inside = sum(r["test_in_ci"] for r in runs)
    summary = {
        "test_in_ci": f"{inside}/{len(runs)}",
        "max_ece_per_data": {d: max(r["test_ece"] for r in runs if r["data"] == d) for d in args.data},
        "mean_ece_per_data": {
            d: float(np.mean([r["test_ece"] for r in runs if r["data"] == d])) for d in args.data
        },
        "noise_share_mean": float(np.mean([n["share"] for n in noise])) if noise else None,
        "max_report_seconds": max(r["report_seconds"] for r in runs),
    }
    print()
    print(f"test accuracy inside the reported 95% CI: {summary['test_in_ci']}")
    print(
        "ECE on test rows, mean (max) per data set: "
        + ", ".join(
            f"{d} {summary['mean_ece_per_data'][d]:.3f} ({summary['max_ece_per_data'][d]:.3f})"
            for d in args.data
        )
    )
    if noise:
        print(
            f"flipped rows in the top 10% of label issues: {100 * summary['noise_share_mean']:.0f}% on average"
        )
    print(f"report rebuild: at most {summary['max_report_seconds']:.2f}s")
    path = write_json(
        "calibration_coverage",
        {
            **run_record("calibration_coverage", argv),
            "runs": runs,
            "noise": noise,
            "summary": summary,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
