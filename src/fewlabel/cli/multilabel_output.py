"""What ``fewlabel train --multi-label`` prints: the data, warnings, a table of strategies with
intervals, the headline micro-F1 against the baseline, and per-label scores."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fewlabel.cli.tables import print_engine, print_estimate_at_training, print_per_class
from fewlabel.data.multilabel import MultiLabelledTexts
from fewlabel.evaluation.multilabel import MultiScores
from fewlabel.evaluation.scores import Interval
from fewlabel.multilabel import MultiLabelResult


def _ci(i: Interval) -> str:
    return f"{100 * i.value:.1f}% ({100 * i.low:.1f}-{100 * i.high:.1f})"


def _cells(s: MultiScores) -> list[str]:
    return [
        _ci(s.micro_f1),
        _ci(s.macro_f1),
        _ci(s.subset_accuracy),
        f"{s.hamming_loss.value:.3f} ({s.hamming_loss.low:.3f}-{s.hamming_loss.high:.3f})",
    ]


def multilabel_table(result: MultiLabelResult) -> Table:
    """Strategies x micro-F1, macro-F1, subset accuracy and Hamming loss, with 95% intervals."""
    table = Table(title="Results on texts each model did not see (95% intervals)", title_justify="left")
    for col in ("strategy", "micro-F1", "macro-F1", "subset accuracy", "Hamming loss", "time"):
        table.add_column(col, justify="left" if col == "strategy" else "right")
    for name, r in result.results.items():
        assert r.scores is not None  # every result is scored
        chosen = name == result.chosen
        label = f"{name} *" if chosen else name
        table.add_row(escape(label), *_cells(r.scores), f"{r.seconds:.1f}s", style="bold" if chosen else None)
    table.add_row("each label's majority", *_cells(result.baseline), "", style="dim")
    return table


def label_table(result: MultiLabelResult) -> Table:
    table = Table(title="Per label (thresholds cross-fitted)", title_justify="left")
    for col in ("label", "texts", "precision", "recall", "F1", "threshold"):
        table.add_column(col, justify="left" if col == "label" else "right")
    for label, s in result.per_label.items():
        table.add_row(
            escape(label),
            str(s["support"]),
            f"{s['precision']:.3f}",
            f"{s['recall']:.3f}",
            f"{s['f1']:.3f}",
            f"{result.thresholds[label]:.2f}",
        )
    return table


def print_multilabel_training(
    result: MultiLabelResult, data: MultiLabelledTexts, console: Console, said_before: list[str] | None = None
) -> None:
    counts = ", ".join(f"{k}: {v}" for k, v in data.label_counts().items())
    console.print(
        escape(
            f"Data: {len(data)} texts from {data.source}, {data.labels_per_text():.2f} labels per text ({counts})"
        ),
        soft_wrap=True,
    )
    for warning in result.warnings:
        if warning != result.not_better and warning not in (said_before or []):
            console.print(f"[bold yellow]Warning:[/] {escape(warning)}", soft_wrap=True)
    for note in result.notes:
        console.print(escape(note), soft_wrap=True)
    console.print(multilabel_table(result))
    console.print(label_table(result))
    micro = result.estimate.micro_f1
    chosen = result.results[result.chosen]
    console.print(
        f"Chosen: [bold]{escape(chosen.description)}[/]. Expected micro-F1 on new texts like these: "
        f"[bold green]{100 * micro.value:.1f}%[/] (95% CI {100 * micro.low:.1f}% to {100 * micro.high:.1f}%), "
        f"against {100 * result.baseline.micro_f1.value:.1f}% for always answering each label's majority.",
        soft_wrap=True,
    )
    if result.model_dir:
        console.print(f"Model saved to [bold]{escape(str(result.model_dir))}[/]", soft_wrap=True)
    print_engine(console, result.prediction)
    console.print(f"Took {result.seconds:.1f}s.")
    if result.not_better:  # the last line, where nobody can miss it
        console.print(f"[bold red]Warning:[/] {escape(result.not_better)}", soft_wrap=True)


def print_multilabel_evaluation(evaluation: dict, console: Console) -> None:
    """What `fewlabel evaluate` measured on a multi-label model (its JSON output)."""
    table = Table(
        title=escape(f"{evaluation['model']} on {evaluation['data']} ({evaluation['n']} texts)"),
        title_justify="left",
    )
    for col in ("metric", "value", "95% CI", "each label's majority"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for key, name in (
        ("micro_f1", "micro-F1"),
        ("macro_f1", "macro-F1"),
        ("subset_accuracy", "subset accuracy"),
        ("hamming_loss", "Hamming loss"),
    ):
        m, base = evaluation[key], evaluation["majority_baseline"][key]
        table.add_row(
            name, f"{m['value']:.3f}", f"{m['ci95_low']:.3f}-{m['ci95_high']:.3f}", f"{base['value']:.3f}"
        )
    console.print(table)
    print_per_class(console, "Per label", "label", evaluation["per_label"])
    print_estimate_at_training(console, "micro-F1", evaluation.get("cv_estimate_at_training"))
