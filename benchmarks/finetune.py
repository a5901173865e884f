"""Benchmark fine-tuning strategies on long reviews: accuracy, time, and what the run reported.

For each data set and seed: a class-balanced training sample (500 by default), the remaining rows as
a class-balanced test set; each strategy configuration is fitted on the training sample and scored
on the test rows. Shows the validation estimate next to the test accuracy, and the failure flags.

    python -m benchmarks.finetune --data blitzer_books blitzer_dvd --seeds 3 \\
        --configs finetune:backbone=minilm finetune:backbone=minilm,preset=naive
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from benchmarks.common import balanced_split, load_dataset, run_record, write_json
from fewlabel import progress
from fewlabel.strategies import make_strategy


def parse_config(spec: str) -> tuple[str, dict]:
    """``name:key=value,key=value`` into a strategy name and typed parameters."""
    name, _, rest = spec.partition(":")
    params = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        for cast in (int, float):
            try:
                params[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            params[key] = value
    return name, params


def run_one(data_name: str, seed: int, train_size: int, spec: str) -> dict:
    data = load_dataset(data_name)
    train_set, test_set = balanced_split(data, train_size, seed)
    labels = data.classes
    y_train = np.array([labels.index(label) for label in train_set.labels])
    y_test = np.array([labels.index(label) for label in test_set.labels])
    name, params = parse_config(spec)
    if "seed" in make_strategy(name).defaults:
        params.setdefault("seed", seed)
    strategy = make_strategy(name, **params)
    start = time.perf_counter()
    strategy.fit(train_set.texts, y_train, len(labels))
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    proba = strategy.predict_proba(test_set.texts)
    predict_seconds = time.perf_counter() - start
    report = getattr(strategy, "report_", None)
    out = {
        "data": data_name,
        "seed": seed,
        "config": spec,
        "train_size": len(train_set),
        "test_size": len(test_set),
        "test_accuracy": float((proba.argmax(1) == y_test).mean()),
        "fit_seconds": fit_seconds,
        "predict_texts_per_second": len(test_set) / predict_seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if report is not None:
        run = report.to_dict()
        out.update(
            {
                "val_accuracy": run["val_accuracy"],
                "train_accuracy": run["train_accuracy"],
                "best_epoch": run["best_epoch"],
                "stopped": run["stopped"],
                "flags": run["flags"],
                "restarts": run["restarts"],
                "truncated": run["truncated"],
                "cache_seconds": run["cache_seconds"],
                "history": run["history"],
            }
        )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", nargs="+", default=["blitzer_books", "blitzer_dvd"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--train-size", type=int, default=500)
    parser.add_argument("--configs", nargs="+", default=["finetune:backbone=minilm"])
    parser.add_argument("--verbose", action="store_true", help="log every evaluation of fine-tuning runs")
    args = parser.parse_args(argv)
    progress.set_enabled(False)
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    runs = []
    for data_name in args.data:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for spec in args.configs:
                run = run_one(data_name, seed, args.train_size, spec)
                runs.append(run)
                print(
                    f"{data_name:14} seed {seed} {spec:45} test {run['test_accuracy']:.1%} "
                    f"val {run.get('val_accuracy', float('nan')):.1%} train {run.get('train_accuracy', float('nan')):.1%} "
                    f"fit {run['fit_seconds']:.0f}s best@{run.get('best_epoch', 0):.1f} {run.get('stopped', '')} "
                    f"{'FLAGGED ' + run['flags'][0][:40] if run.get('flags') else ''}",
                    flush=True,
                )
    print()
    print(f"{'data':14} {'config':45} {'test mean':>9} {'std':>5} {'fit s':>6}")
    summary = []
    for data_name in args.data:
        for spec in args.configs:
            rows = [r for r in runs if r["data"] == data_name and r["config"] == spec]
            acc = np.array([r["test_accuracy"] for r in rows])
            secs = np.mean([r["fit_seconds"] for r in rows])
            summary.append(
                {
                    "data": data_name,
                    "config": spec,
                    "mean": acc.mean(),
                    "std": acc.std(ddof=1) if len(acc) > 1 else 0.0,
                    "fit_seconds": secs,
                    "n": len(acc),
                }
            )
            print(f"{data_name:14} {spec:45} {acc.mean():9.1%} {summary[-1]['std'] * 100:5.1f} {secs:6.0f}")
    path = write_json("finetune", {**run_record("finetune", argv), "runs": runs, "summary": summary})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
