"""Typed records of what a model directory holds: :class:`Metrics` (``metrics.json``) and
:class:`Manifest` (``fewlabel.json``).

Written and read here only: training builds a :class:`Metrics`, the store writes it, and the report,
the CLI and the server read attributes, never string keys (``tests/test_layers.py`` fails on
``metrics["..."]`` or ``manifest["..."]`` outside this package). Both belong to model format 2
(docs/model-format.md); a field added later gets a default, so models written before it still load.

Pydantic validates what is read: a model directory is untrusted input, and a malformed
``metrics.json`` gets an error naming the field instead of a ``KeyError`` deep in the report. The
manifest's own checks (checksums, safe paths, names) stay in :mod:`fewlabel.model_dir.manifest`,
which runs them before building a :class:`Manifest`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fewlabel.errors import ModelDirError

__all__ = [
    "BackboneEntry",
    "Calibration",
    "CalibrationEntry",
    "ChosenScores",
    "DecisionEntry",
    "Diagnostics",
    "DistilledEntry",
    "DistilledTexts",
    "Distillation",
    "Expected",
    "FileEntry",
    "Headline",
    "Interval",
    "LabelScores",
    "LearningCurve",
    "Manifest",
    "Metrics",
    "MultiLabelMetrics",
    "MultiLabelScores",
    "MultiLabelStrategyScores",
    "OnnxEntry",
    "PredictionEntry",
    "RunRecord",
    "Scores",
    "StrategyEntry",
    "StrategyScores",
    "Summary",
    "TeacherEntry",
    "TrainingData",
    "manifest_record",
    "parse_metrics",
    "parse_multilabel_metrics",
]


class Record(BaseModel):
    """A JSON object with exactly these fields; numbers may be NaN (a class absent from a split)."""

    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="constants")


R = TypeVar("R", bound=BaseModel)


# -- scores ---------------------------------------------------------------------------------------
class Interval(Record):
    """A value with its 95% confidence interval."""

    value: float
    ci95_low: float
    ci95_high: float


class Scores(Record):
    """Accuracy, balanced accuracy, macro-F1 and log loss on ``n`` rows; recall per class in label order
    (None: the class is absent from these rows)."""

    n: int
    accuracy: Interval
    balanced_accuracy: Interval | None = None  # None: written before fewlabel measured it
    macro_f1: Interval
    log_loss: Interval
    recall: list[float | None] = Field(default_factory=list)


class StrategyScores(Scores):
    """One strategy's cross-validation (``protocol="cv"``) or hold-out run (``"holdout"``)."""

    name: str
    description: str
    train_accuracy: float
    train_val_gap: float
    fold_accuracy: list[float]
    seconds: float
    protocol: Literal["cv", "holdout"] = "cv"
    choices_per_fold: list[str] | None = None  # nested CV: what auto chose in each outer fold
    with_threshold: Scores | None = None  # the same rows answered with a tuned decision threshold


class ClassScores(Record):
    precision: float
    recall: float
    f1: float
    support: int


class ChosenScores(StrategyScores):
    """The chosen strategy's scores that the headline rests on, with where they come from."""

    source: str
    confusion_matrix: list[list[int]] = Field(default_factory=list)
    per_class: dict[str, ClassScores] = Field(default_factory=dict)


class Headline(Record):
    """The estimate: accuracy (balanced accuracy on imbalanced data; micro-F1 for a multi-label model)
    expected on new texts, with its 95% interval. The one estimate type fewlabel reports
    (``TrainResult.expected``, ``FewlabelClassifier.estimate_``, the manifest's ``metrics.accuracy``)."""

    metric: Literal["accuracy", "balanced_accuracy", "micro_f1"] = "accuracy"
    value: float
    ci95_low: float | None = None
    ci95_high: float | None = None

    def __str__(self) -> str:
        what = "micro-F1" if self.metric == "micro_f1" else self.metric.replace("_", " ")
        if self.ci95_low is None or self.ci95_high is None:
            return f"{what} {self.value:.1%}"
        return f"{what} {self.value:.1%} (95% CI {self.ci95_low:.1%} to {self.ci95_high:.1%})"


class Expected(Headline):
    """The headline estimate with how it was measured (``metrics.json``'s ``expected_accuracy``)."""

    metric: Literal["accuracy", "balanced_accuracy"] = "accuracy"  # single-label only
    ci95_low: float
    ci95_high: float
    cv_accuracy: float
    learning_curve_gain: float | None = None
    fold_sd: float | None = None
    method: str

    def headline(self) -> Headline:
        return Headline(
            metric=self.metric, value=self.value, ci95_low=self.ci95_low, ci95_high=self.ci95_high
        )


# -- calibration ----------------------------------------------------------------------------------
class Bin(Record):
    low: float
    high: float
    confidence: float
    accuracy: float
    n: int


class Reliability(Record):
    ece: float
    bins: list[Bin]


class Calibration(Record):
    method: Literal["temperature"] = "temperature"
    temperature: float
    fitted_on: str
    before: Reliability
    after: Reliability


# -- data and diagnostics -------------------------------------------------------------------------
class DataSummary(Record):
    source: str
    rows: int
    class_counts: dict[str, int]
    sha256: str
    rows_read: int
    rows_used: int
    duplicates_merged: int
    conflicting_rows_removed: int
    empty_rows_skipped: int
    long_texts: int
    cut_texts: int
    warnings: list[str] = Field(default_factory=list)
    languages: dict[str, Any] | None = None  # {"sampled": n, "shares": {"fr": 0.58, ...}}


class CurvePoint(Record):
    fraction: float
    n_train: int
    accuracy: float
    low: float
    high: float
    recall: list[float | None] = Field(default_factory=list)


class Extrapolation(Record):
    n_train: int
    accuracy: float | None
    gain: float | None
    low: float | None
    high: float | None


class LabelMore(Record):
    label: str
    recall: float | None
    recall_before: float | None
    n_train_before: int
    n_train: int
    recall_by_class: dict[str, float | None]


class LearningCurve(Record):
    points: list[CurvePoint]
    fit: list[float] | None = None
    extrapolation: Extrapolation | None = None
    label_more: LabelMore | None = None


class LabelIssue(Record):
    row: int
    given_label: str
    suggested_label: str
    given_label_probability: float
    suggested_label_probability: float
    text: str


class NearDuplicate(Record):
    row_a: int
    row_b: int
    similarity: float
    label_a: str
    label_b: str
    conflicting_labels: bool
    text_a: str
    text_b: str


class Mistake(Record):
    row: int
    given_label: str
    predicted_label: str
    confidence: float
    text: str


class Diagnostics(Record):
    learning_curve: dict[str, LearningCurve] = Field(default_factory=dict)
    label_issues: list[LabelIssue] = Field(default_factory=list)
    n_label_issues: int | None = None  # None: diagnostics were off (``"diagnostics": {}``)
    label_issues_withheld: str | None = None
    near_duplicates: list[NearDuplicate] = Field(default_factory=list)
    confident_mistakes: list[Mistake] = Field(default_factory=list)


# -- slow strategies' runs and self-training ------------------------------------------------------
class RunRecord(Record):
    """What one fine-tuning run did (``finetuning.RunReport`` without its validation arrays)."""

    model_config = ConfigDict(extra="allow", frozen=True, ser_json_inf_nan="constants")

    history: list[dict[str, float]] = Field(default_factory=list)
    best_step: int = -1
    best_epoch: float = 0.0
    val_accuracy: float | None = None
    val_balanced_accuracy: float | None = None
    val_loss: float | None = None
    train_accuracy: float | None = None
    majority: float | None = None
    n_train: int = 0
    n_val: int = 0
    n_extra: int = 0
    truncated: int = 0
    max_tokens: int = 0
    long_texts: str = ""
    seconds: float = 0.0
    cache_seconds: float = 0.0  # computing the frozen layers' outputs once, before the first epoch
    stopped: str = ""
    restarts: list[str] = Field(default_factory=list)
    flags: list[str] = Field(default_factory=list)
    frozen_layers: int = 0
    trained_layers: int = 0
    refit: str = ""
    recipe: dict[str, Any] | None = None  # the resolved recipe: learning rate, epochs, batch size, ...


class LeftOut(Record):
    empty: int
    repeated: int
    labelled: int


class Unlabelled(Record):
    source: str
    rows: int
    texts: int
    left_out: LeftOut
    sha256: str
    pseudo_labels_in_final_model: int
    added_per_round: list[int]


# -- the prediction engine ------------------------------------------------------------------------
class PredictionEntry(Record):
    """The engine training chose for predicting (:func:`fewlabel.model_dir.engines.choose_engine`):
    ``torch-bf16`` when the hardware multiplies bfloat16 natively, and on a sample of the training
    texts it answered as float32 did and was faster; else ``torch`` (float32, as evaluated). The
    numbers are None when nothing was measured (no native bfloat16 here)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    engine: str  # "torch" or "torch-bf16"; loading runs float32 for a name it does not know
    reason: str
    sample: int | None = None  # training texts predicted with both (a spread of lengths)
    agreement: float | None = None  # share of them given the same answer by both
    near_ties: int | None = None  # answers that differed on texts float32 itself put within TIE of a tie
    max_abs_diff: float | None = None  # largest difference in a calibrated probability
    speedup: float | None = None  # float32 seconds over bfloat16 seconds on the sample
    seconds: float | None = None  # what measuring took


# -- distillation ---------------------------------------------------------------------------------
class TeacherEntry(Record):
    """The model a student was distilled from, as it was when the student was trained."""

    digest: str | None = None  # the teacher manifest's digest: which model directory, exactly
    strategy: str
    description: str = ""
    backbone: str | None = None  # pinned by content hash (NAME@sha256:HEX); None: it embeds nothing
    estimate: Headline | None = None  # what the teacher's own training estimated


class DistilledEntry(Record):
    """The manifest's ``distilled``: this model learned from a teacher's probabilities (``fewlabel distill``)."""

    teacher: TeacherEntry
    student: str  # the student kind: tfidf, embed or finetune
    unlabelled_texts: int
    unlabelled_sha256: str


class DistilledTexts(Record):
    """The unlabelled texts a student learned its teacher's probabilities on, and what was left out."""

    source: str
    rows: int
    texts: int
    left_out: LeftOut
    sha256: str


class Distillation(Record):
    """``metrics.json``'s ``distillation``: the teacher, the texts, and how the estimate was made honest."""

    teacher: TeacherEntry
    student: str
    unlabelled: DistilledTexts
    protocol: Literal["cross-fit", "holdout"]
    splits: int  # splits of the labelled rows whose held-out rows the estimate is measured on
    teacher_refitted: bool  # each split's teacher was refitted without that split's held-out rows
    agreement: Interval  # student and teacher answering the same, on unlabelled texts neither split saw
    agreement_texts: int
    method: str


class Metrics(Record):
    """``metrics.json``: every number a training run measured."""

    estimate: ChosenScores
    expected_accuracy: Expected
    chosen_strategy: str
    at_chance: str | None = None
    imbalanced: bool = False
    decision_threshold: float | None = None
    calibration: Calibration
    majority_baseline_accuracy: float
    strategies: dict[str, StrategyScores]
    data: DataSummary
    folds: int
    seconds: float
    warnings: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    diagnostics: Diagnostics = Field(default_factory=Diagnostics)
    runs: dict[str, RunRecord] = Field(default_factory=dict)
    unlabelled: Unlabelled | None = None
    prediction: PredictionEntry | None = None  # the engine chosen for predicting, as in the manifest
    distillation: Distillation | None = None  # a student of ``fewlabel distill``

    def to_json(self) -> dict[str, Any]:
        """The JSON-ready dict written to ``metrics.json``: the fields given, as given (a model trained
        without diagnostics writes ``"diagnostics": {}``, not empty tables that would claim none found)."""
        return self.model_dump(mode="json", exclude_unset=True)


def _parsed(record: type[R], data: Any, where: str, damaged: str = "damaged metrics, retrain the model") -> R:
    """``data`` (parsed JSON) as ``record``, or ModelDirError naming the first bad field."""
    try:
        return record.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ModelDirError(
            f"{where}: field {field!r}: {first['msg']} ({err.error_count()} problem(s)); {damaged}"
        ) from None


def parse_metrics(data: Any, where: str) -> Metrics:
    """``data`` (parsed JSON) as :class:`Metrics`, or ModelDirError naming the first bad field."""
    return _parsed(Metrics, data, where)


# -- multi-label ----------------------------------------------------------------------------------
class MultiLabelScores(Record):
    """Multi-label scores on ``n`` texts, each with its 95% interval (row bootstrap): micro-F1 (over
    every text-label pair), macro-F1 (the mean of the labels' F1), subset accuracy (the whole label
    set right) and Hamming loss (the share of text-label pairs wrong)."""

    n: int
    micro_f1: Interval
    macro_f1: Interval
    subset_accuracy: Interval
    hamming_loss: Interval


class MultiLabelStrategyScores(MultiLabelScores):
    """One strategy's cross-validation, answered with per-label thresholds cross-fitted over the folds."""

    name: str
    description: str
    fold_micro_f1: list[float]
    train_micro_f1: float
    seconds: float


class LabelScores(Record):
    """One label's precision, recall and F1 (NaN where undefined), its texts, and the saved threshold."""

    precision: float
    recall: float
    f1: float
    support: int
    threshold: float


class MultiLabelMetrics(Record):
    """``metrics.json`` of a multi-label model: every number its training run measured."""

    task: Literal["multi-label"] = "multi-label"
    estimate: MultiLabelStrategyScores
    estimate_source: str
    chosen_strategy: str
    per_label: dict[str, LabelScores]
    thresholds: dict[str, float]
    baseline: MultiLabelScores  # always answering each label's majority (usually: no label at all)
    not_better_than_baseline: str | None = None
    strategies: dict[str, MultiLabelStrategyScores]
    data: DataSummary  # class_counts: texts per label
    labels_per_text: float
    label_separator: str
    folds: int
    seconds: float
    warnings: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    prediction: PredictionEntry | None = None  # the engine chosen for predicting, as in the manifest

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True)


def parse_multilabel_metrics(data: Any, where: str) -> MultiLabelMetrics:
    """``data`` (parsed JSON) as :class:`MultiLabelMetrics`, or ModelDirError naming the first bad field."""
    return _parsed(MultiLabelMetrics, data, where)


# -- the manifest ---------------------------------------------------------------------------------
class StrategyEntry(Record):
    name: str
    description: str = ""
    params: dict[str, Any] = Field(default_factory=dict)


class BackboneEntry(Record):
    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    hub_id: str | None = None
    sha256: str | None = None  # the backbone's files by content hash (format 2)


class CalibrationEntry(Record):
    method: Literal["temperature"] = "temperature"
    temperature: float = 1.0


class DecisionEntry(Record):
    """Two classes: answer ``label`` when its calibrated probability reaches ``threshold``."""

    threshold: float
    label: str


class OpenVinoCheck(Record):
    """OpenVINO on the exported graph, checked by ``fewlabel export`` on the exporting machine."""

    model_config = ConfigDict(extra="allow", frozen=True)

    precision: str  # what OpenVINO chose there: "bf16" where the CPU has it natively, else "f32"
    gap: float  # largest distance from PyTorch on the check texts (1 - cosine, or in probability)
    speedup: float  # ONNX Runtime's seconds over OpenVINO's on the check texts


class OnnxEntry(Record):
    model_config = ConfigDict(extra="allow", frozen=True)

    dir: str
    max_tokens: int
    quantize: str | None = None
    openvino: OpenVinoCheck | None = None  # None: not checked (not installed, or int8); ONNX Runtime runs it


class Summary(Record):
    """The manifest's copy of the numbers people look for first (all of them are in metrics.json).

    Informational only (loading and predicting never need it), so every field may be missing: a
    model from an older fewlabel still loads.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    accuracy: Headline | None = None
    cv_accuracy: Interval | None = None
    balanced_accuracy: Interval | None = None
    at_chance: str | None = None
    macro_f1: Interval | None = None
    micro_f1: Interval | None = None  # multi-label models (their headline)
    log_loss: Interval | None = None
    majority_baseline_accuracy: float | None = None
    estimate_source: str | None = None
    ece_before_calibration: float | None = None
    ece_after_calibration: float | None = None

    @classmethod
    def of(cls, metrics: Metrics, majority: float, at_chance: str | None = None) -> Summary:
        """The headline numbers of a single-label model's ``metrics``."""
        est, expected = metrics.estimate, metrics.expected_accuracy
        return cls(
            accuracy=expected.headline(),
            cv_accuracy=est.accuracy,
            balanced_accuracy=est.balanced_accuracy,
            at_chance=at_chance,
            macro_f1=est.macro_f1,
            log_loss=est.log_loss,
            majority_baseline_accuracy=majority,
            estimate_source=est.source,
            ece_before_calibration=metrics.calibration.before.ece,
            ece_after_calibration=metrics.calibration.after.ece,
        )


class TrainingData(Record):
    model_config = ConfigDict(extra="allow", frozen=True)

    source: str | None = None
    rows: int | None = None
    sha256: str | None = None
    class_counts: dict[str, int] = Field(default_factory=dict)

    @classmethod
    def of(cls, data: Any) -> TrainingData:
        """What the manifest says of single-label training ``data`` (a ``LabelledTexts``)."""
        return cls(
            source=Path(data.source).name,
            rows=len(data),
            sha256=data.fingerprint(),
            class_counts=data.class_counts(),
        )


class FileEntry(Record):
    sha256: str
    bytes: int
    arrays: dict[str, dict[str, Any]] | None = None


class Manifest(Record):
    """``fewlabel.json``, checked by :func:`fewlabel.model_dir.manifest.read_manifest` before it is built.

    Keys this fewlabel does not know are kept (``extra``): a format 1 model, or one saved by a caller
    of :func:`fewlabel.model_dir.store.save_model` with keys of its own.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    format: Literal["fewlabel-model"] = "fewlabel-model"
    format_version: int
    digest: str | None = None
    fewlabel_version: str | None = None
    created: str | None = None
    strategy: StrategyEntry
    backbone: BackboneEntry | None = None
    calibration: CalibrationEntry | None = None
    decision: DecisionEntry | None = None
    onnx: OnnxEntry | None = None
    prediction: PredictionEntry | None = None  # the engine ``auto`` runs when there is no ONNX encoder
    unlabelled: dict[str, Any] | None = None
    distilled: DistilledEntry | None = None
    text_column: str | None = None
    label_column: str | None = None
    config: dict[str, Any] | None = None
    metrics: Summary | None = None
    training_data: TrainingData | None = None
    labels: list[str]
    files: dict[str, FileEntry] = Field(default_factory=dict)
    # Multi-label models (docs/multi-label.md): each label answered on its own, when its probability
    # reaches its threshold; predictions joined by the separator the training data used.
    task: Literal["single-label", "multi-label"] = "single-label"
    thresholds: dict[str, float] | None = None
    label_separator: str | None = None

    @property
    def temperature(self) -> float:
        return self.calibration.temperature if self.calibration else 1.0

    def extra(self, key: str, default: Any = None) -> Any:
        """A key this fewlabel has no field for (kept from the file as it was)."""
        return (self.model_extra or {}).get(key, default)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True)


def manifest_record(checked: dict[str, Any], where: str) -> Manifest:
    """A checked manifest dict as :class:`Manifest`; ModelDirError naming the field if it does not fit."""
    return _parsed(Manifest, checked, where, "damaged manifest, retrain or restore the model")
