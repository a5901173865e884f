"""``fewlabel suggest``: which unlabelled texts to label next, uncertain and unlike one another."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def suggest(
    model_dir: Annotated[Path, typer.Argument(help="A model directory written by `fewlabel train`.")],
    unlabelled: Annotated[
        Path,
        typer.Argument(
            help="Unlabelled texts: CSV, TSV, JSONL, Parquet or Excel (.xlsx) with a text column."
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="File to write the suggestions to (.csv, .tsv, .jsonl).")
    ],
    n: Annotated[int, typer.Option("-n", help="How many texts to suggest.")] = 50,
    text_column: Annotated[
        str | None, typer.Option("--text-column", help="Column holding the texts (default: detected).")
    ] = None,
    format: Annotated[
        str | None,
        typer.Option("--format", help="csv, tsv, jsonl, parquet or xlsx (default: from the suffix)."),
    ] = None,
    sheet: Annotated[
        str | None,
        typer.Option(
            "--sheet", help="Sheet of an .xlsx UNLABELLED: its name or 0-based index (default: the first)."
        ),
    ] = None,
    exclude: Annotated[
        Path | None,
        typer.Option(help="Leave out texts that appear in this file (for example the training data)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the output file if it exists.")] = False,
    seed: Annotated[int, typer.Option(help="Random seed for the clustering.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Rank unlabelled texts by the value of a label: uncertain for the model, and unlike one another.

    Writes the N best rows as they were in UNLABELLED plus suggest_rank (1 = label first) and
    suggest_score. Label them, add them to the training data, and train again.
    """
    from rich.console import Console
    from rich.text import Text

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
    console = Console(stderr=True, highlight=False, emoji=False)
    if summary.get("cut_texts"):
        from fewlabel.data.labelled import MAX_TEXT_CHARS

        cut = (
            f"{summary['cut_texts']} text(s) longer than {MAX_TEXT_CHARS:,} characters were read up to there."
        )
        console.print(Text.assemble(("Warning:", "yellow"), " ", cut), soft_wrap=True)
    console.print(
        Text(
            f"Wrote {summary['suggested']} suggestions to {summary['output']} "
            f"(from {summary['candidates']} distinct unlabelled texts of {summary['rows']} rows; "
            f"diversity over {summary['representation']}). Label them, add them to the training data, "
            "and train again."
        ),
        soft_wrap=True,
    )
