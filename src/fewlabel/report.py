"""The training report (one self-contained HTML file, plots inline as SVG) and the model card.

Both are rebuilt from ``fewlabel.json`` and ``metrics.json`` alone, so ``fewlabel report`` can
regenerate them for any saved model. They read the typed records of those files
(:class:`~fewlabel.model_dir.records.Manifest`, :class:`~fewlabel.model_dir.records.Metrics`), never
string keys.
"""

from __future__ import annotations

import functools
import hashlib
import html
import io
import re
from pathlib import Path
from typing import Any, cast

from fewlabel.model_dir.records import (
    Calibration,
    ChosenScores,
    Diagnostics,
    Interval,
    LearningCurve,
    Manifest,
    Metrics,
    RunRecord,
    Scores,
    StrategyScores,
)

PALETTE = {"chosen": "#1f6feb", "tfidf": "#8b949e", "good": "#1a7f37", "bad": "#cf222e"}


def _pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


# svg.hashsalt: matplotlib's element ids are random otherwise, and the same metrics would give a
# different report.html on every `fewlabel report`.
STYLE = {
    "font.size": 9,
    "svg.fonttype": "none",
    "svg.hashsalt": "fewlabel",
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def _svg(fig) -> str:
    """The figure as inline SVG, its element ids prefixed so several SVGs can share one page.

    The prefix comes from the SVG's content, so the same figure always renders the same (and two
    different figures never share ids); the file carries no creation date.
    """
    import matplotlib

    buffer = io.StringIO()
    # cast: matplotlib's stub wants a dict keyed by its literal rc names, STYLE is a plain dict[str, object]
    with matplotlib.rc_context(cast(Any, STYLE)):
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    prefix = f"f{hashlib.sha256(text.encode('utf-8')).hexdigest()[:10]}-"
    text = re.sub(r'\bid="', f'id="{prefix}', text)
    return text.replace("url(#", f"url(#{prefix}").replace('href="#', f'href="#{prefix}')


def _styled(plot):
    """Run a plot function under fewlabel's matplotlib style, restoring the caller's settings after."""

    @functools.wraps(plot)
    def wrapper(*args, **kwargs):
        import matplotlib

        with matplotlib.rc_context(STYLE):
            return plot(*args, **kwargs)

    return wrapper


def _figure(width: float = 6.0, height: float = 3.4):
    """A figure from matplotlib's object API: no pyplot, no backend switch, no global state changed."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(cast(Any, STYLE)):  # cast: as in _svg
        fig = Figure(figsize=(width, height))
        ax = fig.subplots()
    return fig, ax


@_styled
def plot_strategies(metrics: Metrics) -> str:
    fig, ax = _figure(6, 0.5 + 0.45 * (len(metrics.strategies) + 2))
    names, values, lows, highs, colors = [], [], [], [], []
    rows: list[tuple[str, StrategyScores]] = list(metrics.strategies.items())
    if metrics.estimate.name == "auto":
        rows.append(("auto (nested CV)", metrics.estimate))
    for name, r in rows:
        names.append(name)
        values.append(r.accuracy.value)
        lows.append(r.accuracy.value - r.accuracy.ci95_low)
        highs.append(r.accuracy.ci95_high - r.accuracy.value)
        colors.append(
            PALETTE["chosen"] if name in (metrics.chosen_strategy, "auto (nested CV)") else PALETTE["tfidf"]
        )
    y = range(len(names))
    baseline = metrics.majority_baseline_accuracy
    ax.barh(list(y), values, xerr=[lows, highs], color=colors, capsize=3, height=0.6)
    ax.axvline(baseline, color=PALETTE["bad"], linestyle="--", linewidth=1)
    ax.text(baseline, len(names) - 0.4, " majority class", color=PALETTE["bad"], fontsize=8)
    ax.set_yticks(list(y), names)
    ax.invert_yaxis()
    ax.set_xlim(max(0.0, min(values + [baseline]) - 0.1), 1.0)
    ax.set_xlabel("accuracy on texts the model did not see (95% interval)")
    return _svg(fig)


@_styled
def plot_learning_curve(curves: dict[str, LearningCurve], chosen: str) -> str:
    fig, ax = _figure()
    for name, curve in curves.items():
        pts = curve.points
        n = [p.n_train for p in pts]
        color = PALETTE["chosen"] if name == chosen else PALETTE["tfidf"]
        ax.plot(n, [p.accuracy for p in pts], marker="o", color=color, label=name)
        ax.fill_between(n, [p.low for p in pts], [p.high for p in pts], color=color, alpha=0.15)
        ext = curve.extrapolation
        # accuracy, gain and the interval are all set or all None (no curve could be fitted)
        if (
            ext
            and ext.accuracy is not None
            and ext.gain is not None
            and ext.low is not None
            and ext.high is not None
        ):
            ax.plot([n[-1], ext.n_train], [pts[-1].accuracy, ext.accuracy], linestyle=":", color=color)
            ax.errorbar(
                [ext.n_train],
                [ext.accuracy],
                yerr=[[max(ext.gain - ext.low, 0)], [max(ext.high - ext.gain, 0)]],
                fmt="o",
                mfc="white",
                color=color,
                capsize=3,
            )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training texts per fold (log scale); open marker: extrapolated to twice the data")
    ax.set_ylabel("cross-validated accuracy")
    ax.legend(frameon=False)
    return _svg(fig)


@_styled
def plot_training_run(history: list[dict[str, float]], best_epoch: float) -> str:
    """Train and validation loss and accuracy per evaluation of a fine-tuning run."""
    fig, ax = _figure()
    epochs = [h["epoch"] for h in history]
    ax.plot(
        epochs,
        [h["train_accuracy"] for h in history],
        marker="o",
        color=PALETTE["tfidf"],
        label="train accuracy (running)",
    )
    ax.plot(
        epochs,
        [h["val_accuracy"] for h in history],
        marker="o",
        color=PALETTE["chosen"],
        label="validation accuracy",
    )
    ax.axvline(best_epoch, color=PALETTE["chosen"], linestyle=":", linewidth=1)
    ax.set_xlabel("epoch (dotted line: checkpoint kept)")
    ax.set_ylabel("accuracy")
    loss_ax = ax.twinx()
    loss_ax.plot(
        epochs, [h["train_loss"] for h in history], linestyle="--", color=PALETTE["tfidf"], label="train loss"
    )
    loss_ax.plot(
        epochs,
        [h["val_loss"] for h in history],
        linestyle="--",
        color=PALETTE["chosen"],
        label="validation loss",
    )
    loss_ax.set_ylabel("loss (dashed)")
    handles = ax.get_legend_handles_labels()
    more = loss_ax.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], frameon=False, fontsize=7, loc="center right")
    return _svg(fig)


@_styled
def plot_reliability(calibration: Calibration) -> str:
    fig, ax = _figure(4.2, 3.6)
    ax.plot([0, 1], [0, 1], color="#999", linestyle="--", linewidth=1, label="perfect")
    sides = (
        ("before", calibration.before, PALETTE["tfidf"]),
        ("after", calibration.after, PALETTE["chosen"]),
    )
    for label, side, color in sides:
        ax.plot(
            [b.confidence for b in side.bins],
            [b.accuracy for b in side.bins],
            marker="o",
            color=color,
            label=f"{label} (ECE {side.ece:.3f})",
        )
    ax.set_xlabel("confidence (out of fold)")
    ax.set_ylabel("accuracy")
    values = [v for _, side, _ in sides for b in side.bins for v in (b.confidence, b.accuracy)]
    low = min([0.5, *values]) // 0.1 * 0.1
    ax.set_xlim(low, 1.0)
    ax.set_ylim(low, 1.02)
    ax.legend(frameon=False, loc="upper left")
    return _svg(fig)


@_styled
def plot_confusion(matrix: list[list[int]], labels: list[str]) -> str:
    import numpy as np

    m = np.array(matrix)
    size = 1.2 + 0.7 * len(labels)
    fig, ax = _figure(size + 1, size)
    ax.imshow(m, cmap="Blues")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(
                j,
                i,
                str(m[i, j]),
                ha="center",
                va="center",
                color="white" if m[i, j] > m.max() / 2 else "black",
            )
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("given label")
    return _svg(fig)


def _table(columns: list[str], rows: list[list[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def more_labels_sentence(curve: LearningCurve | None, imbalanced: bool) -> str:
    """Whether doubling the data would help, from the chosen strategy's learning curve (None: none computed)."""
    ext = curve.extrapolation if curve else None
    if curve is None or ext is None or ext.gain is None or ext.low is None or ext.high is None:
        return "No learning curve was computed."
    gain, low, high = ext.gain, ext.low, ext.high
    verdict = "likely to help" if low > 0.01 else ("unlikely to help much" if high < 0.02 else "uncertain")
    sentence = (
        f"More labels: doubling the training data (to about {ext.n_train} texts per fold) would change accuracy by "
        f"{100 * gain:+.1f} points (95% interval {100 * low:+.1f} to {100 * high:+.1f}): {verdict}."
    )
    return sentence + label_more_sentence(curve, imbalanced)


def label_more_sentence(curve: LearningCurve, imbalanced: bool) -> str:
    """Which class to label more of, when the classes are imbalanced or found unevenly (else "")."""
    more = curve.label_more
    if more is None:
        return ""
    found = [r for r in more.recall_by_class.values() if r is not None]
    if not imbalanced and (not found or max(found) - min(found) < 0.10):
        return ""
    return (
        f" Label more {more.label!r} texts: it is the class found least often ({_pct(more.recall)} of "
        f"them, against {_pct(more.recall_before)} with {more.n_train_before} training texts instead of "
        f"{more.n_train}); the overall accuracy hides it when the class is rare."
    )


def _more_labels(metrics: Metrics) -> str:
    """:func:`more_labels_sentence` for the chosen strategy of a saved model."""
    curve = metrics.diagnostics.learning_curve.get(metrics.chosen_strategy)
    return more_labels_sentence(curve, metrics.imbalanced)


CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:960px;margin:2rem auto;padding:0 1rem;
color:#1f2328;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{border-bottom:1px solid #d0d7de;padding-bottom:.2rem;margin-top:2rem}
.verdict{background:#f6f8fa;border-left:6px solid #1f6feb;padding:1rem 1.2rem;border-radius:6px}
.big{font-size:2.2rem;font-weight:700;color:#1f6feb}.warn{background:#fff8c5;border-left:6px solid #d4a72c;
padding:.5rem 1rem;border-radius:6px;margin:.4rem 0}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}th,td{border:1px solid #d0d7de;padding:.3rem .6rem;
text-align:left;vertical-align:top}th{background:#f6f8fa}td.num{text-align:right}
.texts td:last-child{max-width:520px}.muted{color:#656d76;font-size:.85rem}svg{max-width:100%;height:auto}
figure{margin:.8rem 0}
"""


def _decision_lines(metrics: Metrics, labels: list[str]) -> list[str]:
    """Recall per class (when the classes are imbalanced or found unevenly) and a tuned threshold."""
    out = []
    recall = metrics.estimate.recall
    found = [r for r in recall if r is not None]
    if found and (metrics.imbalanced or max(found) - min(found) >= 0.10):
        per = ", ".join(f"{html.escape(lab)} {_pct(r)}" for lab, r in zip(labels, recall, strict=True))
        out.append(f"<p>Recall per class (the share of each class the model finds): {per}.</p>")
    if metrics.decision_threshold is not None:
        out.append(
            f"<p>Decision threshold: <b>{html.escape(labels[1])}</b> when its calibrated probability is at "
            f"least {metrics.decision_threshold:.2f}, tuned for balanced accuracy on predictions for "
            "unseen texts (the estimate above cross-fits it, so the tuning does not flatter it).</p>"
        )
    return out


def render_report(manifest: Manifest, metrics: Metrics) -> str:
    """The whole report as one HTML string: verdict first, then the evidence."""
    # The order of the sections is the order of the plots: each SVG's ids carry a running number.
    parts = [
        *_head(manifest, metrics),
        *_verdict(manifest, metrics),
        *_strategies_section(metrics),
        *_runs_section(metrics.runs),
        *_learning_curve_section(metrics),
        *_calibration_section(metrics.calibration),
        *_errors_section(metrics.estimate, manifest.labels, metrics.diagnostics),
        *_label_issues_section(metrics.diagnostics),
        *_data_section(metrics),
        "</body></html>",
    ]
    return "\n".join(parts)


def _head(manifest: Manifest, metrics: Metrics) -> list[str]:
    """The page's head, title and provenance line, and the at-chance warning above everything."""
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>fewlabel report: {html.escape(manifest.strategy.description)}</title><style>{CSS}</style></head><body>",
        "<h1>fewlabel training report</h1>",
        f"<p class='muted'>Created {html.escape(manifest.created or '')} by fewlabel "
        f"{html.escape(manifest.fewlabel_version or '')} from "
        f"{html.escape(Path(metrics.data.source).name)} "
        f"({metrics.data.rows} texts).</p>",
    ]
    if metrics.at_chance:
        parts.append(
            f"<div class='warn' style='border-left-color:#cf222e'><b>{html.escape(metrics.at_chance)}</b></div>"
        )
    return parts


def _headline_scores(metrics: Metrics) -> Interval:
    """The estimate's interval for the headline metric (balanced accuracy on imbalanced data)."""
    est = metrics.estimate
    if metrics.expected_accuracy.metric == "balanced_accuracy" and est.balanced_accuracy is not None:
        return est.balanced_accuracy
    return est.accuracy


def _verdict(manifest: Manifest, metrics: Metrics) -> list[str]:
    """The verdict box (expected accuracy, its source, the choice, label issues), then the warnings."""
    acc = metrics.expected_accuracy
    balanced = acc.metric == "balanced_accuracy"
    what = "balanced accuracy (the mean recall per class)" if balanced else "accuracy"
    baseline = 1 / len(manifest.labels) if balanced else metrics.majority_baseline_accuracy
    backbone = manifest.backbone.name if manifest.backbone else None
    parts = [
        "<section class='verdict' id='verdict'><h2 style='border:0;margin-top:0'>Verdict</h2>",
        f"<p>Expected {what} on new texts like these: <span class='big'>{_pct(acc.value)}</span> "
        f"(95% interval {_pct(acc.ci95_low)} to {_pct(acc.ci95_high)}).</p>",
        f"<p class='muted'>From {html.escape(metrics.estimate.source)}: {_pct(_headline_scores(metrics).value)} out of fold"
        + (
            f", plus {100 * acc.learning_curve_gain:.1f} points the learning curve predicts for training on all "
            "rows instead of (k-1)/k of them"
            if acc.learning_curve_gain
            else ""
        )
        + ". The interval allows for the noise of cross-validation itself (Nadeau and Bengio's correction).</p>",
        f"<p>Chosen strategy: <b>{html.escape(manifest.strategy.description)}</b>"
        + (f" on backbone <b>{html.escape(backbone)}</b>" if backbone else "")
        + f". Always answering the most common class would score {_pct(baseline)}.</p>",
        *_decision_lines(metrics, manifest.labels),
        *[f"<p>{html.escape(line)}</p>" for line in filter(None, [distilled_sentence(metrics)])],
        f"<p>{html.escape(_more_labels(metrics))}</p>",
        *_label_issues_line(metrics.diagnostics),
        "</section>",
    ]
    for warning in metrics.warnings:
        if warning != metrics.at_chance:  # that one already heads the page
            parts.append(f"<div class='warn'>{html.escape(warning)}</div>")
    return parts


def distilled_sentence(metrics: Metrics) -> str | None:
    """For a student of ``fewlabel distill``: its teacher, what it learned from, and their agreement."""
    record = metrics.distillation
    if record is None:
        return None
    teacher, agreement = record.teacher, record.agreement
    said = f" (its own estimate: {teacher.estimate})" if teacher.estimate else ""
    return (
        f"Distilled from a {teacher.description or teacher.strategy} teacher{said}, on its probabilities "
        f"for {record.unlabelled.texts} unlabelled texts and on the labelled rows. Agreement with the "
        f"teacher on {record.agreement_texts} unlabelled texts the student did not learn from: "
        f"{_pct(agreement.value)} (95% interval {_pct(agreement.ci95_low)} to {_pct(agreement.ci95_high)})."
    )


def _label_issues_line(diag: Diagnostics) -> list[str]:
    """The verdict's line on label issues: how many rows, or why none were listed."""
    if diag.label_issues_withheld:
        return [f"<p>Label issues {html.escape(diag.label_issues_withheld)}.</p>"]
    if diag.n_label_issues is not None:
        return [
            f"<p>{diag.n_label_issues} training row(s) have a label the model disputes (see <a href='#labels'>label issues</a> "
            "and <code>label_issues.csv</code>).</p>"
        ]
    return []


STRATEGY_COLUMNS = [
    "strategy",
    "accuracy",
    "95% CI",
    "balanced",
    "macro-F1",
    "log loss",
    "train acc",
    "gap",
    "per fold",
]


def _strategies_section(metrics: Metrics) -> list[str]:
    """Every strategy's out-of-fold scores: a plot, a table, and the nested choices."""
    rows = [
        _strategy_row(name, scores, metrics.chosen_strategy) for name, scores in metrics.strategies.items()
    ]
    parts = [
        "<h2 id='strategies'>Strategies compared</h2>",
        "<p>Every figure is out of fold: each text was scored by a model that had not seen it. The auto row "
        "is nested cross-validation of the whole choose-the-best procedure, so it is not inflated by the choice. "
        "Strategies too slow to refit on every fold (fine-tuning) are scored on the 20% of rows their own run "
        "held out; those rows also picked the checkpoint, so their figure is slightly optimistic.</p>",
        f"<figure>{plot_strategies(metrics)}</figure>",
        _table(STRATEGY_COLUMNS, rows),
    ]
    choices = metrics.estimate.choices_per_fold
    if choices:
        parts.append(f"<p class='muted'>Choices made by the outer folds: {', '.join(choices)}.</p>")
    return parts


def _strategy_row(name: str, full: StrategyScores, chosen: str) -> list[str]:
    shown: Scores = full.with_threshold or full  # the answers it gives: tuned threshold, if any
    # A threshold's scores written without balanced accuracy show the strategy's own.
    balanced = shown.balanced_accuracy or full.balanced_accuracy
    return [
        name
        + (" (held out)" if full.protocol == "holdout" else "")
        + (" (tuned threshold)" if full.with_threshold else "")
        + (" (chosen)" if name == chosen else ""),
        _pct(shown.accuracy.value),
        f"{_pct(shown.accuracy.ci95_low)} to {_pct(shown.accuracy.ci95_high)}",
        _pct(balanced.value if balanced else None),
        f"{shown.macro_f1.value:.3f}",
        f"{shown.log_loss.value:.3f}",
        _pct(full.train_accuracy),
        f"{100 * full.train_val_gap:+.1f} pts",
        ", ".join(_pct(a, 0) for a in full.fold_accuracy),
    ]


def _runs_section(runs: dict[str, RunRecord]) -> list[str]:
    """How each fine-tuning run went: its split, layers, stopping, warnings and training curves."""
    parts = []
    for name, run in runs.items():
        parts.append(f"<h2 id='run-{html.escape(name)}'>How {html.escape(name)} trained</h2>")
        parts.append(
            f"<p>{run.n_train} texts trained, {run.n_val} held out for early stopping and scoring; "
            f"{run.frozen_layers} lower layers frozen (computed once, {run.cache_seconds:.0f}s), "
            f"{run.trained_layers} trained. {html.escape(run.stopped)}; the checkpoint after epoch "
            f"{run.best_epoch:.1f} was kept. {run.truncated} text(s) were longer than the window. "
            f"Took {run.seconds:.0f}s.</p>"
        )
        for line in run.restarts + run.flags:
            parts.append(f"<div class='warn'>{html.escape(line)}</div>")
        if run.history:
            parts.append(f"<figure>{plot_training_run(run.history, run.best_epoch)}</figure>")
    return parts


def _learning_curve_section(metrics: Metrics) -> list[str]:
    """Would more labels help: the sentence, the curves and their points ([] without curves)."""
    curves = metrics.diagnostics.learning_curve
    if not curves:
        return []
    lc_rows = [
        [name, p.n_train, _pct(p.accuracy), f"{_pct(p.low)} to {_pct(p.high)}"]
        for name, c in curves.items()
        for p in c.points
    ]
    return [
        "<h2 id='learning-curve'>Would more labels help?</h2>",
        f"<p>{html.escape(_more_labels(metrics))}</p>",
        f"<figure>{plot_learning_curve(curves, metrics.chosen_strategy)}</figure>",
        _table(["strategy", "training texts", "accuracy", "95% CI (across folds)"], lc_rows),
    ]


def _calibration_section(calibration: Calibration) -> list[str]:
    """Calibration error before and after temperature scaling, and the reliability plot."""
    return [
        "<h2 id='calibration'>Can you trust the confidence?</h2>",
        f"<p>Expected calibration error of the out-of-fold confidence: {calibration.before.ece:.3f} as the "
        f"model comes, {calibration.after.ece:.3f} after temperature scaling (T = "
        f"{calibration.temperature:.2f}, fitted on out-of-fold predictions and stored in the model). "
        "A confidence of 0.8 should be right about 80% of the time.</p>",
        f"<figure>{plot_reliability(calibration)}</figure>",
    ]


def _errors_section(est: ChosenScores, labels: list[str], diag: Diagnostics) -> list[str]:
    """The confusion matrix, scores per class and the most confident out-of-fold mistakes."""
    parts = [
        "<h2 id='errors'>Errors to read</h2>",
        f"<figure>{plot_confusion(est.confusion_matrix, labels)}</figure>",
        _table(
            ["label", "precision", "recall", "F1", "support"],
            [
                [lab, f"{m.precision:.3f}", f"{m.recall:.3f}", f"{m.f1:.3f}", m.support]
                for lab, m in est.per_class.items()
            ],
        ),
    ]
    if diag.confident_mistakes:
        parts.append("<p>The out-of-fold mistakes the model was most sure of:</p>")
        parts.append(
            _table(
                ["row", "given", "predicted", "confidence", "text"],
                [
                    [m.row, m.given_label, m.predicted_label, f"{m.confidence:.2f}", m.text]
                    for m in diag.confident_mistakes
                ],
                "texts",
            )
        )
    return parts


def _label_issues_section(diag: Diagnostics) -> list[str]:
    """Disputed labels and near-duplicate pairs ([] when label issues were not looked for)."""
    if diag.n_label_issues is None:
        return []
    issues = diag.label_issues
    issue_rows = [
        [i.row, i.given_label, i.suggested_label, f"{i.given_label_probability:.2f}", i.text]
        for i in issues[:25]
    ]
    dups = diag.near_duplicates
    conflicting = [d for d in dups if d.conflicting_labels]
    parts = [
        "<h2 id='labels'>Label issues and near-duplicates</h2>",
        "<p>Rows whose label the out-of-fold model disputes with at least the confidence it usually has for "
        "the suggested class (confident learning). Row numbers are lines of the data file. The full list is "
        "in <code>label_issues.csv</code>.</p>",
        _table(["row", "given", "suggested", "p(given)", "text"], issue_rows, "texts")
        if issues
        else "<p>None found.</p>",
        f"<p>{len(dups)} pair(s) of near-duplicate texts (character n-gram cosine at least 0.9), "
        f"{len(conflicting)} of them with different labels.</p>",
    ]
    if dups:
        dup_rows = [
            [f"{d.row_a}, {d.row_b}", f"{d.label_a} / {d.label_b}", f"{d.similarity:.2f}", d.text_a, d.text_b]
            for d in dups[:20]
        ]
        parts.append(_table(["rows", "labels", "similarity", "text A", "text B"], dup_rows, "texts"))
    return parts


def _data_section(metrics: Metrics) -> list[str]:
    """The data read and used, and the settings, then the notes."""
    data = metrics.data
    rows: list[list[Any]] = [
        ["rows used", data.rows],
        ["rows read", data.rows_read],
        ["classes", ", ".join(f"{k}: {v}" for k, v in data.class_counts.items())],
        ["duplicates merged", data.duplicates_merged],
        ["conflicting rows left out", data.conflicting_rows_removed],
        ["long texts", data.long_texts],
        ["data SHA-256", data.sha256],
        ["folds", metrics.folds],
        ["seconds", f"{metrics.seconds:.1f}"],
    ]
    parts = ["<h2 id='data'>Data and settings</h2>", _table(["", ""], rows)]
    parts.extend(f"<p class='muted'>{html.escape(note)}</p>" for note in metrics.notes)
    return parts


def model_card(manifest: Manifest, metrics: Metrics) -> str:
    """A short README.md for the model directory."""
    acc = metrics.expected_accuracy
    balanced = acc.metric == "balanced_accuracy"
    backbone = manifest.backbone.name if manifest.backbone else None
    labels = manifest.labels
    source, sha256 = _training_data(manifest, metrics)
    lines = [
        "# fewlabel model",
        "",
        *([f"**Warning: {metrics.at_chance}**", ""] if metrics.at_chance else []),
        f"- **Task**: text classification into {', '.join(f'`{lab}`' for lab in labels)}.",
        f"- **Strategy**: {manifest.strategy.description}"
        + (f", backbone `{backbone}`." if backbone else "."),
        f"- **Expected {'balanced accuracy (mean recall per class)' if balanced else 'accuracy'}**: "
        f"{_pct(acc.value)} (95% interval {_pct(acc.ci95_low)} to "
        f"{_pct(acc.ci95_high)}), {metrics.estimate.source}; "
        + (
            f"chance {_pct(1 / len(labels))}."
            if balanced
            else f"majority class {_pct(metrics.majority_baseline_accuracy)}."
        ),
        *(
            [f"- **Decision threshold**: `{labels[1]}` from probability {metrics.decision_threshold:.2f}."]
            if metrics.decision_threshold is not None
            else []
        ),
        *[f"- **Distilled**: {line}" for line in filter(None, [distilled_sentence(metrics)])],
        f"- **Macro-F1**: {metrics.estimate.macro_f1.value:.3f}; **log loss** "
        f"{metrics.estimate.log_loss.value:.3f}.",
        f"- **Training data**: {metrics.data.rows} texts from `{source}` (SHA-256 `{sha256[:16]}…`).",
        f"- **Created**: {manifest.created or ''} with fewlabel {manifest.fewlabel_version or ''}.",
        *_engine_lines(manifest),
        "",
        "The estimate holds for texts like the training data; on another domain, measure with "
        "`fewlabel evaluate`. Confidences are calibrated by temperature scaling on out-of-fold predictions.",
        "",
        "```bash",
        "fewlabel predict THIS_DIR input.csv -o predictions.csv",
        "fewlabel evaluate THIS_DIR labelled.csv",
        "```",
        "",
        "See `report.html` for the evidence"
        + (
            " and `label_issues.csv` for rows worth re-checking."
            if metrics.diagnostics.n_label_issues is not None  # None: diagnostics were off
            else "."
        ),
        "",
    ]
    return "\n".join(lines)


def _engine_lines(manifest: Manifest) -> list[str]:
    """The model card's line on the engine ``predict`` and ``serve`` run, when training chose one."""
    chosen = manifest.prediction
    if chosen is None:
        return []
    exact = (
        "exact float32, as evaluated" if chosen.engine == "torch" else "`--engine torch` for exact float32"
    )
    return [f"- **Prediction engine**: `{chosen.engine}`: {chosen.reason} ({exact})."]


def _training_data(manifest: Manifest, metrics: Metrics) -> tuple[str, str]:
    """The training data's file name and SHA-256: the manifest's copy, else metrics.json's (the same pair)."""
    saved = manifest.training_data
    if saved is not None and saved.source is not None and saved.sha256 is not None:
        return saved.source, saved.sha256
    return Path(metrics.data.source).name, metrics.data.sha256
