"""How many tokens of each text should a frozen backbone read? Accuracy and cost of a shorter window.

EmbeddingGemma's own configuration reads up to 2,048 tokens a text; attention grows with the square
of that. For each data set, every text longer than a window W is encoded again, cut at W tokens
(float32, the ``Classification`` prompt as in training); shorter texts are the same either way. Then
``embed`` (logistic regression, C=4, balanced class weights: the strategy's defaults) is fitted on
500 class-balanced texts per seed and scored on the rest, once with each window's embeddings.

    FEWLABEL_HOME=<home with embeddinggemma> python -m benchmarks.token_window \\
        --data blitzer_books blitzer_dvd --windows 256 512 --seeds 3

The full-window embeddings come from fewlabel's embedding cache (encoded now when missing).

``--speed N`` measures instead how fast each window encodes the first N texts of each data set in
one call (as ``fewlabel predict`` does: sorted by length, batches of 32), in float32 and in bfloat16
(the ``torch-bf16`` engine), after a warm-up on 8 texts.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from benchmarks.common import balanced_split, load_dataset, run_record, write_json
from fewlabel import progress
from fewlabel.encoders.backbones import resolve
from fewlabel.encoders.sentence import Encoder, load_sentence_model
from fewlabel.strategies.linear import fit_head


def token_counts(model, texts: list[str]) -> np.ndarray:
    prompt = (getattr(model, "prompts", None) or {}).get("Classification", "")
    encoded = model.tokenizer([prompt + t for t in texts], add_special_tokens=True, truncation=False)
    return np.array([len(ids) for ids in encoded["input_ids"]])


def encode_cut(encoder: Encoder, model, texts: list[str], window: int) -> tuple[np.ndarray, float]:
    full = model.max_seq_length
    model.max_seq_length = window
    try:
        start = time.perf_counter()
        vectors = encoder._model_encode(texts) if texts else np.zeros((0, 0), dtype=np.float32)
        return vectors, time.perf_counter() - start
    finally:
        model.max_seq_length = full


def speed(backbone, model, texts: list[str], windows: list[int]) -> list[dict]:
    rows = []
    full = model.max_seq_length
    for window in windows:
        for precision in ("fp32", "bf16"):
            encoder = Encoder(backbone, cache=False, precision=precision)
            model.max_seq_length = window
            try:
                encoder.encode(texts[:8])
                load = os.getloadavg()[0]
                start = time.perf_counter()
                encoder.encode(texts)
                seconds = time.perf_counter() - start
            finally:
                model.max_seq_length = full
            rows.append(
                {
                    "window": window,
                    "precision": precision,
                    "texts": len(texts),
                    "seconds": seconds,
                    "texts_per_second": len(texts) / seconds,
                    "load_average": load,
                }
            )
            print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", nargs="+", default=["blitzer_books", "blitzer_dvd"])
    parser.add_argument("--backbone", default="embeddinggemma")
    parser.add_argument("--windows", nargs="+", type=int, default=[256, 512])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=500)
    parser.add_argument("--speed", type=int, default=0, metavar="N", help="time encoding N texts instead")
    args = parser.parse_args(argv)
    progress.set_enabled(False)
    record = run_record("token_window", argv)
    record.update({"backbone": args.backbone, "load_average_start": os.getloadavg()[0], "data": {}})
    backbone = resolve(args.backbone)
    model = load_sentence_model(backbone)
    full_window = int(model.max_seq_length)
    cached = Encoder(backbone, cache=True)
    plain = Encoder(backbone, cache=False)
    print(f"{args.backbone}: full window {full_window} tokens", flush=True)
    if args.speed:
        windows = [*sorted(args.windows), full_window]
        record["speed"] = {
            name: speed(backbone, model, load_dataset(name).texts[: args.speed], windows)
            for name in args.data
        }
        print(f"wrote {write_json('token_window-speed', record)}")
        return 0
    for name in args.data:
        data = load_dataset(name)
        texts = data.texts
        counts = token_counts(model, texts)
        full = cached.encode(texts, show_progress=False)
        features = {full_window: full}
        timing = {}
        for window in sorted(args.windows):
            longer = [i for i in range(len(texts)) if counts[i] > window]
            cut, seconds = encode_cut(plain, model, [texts[i] for i in longer], window)
            vectors = full.copy()
            if longer:
                vectors[longer] = cut
            features[window] = vectors
            timing[window] = {
                "texts_recoded": len(longer),
                "seconds": seconds,
                "load_average": os.getloadavg()[0],
            }
            print(
                f"{name}: {len(longer)} texts over {window} tokens re-encoded in {seconds:.0f}s", flush=True
            )
        rows = []
        for seed in range(args.seeds):
            train_set, test_set = balanced_split(data, args.train_size, seed=seed)
            index = {t: i for i, t in enumerate(texts)}
            tr = [index[t] for t in train_set.texts]
            te = [index[t] for t in test_set.texts]
            classes = sorted(set(data.labels))
            y_tr = np.array([classes.index(label) for label in train_set.labels])
            y_te = np.array([classes.index(label) for label in test_set.labels])
            row = {"seed": seed, "test_rows": len(te)}
            for window, vectors in features.items():
                head = fit_head(vectors[tr], y_tr, len(classes), 4.0, "balanced")
                row[f"accuracy@{window}"] = float(np.mean(head.predict(vectors[te]) == y_te))
            rows.append(row)
            print(name, row, flush=True)
        record["data"][name] = {
            "texts": len(texts),
            "token_count_percentiles": {p: float(np.percentile(counts, p)) for p in (50, 90, 99)},
            "share_over": {w: float(np.mean(counts > w)) for w in sorted(args.windows)},
            "timing": timing,
            "seeds": rows,
        }
    path = write_json("token_window", record)
    windows = [*sorted(args.windows), full_window]
    print("\n| data | " + " | ".join(f"{w} tokens" for w in windows) + " |")
    print("|---|" + "---:|" * len(windows))
    for name, entry in record["data"].items():
        means = [100 * np.mean([r[f"accuracy@{w}"] for r in entry["seeds"]]) for w in windows]
        print(f"| {name} | " + " | ".join(f"{m:.1f}" for m in means) + " |")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
