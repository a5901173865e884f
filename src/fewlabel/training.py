"""``train``: cross-validate the candidates, choose honestly, refit on all the data, save."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from fewlabel import __version__, progress
from fewlabel.calibration import apply_temperature, fit_temperature, reliability
from fewlabel.config import TrainConfig
from fewlabel.data import LabelledTexts
from fewlabel.evaluation import (
    CVResult,
    Estimate,
    choose,
    cross_validate,
    expected_accuracy,
    folds_for,
    majority_baseline,
    nested_cross_validate,
    per_class,
)
from fewlabel.strategies import make_strategy
from fewlabel.strategies.base import Strategy, fit_memo

# A 95% interval wider than this (in accuracy) is too wide to act on; the user is told so.
WIDE_INTERVAL = 0.10


@dataclass
class TrainResult:
    """What a training run measured and chose."""

    config: TrainConfig
    labels: list[str]
    results: dict[str, CVResult]
    chosen: str
    estimate: CVResult
    majority: float
    strategy: Strategy
    seconds: float
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    calibration: dict[str, Any] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    expected: dict[str, Any] = field(default_factory=dict)
    model_dir: Path | None = None

    def metrics(self, data: LabelledTexts) -> dict[str, Any]:
        pred = self.estimate.oof_proba.argmax(axis=1)
        return {
            "estimate": {
                "source": "nested cross-validation of the auto procedure"
                if self.config.strategy == "auto" and len(self.results) > 1
                else "cross-validation",
                **self.estimate.to_dict(),
                **per_class(self.estimate.y, pred, self.labels),
            },
            "expected_accuracy": self.expected,
            "chosen_strategy": self.chosen,
            "calibration": self.calibration,
            "majority_baseline_accuracy": self.majority,
            "strategies": {name: r.to_dict() for name, r in self.results.items()},
            "data": {
                "source": data.source,
                "rows": len(data),
                "class_counts": data.class_counts(),
                "sha256": data.fingerprint(),
                **data.report.to_dict(),
            },
            "folds": self.config.folds,
            "seconds": self.seconds,
            "warnings": list(self.warnings),
            "notes": list(self.notes),
            "diagnostics": {k: v for k, v in self.diagnostics.items() if k != "all_label_issues"},
        }


def _factories(config: TrainConfig) -> dict[str, Callable[[], Strategy]]:
    return {name: (lambda n=name: make_strategy(n, **config.params_for(n))) for name in config.strategies}


def _warnings(result: TrainResult) -> list[str]:
    out = []
    est = Estimate(result.expected["value"], result.expected["ci95_low"], result.expected["ci95_high"])
    if est.low <= result.majority:
        out.append(
            f"The chosen strategy is not clearly better than always answering the most common class "
            f"({result.majority:.1%}): its 95% interval reaches down to {est.low:.1%}. Check the labels, "
            "or add examples."
        )
    if est.high - est.low > WIDE_INTERVAL:
        out.append(
            f"The accuracy estimate is uncertain (95% interval {est.low:.1%} to {est.high:.1%}): "
            "with this few labels, differences of a few points between strategies are noise."
        )
    chosen = result.results[result.chosen]
    if chosen.gap > 0.25:
        out.append(
            f"{result.chosen} memorises its training folds: train {np.mean(chosen.train_accuracy):.1%}, "
            f"validation {np.mean(chosen.val_accuracy):.1%}; expect the validation figure on new data."
        )
    return out


def train(
    data: LabelledTexts,
    output: str | Path | None = None,
    config: TrainConfig | None = None,
    on_result: Callable[[CVResult], None] | None = None,
) -> TrainResult:
    """Train on ``data``: cross-validate, choose (by nested CV when ``auto``), refit on all data, save.

    Args:
        data: checked labelled texts (see :func:`fewlabel.data.load_labelled`).
        output: model directory to write; ``None`` keeps the model in memory only.
        config: settings; defaults to :class:`TrainConfig` defaults.
        on_result: called with each strategy's cross-validation result as it finishes.
    """
    config = config or TrainConfig()
    start = time.perf_counter()
    notes = []
    if config.model == "best":
        from fewlabel.backbones import best_available

        # Resolved here, from the texts, and recorded concretely so the saved config says what ran.
        model, why = best_available(data.texts)
        config = replace(config, model=model)
        notes.append(f"Backbone {model}: {why}.")
    with fit_memo():
        return _train(data, output, config, on_result, start, notes)


def _train(
    data: LabelledTexts,
    output: str | Path | None,
    config: TrainConfig,
    on_result: Callable[[CVResult], None] | None,
    start: float,
    notes: list[str],
) -> TrainResult:
    labels = data.classes
    index = {label: i for i, label in enumerate(labels)}
    y = np.array([index[label] for label in data.labels])
    texts = data.texts
    n_classes = len(labels)
    folds = folds_for(y, config.folds, config.seed)
    factories = _factories(config)

    # Embedding strategies encode every text once here; all fits after that hit the cache.
    for name in factories:
        probe = factories[name]()
        if hasattr(probe, "embed"):
            encode_start = time.perf_counter()
            probe.embed(texts)
            seconds = time.perf_counter() - encode_start
            how = (
                "from the on-disk cache"
                if seconds < 1
                else "now cached on disk; a rerun on these texts skips this"
            )
            notes.append(f"Embeddings of {len(texts)} texts with {config.model}: {seconds:.1f}s ({how}).")
            break

    results: dict[str, CVResult] = {}
    nested = config.strategy == "auto" and len(factories) > 1
    total = len(folds) * len(factories) + (len(folds) if nested else 0)
    with progress.bar("Cross-validating", total) as advance:
        for name, factory in factories.items():
            results[name] = cross_validate(
                factory, texts, y, n_classes, folds, name, config.seed, on_fold=advance
            )
            if on_result:
                on_result(results[name])
        chosen = choose(results)
        estimate = results[chosen]
        if nested:
            estimate = nested_cross_validate(
                factories, texts, y, n_classes, folds, config.inner_folds, config.seed, on_fold=advance
            )
            if on_result:
                on_result(estimate)

    # Temperature fitted on the chosen strategy's out-of-fold probabilities (texts it had not seen).
    chosen_oof = results[chosen].oof_proba
    temperature = fit_temperature(chosen_oof, y)
    calibration = {
        "method": "temperature",
        "temperature": temperature,
        "fitted_on": f"out-of-fold probabilities of {chosen} ({len(y)} texts)",
        "before": reliability(chosen_oof, y),
        "after": reliability(apply_temperature(chosen_oof, temperature), y),
    }
    diagnostics = (
        _diagnostics(data, config, factories, results, chosen, y, folds) if config.diagnostics else {}
    )
    final = factories[chosen]().fit(texts, y, n_classes)
    result = TrainResult(
        config=config,
        labels=labels,
        results=results,
        chosen=chosen,
        estimate=estimate,
        majority=majority_baseline(y),
        strategy=final,
        seconds=0.0,
        calibration=calibration,
        diagnostics=diagnostics,
    )
    result.expected = expected_accuracy(
        estimate, len(y), len(folds), _curve_gain(diagnostics, chosen, len(y))
    )
    result.notes = notes
    result.warnings = data.report.warnings + _warnings(result)
    result.seconds = time.perf_counter() - start
    if output is not None:
        result.model_dir = save(result, data, Path(output))
    return result


def _curve_gain(diagnostics: dict[str, Any], chosen: str, n_rows: int) -> float | None:
    """The learning curve's rise from the folds' training size to all rows, if a curve was fitted."""
    from fewlabel.diagnostics import curve_value

    curve = (diagnostics.get("learning_curve") or {}).get(chosen)
    if not curve or curve.get("fit") is None:
        return None
    n_fold = curve["points"][-1]["n_train"]
    return curve_value(curve["fit"], n_rows) - curve_value(curve["fit"], n_fold)


def _diagnostics(
    data: LabelledTexts,
    config: TrainConfig,
    factories: dict[str, Callable[[], Strategy]],
    results: dict[str, CVResult],
    chosen: str,
    y: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
) -> dict[str, Any]:
    """Learning curves (chosen strategy and the TF-IDF baseline), label issues, near-duplicates, mistakes."""
    from fewlabel import diagnostics as diag

    labels = data.classes
    curves_for = {chosen: factories[chosen]}
    if chosen != "tfidf":
        curves_for["tfidf"] = factories.get("tfidf") or (
            lambda: make_strategy("tfidf", **config.params_for("tfidf"))
        )
    fits = len(folds) * (len(diag.FRACTIONS) - 1) * len(curves_for)
    curves = {}
    with progress.bar("Learning curves", fits) as advance:
        for name, factory in curves_for.items():
            if name in results:
                full = results[name].val_accuracy
            else:
                full = cross_validate(
                    factory, data.texts, y, len(labels), folds, name, config.seed
                ).val_accuracy
            curves[name] = diag.learning_curve(
                factory, data.texts, y, len(labels), folds, full, config.seed, on_fit=advance
            )
    oof = results[chosen].oof_proba
    issues = diag.label_issues(oof, y, labels, data.texts, data.rows)
    return {
        "learning_curve": curves,
        "label_issues": issues[:100],
        "n_label_issues": len(issues),
        "all_label_issues": issues,
        "near_duplicates": diag.near_duplicates(data.texts, y, labels, data.rows),
        "confident_mistakes": diag.confident_mistakes(oof, y, labels, data.texts, data.rows),
    }


def _label_issues_csv(issues: list[dict]) -> str:
    import csv
    import io

    out = io.StringIO()
    columns = [
        "row",
        "given_label",
        "suggested_label",
        "given_label_probability",
        "suggested_label_probability",
        "text",
    ]
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for issue in issues:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in issue.items()})
    return out.getvalue()


def save(result: TrainResult, data: LabelledTexts, output: Path) -> Path:
    from fewlabel.backbones import manifest_entry, resolve
    from fewlabel.persistence import save_model

    metrics = result.metrics(data)
    backbone = result.strategy.params.get("backbone")
    manifest = {
        "fewlabel_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "strategy": {
            "name": result.chosen,
            "description": result.strategy.describe(),
            "params": result.strategy.params,
        },
        "backbone": manifest_entry(resolve(backbone)) if backbone else None,
        "calibration": {"method": "temperature", "temperature": result.calibration["temperature"]},
        "text_column": data.text_column,
        "label_column": data.label_column,
        "config": result.config.to_dict(),
        "metrics": {
            "accuracy": {k: metrics["expected_accuracy"][k] for k in ("value", "ci95_low", "ci95_high")},
            "cv_accuracy": metrics["estimate"]["accuracy"],
            "macro_f1": metrics["estimate"]["macro_f1"],
            "log_loss": metrics["estimate"]["log_loss"],
            "majority_baseline_accuracy": result.majority,
            "estimate_source": metrics["estimate"]["source"],
            "ece_before_calibration": result.calibration["before"]["ece"],
            "ece_after_calibration": result.calibration["after"]["ece"],
        },
        "training_data": {
            "source": Path(data.source).name,
            "rows": len(data),
            "sha256": data.fingerprint(),
            "class_counts": data.class_counts(),
        },
    }
    from fewlabel.report import model_card, render_report

    full = {**manifest, "labels": result.labels}
    extra = {"report.html": render_report(full, metrics), "README.md": model_card(full, metrics)}
    if result.diagnostics:
        extra["label_issues.csv"] = _label_issues_csv(result.diagnostics["all_label_issues"])
    return save_model(output, result.strategy, result.labels, manifest, {"metrics.json": metrics}, extra)
