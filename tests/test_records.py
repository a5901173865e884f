"""Typed records of a model directory: ``metrics.json`` and ``fewlabel.json`` are read in one place.

Code outside ``fewlabel.model_dir`` reads :class:`~fewlabel.model_dir.records.Metrics` and
:class:`~fewlabel.model_dir.records.Manifest` attributes, never string keys: the first test fails on
``metrics["estimate"]``, ``manifest.get("labels")`` and the like anywhere else in ``src/``.
"""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import numpy as np
import pytest

from fewlabel.errors import ModelDirError
from fewlabel.model_dir.records import Manifest, Metrics, parse_metrics

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "fewlabel"
RECORD_NAMES = ("metrics", "manifest")


def _names_a_record(node: ast.AST) -> str | None:
    """``metrics``, ``self.manifest``, ``saved_metrics``...: a name that holds a record, or None."""
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
    if name is None:
        return None
    return name if any(name == r or name.endswith("_" + r) for r in RECORD_NAMES) else None


def _string_indexing(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and _names_a_record(node.value):
            key = node.slice
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                found.append((node.lineno, f"{_names_a_record(node.value)}[{key.value!r}]"))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("get", "pop", "setdefault")
            and _names_a_record(node.func.value)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append(
                (node.lineno, f"{_names_a_record(node.func.value)}.{node.func.attr}({node.args[0].value!r})")
            )
    return found


def test_no_code_outside_model_dir_reads_records_by_string_key():
    offences = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.is_relative_to(PACKAGE / "model_dir"):
            continue
        for line, what in _string_indexing(ast.parse(path.read_text(encoding="utf-8"))):
            offences.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {what}")
    assert not offences, "read the typed record's attribute instead:\n" + "\n".join(offences)


def test_the_guard_catches_string_indexing():
    code = (
        "x = metrics['estimate']\ny = self.manifest.get('labels')\nz = saved_metrics['a']\nok = other['a']\n"
    )
    assert [what for _, what in _string_indexing(ast.parse(code))] == [
        "metrics['estimate']",
        "manifest.get('labels')",
        "saved_metrics['a']",
    ]


def _same(a, b) -> bool:
    """Equal JSON values, NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_metrics_json_is_the_record_training_built(tfidf_model_dir):
    from fewlabel.model_dir.store import read_metrics

    raw = json.loads((tfidf_model_dir / "metrics.json").read_text(encoding="utf-8"))
    metrics = read_metrics(tfidf_model_dir)
    assert isinstance(metrics, Metrics) and _same(metrics.to_json(), raw)
    assert metrics.chosen_strategy == "tfidf" and set(metrics.strategies) == {"tfidf"}
    assert (
        metrics.estimate.accuracy.ci95_low
        <= metrics.estimate.accuracy.value
        <= metrics.estimate.accuracy.ci95_high
    )
    assert metrics.expected_accuracy.metric == "accuracy"


def test_a_saved_models_manifest_is_typed(tfidf_model_dir):
    from fewlabel.inference.loading import load_model

    manifest = load_model(tfidf_model_dir).manifest
    assert isinstance(manifest, Manifest)
    assert manifest.strategy.name == "tfidf" and manifest.labels == ["negative", "positive"]
    assert manifest.backbone is None and manifest.temperature > 0
    assert manifest.metrics is not None and manifest.metrics.accuracy is not None
    assert str(manifest.metrics.accuracy).startswith("accuracy ")
    assert manifest.training_data is not None and manifest.training_data.rows > 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda m: m.pop("estimate"), "estimate"),
        (lambda m: m["estimate"]["accuracy"].update(value="high"), "estimate.accuracy.value"),
        (lambda m: m["strategies"]["tfidf"].update(protocol="guess"), "strategies.tfidf.protocol"),
        (lambda m: m.update(surprise=1), "surprise"),
    ],
)
def test_damaged_metrics_are_refused_naming_the_field(tfidf_model_dir, change, field):
    raw = json.loads((tfidf_model_dir / "metrics.json").read_text(encoding="utf-8"))
    change(raw)
    with pytest.raises(ModelDirError, match=f"field '{field}'"):
        parse_metrics(raw, "metrics.json")


def test_report_names_a_damaged_metrics_file(model_copy):
    from fewlabel.model_dir.store import rebuild_documents

    (model_copy / "metrics.json").write_text('{"estimate": 1}', encoding="utf-8")
    with pytest.raises(ModelDirError, match=r"metrics.json: field 'estimate'"):
        rebuild_documents(model_copy)
    (model_copy / "metrics.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelDirError, match="metrics.json"):
        rebuild_documents(model_copy)


def test_unknown_manifest_keys_are_kept_and_readable():
    manifest = Manifest.model_validate(
        {"format_version": 2, "strategy": {"name": "tfidf"}, "labels": ["a", "b"], "note": 1}
    )
    assert manifest.extra("note") == 1 and manifest.extra("missing", 0) == 0
    assert manifest.to_json()["note"] == 1


def test_nan_survives_the_round_trip():
    from fewlabel.model_dir.records import Interval

    interval = Interval(value=float("nan"), ci95_low=0.0, ci95_high=1.0)
    assert math.isnan(interval.model_dump(mode="json")["value"])
    assert np.isnan(Interval.model_validate({"value": float("nan"), "ci95_low": 0, "ci95_high": 1}).value)
