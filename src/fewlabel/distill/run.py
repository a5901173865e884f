"""The distillation run: the teacher's say on the unlabelled texts, the cross-fitted estimate, the student."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fewlabel import progress
from fewlabel.config import DEFAULT_BUDGET_MINUTES, DEFAULT_STUDENT, DEFAULT_STUDENT_MODEL, DistillConfig
from fewlabel.data.cleaning import dedupe_key
from fewlabel.data.labelled import LabelledTexts, UnlabelledTexts, is_imbalanced, unlabelled_texts
from fewlabel.distill.saving import save_student, student_manifest
from fewlabel.errors import DataError, FewlabelError
from fewlabel.evaluation.calibration import apply_temperature, fit_temperature, reliability
from fewlabel.evaluation.scores import (
    CVResult,
    Interval,
    expected_accuracy,
    folds_for,
    holdout_accuracy,
    majority_baseline,
    score,
    wilson,
)
from fewlabel.evaluation.threshold import balanced_accuracy
from fewlabel.model_dir.engines import choose_engine
from fewlabel.model_dir.records import Expected, PredictionEntry, TeacherEntry
from fewlabel.model_dir.store import TrainedModel, check_target, read_model
from fewlabel.strategies import make_strategy
from fewlabel.strategies.base import HoldoutStrategy, Strategy

# One split (a fine-tuned student, or a fine-tuned teacher refitted once) holds out 1 part in 5.
HOLDOUT_PARTS = 5
# As in ``train``: an interval wider than this is too wide to act on, and the user is told so.
WIDE_INTERVAL = 0.10


@dataclass
class Teacher:
    """The teacher model, and its strategy refitted on other rows with the same settings."""

    model: TrainedModel
    source: str

    @property
    def slow(self) -> bool:
        """Too slow to refit on every split: scored on a split of its own run when trained."""
        return isinstance(self.model.strategy, HoldoutStrategy)

    def refit(self, texts: list[str], y: np.ndarray) -> Strategy:
        """The teacher's strategy and settings (its backbone pinned) fitted on ``texts`` alone."""
        strategy = self.model.strategy
        params = dict(strategy.params)
        if strategy.uses_backbone:
            params["backbone"] = strategy.backbone_ref()
        return type(strategy)(**params).fit(texts, y, len(self.model.labels))

    def proba(self, strategy: Strategy, texts: Sequence[str]) -> np.ndarray:
        """Calibrated probabilities of ``strategy`` (the teacher or a refit of it): its temperature."""
        return apply_temperature(strategy.predict_proba(list(texts)), self.model.temperature)

    def entry(self) -> TeacherEntry:
        manifest = self.model.manifest
        return TeacherEntry(
            digest=manifest.digest,
            strategy=manifest.strategy.name,
            description=manifest.strategy.description,
            backbone=self.model.backbone_ref,
            estimate=manifest.metrics.accuracy if manifest.metrics else None,
        )


@dataclass(frozen=True)
class Split:
    """One split: the labelled rows and unlabelled texts learned from, and those held out."""

    train: np.ndarray  # labelled rows the split's teacher and student learn from
    val: np.ndarray  # labelled rows neither learns from: the estimate
    pool_train: np.ndarray  # unlabelled texts the split's student learns from
    pool_val: np.ndarray  # unlabelled texts it does not: the agreement with the teacher


def splits_for(y: np.ndarray, n_pool: int, folds: int, seed: int, single: bool) -> list[Split]:
    """Stratified folds of the labelled rows, each paired with a part of the unlabelled texts; with
    ``single`` the first of five (an 80/20 split)."""
    labelled = folds_for(y, HOLDOUT_PARTS if single else folds, seed)
    parts = np.array_split(np.random.default_rng(seed).permutation(n_pool), len(labelled))
    out = []
    for i, (train, val) in enumerate(labelled[:1] if single else labelled):
        rest = np.concatenate([p for j, p in enumerate(parts) if j != i])
        out.append(Split(train, val, np.sort(rest), np.sort(parts[i])))
    return out


@dataclass
class DistillResult:
    """What a distillation run measured, and the student it fitted (and saved, when asked)."""

    config: DistillConfig
    labels: list[str]
    teacher: TeacherEntry
    strategy: Strategy  # the student, fitted on every labelled row and every unlabelled text
    evaluation: CVResult  # the splits' students on their held-out labelled rows
    teacher_evaluation: CVResult | None  # the splits' refitted teachers on the same rows
    expected: Expected  # the headline: the student's accuracy (balanced if imbalanced) on new texts
    agreement: Interval  # student and teacher give the same answer, on unlabelled texts held out
    agreement_texts: int
    calibration: dict[str, Any]
    unlabelled: UnlabelledTexts
    splits: int
    teacher_refitted: bool
    majority: float
    imbalanced: bool
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    model_dir: Path | None = None
    prediction: PredictionEntry | None = None  # the engine chosen for predicting (bfloat16 or float32)

    @property
    def model(self) -> TrainedModel:
        """The student in memory, calibrated as the saved one is."""
        return TrainedModel(self.strategy, list(self.labels), student_manifest(self))


@dataclass
class _Run:
    """One ``distill`` call: its data as arrays, the teacher's say on the unlabelled texts, settings."""

    config: DistillConfig
    teacher: Teacher
    data: LabelledTexts
    pool: UnlabelledTexts
    start: float
    notes: list[str]
    warnings: list[str] = field(default_factory=list)
    labels: list[str] = field(init=False)
    y: np.ndarray = field(init=False)
    refit_teacher: bool = field(init=False)  # each split refits the teacher without its held-out rows
    splits: list[Split] = field(init=False)
    fits_left: int = field(init=False)  # student fits still to come (to share a fine-tuning budget)

    def __post_init__(self) -> None:
        self.labels = self.data.classes
        index = {label: i for i, label in enumerate(self.labels)}
        self.y = np.array([index[label] for label in self.data.labels])
        self.refit_teacher = not self.teacher.slow or self.config.honest_teacher
        single = self.config.slow_student or (self.teacher.slow and self.config.honest_teacher)
        self.splits = splits_for(self.y, len(self.pool.texts), self.config.folds, self.config.seed, single)
        self.fits_left = len(self.splits) + 1

    def student(self) -> Strategy:
        """A fresh student; a fine-tuning one gets an even share of the budget left."""
        deadline = self.start + 60 * self.config.budget_minutes
        share = max(30.0, (deadline - time.perf_counter()) / self.fits_left)
        self.fits_left -= 1
        return make_strategy(self.config.student, **self.config.params(share))

    def texts(self, rows: np.ndarray) -> list[str]:
        return [self.data.texts[i] for i in rows]

    def pool_texts(self, rows: np.ndarray) -> list[str]:
        return [self.pool.texts[i] for i in rows]


def distill(
    teacher: str | Path | TrainedModel,
    unlabelled: UnlabelledTexts | Sequence[str],
    labelled: LabelledTexts,
    output: str | Path | None = None,
    *,
    student: str = DEFAULT_STUDENT,
    model: str = DEFAULT_STUDENT_MODEL,
    folds: int = 5,
    seed: int = 0,
    budget_minutes: float = DEFAULT_BUDGET_MINUTES,
    honest_teacher: bool = False,
    student_params: dict[str, Any] | None = None,
) -> DistillResult:
    """Train a ``student`` on ``teacher``'s probabilities over ``unlabelled`` and on ``labelled``.

    Args:
        teacher: a saved single-label model directory (or one loaded), answering ``labelled``'s classes.
        unlabelled: texts without labels (see :func:`fewlabel.data.labelled.load_unlabelled`); texts
            also in ``labelled`` are left out, with a note.
        labelled: checked labelled texts, usually the teacher's training data.
        output: model directory to write (checked before any work); ``None`` keeps the student in memory.
        student, model, folds, seed, budget_minutes, honest_teacher, student_params: see
            :class:`DistillConfig`.

    Returns the student's honest estimate (on labelled rows neither it nor its teacher trained on),
    its agreement with the teacher, and the student itself.
    """
    config = DistillConfig(
        student, model, folds, seed, budget_minutes, honest_teacher, dict(student_params or {})
    )
    if output is not None:
        check_target(Path(output))
    start = time.perf_counter()
    loaded = _load_teacher(teacher, labelled)
    notes: list[str] = []
    pool = _pool(unlabelled, labelled, notes)
    run = _Run(config, loaded, labelled, pool, start, notes)
    result = _distill(run)
    result.seconds = time.perf_counter() - start
    if output is not None:
        result.model_dir = save_student(result, labelled, Path(output))
    return result


def _load_teacher(teacher: str | Path | TrainedModel, labelled: LabelledTexts) -> Teacher:
    """The teacher, refused when it cannot teach these classes: multi-label, or other labels."""
    if isinstance(teacher, TrainedModel):
        loaded = Teacher(teacher, "<memory>")
    else:
        loaded = Teacher(read_model(teacher), str(teacher))
    if loaded.model.multi_label:
        raise FewlabelError(
            f"{loaded.source}: the teacher is a multi-label model; distillation takes a single-label "
            "teacher (one class per text)"
        )
    mine, theirs = labelled.classes, list(loaded.model.labels)
    if theirs != mine:  # fewlabel models keep their labels sorted, as the data's classes are
        missing = sorted(set(mine) - set(theirs))
        extra = sorted(set(theirs) - set(mine))
        raise FewlabelError(
            f"{loaded.source}: the teacher answers {theirs}, but the labelled data has classes {mine}"
            + (f"; the teacher lacks {missing}" if missing else "")
            + (f"; the data lacks {extra}" if extra else "")
            + ". Give labelled data with the teacher's classes."
        )
    return loaded


def _pool(
    unlabelled: UnlabelledTexts | Sequence[str], labelled: LabelledTexts, notes: list[str]
) -> UnlabelledTexts:
    """The unlabelled texts less those in the labelled data: the student is scored on labelled rows,
    which must not reach it through the teacher's probabilities."""
    if not isinstance(unlabelled, UnlabelledTexts):
        unlabelled = unlabelled_texts(list(unlabelled), "<memory>")  # as a file's would be
    known = {dedupe_key(t) for t in labelled.texts}
    kept = [t for t in unlabelled.texts if dedupe_key(t) not in known]
    dropped = len(unlabelled.texts) - len(kept)
    pool = replace(unlabelled, texts=kept, labelled=unlabelled.labelled + dropped)
    if pool.labelled:
        notes.append(
            f"{pool.labelled} unlabelled text(s) also in the labelled data left out: the student is "
            "scored on labelled rows, which must not reach it through the teacher."
        )
    if not kept:
        raise DataError(f"{unlabelled.source}: no unlabelled text is left ({pool.summary()})")
    return pool


def _distill(run: _Run) -> DistillResult:
    """Label the texts with the teacher, cross-fit the estimate, fit the student on everything."""
    full_proba = run.teacher.proba(run.teacher.model.strategy, run.pool.texts)
    with progress.bar(f"Distilling into {run.config.student}", len(run.splits) + 1) as advance:
        found = _cross_fit(run, full_proba, advance)
        student = run.student().fit_soft(run.data.texts, run.y, len(run.labels), run.pool.texts, full_proba)
        advance()
    evaluation, teacher_evaluation, agreed = found
    temperature = fit_temperature(evaluation.oof_proba, evaluation.y)
    result = DistillResult(
        config=run.config,
        labels=run.labels,
        teacher=run.teacher.entry(),
        strategy=student,
        evaluation=evaluation,
        teacher_evaluation=teacher_evaluation,
        expected=_expected(run, evaluation),
        agreement=Interval(agreed[0] / max(agreed[1], 1), *wilson(agreed[0], agreed[1])),
        agreement_texts=agreed[1],
        calibration=_calibration(evaluation, temperature),
        unlabelled=run.pool,
        splits=len(run.splits),
        teacher_refitted=run.refit_teacher,
        majority=majority_baseline(run.y),
        imbalanced=is_imbalanced(np.bincount(run.y).tolist()),
        notes=run.notes,
    )
    result.warnings = [*_warnings(run, result), *run.warnings]
    result.prediction = choose_engine(result.model, run.data.texts)  # a student is meant to be fast
    return result


def _cross_fit(
    run: _Run, full_proba: np.ndarray, advance
) -> tuple[CVResult, CVResult | None, tuple[int, int]]:
    """Each split's student (and refitted teacher) on its held-out labelled rows, and how often the
    student agreed with its teacher on the unlabelled texts it did not learn from."""
    k, seconds = len(run.labels), time.perf_counter()
    rows, student_val, teacher_val, train_acc, teacher_acc = [], [], [], [], []
    agreed, compared = 0, 0
    for split in run.splits:
        teacher = run.teacher.refit(run.texts(split.train), run.y[split.train]) if run.refit_teacher else None
        pool_proba = run.teacher.proba(teacher, run.pool.texts) if teacher is not None else full_proba
        student = run.student().fit_soft(
            run.texts(split.train),
            run.y[split.train],
            k,
            run.pool_texts(split.pool_train),
            pool_proba[split.pool_train],
        )
        rows.append(split.val)
        student_val.append(student.predict_proba(run.texts(split.val)))
        train_acc.append(_accuracy(student, run.texts(split.train), run.y[split.train]))
        if teacher is not None:
            teacher_val.append(run.teacher.proba(teacher, run.texts(split.val)))
            teacher_acc.append(_accuracy(teacher, run.texts(split.train), run.y[split.train]))
        if len(split.pool_val):
            said = student.predict_proba(run.pool_texts(split.pool_val)).argmax(axis=1)
            agreed += int((said == pool_proba[split.pool_val].argmax(axis=1)).sum())
            compared += len(split.pool_val)
        advance()
    seconds = time.perf_counter() - seconds
    described = make_strategy(run.config.student, **run.config.params()).describe()
    student_result = _held_out(run, run.config.student, described, rows, student_val, train_acc, seconds)
    teacher_result = None
    if teacher_val:
        name = f"teacher ({run.teacher.model.manifest.strategy.name}, refitted)"
        description = run.teacher.model.manifest.strategy.description
        teacher_result = _held_out(run, name, description, rows, teacher_val, teacher_acc, 0.0)
    return student_result, teacher_result, (agreed, compared)


def _accuracy(strategy: Strategy, texts: list[str], y: np.ndarray) -> float:
    return float((strategy.predict_proba(texts).argmax(axis=1) == y).mean())


def _held_out(
    run: _Run,
    name: str,
    description: str,
    rows: list[np.ndarray],
    proba: list[np.ndarray],
    train_acc: list[float],
    seconds: float,
) -> CVResult:
    """Probabilities on the splits' held-out rows as a cross-validation (or hold-out) result."""
    y = [run.y[r] for r in rows]
    fold_acc = [float((p.argmax(axis=1) == t).mean()) for p, t in zip(proba, y, strict=True)]
    all_y, all_proba = np.concatenate(y), np.vstack(proba)
    return CVResult(
        name,
        description,
        all_proba,
        all_y,
        train_acc,
        fold_acc,
        seconds,
        score(all_y, all_proba, run.config.seed),
        protocol="cv" if len(rows) > 1 else "holdout",
    )


def _expected(run: _Run, evaluation: CVResult) -> Expected:
    """The headline: accuracy on the held-out rows (balanced accuracy on imbalanced data), with the
    interval; across K splits it admits the spread between splits as ``train``'s does."""
    imbalanced = is_imbalanced(np.bincount(run.y).tolist())
    metric = "balanced_accuracy" if imbalanced else "accuracy"
    what = metric.replace("_", " ")
    unseen = (
        "neither its student nor its teacher (refitted without them) trained on"
        if run.refit_teacher
        else "its student did not train on (its teacher did: it was not refitted)"
    )
    n = len(evaluation.y)
    if evaluation.protocol == "holdout":
        found = holdout_accuracy(evaluation, metric)
        method = f"{what} on one split's {n} held-out labelled rows, which {unseen}; row-bootstrap interval"
        return Expected.model_validate({**found, "method": method})
    fold_values = None
    if imbalanced:
        ends = np.cumsum([len(s.val) for s in run.splits])[:-1]
        fold_values = [
            balanced_accuracy(y, p.argmax(axis=1), len(run.labels))
            for y, p in zip(np.split(evaluation.y, ends), np.split(evaluation.oof_proba, ends), strict=True)
        ]
    found = expected_accuracy(evaluation, n, len(run.splits), None, metric=metric, fold_values=fold_values)
    method = (
        f"cross-fitted {what}: each of {len(run.splits)} splits held out a fold of labelled rows that "
        f"{unseen}; interval the wider of a row bootstrap and the Nadeau-Bengio corrected CV variance"
    )
    return Expected.model_validate({**found, "method": method})


def _calibration(evaluation: CVResult, temperature: float) -> dict[str, Any]:
    """The student's temperature, fitted on its probabilities for the held-out rows, and its record."""
    return {
        "method": "temperature",
        "temperature": temperature,
        "fitted_on": f"held-out probabilities of the student ({len(evaluation.y)} labelled texts)",
        "before": reliability(evaluation.oof_proba, evaluation.y),
        "after": reliability(apply_temperature(evaluation.oof_proba, temperature), evaluation.y),
    }


def _warnings(run: _Run, result: DistillResult) -> list[str]:
    """A teacher that saw the held-out rows, and an interval too wide to act on."""
    out = []
    exp = result.expected
    if not run.refit_teacher:
        out.append(
            f"The teacher ({result.teacher.strategy}) was trained on every labelled row, the "
            f"{len(result.evaluation.y)} held out here too, and it is too slow to refit per split: "
            "its probabilities carry their labels to the student, so the estimate may be optimistic. "
            "Refitting the teacher without them (an honest teacher: one more fine-tuning run) avoids this."
        )
    if exp.ci95_high - exp.ci95_low > WIDE_INTERVAL:
        out.append(
            f"The estimate is uncertain (95% interval {exp.ci95_low:.1%} to {exp.ci95_high:.1%}): "
            "with this few labels, differences of a few points are noise."
        )
    return out
