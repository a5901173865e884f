"""``fewlabel upgrade``: rewrite a model saved in an older format in the current one, after checking it."""

from __future__ import annotations

from typing import Annotated

import typer

from fewlabel.cli.options import ModelDir


def upgrade(
    model_dir: ModelDir,
    backbone: Annotated[
        str | None,
        typer.Option(
            "--backbone",
            help="For a model trained on a backbone directory or Hub id: that backbone, imported into "
            "fewlabel's backbone store now (giving it is trusting it). Default: none, which is all a "
            "model on a named backbone (minilm, mpnet) needs.",
        ),
    ] = None,
) -> None:
    """Check a format 1 model file by file, then save it again in format 2 (atomic; nothing changes on error).

    Format 2 checksums the manifest itself and pins the backbone by the hash of its files; format 1
    models still load, with a warning, until they are upgraded.
    """
    from rich.console import Console

    from fewlabel.model_dir.store import upgrade_model

    summary = upgrade_model(model_dir, backbone)
    console = Console(stderr=True, highlight=False)
    if summary["changed"]:
        console.print(
            f"Upgraded {summary['model']} from format {summary['from_version']} to {summary['to_version']}.",
            soft_wrap=True,
        )
    else:
        console.print(f"{summary['model']} is already in format {summary['to_version']}; nothing to do.")
