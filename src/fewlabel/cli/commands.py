"""What the CLI commands do, kept apart from option parsing so ``fewlabel --help`` imports nothing heavy.

Everything printed that comes from the user (paths, labels, texts, messages that quote them) goes
through ``escape``: Rich would read ``fewlabel[parquet]`` or a file named ``x[/].csv`` as markup.
"""

from __future__ import annotations

import os
import time
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from fewlabel import progress
from fewlabel.cli.options import STDOUT
from fewlabel.cli.tables import (
    export_hint,
    export_lines,
    print_engine,
    print_estimate_at_training,
    print_per_class,
)
from fewlabel.config import TrainConfig
from fewlabel.data.files import parse_sheet
from fewlabel.data.labelled import MAX_TEXT_CHARS, LabelledTexts, load_labelled, load_unlabelled
from fewlabel.data.multilabel import DEFAULT_SEPARATOR, MultiLabelledTexts
from fewlabel.errors import FewlabelError
from fewlabel.evaluation.scores import CVResult
from fewlabel.model_dir.store import check_target
from fewlabel.multilabel import MultiLabelResult
from fewlabel.training import TrainResult, train, warnings_before_training

DEMO_BUDGET_MINUTES = 5.0
RECALL_SPREAD = 0.10  # per-class recall is printed when the classes' recalls differ by this much
DEMO_EXAMPLES = [
    "Battery died after two days and support never answered. Returning it.",
    "Not what I expected, honestly even better: sturdy, quiet and easy to clean.",
    "Great, another kettle that leaks from the base. Just what I needed.",
]


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def results_table(result: TrainResult) -> Table:
    table = Table(title="Results on texts each model did not see", title_justify="left")
    for col in ("strategy", "accuracy", "95% CI", "balanced", "macro-F1", "log loss", "gap", "time"):
        table.add_column(col, justify="left" if col == "strategy" else "right")

    def row(r: CVResult, label: str, style: str | None = None) -> None:
        s = r.final
        label += " †" if r.decided is not None else ""
        table.add_row(
            escape(label),
            _pct(s.accuracy.value),
            f"{100 * s.accuracy.low:.1f}-{100 * s.accuracy.high:.1f}",
            _pct(s.balanced_accuracy.value),
            f"{s.macro_f1.value:.3f}",
            f"{s.log_loss.value:.3f}",
            f"{100 * r.gap:+.1f}",
            f"{r.seconds:.1f}s",
            style=style,
        )

    for name, r in result.results.items():
        marker = " *" if name == result.chosen else ""
        held = " (held out)" if r.protocol == "holdout" else ""
        row(r, f"{name}{held}{marker}", "bold" if marker else None)
    if result.nested is not None:
        row(result.nested, "auto (nested CV)", "bold green" if result.evaluation is result.nested else None)
    chance = _pct(1 / len(result.labels))
    table.add_row("majority class", _pct(result.majority), "", chance, "", "", "", "", style="dim")
    return table


def print_training(
    result: TrainResult,
    data: LabelledTexts,
    console: Console,
    said_before: list[str] | None = None,
    export: bool = False,
) -> None:
    counts = ", ".join(f"{k}: {v}" for k, v in data.class_counts().items())
    console.print(escape(f"Data: {len(data)} texts from {data.source} ({counts})"), soft_wrap=True)
    for note in result.notes:
        console.print(escape(note), soft_wrap=True)
    for warning in result.warnings:
        if warning != result.chance_warning and warning not in (said_before or []):
            console.print(f"[yellow]Warning:[/] {escape(warning)}", soft_wrap=True)
    console.print(results_table(result))
    _print_table_notes(result, console)
    _print_expected(result, console)
    _print_findings(result, console)
    if result.model_dir:
        console.print(f"Model saved to [bold]{escape(str(result.model_dir))}[/]", soft_wrap=True)
        report = escape(str(result.model_dir / "report.html"))
        console.print(f"Report: [bold]{report}[/] (every number in metrics.json)", soft_wrap=True)
    print_engine(console, result.prediction)
    _print_fast_form(result, console, export)
    console.print(f"Took {result.seconds:.1f}s.")
    if result.chance_warning:  # the last line, where nobody can miss it
        console.print(f"[bold red]Warning:[/] {escape(result.chance_warning)}", soft_wrap=True)


def _print_fast_form(result: TrainResult, console: Console, export: bool) -> None:
    """With ``export``, export the saved model (:func:`export_command`); else say how to."""
    from fewlabel.model_dir.manifest import load_manifest

    if result.model_dir is None:
        return
    if load_manifest(result.model_dir, warn_old=False).backbone is None:  # as `fewlabel export` decides
        if export:
            console.print(
                f"Nothing to export: {escape(result.chosen)} uses no neural encoder and is fast as it is."
            )
        return
    if not export:
        console.print(f"[dim]{escape(export_hint(result.model_dir))}[/]", soft_wrap=True)
    elif result.chance_warning:
        console.print("Not exported: the model is not clearly better than chance (see the last line).")
    else:
        start = time.perf_counter()
        done, refused = export_lines(export_command(result.model_dir, None, force=False))
        console.print(escape(f"{done} Export took {time.perf_counter() - start:.0f}s."), soft_wrap=True)
        if refused:
            console.print(escape(refused), soft_wrap=True)


def check_export(multi_label: bool) -> None:
    """``train --export``: refused before training where the export could not run after it."""
    from importlib.util import find_spec

    if multi_label:
        raise FewlabelError("--export works with single-label models only; train without it")
    missing = [name for name in ("onnx", "onnxscript", "onnxruntime") if find_spec(name) is None]
    if missing:
        raise FewlabelError(
            f"--export needs {', '.join(missing)}: `pip install 'fewlabel[onnx]'` (and `'fewlabel[openvino]'` "
            "for OpenVINO's speed), or train without --export"
        )


def _print_table_notes(result: TrainResult, console: Console) -> None:
    """What the results table's marks mean: the auto row, a tuned threshold, a held-out score."""
    if result.nested is not None:
        console.print(
            "[dim]* chosen. gap: train minus validation accuracy, in points. The auto row is the honest "
            "estimate: each outer fold made its own choice on inner folds, so picking the best of several "
            "does not inflate it.[/]"
        )
    if any(r.decided is not None for r in result.results.values()):
        console.print(
            "[dim]†: answers with a tuned decision threshold, scored cross-fitted (each fold with a "
            "threshold chosen on the others); it beat answering the most probable class.[/]"
        )
    if any(r.protocol == "holdout" for r in result.results.values()):
        console.print(
            "[dim]held out: scored on the validation rows its own run held out (20%), not by "
            "cross-validation: too slow to refit on every fold. Those rows also chose its best "
            "checkpoint, so the figure is slightly optimistic.[/]"
        )


def _print_expected(result: TrainResult, console: Console) -> None:
    """The chosen strategy and the accuracy (or balanced accuracy) to expect, against the baseline."""
    exp = result.expected
    chosen = result.results[result.chosen]
    gain = exp.learning_curve_gain or 0.0
    adjustment = (
        f" (cross-validated {_pct(exp.cv_accuracy)} + {100 * gain:.1f} pts for training on all rows)"
        if gain > 0
        else ""
    )
    if exp.metric == "balanced_accuracy":
        headline, baseline = "balanced accuracy (the mean recall per class)", 1 / len(result.labels)
    else:
        headline, baseline = "accuracy", result.majority
    console.print(
        f"Chosen: [bold]{escape(chosen.description)}[/]. Expected {headline} on new texts like these: "
        f"[bold green]{_pct(exp.value)}[/] (95% CI {_pct(exp.ci95_low)} to {_pct(exp.ci95_high)}){adjustment}, "
        f"against {_pct(baseline)} for always answering the most common class.",
        soft_wrap=True,
    )


def _print_findings(result: TrainResult, console: Console) -> None:
    """Recall per class when uneven, whether more labels would help, and label issues."""
    recall = result.evaluation.scores.recall
    found = [r for r in recall if not np.isnan(r)]
    if result.imbalanced or (found and max(found) - min(found) >= RECALL_SPREAD):
        per = ", ".join(f"{label} {_pct(r)}" for label, r in zip(result.labels, recall, strict=True))
        console.print(escape(f"Recall per class (share of each class found): {per}."), soft_wrap=True)
    curve = (result.diagnostics.get("learning_curve") or {}).get(result.chosen)
    if curve and curve["extrapolation"].get("gain") is not None:
        from fewlabel.model_dir.records import LearningCurve
        from fewlabel.report import more_labels_sentence

        sentence = more_labels_sentence(LearningCurve.model_validate(curve), result.imbalanced)
        console.print(escape(sentence), soft_wrap=True)
    if result.diagnostics:
        conflicting = sum(d["conflicting_labels"] for d in result.diagnostics["near_duplicates"])
        withheld = result.diagnostics.get("label_issues_withheld")
        disputed = (
            f"{withheld}"
            if withheld
            else f"{result.diagnostics['n_label_issues']} row(s) have a label the model disputes"
        )
        console.print(
            escape(f"Label issues: {disputed}; {conflicting} near-duplicate pair(s) carry different labels."),
            soft_wrap=True,
        )


def print_prediction_summary(summary: dict[str, Any], output: str, console: Console) -> None:
    """After ``predict``: a warning for texts cut to MAX_TEXT_CHARS, and (for a file) what was written."""
    if summary.get("cut_texts"):
        warning = (
            f"{summary['cut_texts']} text(s) longer than {MAX_TEXT_CHARS:,} characters were predicted on "
            f"their first {MAX_TEXT_CHARS:,} characters, as training reads them; their rows are written whole."
        )
        console.print(Text.assemble(("Warning:", "yellow"), " ", warning), soft_wrap=True)
    if output != STDOUT:
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(summary["predicted"].items()))
        msg = f"Wrote {summary['rows']} rows to {output} ({counts})."
        if summary.get("resumed_rows"):
            msg += f" Resumed an interrupted run after row {summary['resumed_rows']}."
        if summary["empty_texts"]:
            msg += f" {summary['empty_texts']} row(s) had an empty text and got no prediction."
        console.print(Text(msg), soft_wrap=True)


def check_model_output(output: Path) -> None:
    """Refuse, before any work, a model directory that cannot be written: the same refusals as saving."""
    check_target(output, "--output")
    # The model is written beside its final place and renamed: that directory must take new files.
    ancestor = next((p for p in output.absolute().parents if p.exists()), Path(output.absolute().anchor))
    if not ancestor.is_dir():
        raise FewlabelError(f"{output}: {ancestor} is a file, not a directory; choose another --output")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise FewlabelError(
            f"{output}: cannot create files in {ancestor} (no permission, or a read-only disk); "
            "choose another --output"
        )


def train_command(
    data: Path,
    output: Path,
    settings: dict[str, Any],
    *,
    text_column: str | None,
    label_column: str | None,
    format: str | None,
    sheet: str | None,
    skip_empty: bool,
    normalize_labels: bool,
    unlabelled: Path | None,
    unlabelled_column: str | None,
    quiet: bool,
    multi_label: bool = False,
    label_separator: str = DEFAULT_SEPARATOR,
    export: bool = False,
) -> TrainResult | MultiLabelResult:
    """Check the output, read the data, train with ``settings`` (:class:`TrainConfig`'s fields) and report."""
    check_model_output(output)  # before reading the data and training, not after
    if export:
        check_export(multi_label)
    config = TrainConfig(**settings)
    progress.set_enabled(not quiet)
    console = Console(highlight=False, emoji=False)
    reading: dict[str, Any] = {
        "format": format,
        "sheet": parse_sheet(sheet),
        "skip_empty": skip_empty,
        "normalize_labels": normalize_labels,
        "min_per_class": config.folds,
    }
    if multi_label:
        if unlabelled is not None:
            raise FewlabelError("--unlabelled is single-label only; train a multi-label model without it")
        texts = load_labelled(
            data, text_column, label_column, **reading, multi_label=True, label_separator=label_separator
        )
        return train_multilabel_command(texts, output, config, console)
    if label_separator != DEFAULT_SEPARATOR:
        raise FewlabelError("--label-separator applies with --multi-label only")
    labelled = load_labelled(data, text_column, label_column, **reading)
    pool = (
        load_unlabelled(unlabelled, unlabelled_column, labelled=labelled) if unlabelled is not None else None
    )
    # Said before the minutes of training, not only after: data the tool was not built for.
    said_before = [w for w in (labelled.imbalance(), *warnings_before_training(labelled, config)) if w]
    for warning in said_before:
        console.print(f"[bold yellow]Warning:[/] {escape(warning)}", soft_wrap=True)
    result = train(labelled, output, config, unlabelled=pool)
    print_training(result, labelled, console, said_before, export)
    return result


def train_multilabel_command(
    data: MultiLabelledTexts, output: Path, config: TrainConfig, console: Console
) -> MultiLabelResult:
    """Train on multi-label data and print what was found (:mod:`fewlabel.cli.multilabel_output`)."""
    from fewlabel.cli.multilabel_output import print_multilabel_training
    from fewlabel.multilabel import multi_label_candidates, rare_label_warnings, train_multilabel

    multi_label_candidates(config)  # refuse unsupported settings before the first fit
    # Said before the minutes of training, not only after: labels too rare to learn or score well.
    said_before = rare_label_warnings(data)
    for warning in said_before:
        console.print(f"[bold yellow]Warning:[/] {escape(warning)}", soft_wrap=True)
    result = train_multilabel(data, output, config)
    print_multilabel_training(result, data, console, said_before)
    return result


def demo_command(output: Path, model: str, quiet: bool) -> None:
    from fewlabel.inference.loading import load_model

    check_model_output(output)
    progress.set_enabled(not quiet)
    console = Console(highlight=False, emoji=False)
    start = time.perf_counter()
    demo_file = resources.files("fewlabel") / "demo" / "reviews.csv"
    with resources.as_file(demo_file) as path:
        data = load_labelled(path)
        data.source = "the fewlabel demo set (synthetic reviews)"
        # A first run should not take a coffee break: fine-tuning gets what is left of 5 minutes and
        # stops there with its best checkpoint (`fewlabel train` allows 15 by default).
        config = TrainConfig(model=model, budget_minutes=DEMO_BUDGET_MINUTES)
        console.print(
            f"[bold]fewlabel demo[/]: {len(data)} synthetic product reviews written for this project "
            "(not a benchmark)."
        )
        result = train(data, output, config)
    print_training(result, data, console)
    trained = load_model(output)
    labels, confidences = trained.predict(DEMO_EXAMPLES)
    examples = Table(title="The saved model on new reviews", title_justify="left")
    examples.add_column("text")
    examples.add_column("predicted")
    examples.add_column("confidence", justify="right")
    for text, label, conf in zip(DEMO_EXAMPLES, labels, confidences, strict=True):
        examples.add_row(text, escape(label), f"{conf:.2f}")
    console.print(examples)
    console.print(
        escape(
            f"Demo finished in {time.perf_counter() - start:.0f}s. Next:\n"
            f"  fewlabel predict {output} your_texts.csv -o predictions.csv\n"
            f"  fewlabel train your_labelled.csv -o my-model"
        )
    )


def export_command(model_dir: Path, quantize: str | None, force: bool) -> dict[str, Any]:
    """Export to ``MODEL_DIR/onnx``: an earlier export is replaced only with ``force``, never during another."""
    from fewlabel.atomic import output_lock
    from fewlabel.inference.export import ONNX_DIR, export_onnx
    from fewlabel.inference.predicting import refuse_existing
    from fewlabel.model_dir.manifest import load_manifest

    # A missing or foreign directory is named as such, before the output is looked at.
    manifest = load_manifest(model_dir)
    target = model_dir / ONNX_DIR
    refuse_existing(target, force)
    if manifest.backbone is not None:
        name = manifest.backbone.name
        slow = " (embeddinggemma: about 2 minutes and 6 GB of memory on 2 cores)"
        Console(stderr=True).print(
            f"Exporting {escape(name)} to ONNX and checking it against PyTorch"
            + (slow if name == "embeddinggemma" else "")
            + "..."
        )
    with output_lock(target):
        return export_onnx(model_dir, quantize)


def print_evaluation(evaluation: dict, console: Console) -> None:
    """What `fewlabel evaluate` measured (its JSON output): scores with intervals, per class, baseline."""
    if evaluation.get("task") == "multi-label":
        from fewlabel.cli.multilabel_output import print_multilabel_evaluation

        print_multilabel_evaluation(evaluation, console)
        return
    table = Table(
        title=escape(f"{evaluation['model']} on {evaluation['data']} ({evaluation['n']} texts)"),
        title_justify="left",
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95% CI", justify="right")
    rows = [
        ("accuracy", "accuracy"),
        ("balanced_accuracy", "balanced accuracy"),
        ("macro_f1", "macro-F1"),
        ("log_loss", "log loss"),
    ]
    for key, name in rows:
        m = evaluation[key]
        table.add_row(name, f"{m['value']:.3f}", f"{m['ci95_low']:.3f}-{m['ci95_high']:.3f}")
    table.add_row("majority baseline", f"{evaluation['majority_baseline_accuracy']:.3f}", "", style="dim")
    console.print(table)
    print_per_class(console, "Per class", "label", evaluation["per_class"])
    print_estimate_at_training(console, "estimate", evaluation.get("cv_estimate_at_training"))
