"""Simulated labelling: do `fewlabel suggest`'s picks reach a given accuracy with fewer labels than random?

For each data set and seed: a class-balanced test set is held back; the rest is the pool, whose labels
are hidden until "labelled". All arms start from the same random seed set (50 texts) and add batches
(50) until 500 labels:

- random: the next batch is drawn at random from the pool;
- suggest: the batch `fewlabel suggest` would choose (uncertainty prefilter + weighted k-means);
- uncertainty: the most uncertain texts only (plain uncertainty sampling, for comparison).

After each batch the strategy is refitted on the labels so far and scored on the test set. The
question: with how many suggested labels does the strategy reach the accuracy 500 random labels give?

    python -m benchmarks.active_learning --data uci_amazon cr --strategy embed tfidf --seeds 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.common import load_dataset, run_record, write_json
from fewlabel import progress
from fewlabel.data.labelled import LabelledTexts
from fewlabel.inference.suggest import PREFILTER, lsa_vectors, select_batch
from fewlabel.strategies import make_strategy


def arms(prefilters: list[int]) -> dict[str, int | None]:
    """The compared arms: random, `suggest` at each prefilter (its default unnamed), plain uncertainty."""
    out: dict[str, int | None] = {"random": None}
    for k in prefilters:
        out["suggest" if k == PREFILTER else f"suggest-{k}"] = k
    out["uncertainty"] = 1
    return out


ARMS = arms([PREFILTER])  # arm -> prefilter (None: random)


def split(data: LabelledTexts, seed: int, test_per_class: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pool indices, test indices (balanced, ``test_per_class`` of each class) and labels as ints."""
    rng = np.random.default_rng(seed)
    index = {c: i for i, c in enumerate(data.classes)}
    y = np.array([index[lab] for lab in data.labels])
    test = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:test_per_class] for c in index.values()])
    pool = np.setdiff1d(np.arange(len(y)), test)
    return pool, np.sort(test), y


def simulate(
    data: LabelledTexts,
    strategy: str,
    model: str,
    seed: int,
    test_per_class: int,
    seed_size: int,
    batch: int,
    max_labels: int,
    compared: dict[str, int | None] = ARMS,
) -> dict[str, list[dict]]:
    pool, test, y = split(data, seed, test_per_class)
    texts = data.texts
    test_texts = [texts[i] for i in test]
    n_classes = len(data.classes)
    params = {"backbone": model} if strategy in ("embed", "ensemble") else {}
    probe = make_strategy(strategy, **params)
    if hasattr(probe, "embed"):
        vectors = probe.embed([texts[i] for i in pool])  # the backbone's view, as `suggest` uses it
    else:
        vectors = lsa_vectors([texts[i] for i in pool], seed=seed)
    rng = np.random.default_rng(seed + 1)
    start = rng.choice(len(pool), size=seed_size, replace=False)  # positions in pool
    random_order = np.concatenate([start, rng.permutation(np.setdiff1d(np.arange(len(pool)), start))])
    curves: dict[str, list[dict]] = {}
    for arm, prefilter in compared.items():
        labelled = list(start)
        points = []
        while True:
            fitted = make_strategy(strategy, **params).fit(
                [texts[pool[i]] for i in labelled], y[pool[labelled]], n_classes
            )
            acc = float((fitted.predict_proba(test_texts).argmax(1) == y[test]).mean())
            points.append({"labels": len(labelled), "test_accuracy": acc})
            if len(labelled) >= max_labels:
                break
            step = min(batch, max_labels - len(labelled))
            if prefilter is None:
                labelled = list(random_order[: len(labelled) + step])
                continue
            rest = np.setdiff1d(np.arange(len(pool)), labelled)
            proba = fitted.predict_proba([texts[pool[i]] for i in rest])
            picks = select_batch(proba, vectors[rest], step, seed=seed, prefilter=prefilter)
            labelled.extend(int(rest[s.index]) for s in picks)
        curves[arm] = points
    return curves


def labels_to_reach(points: list[dict], target: float) -> int | None:
    """The fewest labels at which a curve reaches ``target`` (None if it never does)."""
    for p in points:
        if p["test_accuracy"] >= target:
            return int(p["labels"])
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", nargs="+", default=["uci_amazon", "cr"])
    parser.add_argument("--strategy", nargs="+", default=["embed"])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run from here (default 0)")
    parser.add_argument(
        "--prefilter",
        type=int,
        nargs="+",
        default=[PREFILTER],
        help=f"suggest's candidates per label to compare (default {PREFILTER}, the shipped setting)",
    )
    parser.add_argument("--seed-size", type=int, default=50)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--max-labels", type=int, default=500)
    parser.add_argument(
        "--test-per-class", type=int, default=300, help="test texts per class (at most a quarter of a class)"
    )
    args = parser.parse_args(argv)
    progress.set_enabled(False)
    compared = arms(args.prefilter)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    results = []
    for name in args.data:
        data = load_dataset(name)
        smallest = min(data.class_counts().values())
        test_per_class = min(args.test_per_class, smallest // 4)
        for strategy in args.strategy:
            started = time.perf_counter()
            runs = [
                simulate(
                    data,
                    strategy,
                    args.model,
                    seed,
                    test_per_class,
                    args.seed_size,
                    args.batch,
                    args.max_labels,
                    compared,
                )
                for seed in seeds
            ]
            sizes = [p["labels"] for p in runs[0]["random"]]
            mean = {
                arm: [float(np.mean([r[arm][k]["test_accuracy"] for r in runs])) for k in range(len(sizes))]
                for arm in compared
            }
            std = {
                arm: [float(np.std([r[arm][k]["test_accuracy"] for r in runs])) for k in range(len(sizes))]
                for arm in compared
            }
            target = mean["random"][-1]
            reach = {
                arm: labels_to_reach(
                    [{"labels": s, "test_accuracy": a} for s, a in zip(sizes, mean[arm], strict=True)], target
                )
                for arm in compared
            }
            per_seed_target = [r["random"][-1]["test_accuracy"] for r in runs]
            per_seed_reach = {
                arm: [labels_to_reach(r[arm], t) for r, t in zip(runs, per_seed_target, strict=True)]
                for arm in compared
            }
            pool_size = len(data) - test_per_class * len(data.classes)
            print(
                f"\n{name} ({pool_size} in the pool, {test_per_class * len(data.classes)} balanced test texts), "
                f"{strategy} ({args.model if strategy != 'tfidf' else 'no backbone'}), {args.seeds} seeds: "
                f"(first seed {args.first_seed}): test accuracy, mean +- std"
            )
            print(f"{'labels':>7}" + "".join(f"{arm:>18}" for arm in compared))
            for k, size in enumerate(sizes):
                print(
                    f"{size:>7}"
                    + "".join(f"{100 * mean[arm][k]:>11.1f} +- {100 * std[arm][k]:3.1f}" for arm in compared)
                )
            print(
                f"Random at {sizes[-1]} labels: {100 * target:.1f}%. Labels to reach it (mean curve): "
                + ", ".join(f"{arm} {reach[arm] if reach[arm] is not None else 'never'}" for arm in compared)
                + ". Per seed: "
                + "; ".join(f"{arm} {per_seed_reach[arm]}" for arm in compared)
                + f". {time.perf_counter() - started:.0f}s."
            )
            results.append(
                {
                    "data": name,
                    "strategy": strategy,
                    "backbone": args.model if strategy != "tfidf" else None,
                    "pool_size": pool_size,
                    "test_size": test_per_class * len(data.classes),
                    "labels": sizes,
                    "mean": mean,
                    "std": std,
                    "random_at_max": target,
                    "labels_to_reach_random_at_max": reach,
                    "labels_to_reach_per_seed": per_seed_reach,
                    "runs": runs,
                }
            )
    path = write_json(
        "active_learning",
        {**run_record("active_learning", argv), "settings": vars(args), "results": results},
    )
    print(f"\nWrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
