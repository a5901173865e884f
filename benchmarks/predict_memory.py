"""Benchmark the memory of ``fewlabel predict`` on a large input: it should stay flat, whatever the size.

Generates a CSV of review-like texts (demo reviews joined and varied, seed 0) of about ``--size-mb``
in a temporary directory, trains a ``tfidf`` model on the demo set, runs ``fewlabel predict`` on
the CSV as a subprocess, samples its resident memory (with its children) every ``--interval``
seconds, and checks that the output has one row per input row. Nothing generated is kept.

    python -m benchmarks.predict_memory                 # about 1 GB
    python -m benchmarks.predict_memory --size-mb 50    # a quick run
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import random
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import psutil

from benchmarks.common import run_record, write_json
from fewlabel import progress
from fewlabel.config import TrainConfig
from fewlabel.data.labelled import load_labelled
from fewlabel.training import train

FLAT_LIMIT_MB = 2048  # peak RSS allowed on a 1 GB input: far below the input, so nothing accumulates
MB = 1024 * 1024


def demo_csv() -> Path:
    return Path(str(resources.files("fewlabel") / "demo" / "reviews.csv"))


def generate(path: Path, size_mb: float, seed: int = 0) -> int:
    """Write ``id,text`` rows of 1-4 demo reviews joined, with varied numbers, until ``size_mb``; the row count."""
    texts = load_labelled(demo_csv()).texts
    rng = random.Random(seed)
    target = int(size_mb * MB)
    rows = 0
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["id", "text"])
        while f.tell() < target:
            batch = []
            for _ in range(1000):
                parts = rng.sample(texts, rng.randint(1, 4))
                # A varied detail so the texts are not 440 repeats (the vocabulary keeps growing).
                parts.insert(
                    rng.randrange(len(parts) + 1),
                    f"Order {rng.randrange(10**6)} took {rng.randint(1, 30)} days.",
                )
                batch.append([f"r{rows + len(batch)}", " ".join(parts)])
            writer.writerows(batch)
            rows += len(batch)
    return rows


def tree_rss(process: psutil.Process) -> int:
    """Resident bytes of a process and all its children (0 once it has exited)."""
    total = 0
    try:
        for p in [process, *process.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                total += p.memory_info().rss
    except psutil.NoSuchProcess:
        return 0
    return total


def count_rows(path: Path) -> int:
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        next(reader)
        return sum(1 for _ in reader)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=float, default=1024, help="input size in MiB (default 1024)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between memory samples")
    parser.add_argument("--runner", default="local", help="fewlabel predict --runner (local or ray)")
    parser.add_argument(
        "--tmp-dir", default=None, help="where to write the input and output (default: system temp)"
    )
    args = parser.parse_args(argv)
    progress.set_enabled(False)

    with tempfile.TemporaryDirectory(prefix="fewlabel-predict-memory-", dir=args.tmp_dir) as tmp:
        tmp_path = Path(tmp)
        data = tmp_path / "reviews.csv"
        start = time.perf_counter()
        input_rows = generate(data, args.size_mb)
        input_mb = data.stat().st_size / MB
        print(
            f"generated {input_rows} rows, {input_mb:.0f} MiB in {time.perf_counter() - start:.0f} s",
            flush=True,
        )
        model = tmp_path / "model"
        train(load_labelled(demo_csv()), model, TrainConfig(strategy="tfidf", diagnostics=False))

        out = tmp_path / "predictions.csv"
        command = [sys.executable, "-m", "fewlabel", "predict", str(model), str(data), "-o", str(out), "-q"]
        command += ["--runner", args.runner]
        samples: list[tuple[float, int]] = []
        start = time.perf_counter()
        log = tmp_path / "predict.log"  # a file, not a pipe: a full pipe would stall the child
        with log.open("w") as log_handle:
            child = subprocess.Popen(command, stdout=log_handle, stderr=subprocess.STDOUT, text=True)
            watched = psutil.Process(child.pid)
            while True:
                # wait4: this child's own resource usage, whatever else this process ran.
                pid, status, usage = os.wait4(child.pid, os.WNOHANG)
                if pid:
                    break
                rss = tree_rss(watched)
                if rss:
                    samples.append((time.perf_counter() - start, rss))
                time.sleep(args.interval)
            child.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        stderr = log.read_text(encoding="utf-8", errors="replace")
        if child.returncode != 0:
            raise SystemExit(f"fewlabel predict failed ({child.returncode}):\n{stderr}")
        # The kernel's high-water mark of the child: catches a peak between two samples.
        kernel_peak_mb = usage.ru_maxrss / 1024
        # CPU time, unlike wall time, does not depend on what else runs on a shared machine.
        cpu_seconds = usage.ru_utime + usage.ru_stime
        output_rows = count_rows(out)
        output_mb = out.stat().st_size / MB

    rss_mb = [r / MB for _, r in samples]
    quarter = max(1, len(rss_mb) // 4)
    result = {
        "input_mib": round(input_mb, 1),
        "input_rows": input_rows,
        "output_rows": output_rows,
        "output_mib": round(output_mb, 1),
        "rows_match": output_rows == input_rows,
        "runner": args.runner,
        "seconds": round(seconds, 1),
        "rows_per_second": round(input_rows / seconds, 1),
        "mib_per_second": round(input_mb / seconds, 2),
        "cpu_seconds": round(cpu_seconds, 1),
        "rows_per_cpu_second": round(input_rows / cpu_seconds, 1),
        "projected_cpu_minutes_per_gib": round(cpu_seconds / input_mb * 1024 / 60, 1),
        "peak_rss_mib": round(max(rss_mb), 1),
        "kernel_max_rss_mib": round(kernel_peak_mb, 1),
        "median_rss_first_quarter_mib": round(sorted(rss_mb[:quarter])[len(rss_mb[:quarter]) // 2], 1),
        "median_rss_last_quarter_mib": round(sorted(rss_mb[-quarter:])[len(rss_mb[-quarter:]) // 2], 1),
        "flat": max(rss_mb) < FLAT_LIMIT_MB and kernel_peak_mb < FLAT_LIMIT_MB,
        "samples": len(samples),
        "interval_s": args.interval,
        "predict_stderr": stderr.strip()[-500:],
    }
    width = max(len(k) for k in result)
    for key, value in result.items():
        if key != "predict_stderr":
            print(f"{key:<{width}}  {value}")
    # About 200 points are enough to draw the curve.
    curve = [(round(t, 1), round(r / MB, 1)) for t, r in samples[:: max(1, len(samples) // 200)]]
    path = write_json(
        "predict_memory", {**run_record("predict_memory", argv), **result, "rss_curve_mib": curve}
    )
    print(f"wrote {path}")
    return 0 if result["rows_match"] and result["flat"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
