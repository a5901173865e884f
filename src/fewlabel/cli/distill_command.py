"""``fewlabel distill``: a small student trained on a teacher model's probabilities over unlabelled texts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fewlabel.cli.options import Backbone, LabelColumn, ModelOutput, Quiet, Seed, TextColumn
from fewlabel.config import STUDENTS, DistillConfig

if TYPE_CHECKING:
    from rich.console import Console

    from fewlabel.data.labelled import LabelledTexts
    from fewlabel.distill import DistillResult

TeacherDir = Annotated[
    Path, typer.Argument(help="The teacher: a single-label model directory written by `fewlabel train`.")
]
UnlabelledInput = Annotated[
    Path,
    typer.Argument(
        help="Unlabelled texts for the teacher to label: CSV, TSV, JSONL, Parquet or Excel (.xlsx) with a "
        "text column. Texts also in the labelled data are left out."
    ),
]
LabelledData = Annotated[
    Path,
    typer.Option(
        "--labelled",
        help="Labelled data with the teacher's classes, usually its training data: the student learns "
        "from it too, and is scored on it.",
    ),
]
Student = Annotated[
    str,
    typer.Option(
        help=f"The student: {', '.join(STUDENTS[:-1])} or {STUDENTS[-1]} (frozen or fine-tuned --model "
        "embeddings). tfidf predicts fastest; a fine-tuned one was a point more accurate on long reviews, "
        "at a fifth of the speed."
    ),
]
DistillFolds = Annotated[
    int,
    typer.Option(
        "--folds",
        help="Splits of the labelled rows for the cross-fitted estimate (2 to 20); a fine-tuned student "
        "or an honest fine-tuned teacher gets one 80/20 split.",
    ),
]
DistillBudget = Annotated[
    float,
    typer.Option(
        "--budget-minutes",
        help="Minutes the student's fine-tuning runs may take in all (they stop early, keeping their "
        "best checkpoint).",
    ),
]
HonestTeacher = Annotated[
    bool,
    typer.Option(
        "--honest-teacher",
        help="A fine-tuned teacher (too slow to refit per split): refit it once without the held-out "
        "rows, so the estimate does not rest on a teacher that saw them. One more fine-tuning run.",
    ),
]


def distill(
    teacher: TeacherDir,
    unlabelled: UnlabelledInput,
    labelled: LabelledData,
    output: ModelOutput,
    student: Student = DistillConfig.student,
    model: Backbone = DistillConfig.model,
    text_column: TextColumn = None,
    label_column: LabelColumn = None,
    folds: DistillFolds = DistillConfig.folds,
    seed: Seed = DistillConfig.seed,
    budget_minutes: DistillBudget = DistillConfig.budget_minutes,
    honest_teacher: HonestTeacher = False,
    quiet: Quiet = False,
) -> None:
    """Train a small student on a teacher model's probabilities over unlabelled texts, with an honest
    estimate: scored on labelled rows that neither the student nor its teacher trained on.

    The student is an ordinary model directory: `fewlabel predict` and `fewlabel serve` use it as
    they use any other (docs/distill.md).
    """
    from rich.console import Console

    from fewlabel import progress
    from fewlabel.cli.commands import check_model_output
    from fewlabel.data.labelled import load_labelled, load_unlabelled
    from fewlabel.distill import distill as run_distill

    check_model_output(output)  # before loading the teacher or reading the data, not after
    config = DistillConfig(student, model, folds, seed, budget_minutes, honest_teacher)
    progress.set_enabled(not quiet)
    data = load_labelled(labelled, text_column, label_column, min_per_class=config.folds)
    pool = load_unlabelled(unlabelled, text_column, labelled=data)
    result = run_distill(
        teacher,
        pool,
        data,
        output,
        student=config.student,
        model=config.model,
        folds=config.folds,
        seed=config.seed,
        budget_minutes=config.budget_minutes,
        honest_teacher=config.honest_teacher,
    )
    print_distillation(result, data, teacher, Console(highlight=False, emoji=False))


def print_distillation(result: DistillResult, data: LabelledTexts, teacher: Path, console: Console) -> None:
    """One line per result: the teacher, the data, the student's estimate, agreement, where it is."""
    from rich.markup import escape

    from fewlabel.cli.tables import print_engine

    said = result.teacher.estimate
    console.print(
        escape(
            f"Teacher: {result.teacher.description} from {teacher}; its own estimate: {said or 'none recorded'}."
        ),
        soft_wrap=True,
    )
    counts = ", ".join(f"{k}: {v}" for k, v in data.class_counts().items())
    console.print(
        escape(
            f"Data: {len(data)} labelled texts from {data.source} ({counts}); {result.unlabelled.summary()}."
        ),
        soft_wrap=True,
    )
    for note in result.notes:
        console.print(escape(note), soft_wrap=True)
    for warning in result.warnings:
        console.print(f"[yellow]Warning:[/] {escape(warning)}", soft_wrap=True)
    _print_estimate(result, console)
    print_engine(console, result.prediction)
    if result.model_dir:
        console.print(f"Model saved to [bold]{escape(str(result.model_dir))}[/]", soft_wrap=True)
        report = escape(str(result.model_dir / "report.html"))
        console.print(f"Report: [bold]{report}[/] (every number in metrics.json)", soft_wrap=True)
    console.print(f"Took {result.seconds:.1f}s.")


def _print_estimate(result: DistillResult, console: Console) -> None:
    """The student's estimate, the refitted teachers' score on the same rows, and the agreement."""
    from rich.markup import escape

    exp, rows = result.expected, len(result.evaluation.y)
    what = "balanced accuracy" if exp.metric == "balanced_accuracy" else "accuracy"
    how = f"{result.splits} cross-fitted splits" if result.splits > 1 else "one 80/20 split"
    teacher = "refitted without them" if result.teacher_refitted else "not refitted: it saw them"
    console.print(
        f"Student: [bold]{escape(result.strategy.describe())}[/]. Expected {what} on new texts like these: "
        f"[bold green]{exp.value:.1%}[/] (95% CI {exp.ci95_low:.1%} to {exp.ci95_high:.1%}), "
        f"from {rows} held-out labelled rows ({how}; the teacher {teacher}).",
        soft_wrap=True,
    )
    if result.teacher_evaluation is not None:
        scores = result.teacher_evaluation.scores
        same = scores.balanced_accuracy if exp.metric == "balanced_accuracy" else scores.accuracy
        console.print(f"The refitted teachers on the same rows: {what} {same.value:.1%}.", soft_wrap=True)
    agreement = result.agreement
    console.print(
        f"Agreement with the teacher on {result.agreement_texts} unlabelled texts the student did not "
        f"learn from: {agreement.value:.1%} (95% CI {agreement.low:.1%} to {agreement.high:.1%}).",
        soft_wrap=True,
    )
