"""Tables the single- and multi-label commands print alike: scores per class (or label), the
estimate a model reported when it was trained, and the engine it predicts with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fewlabel.model_dir.records import PredictionEntry


def print_per_class(console: Console, title: str, first: str, scores: dict[str, dict[str, Any]]) -> None:
    """Precision, recall, F1 and support of each class (``first`` names the column: label, class)."""
    table = Table(title=title, title_justify="left")
    for col in (first, "precision", "recall", "F1", "support"):
        table.add_column(col, justify="left" if col == first else "right")
    for name, m in scores.items():
        table.add_row(
            escape(name), f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(m["support"])
        )
    console.print(table)


def print_estimate_at_training(console: Console, what: str, estimate: dict[str, Any] | None) -> None:
    """``Cross-validated <what> at training time: ...``, when the model recorded one."""
    if estimate:
        console.print(
            f"Cross-validated {what} at training time: {estimate['value']:.3f} "
            f"(95% CI {estimate['ci95_low']:.3f}-{estimate['ci95_high']:.3f})."
        )


def export_hint(model_dir: Path) -> str:
    """Where the faster prediction is, for a model with a neural encoder (frozen or fine-tuned)."""
    return (
        f"Faster prediction: `fewlabel export {model_dir}` (or `train --export`; checked against PyTorch; with openvino "
        "installed, 3x float32 for embeddinggemma on long reviews here; docs/prediction-and-serving.md)."
    )


def export_lines(info: dict) -> tuple[str, str | None]:
    """What an export wrote and what runs it; and why OpenVINO does not, where it was refused."""
    openvino = info.get("openvino")
    runtime = "ONNX Runtime"
    if openvino and openvino["speedup"] > 1:
        runtime = (
            f"OpenVINO ({openvino['precision']}, {openvino['speedup']:.1f}x ONNX Runtime on the check texts)"
        )
    done = (
        f"Wrote {info['onnx']} ({info['bytes'] / 1e6:.0f} MB, {info['quantize'] or 'float32'}); "
        f"`fewlabel predict` and `fewlabel serve` now run it with {runtime} (--engine torch to compare)."
    )
    refused = info.get("openvino_refused")
    return done, f"Not run with OpenVINO: {refused}." if refused else None


def print_engine(console: Console, prediction: PredictionEntry | None) -> None:
    """``Prediction engine: ...``: the one training chose for ``predict`` and ``serve``, and why."""
    if prediction is None:
        return
    if prediction.engine == "torch-bf16":
        line = (
            f"Prediction engine: torch-bf16 ({prediction.reason}); `--engine torch` predicts exactly "
            "as evaluated."
        )
    else:
        line = f"Prediction engine: torch (float32, as evaluated): {prediction.reason}."
    console.print(escape(line), soft_wrap=True)
