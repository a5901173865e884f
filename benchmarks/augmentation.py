"""Does EDA augmentation of the training texts help? Each strategy with and without, on held-out data.

For each data set and seed: a class-balanced training sample (500 by default) and the remaining
rows, class-balanced, as the test set (`benchmarks.common.balanced_split`). The strategy is fitted on
the training texts alone, and on the training texts plus ``n_aug`` EDA variants of each
(`fewlabel.strategies.augment.Augmented`); both are scored on the same test texts.

    python -m benchmarks.augmentation --data uci_amazon cr --strategy tfidf embed --seeds 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.common import balanced_split, load_dataset, run_record, write_json
from fewlabel import progress
from fewlabel.strategies import make_strategy
from fewlabel.strategies.augment import Augmented


def accuracy(strategy, train, test) -> float:
    classes = train.classes
    index = {c: i for i, c in enumerate(classes)}
    y_train = np.array([index[lab] for lab in train.labels])
    y_test = np.array([index[lab] for lab in test.labels])
    strategy.fit(train.texts, y_train, len(classes))
    return float((strategy.predict_proba(test.texts).argmax(1) == y_test).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", nargs="+", default=["uci_amazon", "cr"])
    parser.add_argument("--strategy", nargs="+", default=["tfidf", "embed"])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=500)
    parser.add_argument("--n-aug", type=int, default=4)
    parser.add_argument("--alpha", type=float, default=0.1)
    args = parser.parse_args(argv)
    progress.set_enabled(False)
    rows = []
    print(f"{'data':<14}{'strategy':<10}{'seed':>5}{'plain':>9}{'EDA':>9}{'diff':>8}{'EDA s':>8}")
    for name in args.data:
        data = load_dataset(name)
        for strategy in args.strategy:
            params = {"backbone": args.model} if strategy in ("embed", "ensemble") else {}
            for seed in range(args.seeds):
                train, test = balanced_split(data, args.train_size, seed)
                plain = accuracy(make_strategy(strategy, **params), train, test)
                start = time.perf_counter()
                wrapped = Augmented(
                    strategy=strategy, strategy_params=params, n_aug=args.n_aug, alpha=args.alpha, seed=seed
                )
                augmented = accuracy(wrapped, train, test)
                seconds = time.perf_counter() - start
                rows.append(
                    {
                        "data": name,
                        "strategy": strategy,
                        "seed": seed,
                        "train_size": len(train),
                        "test_size": len(test),
                        "plain_accuracy": plain,
                        "eda_accuracy": augmented,
                        "eda_seconds": seconds,
                    }
                )
                print(
                    f"{name:<14}{strategy:<10}{seed:>5}{100 * plain:>8.1f}%{100 * augmented:>8.1f}%"
                    f"{100 * (augmented - plain):>+7.1f}{seconds:>8.1f}",
                    flush=True,
                )
    print()
    summary = []
    for name in args.data:
        for strategy in args.strategy:
            rs = [r for r in rows if r["data"] == name and r["strategy"] == strategy]
            plain = np.array([r["plain_accuracy"] for r in rs])
            eda = np.array([r["eda_accuracy"] for r in rs])
            diff = eda - plain
            summary.append(
                {
                    "data": name,
                    "strategy": strategy,
                    "plain_mean": float(plain.mean()),
                    "plain_std": float(plain.std()),
                    "eda_mean": float(eda.mean()),
                    "eda_std": float(eda.std()),
                    "diff_mean": float(diff.mean()),
                    "diff_std": float(diff.std()),
                    "seeds": len(rs),
                }
            )
            print(
                f"{name:<14}{strategy:<10} plain {100 * plain.mean():.1f} +- {100 * plain.std():.1f}, "
                f"EDA {100 * eda.mean():.1f} +- {100 * eda.std():.1f}, "
                f"difference {100 * diff.mean():+.1f} +- {100 * diff.std():.1f} points over {len(rs)} seeds"
            )
    path = write_json(
        "augmentation",
        {**run_record("augmentation", argv), "settings": vars(args), "summary": summary, "runs": rows},
    )
    print(f"\nWrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
