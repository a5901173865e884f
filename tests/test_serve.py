"""The HTTP service: predictions equal the library's, every bad request gets a clear 4xx, batching works.

Uses a tfidf model (no neural backbone) trained once for the module on sentences written below.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Before anything imports fewlabel or transformers (conftest does the same; this keeps the module
# safe to run on its own): no network, no writes to the user's fewlabel home.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("FEWLABEL_HOME", tempfile.mkdtemp(prefix="fewlabel-test-serve-home-"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from fewlabel.errors import FewlabelError, ModelDirError  # noqa: E402
from fewlabel.inference.loading import load_model  # noqa: E402
from fewlabel.model_dir.manifest import write_manifest  # noqa: E402
from fewlabel.serve import BodyLimit, MicroBatcher, create_app  # noqa: E402

POSITIVE = [
    "I love this blender, it works perfectly.",
    "Excellent quality and fast delivery.",
    "Great headphones, amazing sound.",
    "Wonderful product, would buy again.",
    "Fantastic kettle, boils quickly.",
    "Superb build quality, delighted.",
    "Really comfortable shoes, love them.",
    "Amazing value, highly recommend.",
    "Works great and looks beautiful.",
    "Best vacuum ever, excellent suction.",
    "Warm, stylish and great jacket.",
    "Fantastic battery life, very pleased.",
    "Lovely soft pillow, wonderful sleep.",
    "Perfect fit and excellent material.",
    "Great camera, stunning pictures.",
    "My kids love this wonderful toy.",
    "Brilliant coffee maker, tasty coffee.",
    "Happy with this purchase, perfect.",
    "Excellent keyboard, typing feels great.",
    "Beautiful watch, I love it.",
]
NEGATIVE = [
    "Terrible blender, broke after one day.",
    "Awful quality and slow delivery.",
    "The headphones stopped working, waste of money.",
    "Horrible product, never buying again.",
    "The kettle leaks and is useless.",
    "Cheap flimsy plastic, broke immediately.",
    "Uncomfortable shoes, they hurt.",
    "Poor value, do not buy this junk.",
    "Stopped working after a week, awful.",
    "Worst vacuum ever, terrible suction.",
    "The jacket ripped, poor stitching.",
    "Battery dies quickly, disappointed.",
    "Lumpy and horrible pillow.",
    "Bad fit and cheap material, returned it.",
    "Terrible camera, blurry pictures.",
    "The toy broke in minutes, waste of money.",
    "Awful coffee maker, leaks everywhere.",
    "Unhappy with this purchase, broken on arrival.",
    "Useless keyboard, keys stick constantly.",
    "The watch stopped after two days, junk.",
]
NEW_TEXTS = [
    "Excellent blender, I love it, works great.",
    "Terrible kettle, it broke and leaks, awful.",
    "Wonderful speaker with amazing sound.",
    "Horrible shoes, poor quality, disappointed.",
]
KEY = "s3cret-key"


@pytest.fixture(scope="module")
def model_dir(tfidf_model_dir) -> Path:
    return tfidf_model_dir


@pytest.fixture(scope="module")
def model(model_dir):
    return load_model(model_dir)


@pytest.fixture(scope="module")
def client(model_dir):
    with TestClient(create_app(model_dir, max_texts=8, max_chars=200, max_body_bytes=4_000)) as client:
        yield client


def check_predictions(predictions: list[dict], texts: list[str], model) -> None:
    """Well-formed, and the same labels and confidences as the library gives for the same texts."""
    labels, confidences = model.predict(texts)
    assert len(predictions) == len(texts)
    for p, label, confidence in zip(predictions, labels, confidences, strict=True):
        assert set(p) == {"label", "confidence", "probabilities"}
        assert p["label"] in model.labels and p["label"] == label
        assert 0.5 <= p["confidence"] <= 1
        assert p["confidence"] == pytest.approx(float(confidence), abs=1e-9)
        assert list(p["probabilities"]) == model.labels
        assert sum(p["probabilities"].values()) == pytest.approx(1.0)
        assert p["probabilities"][p["label"]] == pytest.approx(p["confidence"])


# --- predictions ------------------------------------------------------------------------------------


def test_one_text(client, model):
    response = client.post("/predict", json={"text": NEW_TEXTS[0]})
    assert response.status_code == 200, response.text
    check_predictions(response.json()["predictions"], NEW_TEXTS[:1], model)
    assert response.json()["predictions"][0]["label"] == "positive"


def test_list_of_texts(client, model):
    response = client.post("/predict", json={"texts": NEW_TEXTS})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    check_predictions(predictions, NEW_TEXTS, model)
    assert [p["label"] for p in predictions] == ["positive", "negative", "positive", "negative"]


def test_predictions_equal_a_fresh_load_model(client, model_dir):
    texts = [*POSITIVE[:4], *NEGATIVE[:4]]
    predictions = client.post("/predict", json={"texts": texts}).json()["predictions"]
    labels, confidences = load_model(model_dir).predict(texts)
    assert [p["label"] for p in predictions] == labels
    np.testing.assert_allclose([p["confidence"] for p in predictions], confidences, rtol=1e-12)


def test_texts_at_the_limits_are_accepted(client, model):
    texts = ["great " * 33 + "ok", *(["x"] * 7)]  # 200 characters, and 8 texts
    assert len(texts[0]) == 200
    response = client.post("/predict", json={"texts": texts})
    assert response.status_code == 200, response.text
    check_predictions(response.json()["predictions"], texts, model)


# --- bad requests: 4xx with a detail that says what to change -----------------------------------------


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        ({"texts": ["fine"] * 9}, ["9 texts", "at most 8", "split"]),
        ({"text": "a" * 201}, ["201 characters", "at most 200"]),
        ({"texts": ["ok", "b" * 201]}, ["'texts'[1]", "201 characters"]),
        ({"texts": []}, ["empty list"]),
        ({"text": ""}, ["'text' is empty"]),
        ({"text": " \t\n "}, ["'text' is empty or only whitespace"]),
        ({"texts": ["good", "   "]}, ["'texts'[1] is empty"]),
        ({"text": 3}, ["'text'", "valid string"]),
        ({"text": ["a list"]}, ["'text'", "valid string"]),
        ({"texts": "not a list"}, ["'texts'", "valid list"]),
        ({"texts": ["ok", None]}, ["'texts'[1]", "valid string"]),
        ({"text": None}, ["either 'text' or 'texts'"]),
        ({}, ["either 'text' or 'texts'"]),
        ({"text": "a", "texts": ["b"]}, ["not both"]),
        ({"text": "a", "lang": "en"}, ["unknown field 'lang'"]),
        (["a", "b"], ["JSON object"]),
        ("just a string", ["JSON object"]),
    ],
)
def test_bad_bodies_get_422_with_a_clear_detail(client, body, fragments):
    response = client.post("/predict", json=body)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    for fragment in fragments:
        assert fragment in detail, detail


@pytest.mark.parametrize(
    ("content", "content_type", "fragment"),
    [
        (b'{"text": "unterminated', "application/json", "not valid JSON"),
        (b"{'text': 'single quotes'}", "application/json", "not valid JSON"),
        (b"", "application/json", "no body"),
        (b'{"text": "good"}', "text/plain", "Content-Type: application/json"),
        (b'{"text": "\\ud800 lone surrogate"}', "application/json", "not valid Unicode"),
        (b'{"text": NaN}', "application/json", "valid string"),
        (b"[" * 3_000, "application/json", "nested too deeply"),
        (b'{"text": "caf\xe9"}', "application/json", "not UTF-8"),
    ],
)
def test_malformed_bodies_get_422(client, content, content_type, fragment):
    response = client.post("/predict", content=content, headers={"content-type": content_type})
    assert response.status_code == 422, response.text
    assert fragment in response.json()["detail"]


def test_deeply_nested_json_is_a_client_error(model_dir):
    # Python's JSON parser gives up on deep nesting with a RecursionError, not a JSONDecodeError.
    with TestClient(create_app(model_dir)) as client:
        body = b"[" * 100_000 + b"]" * 100_000
        response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text


def test_body_over_the_limit_gets_413_by_content_length(client):
    response = client.post("/predict", json={"texts": ["x" * 150] * 30})
    assert response.status_code == 413, response.text
    assert "at most 4000 bytes" in response.json()["detail"]


def test_chunked_body_over_the_limit_gets_413(client):
    def chunks():
        yield b'{"texts": ['
        for _ in range(50):
            yield b'"' + b"y" * 100 + b'",'
        yield b'"z"]}'

    response = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in response.request.headers
    assert response.status_code == 413, response.text
    assert "too large" in response.json()["detail"]


def test_body_larger_than_its_content_length_gets_413():
    """A client that understates Content-Length is caught by counting the bytes that arrive."""
    reached_app = []

    async def app(scope, receive, send):
        reached_app.append(True)

    async def call() -> list[dict]:
        chunks = [{"type": "http.request", "body": b"x" * 600, "more_body": True}] * 3
        chunks.append({"type": "http.request", "body": b"", "more_body": False})
        sent: list[dict] = []

        async def receive():
            return chunks.pop(0)

        async def send(message):
            sent.append(message)

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/predict",
            "headers": [(b"content-length", b"10")],
        }
        await BodyLimit(app, max_bytes=1_000)(scope, receive, send)
        return sent

    sent = asyncio.run(call())
    assert sent[0]["status"] == 413
    assert b"too large" in sent[1]["body"]
    assert not reached_app


def test_unknown_paths_and_methods_are_4xx(client):
    assert client.get("/nothing-here").status_code == 404
    assert client.get("/predict").status_code == 405
    assert client.delete("/model").status_code == 405


# --- API key -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed_client(model_dir):
    with TestClient(create_app(model_dir, api_key=KEY)) as client:
        yield client


@pytest.mark.parametrize("path", ["/predict", "/model"])
def test_api_key_is_required(keyed_client, path):
    def call(headers):
        if path == "/predict":
            return keyed_client.post(path, json={"text": "great"}, headers=headers)
        return keyed_client.get(path, headers=headers)

    missing = call({})
    assert missing.status_code == 401
    assert "X-API-Key" in missing.json()["detail"]
    wrong = call({"X-API-Key": KEY + "x"})
    assert wrong.status_code == 401
    assert "wrong API key" in wrong.json()["detail"]
    assert call({"X-API-Key": ""}).status_code == 401
    assert call({"X-API-Key": KEY}).status_code == 200


def test_health_needs_no_key(keyed_client):
    assert keyed_client.get("/health").json() == {"status": "ok"}


def test_bad_body_without_key_is_401(keyed_client):
    assert keyed_client.post("/predict", json={"nonsense": 1}).status_code == 401


def test_openapi_documents_the_key(keyed_client):
    schema = keyed_client.get("/openapi.json").json()
    assert any(s.get("name") == "X-API-Key" for s in schema["components"]["securitySchemes"].values())


# --- health, model, schema -----------------------------------------------------------------------------


def test_health(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_model_info(client, model):
    info = client.get("/model").json()
    assert set(info) == {"strategy", "backbone", "labels", "metrics", "fewlabel_version", "created"}
    assert info["labels"] == model.labels
    assert info["strategy"]["name"] == "tfidf"
    assert info["metrics"]["accuracy"]["value"] == model.manifest.metrics.accuracy.value
    assert info["fewlabel_version"] == model.manifest.fewlabel_version
    assert info["created"] == model.manifest.created


def test_model_info_shows_no_server_paths(model_dir, tmp_path):
    """A model trained on a local backbone directory records its path; /model must not reveal it."""
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    manifest = json.loads((copy / "fewlabel.json").read_text())
    secret = str(tmp_path / "private" / "backbones" / "my-encoder")
    manifest["backbone"] = {"name": secret, "hub_id": secret, "sha256": "0" * 64}
    manifest["strategy"]["description"] = f"embed ({secret} embeddings, LR C=4)"
    manifest["strategy"]["params"]["backbone"] = "~/models/my-encoder"
    write_manifest(copy, manifest)  # sealed again: its digest covers what was edited
    with TestClient(create_app(copy)) as client:
        text = client.get("/model").text
        info = client.get("/model").json()
    assert str(tmp_path) not in text and "private" not in text and "~" not in text
    assert info["backbone"] == {"name": "my-encoder", "hub_id": "my-encoder", "sha256": "0" * 64}
    assert info["strategy"]["description"] == "embed (my-encoder embeddings, LR C=4)"


def test_openapi_schema(client):
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/health", "/model"} <= set(schema["paths"])
    body = schema["components"]["schemas"]["PredictRequest"]
    assert body["additionalProperties"] is False
    assert "securitySchemes" not in schema.get("components", {})  # no key, no scheme


def test_wrong_model_dir_fails_at_create_app(tmp_path):
    with pytest.raises(ModelDirError, match="no such model directory"):
        create_app(tmp_path / "missing")


@pytest.mark.parametrize(
    "settings",
    [
        {"max_texts": 0},
        {"max_chars": 0},
        {"max_body_bytes": 0},
        {"max_batch": 0},
        {"batch_wait_ms": -1},
        {"api_key": ""},
        {"engine": "tensorrt"},
    ],
)
def test_nonsense_settings_fail_at_create_app(model_dir, settings):
    with pytest.raises(FewlabelError):
        create_app(model_dir, **settings)


def test_requests_before_startup_get_503(model_dir):
    client = TestClient(create_app(model_dir))  # no `with`: the lifespan never ran
    response = client.post("/predict", json={"text": "great"})
    assert response.status_code == 503
    assert "not loaded" in response.json()["detail"]


# --- concurrency and micro-batching --------------------------------------------------------------------


def test_concurrent_requests_are_answered_correctly_and_batched(model_dir, model, monkeypatch):
    from fewlabel.model_dir.store import TrainedModel

    batch_sizes: list[int] = []
    original = TrainedModel.predict_proba

    def spy(self, texts):
        batch_sizes.append(len(texts))
        return original(self, texts)

    monkeypatch.setattr(TrainedModel, "predict_proba", spy)
    pool = [*POSITIVE, *NEGATIVE, *NEW_TEXTS]
    requests = [pool[i % len(pool) : i % len(pool) + 1 + i % 3] for i in range(50)]
    with TestClient(create_app(model_dir, batch_wait_ms=20)) as client:
        batch_sizes.clear()  # forget the warm-up
        with ThreadPoolExecutor(max_workers=16) as threads:
            responses = list(
                threads.map(lambda texts: client.post("/predict", json={"texts": texts}), requests)
            )
    monkeypatch.undo()
    for texts, response in zip(requests, responses, strict=True):
        assert response.status_code == 200, response.text
        check_predictions(response.json()["predictions"], texts, model)
    assert sum(batch_sizes) == sum(len(t) for t in requests)
    assert len(batch_sizes) < len(requests), batch_sizes  # several requests shared a model call


def run_batcher(predict_proba, jobs: list[list[str]], **settings) -> list:
    async def main():
        batcher = MicroBatcher(predict_proba, **settings)
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.predict_proba(j) for j in jobs), return_exceptions=True)
        finally:
            await batcher.stop()

    return asyncio.run(main())


def fake_proba(calls: list[list[str]]):
    def predict_proba(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        if any("boom" in t for t in texts):
            raise ValueError("this text breaks the model")
        p = np.array([[len(t) % 2, 1 - len(t) % 2] for t in texts], dtype=float)
        return p

    return predict_proba


def test_batcher_gathers_concurrent_requests_into_one_call():
    calls: list[list[str]] = []
    jobs = [["a"], ["bb", "ccc"], ["dddd"]]
    results = run_batcher(fake_proba(calls), jobs, max_batch=64, wait_s=0.05)
    assert calls == [["a", "bb", "ccc", "dddd"]]
    assert [r.shape for r in results] == [(1, 2), (2, 2), (1, 2)]
    np.testing.assert_array_equal(results[1], [[0, 1], [1, 0]])


def test_batcher_splits_large_requests_and_fills_batches_round_robin():
    calls: list[list[str]] = []
    jobs = [["a"], ["b"], ["c", "d", "e"], ["f"], ["g1", "g2", "g3", "g4", "g5", "g6"]]
    results = run_batcher(fake_proba(calls), jobs, max_batch=4, wait_s=0.01)
    # One text per waiting request per round (the requests served go behind those that were not); a
    # request's texts in one batch are one piece, in its order.
    assert calls == [["a", "b", "c", "f"], ["g1", "g2", "d", "e"], ["g3", "g4", "g5", "g6"]]
    assert [len(r) for r in results] == [1, 1, 3, 1, 6]
    expected = fake_proba([])
    for texts, result in zip(jobs, results, strict=True):  # each request's rows, in its own order
        np.testing.assert_array_equal(result, expected(texts))


def test_a_bad_text_fails_only_its_own_request():
    calls: list[list[str]] = []
    results = run_batcher(fake_proba(calls), [["fine"], ["boom"], ["also fine"]], max_batch=64, wait_s=0.05)
    assert isinstance(results[1], ValueError)
    assert results[0].shape == (1, 2) and results[2].shape == (1, 2)


def test_stopping_fails_waiting_and_running_requests_instead_of_hanging():
    import time

    from fewlabel.serve import ServiceStopping

    def slow(texts):
        time.sleep(0.3)
        return np.zeros((len(texts), 2))

    async def main():
        batcher = MicroBatcher(slow, max_batch=1, wait_s=0)
        await batcher.start()
        running = asyncio.ensure_future(batcher.predict_proba(["first"]))
        waiting = asyncio.ensure_future(batcher.predict_proba(["second"]))
        await asyncio.sleep(0.05)
        await batcher.stop()
        return await asyncio.gather(running, waiting, return_exceptions=True)

    results = asyncio.run(asyncio.wait_for(main(), timeout=5))
    assert all(isinstance(r, ServiceStopping) for r in results), results


def test_model_failure_is_a_500_with_a_json_detail(model_dir, monkeypatch):
    from fewlabel.model_dir.store import TrainedModel

    original = TrainedModel.predict_proba
    monkeypatch.setattr(
        TrainedModel,
        "predict_proba",
        lambda self, texts: 1 / 0 if "crash" in texts else original(self, texts),
    )
    with TestClient(create_app(model_dir)) as client:
        response = client.post("/predict", json={"text": "crash"})
    assert response.status_code == 500
    assert "prediction failed" in response.json()["detail"]


# --- fuzzing -------------------------------------------------------------------------------------------


def _fuzz(schema, call, max_examples: int) -> None:
    """Valid and invalid requests generated from an OpenAPI ``schema``; none may get a 5xx."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error

    cases = st.one_of(
        schema.as_strategy(GenerationMode.POSITIVE), schema.as_strategy(GenerationMode.NEGATIVE)
    )
    statuses: list[int] = []

    @settings(
        max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    @given(case=cases)
    def fuzz(case):
        response = call(case)
        statuses.append(response.status_code)
        assert response.status_code < 500, (case.path, case.body, response.text)
        case.validate_response(response, checks=[not_a_server_error])

    fuzz()
    assert any(s == 200 for s in statuses) and any(400 <= s < 500 for s in statuses), statuses


def _fuzzed_app(model_dir):
    """The app both fuzz tests attack: small limits, so generated bodies reach them."""
    return create_app(model_dir, api_key=KEY, max_texts=16, max_chars=500, max_body_bytes=20_000)


def test_fuzz_no_server_errors(model_dir):
    """Schemathesis generates valid and invalid requests from the OpenAPI schema; none may get a 5xx."""
    schemathesis = pytest.importorskip("schemathesis")
    app = _fuzzed_app(model_dir)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    _fuzz(schema, lambda case: case.call(headers={"X-API-Key": KEY}), max_examples=60)


@pytest.fixture
def live_service(model_dir):
    """The service behind a real uvicorn server on a free loopback port, in a thread; its base URL."""
    import socket
    import threading
    import time

    import uvicorn

    app = _fuzzed_app(model_dir)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the service did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


def test_fuzz_the_running_service_over_http(live_service):
    """The same fuzzing over real HTTP: uvicorn's parsing and the body limit included."""
    schemathesis = pytest.importorskip("schemathesis")
    schema = schemathesis.openapi.from_url(f"{live_service}/openapi.json")

    def call(case):
        return case.call(base_url=live_service, headers={"X-API-Key": KEY}, timeout=30)

    _fuzz(schema, call, max_examples=40)


def test_fuzz_random_json_bodies(client):
    """Arbitrary JSON (nested, unicode, huge numbers) at /predict: always 200 or a 4xx, never a 5xx."""
    pytest.importorskip("hypothesis")
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
    values = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=12,
    )
    bodies = (
        values
        | st.fixed_dictionaries({"text": values})
        | st.fixed_dictionaries({"texts": st.lists(values, max_size=10)})
    )

    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(body=bodies)
    def fuzz(body):
        response = client.post(
            "/predict", content=json.dumps(body), headers={"content-type": "application/json"}
        )
        assert response.status_code == 200 or 400 <= response.status_code < 500, (body, response.text)
        assert "detail" in response.json() or "predictions" in response.json()

    fuzz()


# --- the command ----------------------------------------------------------------------------------------


@pytest.fixture
def serve_cli(monkeypatch):
    """`serve` as a typer app, with uvicorn.run replaced by a recorder (nothing listens)."""
    import typer
    import uvicorn

    from fewlabel.cli.serve_command import serve

    calls: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append({"app": app, **kwargs}))
    cli = typer.Typer()
    cli.command()(serve)
    cli.command("unused")(lambda: None)  # two commands, so `serve` is invoked by name as in fewlabel
    return cli, calls


def test_cli_serves_on_loopback_by_default(serve_cli, model_dir):
    from typer.testing import CliRunner

    cli, calls = serve_cli
    result = CliRunner().invoke(cli, ["serve", str(model_dir)], env={"FEWLABEL_API_KEY": None})
    assert result.exit_code == 0, result.output
    assert calls[0]["host"] == "127.0.0.1" and calls[0]["port"] == 8000 and calls[0]["workers"] == 1
    assert "Warning" not in result.output


def test_cli_warns_on_a_public_host_without_key(serve_cli, model_dir):
    from typer.testing import CliRunner

    cli, calls = serve_cli
    result = CliRunner().invoke(
        cli, ["serve", str(model_dir), "--host", "0.0.0.0", "--port", "9000"], env={"FEWLABEL_API_KEY": None}
    )
    assert result.exit_code == 0, result.output
    assert "without an API key" in result.output and "FEWLABEL_API_KEY" in result.output
    assert calls[0]["host"] == "0.0.0.0" and calls[0]["port"] == 9000


def test_cli_reads_the_key_from_the_environment(serve_cli, model_dir):
    from typer.testing import CliRunner

    cli, calls = serve_cli
    result = CliRunner().invoke(
        cli, ["serve", str(model_dir), "--host", "0.0.0.0"], env={"FEWLABEL_API_KEY": KEY}
    )
    assert result.exit_code == 0, result.output
    assert "without an API key" not in result.output
    with TestClient(calls[0]["app"]) as client:
        assert client.get("/model").status_code == 401
        assert client.get("/model", headers={"X-API-Key": KEY}).status_code == 200


def test_cli_without_fastapi_says_what_to_install(monkeypatch, model_dir):
    import sys

    from fewlabel.cli.serve_command import serve

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # makes `import uvicorn` raise ImportError
    with pytest.raises(FewlabelError, match=r"pip install 'fewlabel\[serve\]'"):
        serve(model_dir)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("example", False),
    ],
)
def test_is_loopback(host, loopback):
    from fewlabel.cli.serve_command import is_loopback

    assert is_loopback(host) is loopback
