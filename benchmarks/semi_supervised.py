"""Does self-training on unlabelled texts help? 500 labels + the rest of the pool unlabelled vs 500 alone.

For each data set and seed: a class-balanced test set is held back (300 per class by default); from
the rest, a class-balanced sample of 500 is labelled and every other text is used without its label.
The strategy is fitted on the 500 alone, and by `fewlabel.strategies.self_training.self_train`; both are
scored on the test texts, which neither saw.

    python -m benchmarks.semi_supervised --data blitzer_books blitzer_dvd --strategy tfidf embed --seeds 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.common import load_dataset, run_record, write_json
from fewlabel import progress
from fewlabel.strategies import get_strategy_class, make_strategy
from fewlabel.strategies.self_training import self_train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", nargs="+", default=["blitzer_books", "blitzer_dvd"])
    parser.add_argument("--strategy", nargs="+", default=["tfidf", "embed"])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--labelled", type=int, default=500)
    parser.add_argument("--test-per-class", type=int, default=300)
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--per-class",
        default=None,
        help="pseudo-labels added per class and round: a number, or 'all' (every confident one, balanced); "
        "default: the smallest labelled class. `train --unlabelled` uses --rounds 1 --per-class all for "
        "fine-tuning.",
    )
    args = parser.parse_args(argv)
    progress.set_enabled(False)
    rows = []
    print(
        f"{'data':<14}{'strategy':<10}{'seed':>5}{'unlab.':>8}{'plain':>9}{'self-tr.':>10}{'diff':>7}{'pseudo':>8}{'pseudo acc':>11}"
    )
    for name in args.data:
        data = load_dataset(name)
        index = {c: i for i, c in enumerate(data.classes)}
        y_all = np.array([index[lab] for lab in data.labels])
        for strategy in args.strategy:
            defaults = get_strategy_class(strategy).defaults
            params = {"backbone": args.model} if "backbone" in defaults else {}
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                rng = np.random.default_rng(seed)
                by_class = [rng.permutation(np.flatnonzero(y_all == c)) for c in index.values()]
                per = args.labelled // len(by_class)
                test = np.concatenate([m[: args.test_per_class] for m in by_class])
                labelled = np.concatenate(
                    [m[args.test_per_class : args.test_per_class + per] for m in by_class]
                )
                pool = np.setdiff1d(np.arange(len(y_all)), np.concatenate([test, labelled]))
                texts = [data.texts[i] for i in labelled]
                unlabelled = [data.texts[i] for i in pool]
                test_texts = [data.texts[i] for i in test]
                n_classes = len(index)
                start = time.perf_counter()
                plain = make_strategy(strategy, **params).fit(texts, y_all[labelled], n_classes)
                plain_seconds = time.perf_counter() - start
                plain_acc = float((plain.predict_proba(test_texts).argmax(1) == y_all[test]).mean())
                start = time.perf_counter()
                result = self_train(
                    lambda s=strategy, p=params: make_strategy(s, **p),
                    texts,
                    y_all[labelled],
                    unlabelled,
                    n_classes,
                    threshold=args.threshold,
                    rounds=args.rounds,
                    teacher=plain,  # the same fit: reused, not repeated
                    per_class=(
                        len(unlabelled)
                        if args.per_class == "all"
                        else (int(args.per_class) if args.per_class else None)
                    ),
                )
                seconds = time.perf_counter() - start
                st_acc = float((result.strategy.predict_proba(test_texts).argmax(1) == y_all[test]).mean())
                pseudo_acc = (
                    float((result.pseudo_labels == y_all[pool[result.pseudo_index]]).mean())
                    if len(result.pseudo_index)
                    else float("nan")
                )
                rows.append(
                    {
                        "data": name,
                        "strategy": strategy,
                        "seed": seed,
                        "labelled": len(labelled),
                        "unlabelled": len(pool),
                        "test_size": len(test),
                        "plain_accuracy": plain_acc,
                        "self_training_accuracy": st_acc,
                        "pseudo_labels": len(result.pseudo_index),
                        "pseudo_label_accuracy": pseudo_acc,
                        "added_per_round": result.added_per_round,
                        "plain_seconds": plain_seconds,
                        "self_training_seconds": plain_seconds + seconds,  # the teacher is the plain fit
                    }
                )
                print(
                    f"{name:<14}{strategy:<10}{seed:>5}{len(pool):>8}{100 * plain_acc:>8.1f}%{100 * st_acc:>9.1f}%"
                    f"{100 * (st_acc - plain_acc):>+7.1f}{len(result.pseudo_index):>8}{100 * pseudo_acc:>10.1f}%"
                    f"{plain_seconds:>7.0f}s{seconds:>7.0f}s",
                    flush=True,
                )
    print()
    summary = []
    for name in args.data:
        for strategy in args.strategy:
            rs = [r for r in rows if r["data"] == name and r["strategy"] == strategy]
            plain = np.array([r["plain_accuracy"] for r in rs])
            st = np.array([r["self_training_accuracy"] for r in rs])
            summary.append(
                {
                    "data": name,
                    "strategy": strategy,
                    "plain_mean": float(plain.mean()),
                    "plain_std": float(plain.std()),
                    "self_training_mean": float(st.mean()),
                    "self_training_std": float(st.std()),
                    "diff_mean": float((st - plain).mean()),
                    "diff_std": float((st - plain).std()),
                }
            )
            print(
                f"{name:<14}{strategy:<10} plain {100 * plain.mean():.1f} +- {100 * plain.std():.1f}, "
                f"self-training {100 * st.mean():.1f} +- {100 * st.std():.1f}, "
                f"difference {100 * (st - plain).mean():+.1f} +- {100 * (st - plain).std():.1f} points over {len(rs)} seeds"
            )
    path = write_json(
        "semi_supervised",
        {**run_record("semi_supervised", argv), "settings": vars(args), "summary": summary, "runs": rows},
    )
    print(f"\nWrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
