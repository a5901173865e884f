"""``predict --runner ray``: the same output as a local run, row for row, from workers that load the model.

The Ray tests share one local Ray instance (2 CPUs, no dashboard); they are slow (starting Ray takes
10-20 s on 2 idle cores, and timed out on a saturated machine), so opt in with --runslow; they skip
when Ray is not installed. The missing-Ray message and the option checks run without Ray.
"""

from __future__ import annotations

import csv
import sys

import pytest
from typer.testing import CliRunner

from conftest import DEMO_CSV
from fewlabel.cli.main import app
from fewlabel.errors import FewlabelError, ModelDirError
from fewlabel.inference.predicting import predict_file


@pytest.fixture(scope="module")
def demo_model(demo_tfidf_model):
    return demo_tfidf_model


@pytest.fixture(scope="module")
def demo_input(tmp_path_factory):
    """The demo reviews with an id column and a few empty texts, which get no prediction."""
    with DEMO_CSV.open(encoding="utf-8", newline="") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    for i in (3, 150, 151, 400):
        texts.insert(i, "" if i % 2 else "   ")
    path = tmp_path_factory.mktemp("ray-data") / "reviews.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["id", "text"])
        writer.writerows([f"r{i}", t] for i, t in enumerate(texts))
    return path


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("suffix", "threshold", "chunk_rows"), [("csv", None, 37), ("jsonl", 0.8, 2048), ("tsv", 0.6, 100)]
)
def test_ray_output_is_the_local_output(
    ray_instance, tmp_path, demo_model, demo_input, suffix, threshold, chunk_rows
):
    local = tmp_path / f"local.{suffix}"
    distributed = tmp_path / f"ray.{suffix}"
    want = predict_file(demo_model, str(demo_input), str(local), threshold=threshold, chunk_rows=chunk_rows)
    got = predict_file(
        demo_model,
        str(demo_input),
        str(distributed),
        threshold=threshold,
        chunk_rows=chunk_rows,
        runner="ray",
    )
    assert distributed.read_bytes() == local.read_bytes()
    assert {**got, "output": None} == {**want, "output": None}
    assert want["rows"] == 444 and want["empty_texts"] == 4
    assert ray_instance.is_initialized()  # an instance it did not start is left running


@pytest.mark.slow
def test_cli_runner_ray(ray_instance, tmp_path, demo_model, demo_input):
    cli = CliRunner()
    env = {"FEWLABEL_PROGRESS": "0"}
    runs = (("local.csv", []), ("ray.csv", ["--runner", "ray"]), ("engine.csv", ["--engine", "ray"]))
    for name, extra in runs:
        args = ["predict", str(demo_model), str(demo_input), "-o", str(tmp_path / name), *extra]
        result = cli.invoke(app, args, env=env)
        assert result.exit_code == 0, result.output
    assert (tmp_path / "ray.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()
    assert (tmp_path / "engine.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()


@pytest.mark.slow
def test_ray_resumes_a_stopped_local_run(ray_instance, tmp_path, demo_model, demo_input, monkeypatch):
    import fewlabel.inference.predicting as predicting

    predict_file(demo_model, str(demo_input), str(tmp_path / "reference.csv"), chunk_rows=50)
    real = predicting.predict_table
    calls = {"n": 0}

    def dies_on_fourth_chunk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(predicting, "predict_table", dies_on_fourth_chunk)
    out = tmp_path / "out.csv"
    with pytest.raises(KeyboardInterrupt):
        predict_file(demo_model, str(demo_input), str(out), chunk_rows=50)
    summary = predict_file(demo_model, str(demo_input), str(out), chunk_rows=50, runner="ray")
    assert summary["resumed_rows"] == 150 and summary["rows"] == 444
    assert out.read_bytes() == (tmp_path / "reference.csv").read_bytes()


@pytest.mark.slow
def test_worker_errors_are_fewlabel_errors(ray_instance, tmp_path, demo_model, demo_input):
    with pytest.raises(ModelDirError, match="has no ONNX encoder"):
        predict_file(demo_model, str(demo_input), str(tmp_path / "out.csv"), engine="onnx", runner="ray")
    assert list(tmp_path.iterdir()) == []  # refused before any output was started


def test_missing_ray_says_how_to_install_it(tmp_path, demo_model, demo_input, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    monkeypatch.delitem(sys.modules, "fewlabel.inference.distributed", raising=False)
    with pytest.raises(FewlabelError, match=r'pip install "fewlabel\[ray\]"'):
        predict_file(demo_model, str(demo_input), str(tmp_path / "out.csv"), runner="ray")
    assert list(tmp_path.iterdir()) == []


def test_runner_options_are_checked(tmp_path, demo_model, demo_input):
    with pytest.raises(FewlabelError, match="unknown runner 'spark'; use local or ray"):
        predict_file(demo_model, str(demo_input), str(tmp_path / "out.csv"), runner="spark")
    with pytest.raises(FewlabelError, match="--ray-address only applies with --runner ray"):
        predict_file(demo_model, str(demo_input), str(tmp_path / "out.csv"), ray_address="auto")
