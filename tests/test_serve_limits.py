"""The service's protections: a real API key or none, a bounded queue (503 + Retry-After), fair batches.

The fairness and overload tests check the mechanism, not timings: a stub model that blocks until the
test lets it go, and the order in which texts reach the model and requests are answered.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from fewlabel.errors import FewlabelError, ModelDirError  # noqa: E402
from fewlabel.serve import MicroBatcher, Overloaded, create_app  # noqa: E402

KEY = "s3cret-key"


class GatedModel:
    """A stub predict_proba that records each call and blocks in it until ``release`` is set."""

    def __init__(self, gate_first_only: bool = False):
        self.calls: list[list[str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.gate_first_only = gate_first_only

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        self.entered.set()
        if not self.gate_first_only or len(self.calls) == 1:
            assert self.release.wait(10), "the test never released the model"
        return np.array([[0.25, 0.75]] * len(texts))


async def until(condition, what: str) -> None:
    """Yield to the event loop (and the prediction thread) until ``condition()`` holds."""
    for _ in range(2_000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


# --- fairness -------------------------------------------------------------------------------------------


def test_a_small_request_is_answered_before_large_ones_that_came_first():
    """Three 40-text requests are being predicted; a one-text request goes into the very next batch."""
    model = GatedModel(gate_first_only=True)
    big = [[f"big{b}-{i}" for i in range(40)] for b in range(3)]
    answered: list[str] = []

    async def ask(name: str, batcher: MicroBatcher, texts: list[str]) -> np.ndarray:
        result = await batcher.predict_proba(texts)
        answered.append(name)
        return result

    async def main():
        batcher = MicroBatcher(model, max_batch=8, wait_s=0)
        await batcher.start()
        try:
            bigs = [asyncio.ensure_future(ask(f"big{b}", batcher, texts)) for b, texts in enumerate(big)]
            await until(model.entered.is_set, "the first batch")  # the model now works on big texts
            small = asyncio.ensure_future(ask("small", batcher, ["just one text"]))
            await asyncio.sleep(0.01)  # the small request is queued behind 3 x 40 texts
            model.release.set()
            return await asyncio.gather(small, *bigs)
        finally:
            await batcher.stop()

    results = asyncio.run(asyncio.wait_for(main(), timeout=30))
    # Shared round-robin, one text per request per round (3 + 3 + 2), each request's chunk in one piece.
    assert model.calls[0] == ["big0-0", "big0-1", "big0-2", "big1-0", "big1-1", "big1-2", "big2-0", "big2-1"]
    assert "just one text" in model.calls[1]  # the next batch after the one running when it came
    assert answered[0] == "small" and sorted(answered[1:]) == ["big0", "big1", "big2"]
    assert len(model.calls) == -(-121 // 8)  # every text predicted once, in full batches
    assert sorted(t for call in model.calls for t in call) == sorted(["just one text", *sum(big, [])])
    assert [len(r) for r in results] == [1, 40, 40, 40]


def test_long_texts_make_short_batches_and_short_texts_full_ones():
    model = GatedModel()
    model.release.set()
    long_texts = [f"{i} " + "x" * 4_998 for i in range(6)]  # 5,000 characters each: a tfidf model
    short_texts = [f"short text {i}" for i in range(64)]

    async def main():
        batcher = MicroBatcher(model, max_batch=64, wait_s=0.05, max_batch_chars=10_000)
        await batcher.start()
        try:
            await batcher.predict_proba(long_texts)
            await batcher.predict_proba(short_texts)
        finally:
            await batcher.stop()

    asyncio.run(asyncio.wait_for(main(), timeout=30))
    assert [len(c) for c in model.calls] == [2, 2, 2, 64]  # micro-batching of short texts is unchanged


def test_short_texts_are_not_batched_with_long_ones_and_lanes_take_turns():
    """Padding: a short text in a batch of long ones would cost as much as a long one."""
    model = GatedModel(gate_first_only=True)
    long_texts = [f"long {i} " + "x" * 1_500 for i in range(6)]

    async def main():
        batcher = MicroBatcher(model, max_batch=64, wait_s=0, max_batch_chars=2_000, text_cost_cap=1_000)
        await batcher.start()
        try:
            big = asyncio.ensure_future(batcher.predict_proba([*long_texts, "short in a big request"]))
            await until(model.entered.is_set, "the first batch")
            small = [asyncio.ensure_future(batcher.predict_proba([f"short {i}"])) for i in range(3)]
            await asyncio.sleep(0.01)
            model.release.set()
            return await asyncio.gather(big, *small)
        finally:
            await batcher.stop()

    results = asyncio.run(asyncio.wait_for(main(), timeout=30))
    lengths = [[len(t) > 1_000 for t in call] for call in model.calls]
    assert all(len(set(call)) == 1 for call in lengths), lengths  # every call all short or all long
    # Short first (the big request's short text), then long (2 at a time: each counts 1,000, the
    # encoder's cap) and short in turns: the one-text requests wait for one batch of long texts.
    assert model.calls[0] == ["short in a big request"]
    assert [len(c) for c in model.calls[1:3]] == [2, 3] and lengths[2] == [False] * 3
    assert [len(c) for c in model.calls[3:]] == [2, 2]
    assert [len(r) for r in results] == [7, 1, 1, 1]


def test_a_bad_text_in_a_split_request_fails_only_that_request():
    def predict_proba(texts: list[str]) -> np.ndarray:
        if "boom" in texts:
            raise ValueError("this text breaks the model")
        return np.zeros((len(texts), 2))

    async def main():
        batcher = MicroBatcher(predict_proba, max_batch=3, wait_s=0.01)
        await batcher.start()
        try:
            jobs = [["ok"] * 5 + ["boom"] + ["ok"] * 3, ["fine"], ["fine", "also fine"]]
            return await asyncio.gather(*(batcher.predict_proba(j) for j in jobs), return_exceptions=True)
        finally:
            await batcher.stop()

    results = asyncio.run(asyncio.wait_for(main(), timeout=30))
    assert isinstance(results[0], ValueError)
    assert results[1].shape == (1, 2) and results[2].shape == (2, 2)


# --- the bounded queue ----------------------------------------------------------------------------------


def test_the_queue_is_bounded_and_a_small_request_still_fits():
    model = GatedModel()

    async def main():
        batcher = MicroBatcher(model, max_batch=4, wait_s=0, max_queued_texts=10, max_queued_chars=1_000)
        await batcher.start()
        try:
            first = asyncio.ensure_future(batcher.predict_proba(["a"] * 8))
            await until(model.entered.is_set, "the first batch")
            with pytest.raises(Overloaded, match="busy") as too_many:
                await batcher.predict_proba(["b"] * 3)  # 8 + 3 texts > 10
            with pytest.raises(Overloaded):
                await batcher.predict_proba(["c" * 995])  # 8 + 995 characters > 1,000
            small = asyncio.ensure_future(batcher.predict_proba(["d", "e"]))  # 10 texts: fits
            await asyncio.sleep(0.01)
            model.release.set()
            await asyncio.gather(first, small)
            # Answered texts leave the queue: a request of the whole size fits again.
            assert len(await batcher.predict_proba(["f"] * 10)) == 10
            return too_many.value
        finally:
            await batcher.stop()

    error = asyncio.run(asyncio.wait_for(main(), timeout=30))
    assert 1 <= error.retry_after_s <= 60


def test_an_abandoned_request_frees_its_place_in_the_queue():
    model = GatedModel()

    async def main():
        batcher = MicroBatcher(model, max_batch=2, wait_s=0, max_queued_texts=6)
        await batcher.start()
        try:
            first = asyncio.ensure_future(batcher.predict_proba(["a"] * 6))
            await until(model.entered.is_set, "the first batch")
            first.cancel()  # the client went away
            await asyncio.sleep(0.01)
            second = asyncio.ensure_future(batcher.predict_proba(["b"] * 6))
            model.release.set()
            return await second
        finally:
            await batcher.stop()

    assert len(asyncio.run(asyncio.wait_for(main(), timeout=30))) == 6
    assert sum("a" in call for call in model.calls) == 1  # the rest of the abandoned request never ran


def test_a_request_whose_client_went_away_is_cancelled():
    from fastapi import HTTPException
    from starlette.requests import Request

    from fewlabel.serve.service import _unless_disconnected

    async def receive():
        return {"type": "http.disconnect"}

    async def main():
        work = asyncio.get_running_loop().create_future()  # a prediction that never ends
        with pytest.raises(HTTPException) as gone:
            await _unless_disconnected(Request({"type": "http"}, receive), work)
        await asyncio.sleep(0)
        return work, gone.value

    work, error = asyncio.run(asyncio.wait_for(main(), timeout=10))
    assert work.cancelled()  # and so the batcher drops its texts and frees its room in the queue
    assert error.status_code == 499


def test_a_client_that_went_away_gets_499_not_a_500(tfidf_model_dir, monkeypatch):
    from fewlabel.serve import service
    from fewlabel.serve.http_errors import http_exception

    async def gone(request, work):
        work.close()  # never awaited: the client left first
        raise http_exception("the client went away", 499)

    monkeypatch.setattr(service, "_unless_disconnected", gone)
    with TestClient(create_app(tfidf_model_dir)) as client:
        response = client.post("/predict", json={"text": "great"})
    assert response.status_code == 499, response.text


def test_overload_is_a_503_with_retry_after_and_a_json_detail(tfidf_model_dir, monkeypatch):
    from fewlabel.model_dir.store import TrainedModel

    entered, release = threading.Event(), threading.Event()
    original = TrainedModel.predict_proba

    def slow_for_some(self, texts):
        if "slow" in texts:
            entered.set()
            assert release.wait(10)
        return original(self, texts)

    monkeypatch.setattr(TrainedModel, "predict_proba", slow_for_some)
    app = create_app(tfidf_model_dir, max_texts=4, max_queued_texts=4)
    with TestClient(app) as client, ThreadPoolExecutor(max_workers=1) as thread:
        full = thread.submit(client.post, "/predict", json={"texts": ["slow", "a", "b", "c"]})
        assert entered.wait(10)
        busy = client.post("/predict", json={"text": "one more"})
        release.set()
        assert full.result(timeout=30).status_code == 200
        after = client.post("/predict", json={"text": "one more"})
    assert busy.status_code == 503, busy.text
    assert busy.headers["retry-after"].isdigit() and int(busy.headers["retry-after"]) >= 1
    assert busy.headers["content-type"] == "application/json"
    assert "busy" in busy.json()["detail"] and "try again in" in busy.json()["detail"]
    assert after.status_code == 200


def test_a_503_before_startup_says_when_to_retry(tfidf_model_dir):
    response = TestClient(create_app(tfidf_model_dir)).post("/predict", json={"text": "great"})
    assert response.status_code == 503
    assert response.headers["retry-after"].isdigit()


def test_openapi_documents_the_503(tfidf_model_dir):
    schema = TestClient(create_app(tfidf_model_dir)).get("/openapi.json").json()
    assert "503" in schema["paths"]["/predict"]["post"]["responses"]


@pytest.mark.parametrize(
    "settings",
    [
        {"max_batch_chars": 0},
        {"max_queued_texts": 0},
        {"max_queued_chars": 0},
        {"max_texts": 300, "max_queued_texts": 299},  # one request at the limits could never be queued
        {"max_chars": 40_000, "max_body_bytes": 9_000_000},  # over the queue's 8,000,000 characters
        {"api_key": " "},
        {"api_key": "\t\n"},
        {"api_key": "key\n"},  # a header cannot carry it: every request would be refused
    ],
)
def test_settings_that_cannot_work_fail_at_create_app(tfidf_model_dir, settings):
    with pytest.raises(FewlabelError):
        create_app(tfidf_model_dir, **settings)


# --- models the service cannot answer for ----------------------------------------------------------------


def edited_model(model_dir: Path, tmp_path: Path, **changes) -> Path:
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    manifest = json.loads((copy / "fewlabel.json").read_text())
    manifest.update(changes)
    (copy / "fewlabel.json").write_text(json.dumps(manifest))
    return copy


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"labels": [0, 1]}, "labels"),
        ({"labels": ["negative", 1]}, "labels"),
        ({"labels": ["same", "same"]}, "labels"),
        ({"calibration": {"temperature": 0}}, "temperature"),
        ({"calibration": {"temperature": -1.5}}, "temperature"),
        ({"calibration": {"temperature": "warm"}}, "temperature"),
        ({"decision": {"threshold": 1.5}}, "threshold"),
        ({"decision": {"threshold": None}}, "threshold"),
    ],
)
def test_a_model_the_service_cannot_answer_for_fails_at_create_app(
    tfidf_model_dir, tmp_path, changes, fragment
):
    """Before: labels that are not strings gave 500s, a temperature <= 0 null or reversed probabilities."""
    with pytest.raises(ModelDirError, match=fragment):
        create_app(edited_model(tfidf_model_dir, tmp_path, **changes))


def test_probabilities_that_are_not_numbers_are_a_500_not_nulls(tfidf_model_dir, monkeypatch):
    from fewlabel.model_dir.store import TrainedModel

    original = TrainedModel.predict_proba
    monkeypatch.setattr(
        TrainedModel,
        "predict_proba",
        lambda self, texts: np.full((len(texts), 2), np.nan) if "nan" in texts else original(self, texts),
    )
    with TestClient(create_app(tfidf_model_dir)) as client:
        response = client.post("/predict", json={"text": "nan"})
    assert response.status_code == 500
    assert "not numbers" in response.json()["detail"]


# --- the API key, from the command ------------------------------------------------------------------------


@pytest.fixture
def fewlabel_cli(monkeypatch):
    """The real `fewlabel` command, with uvicorn.run replaced by a recorder (nothing listens)."""
    import uvicorn

    from fewlabel.cli.main import app

    calls: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append({"app": app, **kwargs}))
    return app, calls


@pytest.mark.parametrize(
    ("args", "env", "fragment"),
    [
        ([], {"FEWLABEL_API_KEY": ""}, "FEWLABEL_API_KEY is set but empty"),
        ([], {"FEWLABEL_API_KEY": "   "}, "FEWLABEL_API_KEY is set but empty"),
        (["--api-key", ""], {"FEWLABEL_API_KEY": None}, "--api-key is empty"),
        (["--api-key", " \t"], {"FEWLABEL_API_KEY": None}, "--api-key is empty"),
        (["--api-key", " padded "], {"FEWLABEL_API_KEY": None}, "whitespace"),
    ],
)
def test_an_empty_key_is_refused_at_start(fewlabel_cli, tfidf_model_dir, args, env, fragment):
    """Before: `FEWLABEL_API_KEY= fewlabel serve MODEL` served /predict without a key."""
    from typer.testing import CliRunner

    app, calls = fewlabel_cli
    result = CliRunner().invoke(app, ["serve", str(tfidf_model_dir), *args], env=env)
    assert result.exit_code == 2, result.output
    assert fragment in result.output and "Error" in result.output
    assert not calls  # nothing was served


def test_a_key_from_the_environment_is_required(fewlabel_cli, tfidf_model_dir):
    from typer.testing import CliRunner

    app, calls = fewlabel_cli
    result = CliRunner().invoke(app, ["serve", str(tfidf_model_dir)], env={"FEWLABEL_API_KEY": KEY})
    assert result.exit_code == 0, result.output
    with TestClient(calls[0]["app"]) as client:
        assert client.post("/predict", json={"text": "great"}).status_code == 401
        assert client.post("/predict", json={"text": "great"}, headers={"X-API-Key": KEY}).status_code == 200


def test_the_queue_options_reach_the_service(fewlabel_cli, tfidf_model_dir):
    from typer.testing import CliRunner

    app, calls = fewlabel_cli
    args = ["serve", str(tfidf_model_dir), "--max-texts", "2", "--max-queued-texts", "2"]
    result = CliRunner().invoke(app, [*args, "--max-queued-chars", "100000"], env={"FEWLABEL_API_KEY": None})
    assert result.exit_code == 0, result.output
    description = TestClient(calls[0]["app"]).get("/openapi.json").json()["info"]["description"]
    assert "at most 2 texts and 100000 characters waiting" in description
    refused = CliRunner().invoke(app, [*args, "--max-queued-texts", "1"], env={"FEWLABEL_API_KEY": None})
    assert refused.exit_code == 2 and "at least one request" in refused.output
