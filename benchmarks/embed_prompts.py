"""Would another task prompt help ``embed`` on EmbeddingGemma's frozen features?

EmbeddingGemma is trained with task prompts; fewlabel puts its ``Classification`` prompt
("task: classification | query: ") before every text. This script embeds every text of a data set
with each prompt below (bfloat16 matrix products, as ``torch-bf16`` predicts), fits ``embed``'s head
(logistic regression, C=4, balanced class weights) on the same 500-row class-balanced splits as the
other tables, and scores the test rows; then the same with two prompts' embeddings side by side.
Embeddings are kept in ``--cache-dir`` (one ``.npy`` per data set and prompt) and reused.

    FEWLABEL_HOME=<home with embeddinggemma> python -m benchmarks.embed_prompts --data cr
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.common import balanced_split, load_dataset, run_record, write_json
from fewlabel.encoders.backbones import resolve
from fewlabel.strategies.linear import fit_head

PROMPTS = {
    "cls": "task: classification | query: ",  # fewlabel's
    "sent": "task: sentiment analysis | query: ",
    "sentcls": "task: sentiment classification | query: ",
    "none": "",
    "clu": "task: clustering | query: ",
    "sts": "task: sentence similarity | query: ",
}
PAIRS = ("cls+sent", "cls+none", "cls+sts", "cls+sentcls")


def embeddings(name: str, key: str, texts: list[str], cache_dir: Path) -> np.ndarray:
    path = cache_dir / f"{name}_{key}.npy"
    if not path.exists():
        import torch
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(resolve("embeddinggemma").location, local_files_only=True)
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            vectors = model.encode(texts, prompt=PROMPTS[key], batch_size=16, normalize_embeddings=True)
        np.save(path, np.asarray(vectors, dtype=np.float32))
        print(f"{name} {key}: encoded {len(texts)} texts in {time.perf_counter() - start:.0f}s", flush=True)
    return np.load(path)


def scores(data, index: dict[str, int], vectors: np.ndarray, C: float, seeds: int) -> list[float]:
    classes = sorted(set(data.labels))
    out = []
    for seed in range(seeds):
        train, test = balanced_split(data, 500, seed=seed)
        X_train = vectors[[index[t] for t in train.texts]]
        X_test = vectors[[index[t] for t in test.texts]]
        y_train = np.array([classes.index(label) for label in train.labels])
        y_test = np.array([classes.index(label) for label in test.labels])
        head = fit_head(X_train, y_train, len(classes), C, "balanced")
        out.append(float(np.mean(head.predict(X_test) == y_test)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", nargs="+", default=["cr"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--cache-dir", type=Path, default=Path("benchmarks/.cache/prompts"))
    args = parser.parse_args(argv)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    record = run_record("embed_prompts", argv)
    record.update({"prompts": PROMPTS, "load_average_start": os.getloadavg()[0], "rows": []})
    print("| data | prompts | C | test accuracy per seed | mean |\n|---|---|---:|---|---:|")
    for name in args.data:
        data = load_dataset(name)
        texts = list(dict.fromkeys(data.texts))
        index = {t: i for i, t in enumerate(texts)}
        runs = [(key, 4.0) for key in PROMPTS] + [(pair, C) for pair in PAIRS for C in (2.0, 4.0)]
        for keys, C in runs:
            vectors = np.hstack([embeddings(name, k, texts, args.cache_dir) for k in keys.split("+")])
            accuracies = scores(data, index, vectors, C, args.seeds)
            record["rows"].append({"data": name, "prompts": keys, "C": C, "accuracy": accuracies})
            seeds = " / ".join(f"{100 * a:.1f}" for a in accuracies)
            print(f"| {name} | {keys} | {C:g} | {seeds} | {100 * np.mean(accuracies):.2f} |", flush=True)
    print(f"wrote {write_json('embed_prompts', record)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
