"""Does refitting the fine-tuned model on every row help? A paired comparison on the same run.

For each data set and seed (the class-balanced 500-text samples of ``benchmarks.run``), one
fine-tuning run with the default recipe holds out 20% of the rows, stops early and keeps its best
checkpoint: that model is scored on the test rows ("hold-out"). Then ``FineTuner.refit`` trains a
fresh network on all 500 rows to the same point of the same schedule, and that model is scored on
the same test rows ("refit"). The difference is paired: same split, same recipe, same stopping point.
The summary gives the mean difference over the runs with a t interval, and per run a bootstrap
interval over the test rows. One JSON file, rewritten after every run.

    python -m benchmarks.refit --data blitzer_books blitzer_dvd --seeds 3 --backbone mpnet
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


def _run(data_name: str, seed: int, backbone: str, train_size: int) -> dict:
    from fewlabel.encoders.backbones import resolve
    from fewlabel.finetuning import FineTuner
    from fewlabel.strategies import make_strategy

    data = load_dataset(data_name)
    train, test = balanced_split(data, train_size, seed)
    index = {c: i for i, c in enumerate(train.classes)}
    y = np.array([index[c] for c in train.labels])
    truth = np.array([index[c] for c in test.labels])
    recipe = make_strategy("finetune", backbone=backbone, seed=seed).recipe()  # the default recipe
    tuner = FineTuner(resolve(backbone).location, len(index), recipe)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    report = tuner.fit(list(train.texts), y)
    held_out_s = time.perf_counter() - start
    held = tuner.predict_proba(list(test.texts)).argmax(1) == truth
    tuner.refit(list(train.texts), y, report)
    refit = tuner.predict_proba(list(test.texts)).argmax(1) == truth
    low, high = _paired_interval(held, refit, seed)
    return {
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
    args = parser.parse_args(argv)
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
            row = _run(name, seed, args.backbone, args.train_size)
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
