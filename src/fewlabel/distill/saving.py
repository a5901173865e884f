"""A student as an ordinary model directory: its manifest (with ``distilled``), ``metrics.json`` (with
``distillation``), report and model card, saved the way ``train`` saves a model."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from fewlabel import __version__
from fewlabel.data.labelled import LabelledTexts
from fewlabel.evaluation.scores import per_class
from fewlabel.model_dir.manifest import FORMAT_VERSION
from fewlabel.model_dir.records import (
    CalibrationEntry,
    Distillation,
    DistilledEntry,
    Manifest,
    Metrics,
    StrategyEntry,
    Summary,
    TrainingData,
)
from fewlabel.model_dir.store import save_model
from fewlabel.strategies.base import texts_digest

if TYPE_CHECKING:
    from fewlabel.distill.run import DistillResult


def student_manifest(result: DistillResult) -> Manifest:
    """What the student's manifest says of its strategy, labels, calibration and teacher."""
    strategy = result.strategy
    return Manifest(
        format_version=FORMAT_VERSION,
        fewlabel_version=__version__,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        strategy=StrategyEntry(name=strategy.name, description=strategy.describe(), params=strategy.params),
        calibration=CalibrationEntry(method="temperature", temperature=result.calibration["temperature"]),
        labels=list(result.labels),
        distilled=DistilledEntry(
            teacher=result.teacher,
            student=result.config.student,
            unlabelled_texts=len(result.unlabelled.texts),
            unlabelled_sha256=texts_digest(result.unlabelled.texts),
        ),
    )


def estimate_source(result: DistillResult) -> str:
    """Where the student's estimate comes from, in words (metrics.json's ``estimate.source``)."""
    rows = len(result.evaluation.y)
    teacher = (
        "refitted without them" if result.teacher_refitted else "not refitted: it saw them, so optimistic"
    )
    if result.splits == 1:
        return (
            f"the {rows} labelled rows one split held out of the student's training (its teacher {teacher})"
        )
    return f"cross-fitting over {result.splits} splits of the {rows} labelled rows (each split's teacher {teacher})"


def student_metrics(result: DistillResult, data: LabelledTexts) -> Metrics:
    """Every number the run measured, as written to the student's ``metrics.json``."""
    evaluation = result.evaluation
    strategies = {result.config.student: evaluation.to_dict()}
    if result.teacher_evaluation is not None:
        strategies[result.teacher_evaluation.name] = result.teacher_evaluation.to_dict()
    runs = {result.config.student: result.strategy.holdout_run().record} if result.config.slow_student else {}
    return Metrics.model_validate(
        {
            "estimate": {
                "source": estimate_source(result),
                **evaluation.to_dict(),
                **per_class(evaluation.y, evaluation.oof_proba.argmax(axis=1), result.labels),
            },
            "expected_accuracy": result.expected,
            "chosen_strategy": result.config.student,
            "imbalanced": result.imbalanced,
            "calibration": result.calibration,
            "majority_baseline_accuracy": result.majority,
            "strategies": strategies,
            "data": {
                "source": data.source,
                "rows": len(data),
                "class_counts": data.class_counts(),
                "sha256": data.fingerprint(),
                **data.report.to_dict(),
            },
            "folds": result.splits,
            "seconds": result.seconds,
            "warnings": list(result.warnings),
            "notes": list(result.notes),
            "diagnostics": {},
            "runs": runs,
            "distillation": _distillation(result),
            **({"prediction": result.prediction} if result.prediction else {}),
        }
    )


def _distillation(result: DistillResult) -> Distillation:
    pool = result.unlabelled
    return Distillation.model_validate(
        {
            "teacher": result.teacher,
            "student": result.config.student,
            "unlabelled": {
                "source": pool.source,
                "rows": pool.rows,
                "texts": len(pool.texts),
                "left_out": {"empty": pool.empty, "repeated": pool.repeated, "labelled": pool.labelled},
                "sha256": texts_digest(pool.texts),
            },
            "protocol": "cross-fit" if result.splits > 1 else "holdout",
            "splits": result.splits,
            "teacher_refitted": result.teacher_refitted,
            "agreement": result.agreement.to_dict(),
            "agreement_texts": result.agreement_texts,
            "method": result.expected.method,
        }
    )


def save_student(result: DistillResult, data: LabelledTexts, output: Path) -> Path:
    """Write the student as a model directory, atomically, with its report and model card."""
    from fewlabel.report import model_card, render_report

    metrics = student_metrics(result, data)
    manifest = student_manifest(result).model_copy(
        update={
            "text_column": data.text_column,
            "label_column": data.label_column,
            "prediction": result.prediction,
            "metrics": Summary.of(metrics, result.majority),
            "training_data": TrainingData.of(data),
        }
    )
    extra = {"report.html": render_report(manifest, metrics), "README.md": model_card(manifest, metrics)}
    return save_model(
        output, result.strategy, result.labels, manifest, {"metrics.json": metrics.to_json()}, extra
    )
