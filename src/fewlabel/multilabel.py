"""``train`` for multi-label data: cross-validate, choose by micro-F1, tune per-label thresholds, save.

Kept apart from :mod:`fewlabel.training` (single-label) because little is shared beyond the
strategies: no softmax calibration, no stratified folds, no learning curve or label issues. Every
label gets one binary head on features shared by all labels (see :mod:`fewlabel.strategies.linear`),
and its own threshold (see :mod:`fewlabel.evaluation.multilabel`). Supported: the strategies that
fit a label matrix (tfidf, embed, ensemble); refused: augmentation, self-training, fine-tuning.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from fewlabel import __version__, progress
from fewlabel.config import TrainConfig
from fewlabel.data.multilabel import MultiLabelledTexts
from fewlabel.errors import FewlabelError
from fewlabel.evaluation.multilabel import (
    MultiCV,
    MultiScores,
    best_thresholds,
    cross_validate_multilabel,
    majority_predictions,
    multilabel_scores,
    per_label,
    shuffled_folds,
)
from fewlabel.model_dir.engines import choose_engine
from fewlabel.model_dir.manifest import FORMAT_VERSION
from fewlabel.model_dir.records import (
    BackboneEntry,
    Manifest,
    MultiLabelMetrics,
    PredictionEntry,
    StrategyEntry,
    Summary,
    TrainingData,
)
from fewlabel.model_dir.store import TrainedModel
from fewlabel.strategies import make_strategy
from fewlabel.strategies.base import MULTI_LABEL_STRATEGIES, Strategy, fit_memo

# A label on fewer texts than this gets a warning: its F1 swings by tens of points between folds.
FEW_POSITIVES = 20
# A model whose micro-F1 interval reaches within this of a trivial answer's is flagged as no better.
TRIVIAL_MARGIN = 0.05
# A micro-F1 interval wider than this is too wide to act on; the user is told so.
WIDE_INTERVAL = 0.10


@dataclass
class MultiLabelResult:
    """What a multi-label training run measured and chose."""

    config: TrainConfig
    labels: list[str]
    separator: str
    results: dict[str, MultiCV]  # every strategy, with its cross-fitted scores
    chosen: str
    estimate: MultiScores  # the chosen strategy's cross-validated scores (thresholds cross-fitted)
    per_label: dict[str, dict[str, float | int]]
    baseline: MultiScores  # always answering each label's majority
    thresholds: dict[str, float]  # of the saved model, chosen on every out-of-fold probability
    strategy: Strategy
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    not_better: str | None = None  # set when the model is not clearly better than the baseline
    model_dir: Path | None = None
    prediction: PredictionEntry | None = None  # the engine the saved model predicts with by default

    def manifest(self) -> Manifest:
        """What the saved model's manifest says of its strategy, labels, thresholds and separator."""
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            fewlabel_version=__version__,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            strategy=StrategyEntry(
                name=self.chosen, description=self.strategy.describe(), params=self.strategy.params
            ),
            labels=list(self.labels),
            task="multi-label",
            thresholds=dict(self.thresholds),
            label_separator=self.separator,
        )
        if self.prediction is None:
            return manifest  # no engine chosen: no field
        return manifest.model_copy(update={"prediction": self.prediction})

    @property
    def model(self) -> TrainedModel:
        """The final model in memory, answering label sets as the saved model does."""
        return TrainedModel(self.strategy, list(self.labels), self.manifest())

    def metrics(self, data: MultiLabelledTexts) -> MultiLabelMetrics:
        """Every number the run measured, as written to ``metrics.json``."""
        return MultiLabelMetrics.model_validate(
            {
                "estimate": _strategy_scores(self.results[self.chosen]),
                "estimate_source": f"{self.config.folds}-fold cross-validation, per-label thresholds cross-fitted",
                "chosen_strategy": self.chosen,
                "per_label": {
                    label: {**scores, "threshold": self.thresholds[label]}
                    for label, scores in self.per_label.items()
                },
                "thresholds": self.thresholds,
                "baseline": self.baseline.to_dict(),
                "not_better_than_baseline": self.not_better,
                "strategies": {name: _strategy_scores(r) for name, r in self.results.items()},
                "data": {
                    "source": data.source,
                    "rows": len(data),
                    "class_counts": data.label_counts(),
                    "sha256": data.fingerprint(),
                    **data.report.to_dict(),
                },
                "labels_per_text": data.labels_per_text(),
                "label_separator": self.separator,
                "folds": self.config.folds,
                "seconds": self.seconds,
                "warnings": list(self.warnings),
                "notes": list(self.notes),
                **({"prediction": self.prediction} if self.prediction is not None else {}),
            }
        )


def _strategy_scores(result: MultiCV) -> dict[str, Any]:
    assert result.scores is not None  # cross_validate_multilabel scores every result
    return {
        **result.scores.to_dict(),
        "name": result.name,
        "description": result.description,
        "fold_micro_f1": [float(v) for v in result.val_micro_f1],
        "train_micro_f1": float(np.mean(result.train_micro_f1)),
        "seconds": result.seconds,
    }


def multi_label_candidates(config: TrainConfig, notes: list[str] | None = None) -> list[str]:
    """The strategies a multi-label run compares; FewlabelError for settings it cannot honour."""
    supported = ", ".join(MULTI_LABEL_STRATEGIES)
    if config.augment:
        raise FewlabelError("augmentation is single-label only; train multi-label without it")
    if config.strategy != "auto":
        if config.strategy not in MULTI_LABEL_STRATEGIES:
            raise FewlabelError(
                f"strategy {config.strategy!r} is single-label only; multi-label training works with {supported}"
            )
        return [config.strategy]
    names = [n for n in config.candidates if n in MULTI_LABEL_STRATEGIES]
    left_out = [n for n in config.candidates if n not in MULTI_LABEL_STRATEGIES]
    if not names:
        raise FewlabelError(
            f"none of the candidates is multi-label; multi-label training works with {supported}"
        )
    if left_out and notes is not None:
        notes.append(f"Left out of auto (single-label only): {', '.join(left_out)}.")
    return names


def _resolved(
    config: TrainConfig, data: MultiLabelledTexts, names: list[str], notes: list[str]
) -> tuple[TrainConfig, str | None]:
    """``best`` replaced by the backbone it stands for (so the saved config says what ran), and a
    warning when that backbone does not cover the texts' languages (None without a backbone)."""
    from fewlabel.data.language import detect_languages
    from fewlabel.encoders.backbones import best_available, language_warning

    if names == ["tfidf"]:
        return config, None
    languages = detect_languages(data.texts)
    if config.model == "best":
        model, why = best_available(data.texts, languages, budget_seconds=60 * config.budget_minutes)
        notes.append(f"Backbone {model}: {why}.")
        config = replace(config, model=model)
    return config, language_warning(config.model, languages)


def train_multilabel(
    data: MultiLabelledTexts,
    output: str | Path | None = None,
    config: TrainConfig | None = None,
    on_result: Callable[[MultiCV], None] | None = None,
) -> MultiLabelResult:
    """Train a multi-label model on ``data``: cross-validate the candidates, choose by micro-F1, choose
    each label's threshold, refit on all texts, and save to ``output`` when given.

    Args:
        data: checked multi-label texts (``load_labelled(..., multi_label=True)``).
        config: settings (:class:`TrainConfig`); ``auto`` compares tfidf, embed and ensemble.
        on_result: called with each strategy's cross-validation result as it finishes.
    """
    config = config or TrainConfig()
    start = time.perf_counter()
    notes: list[str] = []
    names = multi_label_candidates(config, notes)
    if config.diagnostics:
        notes.append("Diagnostics (learning curve, label issues) are single-label only; none were computed.")
    config, language = _resolved(config, data, names, notes)
    factories: dict[str, Callable[[], Strategy]] = {
        n: functools.partial(make_strategy, n, **config.params_for(n)) for n in names
    }
    Y = data.indicator()
    folds = shuffled_folds(len(data), config.folds, config.seed)
    with fit_memo():
        results = _cross_validate(factories, data.texts, Y, folds, config, on_result)
        chosen = max(results, key=lambda n: _score(results[n]).micro_f1.value)
        strategy = factories[chosen]().fit(data.texts, Y)
    if len(results) > 1:
        notes.append(
            f"Chosen by cross-validated micro-F1 among {', '.join(results)}, on the same folds that give "
            "the estimate: choosing the best of several makes it slightly optimistic."
        )
    result = _result(data, config, results, chosen, strategy, notes)
    result.warnings[:0] = [language] if language else []
    if config.choose_engine:
        result.prediction = choose_engine(result.model, data.texts)
    result.seconds = time.perf_counter() - start
    if output is not None:
        result.model_dir = save_multilabel(result, data, Path(output))
    return result


def _score(result: MultiCV) -> MultiScores:
    assert result.scores is not None  # cross_validate_multilabel scores every result
    return result.scores


def _cross_validate(
    factories: dict[str, Callable[[], Strategy]],
    texts: list[str],
    Y: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    config: TrainConfig,
    on_result: Callable[[MultiCV], None] | None,
) -> dict[str, MultiCV]:
    results = {}
    tune = config.tune_threshold is not False  # None (the default): tuned, as for every label set
    with progress.bar("Cross-validating", len(folds) * len(factories)) as advance:
        for name, factory in factories.items():
            results[name] = cross_validate_multilabel(
                factory, texts, Y, folds, name, config.seed, advance, tune
            )
            if on_result:
                on_result(results[name])
    return results


def _result(
    data: MultiLabelledTexts,
    config: TrainConfig,
    results: dict[str, MultiCV],
    chosen: str,
    strategy: Strategy,
    notes: list[str],
) -> MultiLabelResult:
    """The run's result: thresholds for the saved model, per-label scores, baseline and warnings."""
    labels, best = data.classes, results[chosen]
    if config.tune_threshold is False:
        thresholds = np.full(len(labels), 0.5)
        notes.append("Thresholds left at 0.5 for every label (tune_threshold is off), in the estimate too.")
    else:
        thresholds = best_thresholds(best.oof_proba, best.Y)
        notes.append(
            "Each label is answered when its probability reaches its own threshold, chosen for that "
            f"label's F1 on the {len(best.Y)} out-of-fold predictions; the estimate answers each fold "
            "with thresholds chosen on the other folds only."
        )
    result = MultiLabelResult(
        config=config,
        labels=labels,
        separator=data.separator,
        results=results,
        chosen=chosen,
        estimate=_score(best),
        per_label=per_label(best.Y, best.pred, labels),
        baseline=multilabel_scores(best.Y, majority_predictions(best.Y), config.seed),
        thresholds={label: float(t) for label, t in zip(labels, thresholds, strict=True)},
        strategy=strategy,
        notes=notes,
    )
    result.not_better = _not_better(result.estimate, result.baseline, best.Y)
    notes.extend(filter(None, [_hamming_note(result.estimate, result.baseline)]))
    if result.not_better and config.strict:
        raise FewlabelError(f"{result.not_better} Nothing was saved (strict mode).")
    result.warnings = [*_warnings(data, result), *data.report.warnings, *filter(None, [result.not_better])]
    return result


def rare_label_warnings(data: MultiLabelledTexts) -> list[str]:
    """A warning for each label on fewer than FEW_POSITIVES texts."""
    return [
        f"Label {label!r} is on only {n} texts: its F1 is unreliable, and it is the label where more "
        "examples help most."
        for label, n in data.rare_labels(FEW_POSITIVES).items()
    ]


def _warnings(data: MultiLabelledTexts, result: MultiLabelResult) -> list[str]:
    """Labels with very few texts, and an estimate too uncertain to act on."""
    out = rare_label_warnings(data)
    micro = result.estimate.micro_f1
    if micro.high - micro.low > WIDE_INTERVAL:
        out.append(
            f"The micro-F1 estimate is uncertain (95% interval {micro.low:.1%} to {micro.high:.1%}): with "
            "this few labels, differences of a few points between strategies are noise."
        )
    return out


def _not_better(estimate: MultiScores, baseline: MultiScores, Y: np.ndarray) -> str | None:
    """Why the model is no better than a trivial answer, when its micro-F1 interval reaches one.

    Two trivial answers: each label's majority (the baseline reported; usually no label at all, whose
    micro-F1 is 0) and every label on every text, whose micro-F1 is high when labels are common.
    """
    every = float(2 * Y.sum() / (Y.sum() + Y.size)) if Y.size else 0.0  # F1 with recall 1
    trivial = max(baseline.micro_f1.value, every)
    micro = estimate.micro_f1
    if micro.low > trivial + TRIVIAL_MARGIN:
        return None
    return (
        f"Not clearly better than a trivial answer: micro-F1 {micro.value:.1%} (95% interval {micro.low:.1%} "
        f"to {micro.high:.1%}) against {baseline.micro_f1.value:.1%} for always answering each label's "
        f"majority and {every:.1%} for answering every label on every text. Do not rely on this model; "
        "check that the labels match the texts, and label more."
    )


def _hamming_note(estimate: MultiScores, baseline: MultiScores) -> str | None:
    """A note when the Hamming loss is not below the baseline's, as F1-tuned thresholds often make it."""
    mine, base = estimate.hamming_loss.value, baseline.hamming_loss.value
    if mine < base:
        return None
    return (
        f"Hamming loss {mine:.3f} is not below the {base:.3f} of always answering each label's majority: "
        "thresholds tuned for each label's F1 answer more labels than that. Where every wrong text-label "
        "pair costs the same, judge by Hamming loss, not micro-F1."
    )


def save_multilabel(result: MultiLabelResult, data: MultiLabelledTexts, output: Path) -> Path:
    """Write the model directory: strategy, manifest (task, thresholds), metrics, report and card."""
    from fewlabel.encoders.backbones import manifest_entry, resolve
    from fewlabel.model_dir.store import save_model
    from fewlabel.multilabel_report import multilabel_model_card, render_multilabel_report

    metrics = result.metrics(data)
    backbone = result.strategy.params.get("backbone")
    est = metrics.estimate
    manifest = result.manifest().model_copy(
        update={
            "backbone": BackboneEntry.model_validate(manifest_entry(resolve(backbone))) if backbone else None,
            "text_column": data.text_column,
            "label_column": data.label_column,
            "config": result.config.to_dict(),
            "metrics": Summary.model_validate(
                {
                    "macro_f1": est.macro_f1,
                    "micro_f1": est.micro_f1,
                    "estimate_source": metrics.estimate_source,
                }
            ),
            "training_data": TrainingData(
                source=Path(data.source).name,
                rows=len(data),
                sha256=data.fingerprint(),
                class_counts=data.label_counts(),
            ),
        }
    )
    extra = {
        "report.html": render_multilabel_report(manifest, metrics),
        "README.md": multilabel_model_card(manifest, metrics),
    }
    return save_model(
        output, result.strategy, result.labels, manifest, {"metrics.json": metrics.to_json()}, extra
    )
