"""Imbalanced training data: does the default ``fewlabel train`` still find the rare class?

For each data set and seed: 400 training texts, 95% of them of the majority class (``positive``) and
5% of the other, drawn at random; every remaining text of the set, class-balanced, is the test set.
The default ``train`` (auto, best backbone) runs on the 400; its final model is scored on the test
texts by balanced accuracy (mean per-class recall) and per-class recall, and its own reported
interval is checked against that figure. Each cross-validated strategy's macro-F1 (out of fold) is
recorded too. One JSON file, rewritten after every run.

    python -m benchmarks.imbalanced --data uci_amazon cr --seeds 3

The same command on an older checkout measures the "before" (it reads only what both versions have).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from benchmarks.common import RESULTS, load_dataset, run_record, subset
from fewlabel import progress
from fewlabel.atomic import write_json
from fewlabel.config import TrainConfig
from fewlabel.data.labelled import LabelledTexts
from fewlabel.training import train


def split(y: np.ndarray, majority: int, seed: int, n_train: int, minority_share: float):
    """Training rows (``minority_share`` of them not of class ``majority``) and balanced test rows."""
    rng = np.random.default_rng(seed)
    n_minority = round(n_train * minority_share)
    by_class = {c: rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)}
    minority = [c for c in by_class if c != majority]
    train_rows = [by_class[majority][: n_train - n_minority]]
    for i, c in enumerate(minority):
        share = n_minority // len(minority) + (1 if i < n_minority % len(minority) else 0)
        train_rows.append(by_class[c][:share])
    used = {c: len(r) for c, r in zip([majority, *minority], train_rows, strict=True)}
    rest = {c: by_class[c][used[c] :] for c in by_class}
    n_test = min(len(r) for r in rest.values())
    test_rows = np.concatenate([r[:n_test] for r in rest.values()])
    return np.sort(np.concatenate(train_rows)), np.sort(test_rows)


def balanced_accuracy(truth: np.ndarray, pred: np.ndarray, n_classes: int) -> tuple[float, list[float]]:
    recalls = [float((pred[truth == c] == c).mean()) for c in range(n_classes) if (truth == c).any()]
    return float(np.mean(recalls)), recalls


def run_one(data: LabelledTexts, rows: np.ndarray, test: np.ndarray, seed: int) -> dict:
    labelled = subset(data, rows)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    result = train(labelled, None, TrainConfig(seed=seed))
    seconds = time.perf_counter() - start
    index = {c: i for i, c in enumerate(result.labels)}
    truth = np.array([index[data.labels[i]] for i in test])
    test_texts = [data.texts[i] for i in test]
    model = getattr(result, "model", None)  # newer versions: the calibrated model with its decision rule
    if model is not None:
        predicted, _ = model.predict(test_texts)
        pred = np.array([index[p] for p in predicted])
    else:
        pred = result.strategy.predict_proba(test_texts).argmax(1)
    bal, recalls = balanced_accuracy(truth, pred, len(index))
    expected = result.expected
    strategies = {}
    for name, r in result.results.items():
        scores = getattr(r, "final", r.scores)  # as the results table shows it (a tuned threshold, if any)
        strategies[name] = {
            "protocol": r.protocol,
            "accuracy": scores.accuracy.value,
            "macro_f1": scores.macro_f1.value,
            "balanced_accuracy": getattr(getattr(scores, "balanced_accuracy", None), "value", None),
            "tuned_threshold": getattr(r, "decided", None) is not None,
            "macro_f1_most_probable_class": r.scores.macro_f1.value,
        }
    return {
        "chosen": result.chosen,
        "backbone": getattr(result.strategy, "fitted", result.strategy).params.get("backbone"),
        "test_balanced_accuracy": bal,
        "test_recall": dict(zip(result.labels, recalls, strict=True)),
        "test_accuracy": float((pred == truth).mean()),
        "one_class_for_every_text": bool(len(np.unique(pred)) == 1),
        "reported": expected.headline().model_dump(),
        "interval_contains_test": bool(expected.ci95_low <= bal <= expected.ci95_high),
        "interval_width": expected.ci95_high - expected.ci95_low,
        "threshold": getattr(result, "threshold", None),
        "strategies": strategies,
        "warnings": list(result.warnings),
        "seconds": seconds,
        "load_1min_at_start": load,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", nargs="+", default=["uci_amazon", "cr"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--train-size", type=int, default=400)
    parser.add_argument("--minority-share", type=float, default=0.05)
    parser.add_argument("--majority", default="positive")
    parser.add_argument("--tag", default="", help="added to the result file name (e.g. before)")
    args = parser.parse_args(argv)
    progress.set_enabled(False)
    record = {**run_record("imbalanced", argv), "rows": []}
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = RESULTS / f"imbalanced-{stamp}{'-' + args.tag if args.tag else ''}.json"
    print(
        f"{'data':<12}{'seed':>5}  {'chosen':<22}{'test bal.':>10}{'reported (95% CI)':>26}  in  cv macro-F1"
    )
    for name in args.data:
        data = load_dataset(name)
        classes = {c: i for i, c in enumerate(data.classes)}
        y = np.array([classes[lab] for lab in data.labels])
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            rows, test = split(y, classes[args.majority], seed, args.train_size, args.minority_share)
            run = run_one(data, rows, test, seed)
            record["rows"].append(
                {"data": name, "seed": seed, "train_size": len(rows), "test_size": len(test), **run}
            )
            write_json(out, record)
            rep = run["reported"]
            f1s = " ".join(
                f"{k}={v['macro_f1']:.2f}" for k, v in run["strategies"].items() if v["protocol"] == "cv"
            )
            print(
                f"{name:<12}{seed:>5}  {run['chosen'] + '/' + str(run['backbone']):<22}"
                f"{run['test_balanced_accuracy']:>10.3f}"
                f"{rep['value']:>10.3f} ({rep['ci95_low']:.3f}-{rep['ci95_high']:.3f})"
                f"  {'yes' if run['interval_contains_test'] else 'NO '} {f1s}",
                flush=True,
            )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
