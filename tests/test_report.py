"""The training report and model card: content, self-containment, `fewlabel report`, and a real browser."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import struct
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import BACKBONE
from fewlabel.cli.main import app
from fewlabel.config import TrainConfig
from fewlabel.data.labelled import LabelledTexts
from fewlabel.inference.loading import load_model
from fewlabel.model_dir.manifest import MANIFEST, read_manifest
from fewlabel.model_dir.records import Manifest, Metrics, manifest_record, parse_metrics
from fewlabel.report import model_card, render_report
from fewlabel.training import train

ISSUES_HEADER = "row,given_label,suggested_label,given_label_probability,suggested_label_probability,text"
BROWSER_TIMEOUT = 60
ENV = {"COLUMNS": "200", "FEWLABEL_PROGRESS": "0"}


def _metrics(model_dir: Path) -> dict:
    return json.loads((model_dir / "metrics.json").read_text(encoding="utf-8"))


def _records(model_dir: Path) -> tuple[Manifest, Metrics]:
    """The saved manifest and metrics.json as the records the report takes (what `fewlabel report` reads)."""
    return (
        manifest_record(read_manifest(model_dir), str(model_dir)),
        parse_metrics(_metrics(model_dir), str(model_dir / "metrics.json")),
    )


def _accuracy_text(model_dir: Path) -> str:
    return f"{100 * _metrics(model_dir)['expected_accuracy']['value']:.1f}%"


def _verdict(html_text: str) -> str:
    match = re.search(r"<section[^>]*id=['\"]verdict['\"][^>]*>(.*?)</section>", html_text, flags=re.S)
    assert match, "no <section id='verdict'> in the report"
    return match.group(1)


def _assert_self_contained(html_text: str) -> None:
    lowered = html_text.lower()
    for forbidden in (
        'src="http',
        "src='http",
        'href="http',
        "href='http",
        "<script",
        "<link",
        "@import",
        "url(http",
    ):
        assert forbidden not in lowered, f"report is not self-contained: found {forbidden!r}"


def _strip_svg(html_text: str) -> str:
    """The report without its plots (matplotlib's SVG carries a date and random element ids)."""
    return re.sub(r"<svg.*?</svg>", "<svg/>", html_text, flags=re.S)


# --------------------------------------------------------------------------------------------- unit tests


def test_report_files_written(tfidf_model_dir):
    for name in ("report.html", "README.md", "label_issues.csv", "metrics.json", MANIFEST):
        assert (tfidf_model_dir / name).is_file(), name


def test_report_is_self_contained_with_verdict_and_plots(tfidf_model_dir):
    html_text = (tfidf_model_dir / "report.html").read_text(encoding="utf-8")
    assert html_text.lstrip().lower().startswith("<!doctype html>")
    assert html_text.rstrip().endswith("</html>")
    _assert_self_contained(html_text)
    verdict = _verdict(html_text)
    accuracy = _accuracy_text(tfidf_model_dir)
    assert accuracy in verdict
    metrics = _metrics(tfidf_model_dir)
    est = metrics["expected_accuracy"]
    assert f"{100 * est['ci95_low']:.1f}%" in verdict and f"{100 * est['ci95_high']:.1f}%" in verdict
    assert "More labels:" in verdict  # the learning-curve sentence (diagnostics on)
    assert f"{metrics['diagnostics']['n_label_issues']} training row(s)" in verdict
    # Strategy comparison, learning curve, reliability diagram and confusion matrix.
    assert html_text.count("<svg") >= 4
    assert html_text.count("<svg") == html_text.count("</svg>")
    for section in ("strategies", "learning-curve", "calibration", "errors", "labels", "data"):
        assert f"id='{section}'" in html_text, section


def test_report_svg_references_resolve_to_unique_ids(tfidf_model_dir):
    """Inline SVGs share one document: a repeated referenced id would make one plot use another's clip paths,
    markers or glyphs."""
    html_text = (tfidf_model_dir / "report.html").read_text(encoding="utf-8")
    ids = Counter(re.findall(r"\sid=['\"]([^'\"]+)['\"]", html_text))
    referenced = set(re.findall(r"url\(#([^)]+)\)", html_text))
    referenced |= set(re.findall(r"href=['\"]#([^'\"]+)['\"]", html_text))
    assert referenced
    assert {r: ids[r] for r in referenced if ids[r] != 1} == {}


def test_report_element_ids_are_unique(tfidf_model_dir):
    html_text = (tfidf_model_dir / "report.html").read_text(encoding="utf-8")
    ids = re.findall(r"\sid=['\"]([^'\"]+)['\"]", html_text)
    assert [i for i, n in Counter(ids).items() if n > 1] == []


def test_label_issues_csv_matches_metrics(tfidf_model_dir):
    text = (tfidf_model_dir / "label_issues.csv").read_text(encoding="utf-8")
    assert text.splitlines()[0] == ISSUES_HEADER
    with (tfidf_model_dir / "label_issues.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    diagnostics = _metrics(tfidf_model_dir)["diagnostics"]
    assert len(rows) == diagnostics["n_label_issues"]
    assert [int(r["row"]) for r in rows[:100]] == [i["row"] for i in diagnostics["label_issues"]]
    labels = {"negative", "positive"}
    for r in rows:
        assert r["given_label"] in labels and r["suggested_label"] in labels
        assert r["given_label"] != r["suggested_label"]
        assert 0.0 <= float(r["given_label_probability"]) <= float(r["suggested_label_probability"]) <= 1.0


def test_model_card_mentions_labels_and_accuracy(tfidf_model_dir):
    card = (tfidf_model_dir / "README.md").read_text(encoding="utf-8")
    assert card.startswith("# fewlabel model")
    assert "`negative`" in card and "`positive`" in card
    assert _accuracy_text(tfidf_model_dir) in card
    assert "tfidf" in card
    assert "reviews.csv" in card


def test_report_command_rebuilds_documents(model_copy):
    original = (model_copy / "report.html").read_text(encoding="utf-8")
    original_card = (model_copy / "README.md").read_text(encoding="utf-8")
    manifest_before = (model_copy / MANIFEST).read_bytes()
    (model_copy / "report.html").unlink()
    (model_copy / "README.md").unlink()

    result = CliRunner().invoke(app, ["report", str(model_copy)], env=ENV)
    assert result.exit_code == 0, result.output
    assert "report.html" in result.output

    rebuilt = (model_copy / "report.html").read_text(encoding="utf-8")
    _assert_self_contained(rebuilt)
    assert _accuracy_text(model_copy) in _verdict(rebuilt)
    assert rebuilt.count("<svg") == original.count("<svg")
    assert rebuilt == original  # the same report, plots included, from the saved files alone
    assert (model_copy / "README.md").read_text(encoding="utf-8") == original_card
    assert (model_copy / MANIFEST).read_bytes() == manifest_before
    assert not list(model_copy.glob(".*"))  # no temporary files left behind
    model = load_model(model_copy)  # verifies every checksum
    assert model.labels == ["negative", "positive"]


def test_report_command_overwrites_existing_report(model_copy):
    (model_copy / "report.html").write_text("stale", encoding="utf-8")
    result = CliRunner().invoke(app, ["report", str(model_copy)], env=ENV)
    assert result.exit_code == 0, result.output
    assert "id='verdict'" in (model_copy / "report.html").read_text(encoding="utf-8")
    load_model(model_copy)


def test_report_command_clean_errors(tmp_path, model_copy):
    result = CliRunner().invoke(app, ["report", str(tmp_path / "nothing")], env=ENV)
    assert result.exit_code == 2 and "Traceback" not in result.output
    (model_copy / "metrics.json").unlink()
    result = CliRunner().invoke(app, ["report", str(model_copy)], env=ENV)
    assert result.exit_code == 2, result.output
    assert "metrics.json" in result.stderr and "Traceback" not in result.output


def test_no_diagnostics_model(tmp_path, reviews):
    texts, labels = reviews
    out = tmp_path / "m"
    result = train(
        LabelledTexts.from_lists(texts, labels),
        out,
        TrainConfig(strategy="tfidf", model=BACKBONE, folds=3, diagnostics=False),
    )
    assert result.diagnostics == {}
    assert not (out / "label_issues.csv").exists()
    assert _metrics(out)["diagnostics"] == {}
    html_text = (out / "report.html").read_text(encoding="utf-8")
    _assert_self_contained(html_text)
    verdict = _verdict(html_text)
    assert _accuracy_text(out) in verdict
    assert "No learning curve was computed." in verdict
    assert "id='learning-curve'" not in html_text and "id='labels'" not in html_text
    assert html_text.count("<svg") == 3  # strategies, reliability, confusion
    load_model(out)


def test_no_diagnostics_model_card_does_not_point_at_missing_file(tmp_path, reviews):
    texts, labels = reviews
    out = tmp_path / "m"
    train(
        LabelledTexts.from_lists(texts, labels),
        out,
        TrainConfig(strategy="tfidf", model=BACKBONE, folds=3, diagnostics=False),
    )
    assert not (out / "label_issues.csv").exists()
    assert "label_issues.csv" not in (out / "README.md").read_text(encoding="utf-8")


def test_three_class_report(tmp_path, three_class):
    texts, labels = three_class
    out = tmp_path / "m3"
    train(
        LabelledTexts.from_lists(texts, labels), out, TrainConfig(strategy="tfidf", model=BACKBONE, folds=3)
    )
    html_text = (out / "report.html").read_text(encoding="utf-8")
    _assert_self_contained(html_text)
    assert _accuracy_text(out) in _verdict(html_text)
    per_class = re.search(r"<th>label</th>.*?</table>", html_text, flags=re.S).group(0)
    for label in ("cooking", "sport", "weather"):
        assert f"<td>{label}</td>" in per_class
        assert f"`{label}`" in (out / "README.md").read_text(encoding="utf-8")


def test_report_escapes_texts_and_labels(tmp_path, reviews):
    texts, labels = reviews
    texts = list(texts)
    texts[1] = "<script>alert('x')</script> Awful & broken <img src=http://example.com/x.png>"
    labels = ["<b>good</b>" if lab == "positive" else "bad & ugly" for lab in labels]
    out = tmp_path / "m"
    train(
        LabelledTexts.from_lists(texts, labels), out, TrainConfig(strategy="tfidf", model=BACKBONE, folds=3)
    )
    html_text = (out / "report.html").read_text(encoding="utf-8")
    _assert_self_contained(html_text)
    assert "<b>good</b>" not in html_text
    assert "&lt;b&gt;good&lt;/b&gt;" in html_text
    assert "<img" not in html_text


def test_render_report_from_saved_files(tfidf_model_dir):
    """render_report needs only the manifest and metrics.json (what `fewlabel report` reads)."""
    page = render_report(*_records(tfidf_model_dir))
    assert _strip_svg(page) == _strip_svg((tfidf_model_dir / "report.html").read_text(encoding="utf-8"))


def test_report_of_metrics_without_diagnostics_lists_no_label_issues(tfidf_model_dir):
    """``"diagnostics": {}`` (trained with diagnostics off): no label-issue line, section or file named."""
    manifest, _ = _records(tfidf_model_dir)
    saved = _metrics(tfidf_model_dir)
    saved["diagnostics"] = {}
    metrics = parse_metrics(saved, "metrics.json")
    page = render_report(manifest, metrics)
    assert "No learning curve was computed." in _verdict(page)
    assert "label the model disputes" not in page
    assert "id='labels'" not in page and "id='learning-curve'" not in page
    assert "label_issues.csv" not in model_card(manifest, metrics)


@pytest.fixture
def restore_matplotlib():
    import matplotlib

    backend = matplotlib.get_backend()
    saved = dict(matplotlib.rcParams)
    yield matplotlib
    matplotlib.rcParams.update(saved)
    matplotlib.use(backend)


def test_render_report_leaves_matplotlib_settings_alone(tfidf_model_dir, restore_matplotlib):
    matplotlib = restore_matplotlib
    matplotlib.use("pdf")
    matplotlib.rcParams["font.size"] = 10.0
    render_report(*_records(tfidf_model_dir))
    assert matplotlib.get_backend() == "pdf"
    assert matplotlib.rcParams["font.size"] == 10.0


# ------------------------------------------------------------------------------------------- real browser


def _run(cmd: list[str], timeout: float = BROWSER_TIMEOUT) -> subprocess.CompletedProcess:
    """Run a command in its own process group; on timeout end that group (chromium forks helpers)."""
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"timed out after {timeout}s: {' '.join(cmd)}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of a headless-capable Chromium; the test skips when there is none (`.ci/run` installs one)."""
    found = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
    if not found:
        pytest.skip(
            "no chromium on PATH: install it (Debian: `apt-get install chromium`) to run browser tests"
        )
    return found


def _chromium_cmd(binary: str, profile: Path, *extra: str) -> list[str]:
    return [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        *extra,
    ]


def _console_errors(stderr: str) -> list[str]:
    """Console lines from the page that report an error; Chromium's own dbus/gpu noise has no CONSOLE tag."""
    return [
        line
        for line in stderr.splitlines()
        if "CONSOLE" in line and ("ERROR" in line or "Uncaught" in line or "error" in line.lower())
    ]


def _render(binary: str, page: Path, workdir: Path) -> dict:
    url = page.resolve().as_uri()
    dom = _run(_chromium_cmd(binary, workdir / "profile-dom", "--dump-dom", url))
    assert dom.returncode == 0, dom.stderr[-3000:]
    shot_path = workdir / "shot.png"
    shot = _run(
        _chromium_cmd(
            binary, workdir / "profile-shot", f"--screenshot={shot_path}", "--window-size=1000,3000", url
        )
    )
    assert shot.returncode == 0, shot.stderr[-3000:]
    return {"dom": dom.stdout, "stderr": dom.stderr + "\n" + shot.stderr, "shot": shot_path}


def test_console_error_detection_works(chromium, tmp_path):
    """Control: a page that throws is caught by the same console check the report has to pass."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<!doctype html><html><body><p id='x'>hi</p><script>notDefinedAnywhere();</script></body></html>",
        encoding="utf-8",
    )
    dom = _run(_chromium_cmd(chromium, tmp_path / "profile", "--dump-dom", page.as_uri()))
    assert dom.returncode == 0, dom.stderr[-3000:]
    assert 'id="x"' in dom.stdout
    errors = _console_errors(dom.stderr)
    assert any("notDefinedAnywhere" in line for line in errors), dom.stderr[-3000:]


def test_report_renders_in_headless_chromium(chromium, tfidf_model_dir, tmp_path):
    page = tmp_path / "report.html"
    shutil.copy(tfidf_model_dir / "report.html", page)  # the session model stays untouched
    rendered = _render(chromium, page, tmp_path)
    dom = rendered["dom"]

    assert 'id="verdict"' in dom, dom[:2000]
    assert _accuracy_text(tfidf_model_dir) in _verdict(dom)
    assert dom.count("<svg") >= 3
    assert not _console_errors(rendered["stderr"]), _console_errors(rendered["stderr"])

    shot = rendered["shot"]
    assert shot.is_file(), rendered["stderr"][-3000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1000, 3000)
    assert len(data) > 20_000, f"screenshot is only {len(data)} bytes: a blank page?"
