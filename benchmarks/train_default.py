"""Benchmark ``fewlabel train`` with default settings on real data: test accuracy versus the estimate.

For each data set and seed: a class-balanced training sample (500 by default), the remaining rows as
a class-balanced test set; ``train`` with its defaults; then the saved model on the test rows.

    python -m benchmarks.train_default --data uci_amazon cr --seeds 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, balanced_split, load_dataset, run_record, write_json
from fewlabel import progress
from fewlabel.config import TrainConfig
from fewlabel.encoders.backbones import fewlabel_home
from fewlabel.inference.loading import load_model
from fewlabel.training import train


def cold_embedding_cache() -> None:
    """Time training as a first run would: a fresh embedding cache, the assembled models kept."""
    home = fewlabel_home()
    fresh = Path(tempfile.mkdtemp(prefix="fewlabel-bench-"))
    if (home / "models").exists():
        (fresh / "models").symlink_to(home / "models")
    os.environ["FEWLABEL_HOME"] = str(fresh)


def run_one(
    name: str,
    seed: int,
    train_size: int,
    model: str,
    strategy: str,
    in_memory: bool = False,
    engine: bool = True,
) -> dict:
    data = load_dataset(name)
    train_set, test_set = balanced_split(data, train_size, seed)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = train(
            train_set,
            f"{tmp}/model",
            TrainConfig(seed=seed, model=model, strategy=strategy, choose_engine=engine),
        )
        train_seconds = time.perf_counter() - start
        # --in-memory: the trained model as evaluated (float32, embedding cache on), so test texts
        # encoded for one seed or strategy are not encoded again; else the saved model as loaded.
        model_obj = result.model if in_memory else load_model(f"{tmp}/model")
        start = time.perf_counter()
        predicted, _ = model_obj.predict(test_set.texts)
        predict_seconds = time.perf_counter() - start
    test_acc = float(np.mean([p == t for p, t in zip(predicted, test_set.labels, strict=True)]))
    exp = result.expected  # what fewlabel reports to the user: the saved model's expected accuracy
    return {
        "data": name,
        "seed": seed,
        "train_size": len(train_set),
        "test_size": len(test_set),
        "backbone": result.config.model,
        "chosen": result.chosen,
        "choices_per_fold": result.evaluation.choices,
        "cv_accuracy": exp.value,
        "cv_ci95": [exp.ci95_low, exp.ci95_high],
        "raw_cv_accuracy": exp.cv_accuracy,
        "chosen_backbone": result.strategy.params.get("backbone"),
        "estimate_source": result.estimate_source(),
        "notes": result.notes,
        "warnings": result.warnings,
        "test_accuracy": test_acc,
        "predicted_with": "the in-memory model (float32, cached embeddings)"
        if in_memory
        else "the saved model",
        "prediction_engine": result.prediction.engine if result.prediction else None,
        "test_in_ci": bool(exp.ci95_low <= test_acc <= exp.ci95_high),
        "train_seconds": train_seconds,
        "predict_texts_per_second": len(test_set) / predict_seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", nargs="+", default=["uci_amazon", "cr"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=500)
    parser.add_argument("--model", default="best")
    parser.add_argument("--strategy", default="auto")
    parser.add_argument("--warm-cache", action="store_true", help="keep the embedding cache (default: cold)")
    parser.add_argument(
        "--in-memory",
        action="store_true",
        help="score the in-memory model (float32, embedding cache on) instead of loading the saved one: "
        "with a slow backbone each test text is encoded once over all seeds and runs",
    )
    parser.add_argument(
        "--no-engine",
        action="store_true",
        help="skip choosing the prediction engine at the end of training (accuracy is the same; saves "
        "about a minute a run with embeddinggemma)",
    )
    args = parser.parse_args(argv)
    progress.set_enabled(False)
    if not args.warm_cache:
        cold_embedding_cache()
    runs = []
    partial = RESULTS / f"train_default-partial-{os.getpid()}.json"  # the runs so far, kept if stopped
    RESULTS.mkdir(parents=True, exist_ok=True)
    print(
        f"{'data':<14}{'seed':>5}{'chosen':>18}{'CV acc':>9}{'95% CI':>16}{'test acc':>10}{'in CI':>7}{'train s':>9}"
    )
    for name in args.data:
        for seed in range(args.seeds):
            r = run_one(
                name, seed, args.train_size, args.model, args.strategy, args.in_memory, not args.no_engine
            )
            runs.append(r)
            partial.write_text(json.dumps({**run_record("train_default", argv), "runs": runs}, indent=2))
            ci = f"{100 * r['cv_ci95'][0]:.1f}-{100 * r['cv_ci95'][1]:.1f}"
            print(
                f"{name:<14}{seed:>5}{r['chosen'] + '/' + str(r['chosen_backbone']):>18}{100 * r['cv_accuracy']:>8.1f}%{ci:>16}"
                f"{100 * r['test_accuracy']:>9.1f}%{'yes' if r['test_in_ci'] else 'no':>7}{r['train_seconds']:>9.1f}",
                flush=True,
            )
    print()
    summary = {}
    for name in args.data:
        rs = [r for r in runs if r["data"] == name]
        acc = [r["test_accuracy"] for r in rs]
        summary[name] = {
            "test_accuracy_mean": float(np.mean(acc)),
            "test_accuracy_std": float(np.std(acc, ddof=1)) if len(acc) > 1 else 0.0,
            "in_ci": sum(r["test_in_ci"] for r in rs),
            "runs": len(rs),
            "train_seconds_mean": float(np.mean([r["train_seconds"] for r in rs])),
        }
        s = summary[name]
        print(
            f"{name:<14} test accuracy {100 * s['test_accuracy_mean']:.1f}% +- {100 * s['test_accuracy_std']:.1f} "
            f"over {s['runs']} seeds; test inside the CV 95% CI in {s['in_ci']}/{s['runs']}; "
            f"train {s['train_seconds_mean']:.0f}s mean"
        )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    path = write_json(
        "train_default",
        {
            **run_record("train_default", argv),
            "peak_rss_mb": peak_mb,
            "runs": runs,
            "summary": summary,
        },
    )
    partial.unlink(missing_ok=True)
    print(f"peak RSS {peak_mb:.0f} MB; wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
