"""Every option the commands share, declared once (docs/cli.md is the convention they follow), and
the longer ones of the commands in ``main.py``, so that each signature reads as a list of options.

Training defaults are :class:`~fewlabel.config.TrainConfig`'s (a dataclass field with a default is
also a class attribute, so ``TrainConfig.folds`` reads it without building a config, which would
import every strategy). The strategy list is the registry's, so a new strategy appears in
``--help`` without touching the CLI; it is read when a command's options are (importing the
registry imports NumPy, which would triple the time ``fewlabel --help`` takes).

Typer shows a ``<bool>`` type after every flag, ``--help`` included, as if it took a value; the
command classes below show flags bare.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from fewlabel.config import AUTO_CANDIDATES

STDOUT = "-"  # as an output: standard output; as predict's input: standard input
REGISTERED = "{registered strategies}"  # in a help text: replaced by the registry's names


def _listed(names: list[str], last: str) -> str:
    return f"{', '.join(names[:-1])} {last} {names[-1]}" if len(names) > 1 else names[0]


def _finished(params: list[Any]) -> list[Any]:
    """The options as help shows them: flags without a value type, the strategies named."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""  # typer prints the metavar instead of the type; an empty one prints nothing
        if param.help and REGISTERED in param.help:
            from fewlabel.strategies import REGISTRY

            param.help = param.help.replace(REGISTERED, _listed(list(REGISTRY), "or"))
    return params


class Command(TyperCommand):
    """A command whose help shows flags (``--quiet``, ``--help``) bare and every registered strategy."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _finished(super().get_params(ctx))


class Group(TyperGroup):
    """A command group whose help shows flags (``--version``, ``--help``) without a value type."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _finished(super().get_params(ctx))


# Arguments.
ModelDir = Annotated[Path, typer.Argument(help="A model directory written by `fewlabel train`.")]
TrainData = Annotated[
    Path,
    typer.Argument(
        help="Labelled data: CSV, TSV, JSONL, Parquet or Excel (.xlsx) with a text and a label column."
    ),
]
PredictInput = Annotated[
    str,
    typer.Argument(
        help="CSV, TSV, JSONL, Parquet or Excel (.xlsx) file, or - for one text per line on standard input."
    ),
]

# Reading a table.
TextColumn = Annotated[
    str | None, typer.Option("--text-column", help="Column holding the texts (default: detected).")
]
LabelColumn = Annotated[
    str | None, typer.Option("--label-column", help="Column holding the labels (default: detected).")
]
Format = Annotated[
    str | None,
    typer.Option("--format", help="csv, tsv, jsonl, parquet or xlsx (default: from the suffix)."),
]
Sheet = Annotated[
    str | None,
    typer.Option(
        "--sheet",
        help="Sheet of an .xlsx workbook: its name, or its 0-based index if all digits (default: the first). "
        "Needs the xlsx extra.",
    ),
]

# Writing.
ModelOutput = Annotated[
    Path,
    typer.Option(
        "--output",
        "-o",
        help="Directory to save the model in. A fewlabel model already there is replaced once the new "
        "one is complete; any other non-empty directory is refused.",
    ),
]
PredictOutput = Annotated[
    str,
    typer.Option(
        "--output",
        "-o",
        help="File to write (.csv, .tsv, .jsonl or .xlsx), or - for standard output (CSV; TSV or JSONL "
        "for such an input). An existing file is replaced only with --force.",
    ),
]
SuggestOutput = Annotated[
    str,
    typer.Option(
        "--output",
        "-o",
        help="File to write (.csv, .tsv or .jsonl), or - for standard output (CSV; TSV or JSONL for such "
        "an input). An existing file is replaced only with --force.",
    ),
]
Force = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Replace an existing output. Never one that another fewlabel run is writing: that still refuses.",
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
Seed = Annotated[int, typer.Option(help="Random seed: the same seed, data and options give the same result.")]

# Training: defaults are TrainConfig's.
SkipEmpty = Annotated[
    bool, typer.Option(help="Leave out rows with an empty text or label instead of failing.")
]
NormalizeLabels = Annotated[
    bool, typer.Option(help="Merge labels that differ only by case or spaces ('Positive', 'positive ').")
]
MultiLabel = Annotated[
    bool,
    typer.Option(
        "--multi-label",
        help="Each label cell holds zero or more labels joined by --label-separator ('action|comedy'); "
        "train a model that answers a set of labels per text (docs/multi-label.md).",
    ),
]
LabelSeparator = Annotated[
    str,
    typer.Option("--label-separator", help="With --multi-label: the character joining the labels in a cell."),
]
Unlabelled = Annotated[
    Path | None,
    typer.Option(
        help="Texts without labels (CSV, TSV, JSONL, Parquet, or .xlsx: its first sheet) to self-train "
        "on: each strategy adds its most confident predictions on them as labels, inside training "
        "folds only. Texts also in DATA are left out. Helped fine-tuning most on our benchmarks "
        "(see BENCHMARKS.md). Default: none.",
    ),
]
UnlabelledColumn = Annotated[
    str | None,
    typer.Option(help="Column of --unlabelled holding the texts (default: DATA's text column, or detected)."),
]
Strategy = Annotated[
    str,
    typer.Option(
        "--strategy",
        "-s",
        help=f"auto (compares {_listed(list(AUTO_CANDIDATES), 'and')} honestly, by nested cross-validation), "
        f"or one strategy: {REGISTERED}.",
    ),
]
Backbone = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="Backbone: best (embeddinggemma when installed and its encoding fits about two thirds of the budget, or the texts are mostly not in English; else mpnet if installed, else minilm), minilm, mpnet, embeddinggemma, a directory or a Hub id.",
    ),
]
Folds = Annotated[int, typer.Option(help="Cross-validation folds (2 to 20).")]
Diagnostics = Annotated[
    bool,
    typer.Option(
        help="Learning curves, label issues and near-duplicates (in the report and label_issues.csv)."
    ),
]
BudgetMinutes = Annotated[
    float,
    typer.Option(
        help="Upper bound on the whole run. Fine-tuning joins auto only when it fits, and stops early "
        "(keeping its best checkpoint) when time runs out."
    ),
]
Preset = Annotated[
    str,
    typer.Option(
        help="Fine-tuning recipe: robust, or naive (lr 5e-5, no warmup, fixed epochs: the common "
        "failing setup, reproduced so its failure can be seen and explained)."
    ),
]
Augment = Annotated[
    str | None,
    typer.Option(
        help="eda: add EDA variants (WordNet synonyms, insertions, swaps, deletions) to each training "
        "fold. Off by default: it did not help on our benchmarks (docs/self-training-and-augmentation.md)."
    ),
]
TuneThreshold = Annotated[
    bool | None,
    typer.Option(
        "--tune-threshold/--no-tune-threshold",
        help="Two classes: move the decision threshold to where balanced accuracy is highest on "
        "out-of-fold predictions, and save it with the model. Default: only when the classes are "
        "imbalanced (the smallest under half its fair share).",
        show_default=False,
    ),
]
Export = Annotated[
    bool,
    typer.Option(
        "--export",
        help="After saving, export the chosen model's encoder as `fewlabel export` does (checked against "
        "PyTorch; needs the onnx extra, and openvino for its speed): predict and serve then run it. "
        "Checked before training.",
    ),
]
Strict = Annotated[
    bool,
    typer.Option(
        help="Fail (exit 2, nothing saved) when the model is not clearly better than chance, "
        "instead of saving it with a warning."
    ),
]

# Running a model.
Engine = Annotated[
    str,
    typer.Option(
        help="auto (the exported graph when there is one: with OpenVINO where export found it faster, "
        "else ONNX Runtime; else PyTorch as training chose), onnx, openvino, torch, or torch-bf16 "
        "(bfloat16 matrix products: faster on CPUs with AMX or AVX512-BF16 and on GPUs)."
    ),
]
Threshold = Annotated[
    float | None,
    typer.Option(
        help="Answer ABSTAIN where the (calibrated) confidence is below this, e.g. 0.8 "
        "(default: always answer a label)."
    ),
]
Runner = Annotated[
    str,
    typer.Option(
        help='local (this process) or ray (workers of a Ray cluster; pip install "fewlabel[ray]"). '
        "--engine ray means the same as --runner ray."
    ),
]
RayAddress = Annotated[
    str | None,
    typer.Option(
        help="With --runner ray: auto (this node's cluster) or ray://HOST:10001 (default: a local instance)."
    ),
]
