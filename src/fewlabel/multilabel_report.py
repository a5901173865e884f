"""The report and model card of a multi-label model, rendered from its typed records.

Short on purpose: the headline micro-F1 with its interval, the baseline, a table per strategy and
per label, then warnings and notes. The single-label report's plots and diagnostics do not apply.
"""

from __future__ import annotations

import html

from fewlabel.model_dir.records import Interval, Manifest, MultiLabelMetrics, MultiLabelScores
from fewlabel.report import CSS


def _pct(x: float) -> str:
    return "n/a" if x != x else f"{100 * x:.1f}%"  # NaN: a label neither present nor predicted


def _ci(i: Interval) -> str:
    return f"{_pct(i.value)} ({_pct(i.ci95_low)} to {_pct(i.ci95_high)})"


def headline(metrics: MultiLabelMetrics) -> str:
    """One sentence: the micro-F1 to expect on new texts, with its interval, against the baseline."""
    micro = metrics.estimate.micro_f1
    return (
        f"Expected micro-F1 on new texts like these: {_pct(micro.value)} (95% interval "
        f"{_pct(micro.ci95_low)} to {_pct(micro.ci95_high)}), against {_pct(metrics.baseline.micro_f1.value)} "
        "for always answering each label's majority."
    )


def _score_cells(s: MultiLabelScores) -> list[str]:
    return [_ci(s.micro_f1), _ci(s.macro_f1), _ci(s.subset_accuracy), f"{s.hamming_loss.value:.3f}"]


def _html_table(columns: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _strategy_rows(metrics: MultiLabelMetrics) -> list[list[str]]:
    rows = [
        [name + (" (chosen)" if name == metrics.chosen_strategy else ""), *_score_cells(s)]
        for name, s in metrics.strategies.items()
    ]
    return [*rows, ["each label's majority", *_score_cells(metrics.baseline)]]


def _label_rows(metrics: MultiLabelMetrics) -> list[list[str]]:
    return [
        [label, str(s.support), _pct(s.precision), _pct(s.recall), _pct(s.f1), f"{s.threshold:.2f}"]
        for label, s in metrics.per_label.items()
    ]


STRATEGY_COLUMNS = ["strategy", "micro-F1", "macro-F1", "subset accuracy", "Hamming loss"]
LABEL_COLUMNS = ["label", "texts", "precision", "recall", "F1", "threshold"]


def render_multilabel_report(manifest: Manifest, metrics: MultiLabelMetrics) -> str:
    """report.html of a multi-label model."""
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>fewlabel report: {esc(manifest.strategy.description)}</title><style>{CSS}</style></head><body>",
        "<h1>fewlabel multi-label model</h1>",
        *(f"<p class='warn'><b>Warning:</b> {esc(w)}</p>" for w in metrics.warnings),
        f"<p><b>{esc(headline(metrics))}</b> Chosen: {esc(manifest.strategy.description)}; "
        f"{esc(metrics.estimate_source)}.</p>",
        "<h2>Strategies (95% intervals)</h2>",
        _html_table(STRATEGY_COLUMNS, _strategy_rows(metrics)),
        "<h2>Per label</h2>",
        _html_table(LABEL_COLUMNS, _label_rows(metrics)),
        f"<p>{metrics.data.rows} texts from {esc(metrics.data.source)}, "
        f"{metrics.labels_per_text:.2f} labels per text, labels joined by {esc(repr(metrics.label_separator))}.</p>",
        "<h2>Notes</h2><ul>",
        *(f"<li>{esc(n)}</li>" for n in metrics.notes),
        "</ul></body></html>",
    ]
    return "\n".join(parts)


def _md_table(columns: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def multilabel_model_card(manifest: Manifest, metrics: MultiLabelMetrics) -> str:
    """README.md of a multi-label model."""
    labels = ", ".join(f"`{label}`" for label in manifest.labels)
    lines = [
        "# fewlabel model (multi-label)",
        "",
        *(f"**Warning: {w}**\n" for w in metrics.warnings),
        f"- **Task**: multi-label text classification: each text gets any of {labels} (or none).",
        f"- **Strategy**: {manifest.strategy.description}.",
        f"- **Estimate**: {headline(metrics)} ({metrics.estimate_source}.)",
        f"- **Training data**: {metrics.data.rows} texts from `{metrics.data.source}`, "
        f"{metrics.labels_per_text:.2f} labels per text.",
        f"- **Created**: {manifest.created or ''} with fewlabel {manifest.fewlabel_version or ''}.",
        "",
        *_md_table(STRATEGY_COLUMNS, _strategy_rows(metrics)),
        "",
        *_md_table(LABEL_COLUMNS, _label_rows(metrics)),
        "",
        "```bash",
        "fewlabel predict THIS_DIR input.csv -o predictions.csv",
        "```",
        "",
        *(f"- {n}" for n in metrics.notes),
        "",
    ]
    return "\n".join(lines)
