"""Benchmark prediction speed and accuracy of a ``minilm`` model: PyTorch versus exported ONNX.

Trains ``embed`` on ``minilm`` (500 class-balanced reviews of the short data set), exports ONNX
float32 and int8 copies, then times ``TrainedModel.predict`` on short test sentences and on long
reviews (model loading excluded) and compares accuracy on the labelled test rows.

    python -m benchmarks.predict_throughput --short uci_amazon --long blitzer_books
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import balanced_split, load_dataset, run_record, write_json
from fewlabel import progress
from fewlabel.config import TrainConfig
from fewlabel.inference.export import export_onnx
from fewlabel.inference.loading import load_model
from fewlabel.training import train


def measure(model_dir: Path, engine: str, texts: list[str], labels: list[str] | None, repeats: int) -> dict:
    model = load_model(model_dir, engine=engine)
    model.predict(texts[:32])  # warm-up: first-call allocations and thread pools
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        predicted, _ = model.predict(texts)
        best = min(best, time.perf_counter() - start)
    out = {"texts_per_second": len(texts) / best, "seconds": best}
    if labels is not None:
        out["accuracy"] = float(np.mean([p == t for p, t in zip(predicted, labels, strict=True)]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--short", default="uci_amazon")
    parser.add_argument("--long", default="blitzer_books")
    parser.add_argument("--n-short", type=int, default=1000)
    parser.add_argument("--n-long", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    progress.set_enabled(False)
    data = load_dataset(args.short)
    train_set, test_set = balanced_split(data, 500, seed=0)
    short_texts = (test_set.texts * (args.n_short // max(len(test_set), 1) + 1))[: args.n_short]
    long_data = load_dataset(args.long)
    long_texts = long_data.texts[: args.n_long]
    long_labels = long_data.labels[: args.n_long]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "torch"
        train(train_set, base, TrainConfig(strategy="embed", model="minilm", diagnostics=False))
        variants = {"torch": (base, "torch"), "torch-bf16": (base, "torch-bf16")}
        for quantize in (None, "int8"):
            copy = Path(tmp) / f"onnx-{quantize or 'float32'}"
            shutil.copytree(base, copy)
            export_onnx(copy, quantize)
            variants[f"onnx {quantize or 'float32'}"] = (copy, "onnx")
        print(f"{'engine':<14}{'short/s':>9}{'long/s':>9}{'test acc':>10}{'long acc':>10}")
        for name, (path, engine) in variants.items():
            short = measure(path, engine, short_texts, None, args.repeats)
            long = measure(path, engine, long_texts, long_labels, args.repeats)
            acc = measure(path, engine, test_set.texts, test_set.labels, 1)["accuracy"]
            rows.append(
                {
                    "engine": name,
                    "short_per_second": short["texts_per_second"],
                    "long_per_second": long["texts_per_second"],
                    "test_accuracy": acc,
                    "long_accuracy": long["accuracy"],
                }
            )
            print(
                f"{name:<14}{short['texts_per_second']:>9.0f}{long['texts_per_second']:>9.0f}{100 * acc:>9.1f}%{100 * long['accuracy']:>9.1f}%",
                flush=True,
            )
    path = write_json(
        "predict_throughput",
        {
            **run_record("predict_throughput", argv),
            "short_data": args.short,
            "long_data": args.long,
            "rows": rows,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
