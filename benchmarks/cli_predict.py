"""Prediction speed of a saved model the way users run it: through ``fewlabel predict``.

For one saved model (the default ``fewlabel train`` output, say) and a CSV of texts, measures:

- in-process throughput (``load_model`` then ``TrainedModel.predict`` on every text at once, model
  load excluded) with the engine ``auto`` picks and with ``--engine torch`` (float32, as evaluated);
- ``fewlabel predict MODEL TEXTS.csv -o OUT.csv`` end to end, with both engines: wall time, texts/s,
  and the same without its start-up (the wall time of a one-row file subtracted);
- one text from the command line (``echo TEXT | fewlabel predict MODEL -``), including model load;
- how often the two engines' labels agree, and accuracy when the CSV has labels.

    python -m benchmarks.cli_predict MODEL_DIR TEXTS.csv [--n 400] [--repeats 3]

Run it with nothing else on the machine: the 1-minute load average is recorded before every step.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import run_record, write_json
from fewlabel import progress
from fewlabel.inference.loading import load_model
from fewlabel.model_dir.manifest import load_manifest

ENGINES = ("auto", "torch")


def load_average() -> float:
    return os.getloadavg()[0]


def read_texts(path: Path, n: int) -> tuple[list[str], list[str] | None]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[:n]
    texts = [row["text"] for row in rows]
    labels = [row["label"] for row in rows] if rows and "label" in rows[0] else None
    return texts, labels


def write_texts(path: Path, texts: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text"])
        writer.writerows([t] for t in texts)


def in_process(model_dir: Path, engine: str, texts: list[str]) -> dict:
    load = load_average()
    start = time.perf_counter()
    model = load_model(model_dir, engine=engine)
    model.predict(texts[:1])  # the encoder loads on first use
    loaded = time.perf_counter() - start
    start = time.perf_counter()
    labels, _ = model.predict(texts)
    seconds = time.perf_counter() - start
    return {
        "engine": engine,
        "load_seconds": loaded,
        "seconds": seconds,
        "texts_per_second": len(texts) / seconds,
        "labels": labels,
        "load_average": load,
    }


def cli(args: list[str], stdin: str | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "fewlabel", *args],
        input=stdin,
        text=True,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def engine_flags(engine: str) -> list[str]:
    return [] if engine == "auto" else ["--engine", engine]


def cli_file(model_dir: Path, engine: str, texts: list[str], tmp: Path) -> dict:
    one, many = tmp / "one.csv", tmp / "many.csv"
    write_texts(one, texts[:1])
    write_texts(many, texts)
    out = tmp / f"out-{engine}.csv"
    load = load_average()
    startup = cli(
        [
            "predict",
            str(model_dir),
            str(one),
            "-o",
            str(tmp / "one-out.csv"),
            "--force",
            "--quiet",
            *engine_flags(engine),
        ]
    )
    wall = cli(
        ["predict", str(model_dir), str(many), "-o", str(out), "--force", "--quiet", *engine_flags(engine)]
    )
    with out.open(newline="", encoding="utf-8") as handle:
        labels = [row["predicted_label"] for row in csv.DictReader(handle)]
    return {
        "engine": engine,
        "wall_seconds": wall,
        "one_row_file_seconds": startup,
        "texts_per_second": len(texts) / wall,
        "texts_per_second_without_startup": len(texts) / max(wall - startup, 1e-9),
        "labels": labels,
        "load_average": load,
    }


def one_text(model_dir: Path, text: str, repeats: int) -> dict:
    load = load_average()
    walls = [cli(["predict", str(model_dir), "-", "--quiet"], stdin=text + "\n") for _ in range(repeats)]
    return {"seconds": walls, "median_seconds": statistics.median(walls), "load_average": load}


def agreement(a: list[str], b: list[str]) -> float:
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


def accuracy(predicted: list[str], labels: list[str] | None) -> float | None:
    return None if labels is None else agreement(predicted, labels)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("texts", type=Path, help="CSV with a text column (and optionally label)")
    parser.add_argument("--n", type=int, default=400, help="texts to predict (the first N rows)")
    parser.add_argument("--repeats", type=int, default=3, help="one-text command-line runs")
    args = parser.parse_args(argv)
    progress.set_enabled(False)
    texts, labels = read_texts(args.texts, args.n)
    record = run_record("cli_predict", argv)
    record.update({"model_dir": str(args.model_dir), "texts": str(args.texts), "n": len(texts)})
    recorded = load_manifest(args.model_dir).prediction
    record["recorded_engine"] = recorded.model_dump() if recorded is not None else None
    print(f"{len(texts)} texts; recorded engine: {record['recorded_engine']}", flush=True)
    record["one_text"] = one_text(args.model_dir, texts[0], args.repeats)
    print(f"one text from the CLI: {record['one_text']['seconds']}", flush=True)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for engine in ENGINES:
            results[f"in_process/{engine}"] = in_process(args.model_dir, engine, texts)
            results[f"cli/{engine}"] = cli_file(args.model_dir, engine, texts, Path(tmp))
            for kind in ("in_process", "cli"):
                row = results[f"{kind}/{engine}"]
                print(
                    f"{kind}/{engine}: {row['texts_per_second']:.2f} texts/s (load {row['load_average']:.1f})",
                    flush=True,
                )
    exact = results["cli/torch"]["labels"]
    rows = []
    for name, row in results.items():
        labels_out = row.pop("labels")
        row["agreement_with_cli_torch"] = agreement(labels_out, exact)
        row["accuracy"] = accuracy(labels_out, labels)
        rows.append({"name": name, **row})
    record["rows"] = rows
    summary = {
        "cli_speedup_auto_over_torch": results["cli/auto"]["texts_per_second"]
        / results["cli/torch"]["texts_per_second"],
        "cli_share_of_in_process_auto": results["cli/auto"]["texts_per_second"]
        / results["in_process/auto"]["texts_per_second"],
        "cli_share_of_in_process_auto_without_startup": results["cli/auto"][
            "texts_per_second_without_startup"
        ]
        / results["in_process/auto"]["texts_per_second"],
        "label_agreement_auto_torch": results["cli/auto"]["agreement_with_cli_torch"],
    }
    record["summary"] = summary
    path = write_json("cli_predict", record)
    print("\n| run | texts/s | wall s | agreement with float32 | accuracy | load |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        wall = row.get("wall_seconds", row.get("seconds"))
        acc = "" if row["accuracy"] is None else f"{100 * row['accuracy']:.1f}"
        print(
            f"| {row['name']} | {row['texts_per_second']:.2f} | {wall:.1f} | {100 * row['agreement_with_cli_torch']:.1f} | {acc} | {row['load_average']:.1f} |"
        )
    print(f"one text from the CLI: {', '.join(f'{s:.1f}' for s in record['one_text']['seconds'])} s")
    print({k: round(v, 3) for k, v in summary.items()})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
