"""How long ``setfit/default`` would take on this machine, from a few of its steps.

With 500 texts the setfit library's default settings train for one epoch over every pair the
"oversampling" strategy draws: ~125,000 pairs, ~7,800 steps. Too long to run on every split here,
so this times the same adapter the harness uses (``benchmarks.systems.SetFit``, default settings)
stopped after ``--short`` and after ``--long`` steps on one split; the difference gives seconds per
step without loading and the logistic-regression head (a 1-step fit first takes the one-time
costs of the first fit in a process), and the projection is
``time(short) + (full steps - short) * seconds per step``.

    python -m benchmarks.setfit_steps --data uci_amazon blitzer_books
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from benchmarks.common import balanced_split, load_dataset, run_record, write_json
from benchmarks.systems import SETFIT_SETTINGS, SetFit


def full_steps(labels: list[int], batch_size: int = 16) -> int:
    """Steps of one default setfit epoch: every pair its "oversampling" strategy draws, in batches."""
    from setfit.sampler import ContrastiveDataset

    pairs = ContrastiveDataset(
        ["x"] * len(labels), labels, multilabel=False, sampling_strategy="oversampling"
    )
    return math.ceil(len(pairs) / batch_size)


def timed_fit(texts: list[str], y: np.ndarray, n_classes: int, seed: int, backbone: str, steps: int) -> float:
    adapter = SetFit(seed, backbone, "default")
    adapter.settings = {**SETFIT_SETTINGS["default"], "max_steps": steps}
    start = time.perf_counter()
    adapter.fit(texts, y, n_classes)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["uci_amazon"])
    parser.add_argument("--train-size", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backbone", default="minilm")
    parser.add_argument("--short", type=int, default=10)
    parser.add_argument("--long", type=int, default=40)
    args = parser.parse_args(argv)
    if not 0 < args.short < args.long:
        parser.error("--short must be positive and below --long")

    rows = []
    print(f"{'data':14} {'full steps':>10} {'s/step':>7} {'projected h':>11}")
    for name in args.data:
        data = load_dataset(name)
        train, _ = balanced_split(data, args.train_size, args.seed)
        index = {label: i for i, label in enumerate(data.classes)}
        y = np.array([index[label] for label in train.labels])
        fit = [train.texts, y, len(data.classes), args.seed, args.backbone]
        timed_fit(*fit, 1)  # warm-up, not counted
        short, long = timed_fit(*fit, args.short), timed_fit(*fit, args.long)
        per_step = (long - short) / (args.long - args.short)
        steps = full_steps(y.tolist())
        projected = short + (steps - args.short) * per_step
        rows.append({
            "data": name, "seed": args.seed, "full_steps": steps, "short_steps": args.short,
            "short_seconds": short, "long_steps": args.long, "long_seconds": long,
            "seconds_per_step": per_step, "projected_seconds": projected,
        })  # fmt: skip
        print(f"{name:14} {steps:>10} {per_step:>7.2f} {projected / 3600:>11.1f}", flush=True)
    path = write_json("setfit_steps", {**run_record("setfit_steps", argv), "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
