"""Does ``embed``'s fixed regularisation (C=4) leave accuracy behind on a backbone's frozen features?

For each data set and seed, the same 500-row class-balanced splits as the other tables; ``embed``'s
head (logistic regression, balanced class weights) fitted with each C of a grid and scored on the
test rows, and once with C chosen by 5-fold cross-validation on the training rows only (ties go to
the C nearest 4). Embeddings come from fewlabel's cache (encoded now when missing).

    FEWLABEL_HOME=<home with embeddinggemma> python -m benchmarks.embed_c_grid --backbone embeddinggemma
"""

from __future__ import annotations

import argparse
import math
import os

import numpy as np
from sklearn.model_selection import StratifiedKFold

from benchmarks.common import balanced_split, load_dataset, run_record, write_json
from fewlabel import progress
from fewlabel.encoders.backbones import resolve
from fewlabel.encoders.sentence import Encoder
from fewlabel.strategies.linear import fit_head

GRID = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


def accuracy(X_train, y_train, X_test, y_test, n_classes: int, C: float) -> float:
    return float(np.mean(fit_head(X_train, y_train, n_classes, C, "balanced").predict(X_test) == y_test))


def chosen_by_cv(X, y, n_classes: int, seed: int) -> float:
    folds = list(StratifiedKFold(5, shuffle=True, random_state=seed).split(X, y))
    scores = {C: np.mean([accuracy(X[a], y[a], X[b], y[b], n_classes, C) for a, b in folds]) for C in GRID}
    return max(GRID, key=lambda C: (scores[C], -abs(math.log(C / 4))))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", nargs="+", default=["uci_amazon", "cr", "blitzer_books", "blitzer_dvd"])
    parser.add_argument("--backbone", default="embeddinggemma")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    progress.set_enabled(False)
    record = run_record("embed_c_grid", argv)
    record.update(
        {"backbone": args.backbone, "grid": GRID, "load_average_start": os.getloadavg()[0], "rows": []}
    )
    encoder = Encoder(resolve(args.backbone), cache=True)
    print("| data | " + " | ".join(f"C={C:g}" for C in GRID) + " | C by CV |")
    print("|---|" + "---:|" * (len(GRID) + 1))
    for name in args.data:
        data = load_dataset(name)
        classes = sorted(set(data.labels))
        for seed in range(args.seeds):
            train_set, test_set = balanced_split(data, 500, seed=seed)
            X_train, X_test = encoder.encode(train_set.texts, False), encoder.encode(test_set.texts, False)
            y_train = np.array([classes.index(label) for label in train_set.labels])
            y_test = np.array([classes.index(label) for label in test_set.labels])
            row = {"data": name, "seed": seed}
            for C in GRID:
                row[f"C={C:g}"] = accuracy(X_train, y_train, X_test, y_test, len(classes), C)
            best = chosen_by_cv(X_train, y_train, len(classes), seed)
            row.update({"cv_chosen_C": best, "cv_chosen": row[f"C={best:g}"]})
            record["rows"].append(row)
        rows = [r for r in record["rows"] if r["data"] == name]
        means = [100 * np.mean([r[f"C={C:g}"] for r in rows]) for C in GRID]
        chosen = 100 * np.mean([r["cv_chosen"] for r in rows])
        print(f"| {name} | " + " | ".join(f"{m:.1f}" for m in means) + f" | {chosen:.1f} |", flush=True)
    print(f"wrote {write_json('embed_c_grid', record)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
