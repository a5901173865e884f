"""A label-count curve: test accuracy against the number of labelled texts, per system.

For each data set and seed, a class-balanced test set is drawn first and kept for every size; the
training samples are nested (the 64 contain the 32, and so on), class-balanced, drawn from the other
rows. Smaller sizes run ``--seeds`` seeds, sizes above ``--many-seeds-up-to`` run one. Jobs run in
order of cost (every system at the smallest size, seed 0 first) and none starts after ``--deadline``
seconds. One JSON file, rewritten after every job; ``--resume FILE`` skips the jobs it holds.

    python -m benchmarks.label_curve --data cr blitzer_books --systems default tfidf
    python -m benchmarks.label_curve --data cr --systems setfit/iter20@mpnet default@mpnet --resume F
    python -m benchmarks.label_curve --report benchmarks/results/label_curve-*.json

Systems:

- ``default``: ``fewlabel train`` with its defaults (``model`` "best": the most accurate installed
  backbone); ``default@mpnet`` with ``--model mpnet``. Scored in memory (float32, embedding cache
  on) so a slow backbone does not encode the same test texts once per size and seed.
- ``tfidf``: fewlabel's TF-IDF strategy fitted once with its defaults.
- ``setfit/iterN@BACKBONE``: the setfit library with ``num_iterations=N`` on BACKBONE (the SetFit
  paper's R=20; fewer on a CPU where 20 does not fit the time, stated in the row).

``--warm-cache`` keeps ``$FEWLABEL_HOME``'s embedding cache (for a backbone whose texts are already
encoded there); the default starts each process with a cold one, as a first run would.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, load_dataset, run_record, subset
from benchmarks.systems import SetFit, seed_everything
from fewlabel.atomic import write_json
from fewlabel.data.labelled import LabelledTexts

SIZES = [32, 64, 128, 250, 500, 1000]


def nested_splits(
    data: LabelledTexts, sizes: list[int], test_per_class: int, seed: int
) -> tuple[dict[int, LabelledTexts], LabelledTexts]:
    """Nested class-balanced training samples of each size, and one class-balanced test set."""
    rng = np.random.default_rng(seed)
    labels = np.array(data.labels)
    order = {c: rng.permutation(np.flatnonzero(labels == c)) for c in data.classes}
    short = {
        c: len(idx) - test_per_class
        for c, idx in order.items()
        if len(idx) - test_per_class < max(sizes) // len(order)
    }
    if short:
        raise SystemExit(
            f"too few rows for {max(sizes)} training and {test_per_class} test texts per class: {short}"
        )
    test = subset(data, [i for idx in order.values() for i in idx[:test_per_class]])
    train = {
        n: subset(
            data,
            [i for idx in order.values() for i in idx[test_per_class : test_per_class + n // len(order)]],
        )
        for n in sizes
    }
    return train, test


def _system(name: str) -> tuple[str, str | None]:
    kind, _, backbone = name.partition("@")
    return kind, backbone or None


def _indexed(train: LabelledTexts) -> tuple[list[str], np.ndarray]:
    """The classes in sorted order and each training text's class index, for the non-fewlabel APIs."""
    classes = train.classes
    return classes, np.array([classes.index(c) for c in train.labels])


def _fit_predict(name: str, train: LabelledTexts, test: LabelledTexts, seed: int) -> dict:
    kind, backbone = _system(name)
    start = time.perf_counter()
    if kind == "default":
        from fewlabel.config import TrainConfig
        from fewlabel.training import train as fewlabel_train

        seed_everything(seed, torch_too=True)
        with tempfile.TemporaryDirectory() as tmp:
            config = TrainConfig(seed=seed, model=backbone or "best", choose_engine=False)
            result = fewlabel_train(train, f"{tmp}/model", config)
        fit_s = time.perf_counter() - start
        predicted, _ = result.model.predict(test.texts)
        exp = result.expected
        facts = {
            "backbone": result.config.model,
            "chosen": result.chosen,
            "chosen_backbone": result.strategy.params.get("backbone"),
            "estimate": exp.value,
            "estimate_ci95": [exp.ci95_low, exp.ci95_high],
            "warnings": result.warnings,
        }
    elif kind == "tfidf":
        from fewlabel.strategies import make_strategy

        classes, y = _indexed(train)
        model = make_strategy("tfidf").fit(train.texts, y, len(classes))
        fit_s = time.perf_counter() - start
        predicted = [classes[i] for i in model.predict_proba(test.texts).argmax(1)]
        facts = {"backbone": None}
    elif (match := re.fullmatch(r"setfit/iter(\d+)", kind)) and backbone:
        classes, y = _indexed(train)
        adapter = SetFit(seed, backbone, "iter20")
        adapter.settings = {"num_iterations": int(match.group(1))}
        adapter.fit(list(train.texts), y, len(classes))
        fit_s = time.perf_counter() - start
        predicted = [classes[i] for i in adapter.predict_proba(list(test.texts)).argmax(1)]
        facts = {"backbone": backbone, "settings": adapter.settings}
    else:
        raise SystemExit(f"unknown system {name!r}: default[@BACKBONE], tfidf or setfit/iterN@BACKBONE")
    accuracy = float(np.mean([p == t for p, t in zip(predicted, test.labels, strict=True)]))
    return {**facts, "test_accuracy": accuracy, "fit_seconds": fit_s}


def jobs(args: argparse.Namespace) -> list[tuple[int, int, str, str]]:
    """(size, seed, data, system), cheapest first: sizes ascending, seed 0 before the others."""
    out = []
    for size in sorted(args.sizes):
        seeds = args.seeds if size <= args.many_seeds_up_to else 1
        for seed in range(seeds):
            for data in args.data:
                for system in args.systems:
                    out.append((size, seed, data, system))
    return sorted(out, key=lambda j: (j[1] > 0, j[0], j[1]))


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    from fewlabel import progress

    progress.set_enabled(False)
    if not args.warm_cache:
        from benchmarks.train_default import cold_embedding_cache

        cold_embedding_cache()
    if args.resume:
        out = args.resume
        record = json.loads(out.read_text())
        record.setdefault("resumed", []).append(run_record("label_curve", argv))
    else:
        out = args.results_dir / f"label_curve-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
        record = {**run_record("label_curve", argv), "test_per_class": args.test_per_class, "rows": []}
    done = {(r["train_size"], r["seed"], r["data"], r["system"]) for r in record["rows"] if "error" not in r}
    began = time.perf_counter()
    datasets = {name: load_dataset(name) for name in args.data}
    print(f"{'data':<14}{'size':>6}{'seed':>5}  {'system':<24}{'test':>8}{'fit s':>8}{'load':>6}", flush=True)
    for size, seed, data, system in jobs(args):
        if (size, seed, data, system) in done:
            continue
        if args.deadline is not None and time.perf_counter() - began > args.deadline:
            print(f"deadline of {args.deadline:.0f} s reached before {system} {data} {size} seed {seed}")
            break
        train, test = nested_splits(datasets[data], args.sizes, args.test_per_class, seed)
        row = {"system": system, "data": data, "train_size": size, "seed": seed, "test_size": len(test)}
        row["load_1min_at_start"] = os.getloadavg()[0]
        try:
            row.update(_fit_predict(system, train[size], test, seed))
        except Exception as err:  # a library failing on one job is a result to record, not a crash
            row["error"] = repr(err)
            traceback.print_exc()
            print(f"{data:<14}{size:>6}{seed:>5}  {system:<24}  FAILED {err!r}", flush=True)
        else:
            print(
                f"{data:<14}{size:>6}{seed:>5}  {system:<24}{100 * row['test_accuracy']:>7.1f}%"
                f"{row['fit_seconds']:>8.0f}{row['load_1min_at_start']:>6.1f}",
                flush=True,
            )
        record["rows"].append(row)
        write_json(out, record)
    print(f"wrote {out}")
    return 0


def report(files: list[Path], plot: Path | None) -> int:
    """Seed means per data set, system and size as a Markdown table (and a plot)."""
    rows = [r for f in files for r in json.loads(f.read_text())["rows"] if "error" not in r]
    cells: dict[tuple[str, str, int], list[float]] = {}
    for r in rows:
        cells.setdefault((r["data"], r["system"], r["train_size"]), []).append(100 * r["test_accuracy"])
    sizes = sorted({k[2] for k in cells})
    print("| data | system | " + " | ".join(str(s) for s in sizes) + " |")
    print("|---|---|" + "---:|" * len(sizes))
    for data in sorted({k[0] for k in cells}):
        for system in sorted({k[1] for k in cells if k[0] == data}):
            row = []
            for s in sizes:
                v = cells.get((data, system, s))
                row.append(f"{np.mean(v):.1f} ({len(v)})" if v else "-")
            print(f"| {data} | {system} | " + " | ".join(row) + " |")
    scored = [r for r in rows if "estimate_ci95" in r]
    if scored:
        inside = sum(r["estimate_ci95"][0] <= r["test_accuracy"] <= r["estimate_ci95"][1] for r in scored)
        print(f"\ntest accuracy inside fewlabel's reported 95% interval: {inside} of {len(scored)} runs")
    if plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = sorted({k[0] for k in cells})
        systems = sorted({k[1] for k in cells})
        colours = {system: f"C{i}" for i, system in enumerate(systems)}  # one colour per system throughout
        backbones = {r["system"]: r.get("backbone") for r in rows}
        fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4), squeeze=False)
        for ax, data in zip(axes[0], names, strict=True):
            for system in sorted({k[1] for k in cells if k[0] == data}):
                xs = [s for s in sizes if (data, system, s) in cells]
                label = (
                    system if "@" in system or not backbones[system] else f"{system} ({backbones[system]})"
                )
                means = [np.mean(cells[(data, system, s)]) for s in xs]
                ax.plot(xs, means, marker="o", label=label, color=colours[system])
            ax.set_xscale("log", base=2)
            ax.set_xticks(sizes, [str(s) for s in sizes])
            ax.set_xlabel("labelled texts (class-balanced)")
            ax.set_ylabel("test accuracy (%), seed mean")
            ax.set_title(data)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(plot, dpi=110)
        print(f"wrote {plot}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", nargs="+", default=["cr", "blitzer_books"])
    parser.add_argument("--systems", nargs="+", default=["default", "tfidf"])
    parser.add_argument("--sizes", nargs="+", type=int, default=SIZES)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--many-seeds-up-to", type=int, default=250)
    parser.add_argument("--test-per-class", type=int, default=400)
    parser.add_argument("--deadline", type=float, default=None, help="start no job after this many seconds")
    parser.add_argument("--warm-cache", action="store_true", help="keep the embedding cache (default: cold)")
    parser.add_argument(
        "--resume", type=Path, default=None, help="a result file to add to (its jobs skipped)"
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--report", type=Path, nargs="+", default=None, help="summarise these result files")
    parser.add_argument("--plot", type=Path, default=None, help="with --report: write the curves here (PNG)")
    args = parser.parse_args(argv)
    if args.report:
        return report(args.report, args.plot)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    return run(args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
