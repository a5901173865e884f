"""``fewlabel suggest``: which unlabelled texts to label next, uncertain and unlike one another."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fewlabel.cli.options import (
    STDOUT,
    Force,
    Format,
    ModelDir,
    Quiet,
    Seed,
    Sheet,
    SuggestOutput,
    TextColumn,
)

UnlabelledInput = Annotated[
    Path,
    typer.Argument(help="Unlabelled texts: CSV, TSV, JSONL, Parquet or Excel (.xlsx) with a text column."),
]
Exclude = Annotated[
    Path | None,
    typer.Option(
        help="Leave out texts that appear in this file, for example the training data (default: none)."
    ),
]
HowMany = Annotated[int, typer.Option("-n", help="How many texts to suggest.")]


def suggest(
    model_dir: ModelDir,
    unlabelled: UnlabelledInput,
    output: SuggestOutput = STDOUT,
    force: Force = False,
    n: HowMany = 50,
    text_column: TextColumn = None,
    format: Format = None,
    sheet: Sheet = None,
    exclude: Exclude = None,
    seed: Seed = 0,
    quiet: Quiet = False,
) -> None:
    """Rank unlabelled texts by the value of a label: uncertain for the model, and unlike one another.

    Writes the N best rows as they were in UNLABELLED plus suggest_rank (1 = label first) and
    suggest_score, with a header row, to the output file or to standard output; messages go to
    standard error. Label them, add them to the training data, and train again.
    """
    from fewlabel import progress
    from fewlabel.data.files import parse_sheet
    from fewlabel.inference.suggest import suggest_file

    progress.set_enabled(not quiet)
    summary = suggest_file(
        model_dir,
        unlabelled,
        output,
        n,
        text_column,
        format,
        exclude_path=exclude,
        force=force,
        seed=seed,
        sheet=parse_sheet(sheet),
    )
    _print_summary(summary)


def _print_summary(summary: dict) -> None:
    """On standard error: a warning for texts cut to MAX_TEXT_CHARS, and what was written where."""
    from rich.console import Console
    from rich.text import Text

    console = Console(stderr=True, highlight=False, emoji=False)
    if summary.get("cut_texts"):
        from fewlabel.data.labelled import MAX_TEXT_CHARS

        cut = (
            f"{summary['cut_texts']} text(s) longer than {MAX_TEXT_CHARS:,} characters were read up to there."
        )
        console.print(Text.assemble(("Warning:", "yellow"), " ", cut), soft_wrap=True)
    where = "standard output" if summary["output"] == STDOUT else summary["output"]
    console.print(
        Text(
            f"Wrote {summary['suggested']} suggestions to {where} "
            f"(from {summary['candidates']} distinct unlabelled texts of {summary['rows']} rows; "
            f"diversity over {summary['representation']}). Label them, add them to the training data, "
            "and train again."
        ),
        soft_wrap=True,
    )
