"""Does refitting the fine-tuned model on every row help? A paired comparison on the same run.

For each data set and seed (the class-balanced 500-text samples of ``benchmarks.run``), one
fine-tuning run with the default recipe holds out 20% of the rows, stops early and keeps its best
checkpoint: that model is scored on the test rows ("hold-out"). Then ``FineTuner.refit`` trains a
fresh network on all 500 rows to the same point of the same schedule, and that model is scored on
the same test rows ("refit"). The difference is paired: same split, same recipe, same stopping point.
The summary gives the mean difference over the runs with a t interval, and per run a bootstrap
interval over the test rows. One JSON file, rewritten after every run.

    python -m benchmarks.refit --data blitzer_books blitzer_dvd --seeds 3 --backbone mpnet

``--imbalanced``: the training rows of ``benchmarks.imbalanced`` instead (400 texts, 95% positive / 5%
negative; the rest of the set, class-balanced, is the test set), scored by balanced accuracy, by the
most probable class (the test set is class-balanced, so that is its accuracy) and with the threshold tuned on the hold-out run's validation rows (as ``train``
tunes it for a hold-out strategy) applied to both models. The refit model sees the 20% of the rare
texts that the hold-out run kept for validation.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, balanced_split, load_dataset, run_record
from fewlabel import progress
from fewlabel.atomic import write_json


def _paired_interval(correct_a: np.ndarray, correct_b: np.ndarray, seed: int) -> tuple[float, float]:
    """95% bootstrap interval of accuracy(b) - accuracy(a) over the test rows, resampled together."""
    rng = np.random.default_rng(seed)
    diff = correct_b.astype(float) - correct_a.astype(float)
    means = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(2000)]
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _split(data_name: str, seed: int, train_size: int, imbalanced: bool):
    data = load_dataset(data_name)
    if not imbalanced:
        return balanced_split(data, train_size, seed)
    from benchmarks.common import subset
    from benchmarks.imbalanced import split

    classes = {c: i for i, c in enumerate(data.classes)}
    y = np.array([classes[label] for label in data.labels])
    rows, test = split(y, classes["positive"], seed, train_size, 0.05)
    return subset(data, rows), subset(data, test)


def _imbalanced_scores(report, y: np.ndarray, truth: np.ndarray, held: np.ndarray, refit: np.ndarray) -> dict:
    """Balanced accuracy of both models' probabilities, by argmax and with the hold-out run's threshold."""
    from fewlabel.evaluation.threshold import balanced_accuracy, best_threshold, decide

    val_y = y[np.asarray(report.val_index)]
    threshold = best_threshold(np.asarray(report.val_proba)[:, 1], val_y)
    scores = {"threshold": threshold, "validation_rare_rows": int(np.bincount(val_y, minlength=2).min())}
    for name, proba in (("held_out", held), ("refit", refit)):
        scores[f"{name}_balanced_accuracy"] = balanced_accuracy(truth, proba.argmax(1), 2)
        scores[f"{name}_balanced_accuracy_threshold"] = balanced_accuracy(truth, decide(proba, threshold), 2)
    return scores


def _run(data_name: str, seed: int, backbone: str, train_size: int, imbalanced: bool = False) -> dict:
    from fewlabel.encoders.backbones import resolve
    from fewlabel.finetuning import FineTuner
    from fewlabel.strategies import make_strategy

    train, test = _split(data_name, seed, train_size, imbalanced)
    index = {c: i for i, c in enumerate(train.classes)}
    y = np.array([index[c] for c in train.labels])
    truth = np.array([index[c] for c in test.labels])
    recipe = make_strategy("finetune", backbone=backbone, seed=seed).recipe()  # the default recipe
    tuner = FineTuner(resolve(backbone).location, len(index), recipe)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    report = tuner.fit(list(train.texts), y)
    held_out_s = time.perf_counter() - start
    held_proba = tuner.predict_proba(list(test.texts))
    tuner.refit(list(train.texts), y, report)
    refit_proba = tuner.predict_proba(list(test.texts))
    held, refit = held_proba.argmax(1) == truth, refit_proba.argmax(1) == truth
    low, high = _paired_interval(held, refit, seed)
    extra = _imbalanced_scores(report, y, truth, held_proba, refit_proba) if imbalanced else {}
    return {
        **extra,
        "data": data_name,
        "seed": seed,
        "backbone": backbone,
        "test_size": len(truth),
        "held_out_accuracy": float(held.mean()),
        "refit_accuracy": float(refit.mean()),
        "difference": float(refit.mean() - held.mean()),
        "difference_ci95": [low, high],
        "validation_accuracy": report.val_accuracy,
        "best_epoch": report.best_epoch,
        "refit": report.refit,
        "held_out_seconds": held_out_s,
        "refit_seconds": report.refit_seconds,
        "load_1min_at_start": load,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", nargs="+", default=["blitzer_books", "blitzer_dvd"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--backbone", default="mpnet")
    parser.add_argument("--train-size", type=int, default=500)
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument(
        "--imbalanced", action="store_true", help="95%% / 5%% training rows, scored by balanced accuracy"
    )
    args = parser.parse_args(argv)
    if args.imbalanced and args.train_size == 500:
        args.train_size = 400  # benchmarks.imbalanced's size
    progress.set_enabled(False)
    record = {**run_record("refit", argv), "rows": []}
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / f"refit-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    print(
        f"{'data':<14}{'seed':>5}{'hold-out':>10}{'refit':>8}{'diff':>7}  95% CI (test rows)  seconds",
        flush=True,
    )
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for name in args.data:
            row = _run(name, seed, args.backbone, args.train_size, args.imbalanced)
            record["rows"].append(row)
            diffs = np.array([r["difference"] for r in record["rows"]])
            if len(diffs) > 1:
                from scipy import stats

                half = stats.t.ppf(0.975, len(diffs) - 1) * diffs.std(ddof=1) / np.sqrt(len(diffs))
                record["summary"] = {
                    "runs": len(diffs),
                    "mean_difference": float(diffs.mean()),
                    "t_ci95": [float(diffs.mean() - half), float(diffs.mean() + half)],
                }
            write_json(out, record)
            low, high = row["difference_ci95"]
            print(
                f"{name:<14}{seed:>5}{100 * row['held_out_accuracy']:>9.1f}%{100 * row['refit_accuracy']:>7.1f}%"
                f"{100 * row['difference']:>+7.1f}  [{100 * low:+.1f}, {100 * high:+.1f}]"
                f"  {row['held_out_seconds']:.0f} + {row['refit_seconds']:.0f}",
                flush=True,
            )
            if args.imbalanced:
                print(
                    f"{'':<19}with threshold {row['threshold']:.2f} ({row['validation_rare_rows']} rare "
                    f"validation rows): {100 * row['held_out_balanced_accuracy_threshold']:.1f}% "
                    f"{100 * row['refit_balanced_accuracy_threshold']:.1f}%",
                    flush=True,
                )
    if "summary" in record:
        s = record["summary"]
        print(
            f"mean difference over {s['runs']} runs: {100 * s['mean_difference']:+.2f} points "
            f"(t 95% CI {100 * s['t_ci95'][0]:+.2f} to {100 * s['t_ci95'][1]:+.2f})"
        )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
