"""``train``: cross-validate the candidates, choose honestly, refit on all the data, save."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

import numpy as np

from fewlabel import __version__, progress
from fewlabel.config import TrainConfig
from fewlabel.data.labelled import LabelledTexts, UnlabelledTexts, is_imbalanced
from fewlabel.data.language import Languages, detect_languages
from fewlabel.errors import FewlabelError
from fewlabel.evaluation.calibration import apply_temperature, fit_temperature, reliability
from fewlabel.evaluation.scores import (
    CVResult,
    Interval,
    Scores,
    choose,
    cross_validate,
    expected_accuracy,
    folds_for,
    holdout_accuracy,
    majority_baseline,
    nested_cross_validate,
    per_class,
    score,
)
from fewlabel.evaluation.threshold import balanced_accuracy, best_threshold, crossfit_decisions
from fewlabel.model_dir.engines import choose_engine
from fewlabel.model_dir.manifest import FORMAT_VERSION
from fewlabel.model_dir.records import (
    BackboneEntry,
    CalibrationEntry,
    DecisionEntry,
    Expected,
    Manifest,
    Metrics,
    PredictionEntry,
    StrategyEntry,
    Summary,
    TrainingData,
)
from fewlabel.model_dir.store import TrainedModel
from fewlabel.strategies import get_strategy_class, make_strategy
from fewlabel.strategies.base import HoldoutRun, HoldoutStrategy, Strategy, fit_memo

# A 95% interval wider than this (in accuracy) is too wide to act on; the user is told so.
WIDE_INTERVAL = 0.10
# A model whose balanced accuracy interval reaches within this of chance (1/k) is flagged as no better
# than chance: never saved quietly, an error with --strict, and its label issues are not listed.
CHANCE_MARGIN = 0.05
# Slow strategies hold out 20% for early stopping and scoring; below this many rows that split is
# too small to do either (40 validation rows give a +-15 point interval).
MIN_ROWS_FOR_HOLDOUT = 200
# What few_labels_warning cites (BENCHMARKS.md, "A label-count curve").
LABEL_CURVE_SUMMARY = (
    "with 32-128 labels frozen mpnet features scored 64-83% on book reviews and product-review sentences, "
    "mpnet tuned SetFit-style 85-88% with 32, and frozen embeddinggemma 89-94%"
)
# Slow strategies that can train without a validation split: below MIN_ROWS_FOR_HOLDOUT rows auto
# cross-validates them (BENCHMARKS.md, "Below 200 labels": with 32 labels the default on mpnet went
# from 75.6% to 88.0% on cr and from 63.7% to 84.8% on blitzer_books).
SMALL_DATA_SLOW = ("setfit",)
# Seconds kept back from the budget for what follows the slow strategies (refit, report, save).
FINAL_STEPS_SECONDS = 30.0


@dataclass
class TrainResult:
    """What a training run measured and chose."""

    config: TrainConfig
    labels: list[str]
    results: dict[str, CVResult]
    chosen: str
    evaluation: CVResult  # the scores behind the headline: the chosen strategy's CV or hold-out run
    majority: float
    strategy: Strategy
    seconds: float
    expected: Expected  # the headline estimate of the saved model, with its interval
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    calibration: dict[str, Any] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    runs: dict[str, Any] = field(default_factory=dict)  # what each slow strategy's training run did
    nested: CVResult | None = None  # nested CV of auto's choice among the cross-validated strategies
    model_dir: Path | None = None
    unlabelled: dict[str, Any] | None = None  # self-training: texts used, pseudo-labels in the final fit
    threshold: float | None = None  # two classes: answer labels[1] when its probability reaches this
    estimate_pred: np.ndarray | None = None  # the answers behind the estimate (threshold cross-fitted)
    imbalanced: bool = False  # the smallest class has under half its fair share of the rows
    chance_warning: str | None = None  # set when the model is not clearly better than chance
    languages: Languages | None = None  # of the training texts (a sample)
    prediction: PredictionEntry | None = None  # the engine the saved model predicts with by default

    def manifest(self) -> Manifest:
        """What the saved model's manifest says of its strategy, labels, calibration and threshold."""
        strategy = getattr(self.strategy, "fitted", self.strategy)  # the model inside any wrapper
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            fewlabel_version=__version__,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            strategy=StrategyEntry(
                name=self.chosen, description=self.strategy.describe(), params=strategy.params
            ),
            calibration=CalibrationEntry(method="temperature", temperature=self.calibration["temperature"]),
            labels=list(self.labels),
        )
        fields: dict[str, Any] = {}  # only those the model has: a field set to None is written as null
        if self.threshold is not None:
            fields["decision"] = DecisionEntry(threshold=self.threshold, label=self.labels[1])
        if self.prediction is not None:
            fields["prediction"] = self.prediction
        return manifest.model_copy(update=fields)

    @property
    def model(self) -> TrainedModel:
        """The final model in memory: calibrated probabilities and labels, as the saved model gives."""
        strategy = getattr(self.strategy, "fitted", self.strategy)
        return TrainedModel(strategy, list(self.labels), self.manifest())

    def estimate_source(self) -> str:
        if self.evaluation.protocol == "holdout":
            return (
                f"the {len(self.evaluation.y)} validation rows {self.chosen} held out "
                "(also used for early stopping, so slightly optimistic)"
            )
        if self.evaluation.name == "auto":
            return "nested cross-validation of the auto procedure"
        return "cross-validation"

    def metrics(self, data: LabelledTexts) -> Metrics:
        """Every number the run measured, as written to ``metrics.json``."""
        pred = (
            self.estimate_pred if self.estimate_pred is not None else self.evaluation.oof_proba.argmax(axis=1)
        )
        return Metrics.model_validate(
            {
                "estimate": {
                    "source": self.estimate_source(),
                    **self.evaluation.to_dict(),
                    **per_class(self.evaluation.y, pred, self.labels),
                },
                "expected_accuracy": self.expected,
                "chosen_strategy": self.chosen,
                "at_chance": self.chance_warning,
                "imbalanced": self.imbalanced,
                "decision_threshold": self.threshold,
                "calibration": self.calibration,
                "majority_baseline_accuracy": self.majority,
                "strategies": {name: r.to_dict() for name, r in self.results.items()},
                "data": {
                    "source": data.source,
                    "rows": len(data),
                    "class_counts": data.class_counts(),
                    "sha256": data.fingerprint(),
                    **data.report.to_dict(),
                    **({"languages": self.languages.to_dict()} if self.languages is not None else {}),
                },
                "folds": self.config.folds,
                "seconds": self.seconds,
                "warnings": list(self.warnings),
                "notes": list(self.notes),
                "diagnostics": {k: v for k, v in self.diagnostics.items() if k != "all_label_issues"},
                "runs": self.runs,
                "unlabelled": self.unlabelled,
                **({"prediction": self.prediction} if self.prediction is not None else {}),
            }
        )


# Self-training settings: cross-validated strategies add the most confident predictions in up to 3
# rounds (semi_supervised.self_train); slow strategies are fitted twice only (teacher, then student
# on every confident pseudo-label), which is what a time budget allows.
SELF_TRAINING = {"threshold": 0.9, "rounds": 3}
SELF_TRAINING_SLOW = {"threshold": 0.9, "rounds": 1}


def _is_slow(name: str) -> bool:
    """Whether the strategy registered as ``name`` is scored on a hold-out split of its own run."""
    return issubclass(get_strategy_class(name), HoldoutStrategy)


def _self_trained(name: str, params: dict[str, Any], unlabelled: list[str]) -> Strategy:
    from fewlabel.strategies.self_training import SelfTrained

    settings = dict(SELF_TRAINING_SLOW, per_class=len(unlabelled)) if _is_slow(name) else SELF_TRAINING
    return SelfTrained(unlabelled, strategy=name, strategy_params=params, **settings)


def _factories(config: TrainConfig, unlabelled: list[str] | None = None) -> dict[str, Callable[[], Strategy]]:
    if unlabelled:
        # Wrapped, so each fit self-trains from its own training rows: validation folds stay unseen.
        return {
            name: cast(
                Callable[[], Strategy], lambda n=name: _self_trained(n, config.params_for(n), unlabelled)
            )
            for name in config.strategies
        }
    if config.augment:
        from fewlabel.strategies.augment import Augmented

        # Wrapped, so each fit augments its own training texts: validation folds stay real texts.
        return {
            name: cast(
                Callable[[], Strategy],
                lambda n=name: Augmented(
                    strategy=n, strategy_params=config.params_for(n), method=config.augment, seed=config.seed
                ),
            )
            for name in config.strategies
        }
    return {
        name: cast(Callable[[], Strategy], lambda n=name: make_strategy(n, **config.params_for(n)))
        for name in config.strategies
    }


@dataclass
class _Run:
    """One ``train`` call: its data as arrays, folds, settings and deadline, and what it has found so far."""

    data: LabelledTexts
    config: TrainConfig
    start: float
    notes: list[str]
    slow_backbones: list[str]  # the backbones slow strategies may run with, most accurate first
    unlabelled: UnlabelledTexts | None = None
    on_result: Callable[[CVResult], None] | None = None
    results: dict[str, CVResult] = field(default_factory=dict)  # every strategy scored, in order
    nested: CVResult | None = None  # nested CV of auto's choice among the cross-validated strategies
    fitted: dict[str, Strategy] = field(default_factory=dict)  # slow strategies, fitted once on every row
    runs: dict[str, HoldoutRun] = field(default_factory=dict)  # what each slow strategy's run measured
    warnings: list[str] = field(default_factory=list)  # about those runs
    labels: list[str] = field(init=False)
    texts: list[str] = field(init=False)
    y: np.ndarray = field(init=False)
    folds: list[tuple[np.ndarray, np.ndarray]] = field(init=False)
    pool: list[str] | None = field(init=False)  # the unlabelled texts every strategy self-trains on
    factories: dict[str, Callable[[], Strategy]] = field(init=False)
    deadline: float = field(init=False)
    imbalanced: bool = field(init=False)

    def __post_init__(self) -> None:
        self.labels = self.data.classes
        index = {label: i for i, label in enumerate(self.labels)}
        self.y = np.array([index[label] for label in self.data.labels])
        self.texts = self.data.texts
        self.folds = folds_for(self.y, self.config.folds, self.config.seed)
        self.pool = self.unlabelled.texts if self.unlabelled is not None else None
        self.factories = _factories(self.config, self.pool)
        self.deadline = self.start + 60 * self.config.budget_minutes
        self.imbalanced = is_imbalanced(np.bincount(self.y, minlength=self.n_classes).tolist())

    @property
    def n_classes(self) -> int:
        return len(self.labels)


@dataclass
class _Choice:
    """The strategy chosen so far, and the result its estimate comes from."""

    name: str
    estimate: CVResult


def _warnings(result: TrainResult) -> list[str]:
    out = []
    est = Interval(result.expected.value, result.expected.ci95_low, result.expected.ci95_high)
    what = "balanced accuracy" if result.expected.metric == "balanced_accuracy" else "accuracy"
    if est.high - est.low > WIDE_INTERVAL:
        out.append(
            f"The {what} estimate is uncertain (95% interval {est.low:.1%} to {est.high:.1%}): "
            "with this few labels, differences of a few points between strategies are noise."
        )
    chosen = result.results[result.chosen]
    if chosen.protocol == "cv" and chosen.gap > 0.25:
        out.append(
            f"{result.chosen} memorises its training folds: train {np.mean(chosen.train_accuracy):.1%}, "
            f"validation {np.mean(chosen.val_accuracy):.1%}; expect the validation figure on new data."
        )
    return out


def _calibrate(run: _Run, chosen: str) -> tuple[float, dict[str, Any]]:
    """Temperature fitted on the chosen strategy's predictions for texts it had not seen, and its record."""
    result = run.results[chosen]
    temperature = fit_temperature(result.oof_proba, result.y)
    return temperature, {
        "method": "temperature",
        "temperature": temperature,
        "fitted_on": f"{'held-out' if chosen in run.fitted else 'out-of-fold'} probabilities of {chosen} "
        f"({len(result.y)} texts)",
        "before": reliability(result.oof_proba, result.y),
        "after": reliability(apply_temperature(result.oof_proba, temperature), result.y),
    }


def _decide(run: _Run, choice: _Choice, temperature: float) -> tuple[float | None, np.ndarray]:
    """The decision threshold (two classes), and the answers the estimate is scored on.

    Tuned by default on imbalanced data (``config.tune_threshold`` None), on calibrated out-of-fold
    (or held-out) probabilities of the chosen strategy; the estimate's answers are cross-fitted (each
    fold answered with a threshold chosen on the other folds) and its scores replaced by theirs.
    """
    config, labels, notes, estimate = run.config, run.labels, run.notes, choice.estimate
    chosen = run.results[choice.name]
    if not _tunes_threshold(config, run.imbalanced, len(labels)):
        if config.tune_threshold and len(labels) != 2:
            notes.append("Decision threshold not tuned: that is done for two classes only.")
        return None, estimate.oof_proba.argmax(axis=1)
    threshold = best_threshold(apply_temperature(chosen.oof_proba, temperature)[:, 1], chosen.y)
    pred, tuned = _crossfit(estimate, run.folds, config.seed, temperature)
    argmax = estimate.scores.balanced_accuracy.value
    rows = f"{len(chosen.y)} {'held-out' if chosen.protocol == 'holdout' else 'out-of-fold'} predictions"
    if tuned.balanced_accuracy.value <= argmax:
        notes.append(
            f"Decision threshold left at the most probable class: tuned on {rows}, it reached "
            f"{tuned.balanced_accuracy.value:.1%} balanced accuracy cross-fitted, against {argmax:.1%} without."
        )
        return None, estimate.oof_proba.argmax(axis=1)
    estimate.scores = tuned
    notes.append(
        f"Decision threshold: {labels[1]!r} when its probability is at least {threshold:.2f} (tuned for "
        f"balanced accuracy on {rows}). Balanced accuracy with the threshold cross-fitted: "
        f"{tuned.balanced_accuracy.value:.1%}, against {argmax:.1%} answering the most probable class."
    )
    return threshold, pred


def _tunes_threshold(config: TrainConfig, imbalanced: bool, n_classes: int) -> bool:
    return n_classes == 2 and (imbalanced if config.tune_threshold is None else config.tune_threshold)


def _crossfit(
    result: CVResult, folds: list[tuple[np.ndarray, np.ndarray]], seed: int, temperature: float = 1.0
) -> tuple[np.ndarray, Scores]:
    """Answers with a threshold cross-fitted over ``result``'s rows, and their scores.

    Cross-validated results use their own folds; a held-out split is cut into 5 stratified parts.
    """
    proba = apply_temperature(result.oof_proba, temperature)
    parts = folds if result.protocol == "cv" else folds_for(result.y, 5, seed)
    pred = crossfit_decisions(proba[:, 1], result.y, [val for _, val in parts])
    return pred, score(result.y, result.oof_proba, seed, pred=pred)


def _with_threshold(result: CVResult, folds: list[tuple[np.ndarray, np.ndarray]], seed: int) -> None:
    """Set ``result.decided`` when a cross-fitted threshold beats the most probable class."""
    _, tuned = _crossfit(result, folds, seed)
    if tuned.balanced_accuracy.value > result.scores.balanced_accuracy.value:
        result.decided = tuned


def _chance_warning(estimate: CVResult, data: LabelledTexts, imbalanced: bool) -> str | None:
    """Why the model is no better than guessing, when its balanced accuracy interval reaches chance."""
    k = len(data.classes)
    bal = estimate.scores.balanced_accuracy
    if bal.low > 1 / k + CHANCE_MARGIN:
        return None
    counts = data.class_counts()
    if imbalanced:
        rare = min(counts, key=lambda c: counts[c])
        advice = (
            f"The classes are imbalanced ({', '.join(f'{c}: {n}' for c, n in counts.items())}): label more "
            f"{rare!r} texts; a few dozen of each class is the least that works."
        )
    else:
        advice = "Check that the labels match the texts, and add examples."
    return (
        f"Not clearly better than chance: balanced accuracy {bal.value:.1%} (the mean recall per class; "
        f"95% interval {bal.low:.1%} to {bal.high:.1%}) against {1 / k:.1%} for guessing. Do not rely on "
        f"this model. {advice}"
    )


def train(
    data: LabelledTexts,
    output: str | Path | None = None,
    config: TrainConfig | None = None,
    on_result: Callable[[CVResult], None] | None = None,
    unlabelled: UnlabelledTexts | None = None,
) -> TrainResult:
    """Train on ``data``: cross-validate, choose (by nested CV when ``auto``), refit on all data, save.

    Args:
        data: checked labelled texts (see :func:`fewlabel.data.labelled.load_labelled`).
        output: model directory to write; ``None`` keeps the model in memory only.
        config: settings; defaults to :class:`TrainConfig` defaults.
        on_result: called with each strategy's cross-validation result as it finishes.
        unlabelled: texts without labels (see :func:`fewlabel.data.labelled.load_unlabelled`); every strategy
            then self-trains on them, inside each training fold only.
    """
    config = config or TrainConfig()
    data.check_folds(config.folds)  # what the CLI's loading refuses, for data built in Python too
    start = time.perf_counter()
    notes = []
    if unlabelled is not None:
        if config.augment:
            raise FewlabelError("choose augmentation or unlabelled texts, not both in one run")
        notes.append(
            f"Self-training on {unlabelled.summary()}: each strategy adds its most confident "
            "predictions on them as labels, inside each training fold only; the estimates below "
            "are on labelled rows, as always."
        )
    config, slow_backbones, languages, language = _backbones(data, config, notes)
    run = _Run(data, config, start, notes, slow_backbones, unlabelled, on_result)
    run.warnings.extend(filter(None, [language, few_labels_warning(len(data.texts), config)]))
    with fit_memo():
        result = _train(run, output, languages)
    return result


def _backbones(
    data: LabelledTexts, config: TrainConfig, notes: list[str]
) -> tuple[TrainConfig, list[str], Languages, str | None]:
    """The backbone ``best`` resolves to (recorded concretely, so the saved config says what ran), the
    ones slow strategies may use, the texts' languages, and a warning when the backbone does not cover them."""
    from fewlabel.encoders.backbones import best_available, is_installed, language_warning

    languages = detect_languages(data.texts)
    slow_backbones = [config.model]
    if config.model == "best":
        model, why = best_available(data.texts, languages, budget_seconds=60 * config.budget_minutes)
        config = replace(config, model=model)
        notes.append(f"Backbone {model}: {why}.")
        # Slow strategies pick their own: the most accurate backbone whose run fits the budget (the
        # multilingual one alone when the texts need it).
        english = [b for b in ("mpnet", "minilm") if b == "minilm" or is_installed(b)]
        slow_backbones = _gemma_slow(model, languages, notes) if model == "embeddinggemma" else english
    uses_backbone = config.strategy != "tfidf"
    return (
        config,
        slow_backbones,
        languages,
        language_warning(config.model, languages) if uses_backbone else None,
    )


def _gemma_slow(model: str, languages: Languages, notes: list[str]) -> list[str]:
    """The backbones slow strategies may use when ``best`` chose embeddinggemma: that one on a GPU;
    none on a CPU, where fine-tuning it (308M parameters) took 17 minutes and 17 GB of memory for
    500 reviews (benchmarks/results/run-20261130T185054Z-gemma-finetune-cpu.json). Fine-tuning an
    English backbone instead would not read texts in other languages, and on English ones fine-tuned
    mpnet scored below frozen embeddinggemma on the English benchmark sets measured (BENCHMARKS.md, "EmbeddingGemma")."""
    from fewlabel.encoders.device import resolve_device

    if resolve_device("auto").type == "cuda":
        return [model]
    if languages.non_english_share >= 0.5:
        why = "and the English backbones would not read these texts; on a GPU it joins."
    else:
        why = (
            "and fine-tuned mpnet scored below frozen embeddinggemma on the English benchmark sets measured "
            "(BENCHMARKS.md); on a GPU it joins, and --model mpnet fine-tunes mpnet instead."
        )
    notes.append(
        f"Fine-tuning left out of auto: {model} is too large to fine-tune on a CPU within the budget "
        f"(17 min and 17 GB of memory for 500 reviews here), {why}"
    )
    return []


def few_labels_warning(n_texts: int, config: TrainConfig) -> str | None:
    """Advice when ``auto`` has too few labels to fine-tune and only a weaker frozen backbone to use.

    Below ``MIN_ROWS_FOR_HOLDOUT`` texts fine-tuning is left out and ``setfit`` is cross-validated
    when the budget allows; frozen ``mpnet`` and ``minilm`` read long reviews poorly. On BENCHMARKS.md's
    label-count curve (32-128 labels, cr and blitzer_books) frozen ``mpnet`` features scored 64-83%,
    ``mpnet`` tuned SetFit-style 85-88% (32 labels), frozen ``embeddinggemma`` 89-94%.
    """
    if (
        config.strategy != "auto"
        or n_texts >= MIN_ROWS_FOR_HOLDOUT
        or config.model not in ("mpnet", "minilm")
    ):
        return None
    from fewlabel.encoders.backbones import is_installed

    fix = (
        "pass --model embeddinggemma (installed) to use it"
        if is_installed("embeddinggemma")
        else "install it with `fewlabel models install embeddinggemma --accept-license` (Gemma Terms of Use)"
    )
    return (
        f"Only {n_texts} labelled texts: fine-tuning needs {MIN_ROWS_FOR_HOLDOUT} to stop early and be scored, "
        f"so auto tunes {config.model} SetFit-style instead (cross-validated, when its folds fit the budget) "
        f"against frozen {config.model} features and TF-IDF, which are weak this small "
        f"(BENCHMARKS.md, label-count curve: {LABEL_CURVE_SUMMARY}). A stronger frozen backbone helps most: "
        f"{fix}; or label more texts."
    )


def warnings_before_training(data: LabelledTexts, config: TrainConfig) -> list[str]:
    """What :func:`train` will warn about its backbone, to say before training starts: one that does
    not cover the texts' languages, or a weak frozen one with too few labels to fine-tune."""
    resolved, _, _, language = _backbones(data, config, [])
    return [w for w in (language, few_labels_warning(len(data.texts), resolved)) if w]


def _train(run: _Run, output: str | Path | None, languages: Languages | None = None) -> TrainResult:
    """Score the candidates, choose, calibrate, decide, check, diagnose, refit, and save when asked."""
    choice = _run_slow(run, _cross_validate_fast(run))
    temperature, calibration = _calibrate(run, choice.name)
    threshold, estimate_pred = _decide(run, choice, temperature)
    chance = _chance_warning(choice.estimate, run.data, run.imbalanced)
    if chance and run.config.strict:
        raise FewlabelError(f"{chance} Nothing was saved (strict mode).")
    diagnostics = _diagnostics_if_asked(run, choice.name, chance)
    result = TrainResult(
        config=run.config,
        labels=run.labels,
        results=run.results,
        chosen=choice.name,
        evaluation=choice.estimate,
        majority=majority_baseline(run.y),
        strategy=_final_fit(run, choice.name),
        seconds=0.0,
        calibration=calibration,
        diagnostics=diagnostics,
        expected=_expected(run, choice, estimate_pred, diagnostics),
        runs={name: held.record for name, held in run.runs.items()},
        nested=run.nested,
        threshold=threshold,
        estimate_pred=estimate_pred,
        imbalanced=run.imbalanced,
        chance_warning=chance,
    )
    result.unlabelled = _self_training_summary(run, result.strategy)
    result.languages = languages
    result.prediction = _prediction_engine(run, result)
    result.notes = run.notes
    # The imbalance first (as the CLI says before training), and a model at chance last of all.
    result.warnings = [
        *filter(None, [run.data.imbalance()]),
        *run.data.report.warnings,
        *run.warnings,
        *_warnings(result),
        *filter(None, [chance]),
    ]
    result.seconds = time.perf_counter() - run.start
    if output is not None:
        result.model_dir = save(result, run.data, Path(output))
    return result


def _prediction_engine(run: _Run, result: TrainResult) -> PredictionEntry | None:
    """The engine the final model predicts with by default, measured on its training texts (a few
    seconds); None when it embeds nothing with a frozen backbone, or the config says not to measure."""
    return choose_engine(result.model, run.texts) if run.config.choose_engine else None


def _cross_validate_fast(run: _Run) -> _Choice | None:
    """Cross-validate the strategies cheap enough to refit per fold; nested CV when choosing among them."""
    factories = {name: f for name, f in run.factories.items() if not _is_slow(name)}
    if not factories:
        return None
    config, texts, y, folds = run.config, run.texts, run.y, run.folds
    _embed_once(run, factories)
    tune_threshold = _tunes_threshold(config, run.imbalanced, run.n_classes)
    nested = config.strategy == "auto" and len(factories) > 1
    total = len(folds) * len(factories) + (len(folds) if nested else 0)
    with progress.bar("Cross-validating", total) as advance:
        for name, factory in factories.items():
            result = cross_validate(
                factory, texts, y, run.n_classes, folds, name, config.seed, on_fold=advance
            )
            run.results[name] = result
            if tune_threshold:  # each candidate judged by the answers it would give
                _with_threshold(result, folds, config.seed)
            if run.on_result:
                run.on_result(result)
        chosen = choose(run.results)
        estimate = run.results[chosen]
        if nested:
            estimate = nested_cross_validate(
                factories, texts, y, run.n_classes, folds, config.inner_folds, config.seed, on_fold=advance
            )
            if run.on_result:
                run.on_result(estimate)
    run.nested = estimate if estimate.name == "auto" else None
    return _Choice(chosen, estimate)


def _embed_once(run: _Run, factories: dict[str, Callable[[], Strategy]]) -> None:
    """Embedding strategies encode every text once here; all fits after that hit the cache."""
    for name in factories:
        probe = factories[name]()
        if hasattr(probe, "embed"):
            encode_start = time.perf_counter()
            probe.embed(run.texts)
            seconds = time.perf_counter() - encode_start
            how = (
                "from the on-disk cache"
                if seconds < 1
                else "now cached on disk; a rerun on these texts skips this"
            )
            run.notes.append(
                f"Embeddings of {len(run.texts)} texts with {run.config.model}: {seconds:.1f}s ({how})."
            )
            break


def _run_slow(run: _Run, choice: _Choice | None) -> _Choice:
    """Fit each slow strategy the budget allows, score it on the rows it held out, keep the better one.

    Below ``MIN_ROWS_FOR_HOLDOUT`` rows a hold-out split is too small to stop early on or to score, so
    the slow strategy that can do without one (``setfit``) is cross-validated instead.
    """
    for name in [name for name in run.factories if _is_slow(name)]:
        if _cross_validates(run, name):
            choice = _cross_validate_slow(run, name, choice)
            continue
        strategy = _fit_slow(run, name)
        if strategy is None:
            continue
        held = strategy.holdout_run()
        result = _holdout_result(name, strategy.describe(), held, run.y, run.config.seed)
        run.results[name], run.fitted[name], run.runs[name] = result, strategy, held
        if run.on_result:
            run.on_result(result)
        run.notes.extend(f"{name}: {note}" for note in held.notes)
        run.warnings.extend(f"{name}: {flag}" for flag in held.flags)
        choice = _Choice(name, result) if choice is None else _paired_choice(run, choice, name, held)
    assert choice is not None  # every strategy was either cross-validated or fitted
    return choice


def _cross_validates(run: _Run, name: str) -> bool:
    """Whether slow strategy ``name`` is scored by cross-validation here rather than on a hold-out split:
    ``setfit`` below ``MIN_ROWS_FOR_HOLDOUT`` rows, on the labelled texts alone (self-training and
    augmentation wrap each fit in more work than the folds allow)."""
    small = len(run.texts) < MIN_ROWS_FOR_HOLDOUT
    return name in SMALL_DATA_SLOW and small and run.pool is None and not run.config.augment


def _cross_validate_slow(run: _Run, name: str, choice: _Choice | None) -> _Choice:
    """``name`` trained on every row of each fold to its epoch cap (no validation split) and scored
    out of fold on the folds the other strategies used; kept when its balanced accuracy beats the
    choice so far on those rows. Chosen, it is fitted once more, on every row (``_final_fit``)."""
    config = run.config
    remaining = run.deadline - time.perf_counter() - FINAL_STEPS_SECONDS
    fits = len(run.folds) + 1  # one a fold, and the final fit on every row
    backbone, skip = _slow_plan(name, config, run.texts, remaining, run.slow_backbones, fits=fits)
    if skip and choice is not None:  # without a choice (setfit the only candidate) it runs regardless
        run.notes.append(skip)
        return choice
    params = {**config.params_for(name), "val_fraction": 0.0, "time_budget_s": max(remaining / fits, 30.0)}
    if "backbone" not in config.strategy_params.get(name, {}):
        params["backbone"] = backbone
    run.factories[name] = factory = lambda: make_strategy(name, **params)
    with progress.bar(f"Cross-validating {name}", len(run.folds)) as advance:
        result = cross_validate(
            factory, run.texts, run.y, run.n_classes, run.folds, name, config.seed, on_fold=advance
        )
    if _tunes_threshold(config, run.imbalanced, run.n_classes):
        _with_threshold(result, run.folds, config.seed)
    run.results[name] = result
    if run.on_result:
        run.on_result(result)
    if choice is None:
        return _Choice(name, result)
    mine, rival = result.final.balanced_accuracy.value, choice.estimate.final.balanced_accuracy.value
    kept = name if mine > rival else choice.name
    run.notes.append(
        f"Out of fold on the same {len(run.y)} rows, balanced accuracy: {name} {mine:.1%}, "
        f"{choice.name} {rival:.1%} ({kept} kept)."
    )
    return _Choice(name, result) if mine > rival else choice


def _fit_slow(run: _Run, name: str) -> Strategy | None:
    """A slow strategy fitted on every labelled row within the budget left; None when the plan skips it."""
    config = run.config
    remaining = run.deadline - time.perf_counter() - FINAL_STEPS_SECONDS
    backbone, skip = _slow_plan(name, config, run.texts, remaining, run.slow_backbones, run.pool)
    if skip:
        run.notes.append(skip)
        return None
    if config.augment:
        run.notes.append(
            f"{name}: trained on the real texts only (augmentation applies to cross-validated strategies)."
        )
    params = {**config.params_for(name), "time_budget_s": max(remaining, 30.0)}
    if "backbone" not in config.strategy_params.get(name, {}):
        params["backbone"] = backbone
    strategy = _self_trained(name, params, run.pool) if run.pool else make_strategy(name, **params)
    return strategy.fit(run.texts, run.y, run.n_classes)


def _slow_plan(
    name: str,
    config: TrainConfig,
    texts: list[str],
    remaining: float,
    backbones: list[str],
    unlabelled: list[str] | None = None,
    fits: int = 1,
) -> tuple[str, str | None]:
    """The backbone a slow strategy runs with, or why ``auto`` leaves it out (too few rows, no time).

    ``fits``: how many runs the strategy makes (cross-validated: one a fold and one on every row)."""
    from fewlabel.strategies.self_training import estimated_seconds as self_training_seconds

    slow = get_strategy_class(name)
    assert issubclass(slow, HoldoutStrategy)  # only slow strategies are planned

    def estimated_seconds(backbone: str) -> float:
        if unlabelled:  # the teacher's fit, then the student's with the pseudo-labelled texts too
            rounds = int(SELF_TRAINING_SLOW["rounds"])
            return self_training_seconds(slow, texts, backbone, unlabelled, rounds)
        return fits * slow.estimated_seconds(texts, backbone)

    pinned = config.strategy_params.get(name, {}).get("backbone")
    candidates = [pinned] if pinned else backbones or [config.model]
    if config.strategy != "auto":
        return candidates[0], None  # asked for by name: run it, within the budget
    if not backbones and not pinned:
        return config.model, f"{name} left out: no backbone to fine-tune within this run (see above)."
    small = len(texts) < MIN_ROWS_FOR_HOLDOUT
    if small and name not in SMALL_DATA_SLOW:
        return candidates[0], (
            f"{name} left out: with {len(texts)} texts its validation split would be too small to stop "
            f"early on or to score it (it joins auto from {MIN_ROWS_FOR_HOLDOUT} texts; setfit is tried below that)."
        )
    if not small and name in SMALL_DATA_SLOW:
        return candidates[0], (
            f"{name} left out: from {MIN_ROWS_FOR_HOLDOUT} texts auto fine-tunes with finetune instead "
            "(--strategy setfit runs it)."
        )
    for backbone in candidates:
        if estimated_seconds(backbone) <= remaining:
            return backbone, None
    needed = estimated_seconds(candidates[-1])
    return candidates[-1], (
        f"{name} left out: about {needed / 60:.0f} min with {candidates[-1]}, and {max(remaining, 0) / 60:.0f} "
        f"min of the {config.budget_minutes:g}-minute budget remain; raise --budget-minutes to include it."
    )


def _holdout_result(name: str, description: str, held: HoldoutRun, y: np.ndarray, seed: int) -> CVResult:
    """A slow strategy's scores on the validation rows its own run held out."""
    rows = np.asarray(held.val_index, dtype=np.int64)
    return CVResult(
        name,
        description,
        held.val_proba,
        y[rows],
        [held.train_accuracy],
        [held.val_accuracy],
        held.seconds,
        score(y[rows], held.val_proba, seed),
        protocol="holdout",
    )


def _paired_choice(run: _Run, choice: _Choice, name: str, held: HoldoutRun) -> _Choice:
    """``name`` if it beats the choice so far on the rows it held out (the other refitted without them)."""
    rival = _score_on_same_rows(run.factories[choice.name], run.texts, run.y, run.n_classes, held.val_index)
    mine = run.results[name].scores.balanced_accuracy.value
    run.notes.append(
        f"On the same {len(held.val_index)} held-out rows, balanced accuracy: {name} {mine:.1%}, "
        f"{choice.name} {rival:.1%}"
        f" ({name if mine > rival else choice.name} kept)."
    )
    return _Choice(name, run.results[name]) if mine > rival else choice


def _score_on_same_rows(
    factory: Callable[[], Strategy], texts: list[str], y: np.ndarray, n_classes: int, rows: list[int]
) -> float:
    """Balanced accuracy of another strategy fitted on the complement of ``rows``: a paired comparison."""
    held = np.zeros(len(y), dtype=bool)
    held[rows] = True
    fitted = factory().fit([t for t, h in zip(texts, held, strict=True) if not h], y[~held], n_classes)
    proba = fitted.predict_proba([texts[i] for i in rows])
    return balanced_accuracy(y[rows], proba.argmax(1), n_classes)


def _final_fit(run: _Run, chosen: str) -> Strategy:
    """The chosen strategy fitted on every row (slow strategies already were)."""
    if chosen in run.fitted:
        return run.fitted[chosen]
    return run.factories[chosen]().fit(run.texts, run.y, run.n_classes)


def _expected(run: _Run, choice: _Choice, estimate_pred: np.ndarray, diagnostics: dict[str, Any]) -> Expected:
    """The headline estimate: accuracy on balanced data; balanced accuracy on imbalanced data, where
    always answering the common class would score its share on accuracy."""
    metric = "balanced_accuracy" if run.imbalanced else "accuracy"
    estimate, y, folds = choice.estimate, run.y, run.folds
    if choice.name in run.fitted:
        return Expected.model_validate(holdout_accuracy(estimate, metric))
    if run.imbalanced:
        fold_values = [balanced_accuracy(y[val], estimate_pred[val], run.n_classes) for _, val in folds]
        found = expected_accuracy(estimate, len(y), len(folds), None, metric=metric, fold_values=fold_values)
    else:
        found = expected_accuracy(estimate, len(y), len(folds), _curve_gain(diagnostics, choice.name, len(y)))
    return Expected.model_validate(found)


def _self_training_summary(run: _Run, final: Strategy) -> dict[str, Any] | None:
    """What self-training used and added to the saved model (and a note saying so); None without it."""
    if not run.pool:
        return None
    from fewlabel.strategies.self_training import SelfTrained

    unlabelled = run.unlabelled
    assert unlabelled is not None  # pool holds its texts
    assert isinstance(final, SelfTrained)  # with unlabelled texts every candidate is self-trained
    added = final.summary()
    run.notes.append(
        f"The saved model was fitted on the {len(run.texts)} labelled texts and {added.pseudo_labelled} "
        f"pseudo-labelled ones (added per round: {', '.join(map(str, added.added_per_round))})."
    )
    return {
        "source": unlabelled.source,
        "rows": unlabelled.rows,
        "texts": len(run.pool),
        "left_out": {
            "empty": unlabelled.empty,
            "repeated": unlabelled.repeated,
            "labelled": unlabelled.labelled,
        },
        "sha256": final.params["unlabelled_sha256"],
        "pseudo_labels_in_final_model": added.pseudo_labelled,
        "added_per_round": added.added_per_round,
    }


def _curve_gain(diagnostics: dict[str, Any], chosen: str, n_rows: int) -> float | None:
    """The learning curve's rise from the folds' training size to all rows, if a curve was fitted."""
    from fewlabel.evaluation.diagnostics import curve_value

    curve = (diagnostics.get("learning_curve") or {}).get(chosen)
    if not curve or curve.get("fit") is None:
        return None
    n_fold = curve["points"][-1]["n_train"]
    return curve_value(curve["fit"], n_rows) - curve_value(curve["fit"], n_fold)


def _diagnostics_if_asked(run: _Run, chosen: str, chance: str | None) -> dict[str, Any]:
    """The diagnostics, when asked for and possible (some strategy cross-validated, time left); else why not."""
    config, notes = run.config, run.notes
    cv_results = {k: v for k, v in run.results.items() if v.protocol == "cv" and not _is_slow(k)}
    if not config.diagnostics:
        return {}
    if not cv_results:
        notes.append("No diagnostics: they need cross-validation, and only slow strategies ran.")
        return {}
    if time.perf_counter() > run.deadline - FINAL_STEPS_SECONDS:
        notes.append(
            f"Diagnostics skipped: the {config.budget_minutes:g}-minute budget is spent "
            "(`fewlabel train ... --budget-minutes` to allow more)."
        )
        return {}
    diag_for = chosen if chosen in cv_results else choose(cv_results)
    if diag_for != chosen:
        notes.append(
            f"Diagnostics (learning curve, label issues) come from {diag_for}'s cross-validation: "
            f"{chosen} is too slow to refit on every fold."
        )
    return _diagnostics(run, diag_for, chance)


def _diagnostics(run: _Run, chosen: str, chance: str | None = None) -> dict[str, Any]:
    """Learning curves (chosen strategy and the TF-IDF baseline), label issues, near-duplicates, mistakes.

    Label issues are rows the model disputes; from a model no better than chance (``chance``) that
    says nothing about the labels, so none are listed then.
    """
    from fewlabel.evaluation import diagnostics as diag

    data, y, labels = run.data, run.y, run.labels
    curves = _learning_curves(run, chosen)
    oof = run.results[chosen].oof_proba
    issues = [] if chance else diag.label_issues(oof, y, labels, data.texts, data.rows)
    return {
        "label_issues_withheld": (
            "not listed: the model is no better than chance, so its disagreements say nothing about the labels"
            if chance
            else None
        ),
        "learning_curve": curves,
        "label_issues": issues[:100],
        "n_label_issues": len(issues),
        "all_label_issues": issues,
        "near_duplicates": diag.near_duplicates(data.texts, y, labels, data.rows),
        "confident_mistakes": diag.confident_mistakes(oof, y, labels, data.texts, data.rows),
    }


def _learning_curves(run: _Run, chosen: str) -> dict[str, Any]:
    """Learning curves of the chosen strategy and the TF-IDF baseline, each with the class to label more of."""
    from fewlabel.evaluation import diagnostics as diag

    config, texts, y, labels, folds = run.config, run.texts, run.y, run.labels, run.folds
    curves_for = {chosen: run.factories[chosen]}
    if chosen != "tfidf":
        curves_for["tfidf"] = run.factories.get("tfidf") or (
            lambda: make_strategy("tfidf", **config.params_for("tfidf"))
        )
    fits = len(folds) * (len(diag.FRACTIONS) - 1) * len(curves_for)
    curves = {}
    with progress.bar("Learning curves", fits) as advance:
        for name, factory in curves_for.items():
            known = run.results.get(name)
            if known is not None:
                full, full_pred = known.val_accuracy, known.oof_proba.argmax(axis=1)
            else:
                full = cross_validate(factory, texts, y, len(labels), folds, name, config.seed).val_accuracy
                full_pred = None
            curves[name] = diag.learning_curve(
                factory, texts, y, len(labels), folds, full, config.seed, on_fit=advance, full_pred=full_pred
            )
            curves[name]["label_more"] = diag.class_to_label(curves[name], labels)
    return curves


def save(result: TrainResult, data: LabelledTexts, output: Path) -> Path:
    from fewlabel.encoders.backbones import manifest_entry, resolve
    from fewlabel.model_dir.store import save_model
    from fewlabel.report import model_card, render_report

    metrics = result.metrics(data)
    backbone = result.model.strategy.params.get("backbone")
    manifest = result.manifest().model_copy(
        update={
            "backbone": BackboneEntry.model_validate(manifest_entry(resolve(backbone))) if backbone else None,
            "unlabelled": result.unlabelled,
            "text_column": data.text_column,
            "label_column": data.label_column,
            "config": result.config.to_dict(),
            "metrics": Summary.of(metrics, result.majority, result.chance_warning),
            "training_data": TrainingData.of(data),
        }
    )
    extra = {"report.html": render_report(manifest, metrics), "README.md": model_card(manifest, metrics)}
    if result.diagnostics:
        from fewlabel.evaluation.diagnostics import label_issues_csv

        extra["label_issues.csv"] = label_issues_csv(result.diagnostics["all_label_issues"])
    return save_model(
        output, result.strategy, result.labels, manifest, {"metrics.json": metrics.to_json()}, extra
    )
