"""Like for like: the setfit library, the naive ``Trainer`` setup and fewlabel's strategies on ONE backbone.

Every system below is fitted on the same class-balanced training sample (``balanced_split``) of the
same backbone and scored on the same remaining rows. It runs in one process (no per-job subprocess,
no throughput samples: ``benchmarks.run`` does those), so it fits a short GPU lease; jobs run in
priority order (seed 0 on every data set first) and stop starting once ``--deadline`` seconds have
passed. One JSON file, rewritten after every job, so a stopped run keeps its rows.

    python -m benchmarks.like_for_like --backbone mpnet --data cr uci_amazon blitzer_books blitzer_dvd \\
        --systems hf/naive-finetune setfit/iter20 fewlabel/finetune fewlabel/setfit --seeds 3

On a GPU, float32 matrix products use TF32 for every system alike (``--tf32``; off by default).
"""

from __future__ import annotations

import argparse
import os
import time
import traceback
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, balanced_split, load_dataset, run_record
from benchmarks.systems import registry, seed_everything
from fewlabel.atomic import write_json


def _row(system: str, data_name: str, seed: int, backbone: str, train_size: int) -> dict:
    data = load_dataset(data_name)
    train, test = balanced_split(data, train_size, seed)
    classes = train.classes
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[c] for c in train.labels])
    truth = np.array([index[c] for c in test.labels])
    adapter = registry()[system].make(seed, {"backbone": backbone, "train_model": backbone})
    adapter.import_modules()
    seed_everything(seed)
    start = time.perf_counter()
    facts = adapter.fit(list(train.texts), y, len(classes))
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    proba = adapter.predict_proba(list(test.texts))
    predict_s = time.perf_counter() - start
    return {
        "system": system,
        "backbone": backbone,
        "data": data_name,
        "seed": seed,
        "train_size": len(train.texts),
        "test_size": len(test.texts),
        "test_accuracy": float((proba.argmax(1) == truth).mean()),
        "fit_seconds": fit_s,
        "predict_seconds": predict_s,
        "facts": facts,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="mpnet")
    parser.add_argument("--data", nargs="+", default=["cr", "uci_amazon", "blitzer_books", "blitzer_dvd"])
    parser.add_argument(
        "--systems",
        nargs="+",
        default=["hf/naive-finetune", "setfit/iter20", "fewlabel/finetune", "fewlabel/setfit"],
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--train-size", type=int, default=500)
    parser.add_argument("--deadline", type=float, default=None, help="start no job after this many seconds")
    parser.add_argument("--tf32", action="store_true", help="TF32 float32 matrix products on a GPU")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from fewlabel import progress

    progress.set_enabled(False)
    if args.tf32:
        import torch

        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    record = {
        **run_record("like_for_like", argv),
        "tf32": args.tf32,
        "load_1min_at_start": os.getloadavg()[0],
    }
    record["rows"] = []
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / f"like_for_like-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    began = time.perf_counter()
    jobs = [
        (seed, data, system)
        for seed in range(args.first_seed, args.first_seed + args.seeds)
        for data in args.data
        for system in args.systems
    ]
    print(f"{'data':<14}{'seed':>5}  {'system':<20}{'test':>8}{'fit s':>8}", flush=True)
    for seed, data, system in jobs:
        if args.deadline is not None and time.perf_counter() - began > args.deadline:
            record["stopped"] = (
                f"deadline of {args.deadline:.0f} s reached before {system} {data} seed {seed}"
            )
            print(record["stopped"], flush=True)
            break
        try:
            row = _row(system, data, seed, args.backbone, args.train_size)
        except Exception as err:  # a baseline library failing is a result to record, not a crash
            row = {"system": system, "data": data, "seed": seed, "error": repr(err)}
            traceback.print_exc()
            print(f"{data:<14}{seed:>5}  {system:<20}  FAILED {err!r}", flush=True)
        else:
            print(
                f"{data:<14}{seed:>5}  {system:<20}{100 * row['test_accuracy']:>7.1f}%{row['fit_seconds']:>8.0f}",
                flush=True,
            )
        record["rows"].append(row)
        record["seconds"] = time.perf_counter() - began
        write_json(out, record)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
