"""Shared pieces of the benchmarks: data sets from ../shared/datasets and reproducible splits."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from fewlabel.data.labelled import LabelledTexts, load_labelled

REPO = Path(__file__).resolve().parents[1]
# $FEWLABEL_BENCH_DATA: the data sets elsewhere (a machine where ../shared is not beside the checkout).
SHARED = Path(os.environ.get("FEWLABEL_BENCH_DATA") or REPO.parent / "shared" / "datasets")
RESULTS = Path(__file__).resolve().parent / "results"


def load_dataset(name_or_path: str) -> LabelledTexts:
    """A data set by name from ../shared/datasets, or any CSV path with text,label columns."""
    path = Path(name_or_path)
    if not path.exists():
        path = SHARED / name_or_path / "data.csv"
    if not path.exists():
        raise SystemExit(f"no data set {name_or_path!r}: not a file, and not in {SHARED}")
    data = load_labelled(path)
    if "split" in path.read_text(encoding="utf-8").splitlines()[0]:
        pass  # sst2's split column is ignored: we draw our own splits
    return data


def balanced_split(
    data: LabelledTexts, train_size: int, seed: int, balance_test: bool = True
) -> tuple[LabelledTexts, LabelledTexts]:
    """A class-balanced training sample of ``train_size``; the rest (class-balanced if asked) for testing."""
    rng = np.random.default_rng(seed)
    labels = np.array(data.labels)
    classes = data.classes
    per_class = train_size // len(classes)
    train_idx, test_idx = [], []
    rest_by_class = {}
    for c in classes:
        idx = rng.permutation(np.flatnonzero(labels == c))
        train_idx.extend(idx[:per_class])
        rest_by_class[c] = idx[per_class:]
    if balance_test:
        n = min(len(v) for v in rest_by_class.values())
        for v in rest_by_class.values():
            test_idx.extend(v[:n])
    else:
        for v in rest_by_class.values():
            test_idx.extend(v)

    return subset(data, train_idx), subset(data, test_idx)


def subset(data: LabelledTexts, rows) -> LabelledTexts:
    """The rows ``rows`` of ``data`` (in file order), as checked labelled texts of their own."""
    idx = sorted(int(i) for i in rows)
    return LabelledTexts(
        [data.texts[i] for i in idx], [data.labels[i] for i in idx], [data.rows[i] for i in idx], data.source
    )


def machine() -> str:
    """Processor architecture, core count, Python, and the GPU when there is one (numbers differ)."""
    import os

    described = f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}"
    try:  # no nvidia-smi (OSError) or no working GPU: no GPU in the description
        names = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout.splitlines()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        names = []
    gpus = [name.strip() for name in names if name.strip()]
    return described + (", GPU: " + ", ".join(gpus) if gpus else "")


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_record(module: str, argv: list[str] | None) -> dict:
    """The fields every benchmark result starts with: how to rerun it, when, where, on what code."""
    import sys

    args = argv if argv is not None else sys.argv[1:]
    return {
        "command": f"python -m benchmarks.{module} " + " ".join(args),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": commit(),
        "machine": machine(),
    }


def write_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{name}-{stamp}.json"
    n = 1
    while path.exists():  # runs started in the same second (in parallel) keep their own files
        n += 1
        path = RESULTS / f"{name}-{stamp}-{n}.json"
    path.write_text(json.dumps(payload, indent=2))
    return path
