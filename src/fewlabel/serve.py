"""The HTTP prediction service: a saved model behind a small FastAPI app.

Endpoints: ``POST /predict`` (one text or a list), ``GET /model`` (what the model is and how accurate
it is expected to be), ``GET /health``; the OpenAPI schema is at ``/openapi.json``.

Concurrent requests are micro-batched: one background task gathers the texts that arrive within a few
milliseconds of each other and predicts them in a single model call, in one worker thread, so the
event loop keeps accepting requests while the model works. Every problem with a request is answered
with a 4xx status and a JSON ``detail`` that says what to change.

Needs the ``serve`` extra: ``pip install 'fewlabel[serve]'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, cast

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Request, Security
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field, StrictStr, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fewlabel import __version__
from fewlabel.errors import FewlabelError
from fewlabel.inference.loading import ENGINES, load_model
from fewlabel.model_dir.manifest import read_manifest
from fewlabel.model_dir.store import TrainedModel

log = logging.getLogger("fewlabel.serve")

API_KEY_HEADER = "X-API-Key"
_API_KEY = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, description="The key the service was started with."
)
BODY_EXAMPLE = '{"text": "..."} or {"texts": ["...", "..."]}'


class PredictRequest(BaseModel):
    """One text (``text``) or several (``texts``) to classify; exactly one of the two."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"text": "Works great, I love it."}, {"texts": ["Great!", "Broke in a day."]}]
        },
    )

    text: StrictStr | None = Field(None, description="One text to classify.")
    texts: list[StrictStr] | None = Field(None, description="Several texts to classify in one request.")

    @model_validator(mode="after")
    def _exactly_one(self) -> PredictRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError(f"give either 'text' or 'texts', not both or neither: {BODY_EXAMPLE}")
        return self


class Prediction(BaseModel):
    label: str = Field(description="The most probable label.")
    confidence: float = Field(description="The probability of that label.")
    probabilities: dict[str, float] = Field(description="The probability of every label; they sum to 1.")


class PredictResponse(BaseModel):
    predictions: list[Prediction] = Field(description="One prediction per text, in the order given.")


class ModelInfo(BaseModel):
    strategy: dict[str, Any]
    backbone: dict[str, Any] | None
    labels: list[str]
    metrics: dict[str, Any] = Field(
        description="Accuracy and other estimates measured when the model was trained."
    )
    fewlabel_version: str | None
    created: str | None


class Health(BaseModel):
    status: str


class ErrorResponse(BaseModel):
    detail: str = Field(description="What was wrong with the request and how to fix it.")


class ValidationErrorResponse(ErrorResponse):
    errors: list[dict[str, Any]] = Field(
        default_factory=list, description="Each problem, located in the body."
    )


@dataclass
class Limits:
    """What one request may hold; beyond these the service answers 413 or 422 instead of working."""

    max_texts: int = 256
    max_chars: int = 20_000  # per text; an encoder reads only the first few thousand characters anyway
    max_body_bytes: int = 2_000_000

    def check(self) -> None:
        for name in ("max_texts", "max_chars", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise FewlabelError(f"{name} must be at least 1, got {getattr(self, name)}")


# --- micro-batching ---------------------------------------------------------------------------------


class ServiceStopping(RuntimeError):
    """A request was still waiting for its prediction when the service stopped."""


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future[np.ndarray]


_PREDICT_THREAD: ThreadPoolExecutor | None = None


def prediction_thread() -> ThreadPoolExecutor:
    """The one thread that runs every prediction of every app in this process.

    One thread, always the same one: the embedding cache holds a SQLite connection, which may be used
    only in the thread that opened it, and it is shared by all models with the same backbone.
    """
    global _PREDICT_THREAD
    if _PREDICT_THREAD is None:
        _PREDICT_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fewlabel-predict")
    return _PREDICT_THREAD


class MicroBatcher:
    """Predicts the texts of concurrent requests together: one model call per batch, in one thread.

    A batch closes ``wait_s`` after the worker picks up its first request, or as soon as ``max_batch``
    texts are waiting. A request is never split, so one request with more than ``max_batch`` texts is
    a batch of its own. Predictions run in :func:`prediction_thread`, off the event loop.
    """

    def __init__(
        self, predict_proba: Callable[[list[str]], np.ndarray], max_batch: int = 64, wait_s: float = 0.005
    ):
        self.check_settings(max_batch, wait_s)
        self._predict_proba = predict_proba
        self.max_batch = max_batch
        self.wait_s = wait_s
        self._pending: deque[_Job] = deque()
        self._pending_texts = 0
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @staticmethod
    def check_settings(max_batch: int, wait_s: float) -> None:
        if max_batch < 1:
            raise FewlabelError(f"max_batch must be at least 1, got {max_batch}")
        if not 0 <= wait_s <= 10:
            raise FewlabelError(f"the batch wait must be between 0 and 10 seconds, got {wait_s}")

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="fewlabel-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        _fail_all(self._pending, ServiceStopping("the service is shutting down"))
        self._pending.clear()
        self._pending_texts = 0

    async def run_in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` in the prediction thread (for warming the model up before serving)."""
        return await asyncio.get_running_loop().run_in_executor(prediction_thread(), fn, *args)

    async def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities of ``texts``, shape (len(texts), n_classes), from the next batch."""
        if self._task is None or self._task.done():
            raise RuntimeError("the batcher is not running")
        job = _Job(list(texts), asyncio.get_running_loop().create_future())
        self._pending.append(job)
        self._pending_texts += len(job.texts)
        self._arrived.set()
        if self._pending_texts >= self.max_batch:
            self._full.set()
        return await job.future

    async def _run(self) -> None:
        while True:
            await self._arrived.wait()
            if self._pending_texts < self.max_batch and self.wait_s > 0:
                # An Event, not a timed Queue.get: a wait that times out can never swallow a request.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.wait_s)
            jobs = self._take_batch()
            try:
                await self._predict(jobs)
            except asyncio.CancelledError:
                _fail_all(jobs, ServiceStopping("the service is shutting down"))
                raise

    def _take_batch(self) -> list[_Job]:
        jobs: list[_Job] = []
        size = 0
        while self._pending:
            job = self._pending[0]
            if jobs and size + len(job.texts) > self.max_batch:
                break
            self._pending.popleft()
            self._pending_texts -= len(job.texts)
            if job.future.done():  # the client went away while it waited
                continue
            jobs.append(job)
            size += len(job.texts)
        if not self._pending:
            self._arrived.clear()
        if self._pending_texts < self.max_batch:
            self._full.clear()
        return jobs

    async def _predict(self, jobs: list[_Job]) -> None:
        if not jobs:
            return
        texts = [text for job in jobs for text in job.texts]
        try:
            proba = await self.run_in_thread(self._predict_proba, texts)
        except Exception as err:
            if len(jobs) > 1:
                # Retry one request at a time, so a text that breaks the model fails only its own request.
                for job in jobs:
                    await self._predict([job])
                return
            log.exception("prediction failed for a request of %d text(s)", len(texts))
            if not jobs[0].future.done():
                jobs[0].future.set_exception(err)
            return
        start = 0
        for job in jobs:
            if not job.future.done():
                job.future.set_result(proba[start : start + len(job.texts)])
            start += len(job.texts)


def _fail_all(jobs: Iterable[_Job], error: Exception) -> None:
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(error)


# --- request checks ---------------------------------------------------------------------------------


class BodyLimit:
    """ASGI middleware: 413 for a body over ``max_bytes``, by its Content-Length and by the bytes that arrive.

    A chunked body has no Content-Length and a client may state a false one, so the body is read here
    (never more than ``max_bytes``) before the app sees it.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared == -1:
            await _send_error(
                scope, receive, send, 400, "the Content-Length header is not a non-negative number"
            )
            return
        if declared is not None and declared > self.max_bytes:
            await _send_error(scope, receive, send, 413, self._too_large(f"{declared} bytes"))
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client disconnected; nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _send_error(
                    scope, receive, send, 413, self._too_large(f"more than {self.max_bytes} bytes")
                )
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)

    def _too_large(self, size: str) -> str:
        return (
            f"the request body is too large ({size}); this service accepts at most {self.max_bytes} bytes: "
            "send the texts in several smaller requests"
        )


def _content_length(scope: Scope) -> int | None:
    """The declared body size; None when absent, -1 when unreadable."""
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return -1
            return length if length >= 0 else -1
    return None


async def _send_error(scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
    await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)


def _error(detail: str, status: int = 422) -> HTTPException:
    return HTTPException(status_code=status, detail=detail)


def texts_to_predict(body: PredictRequest, limits: Limits) -> list[str]:
    """The request's texts, or a 422 saying which one breaks which limit."""
    single = body.texts is None
    # cast: the request's validator lets exactly one of the two through; the assert below checks it
    texts = cast("list[str] | None", [body.text] if single else body.texts)
    assert texts is not None and all(t is not None for t in texts)
    if not texts:
        raise _error("'texts' is an empty list; give at least one text")
    if len(texts) > limits.max_texts:
        raise _error(
            f"'texts' has {len(texts)} texts; this service takes at most {limits.max_texts} per request: "
            "split them over several requests"
        )
    for i, text in enumerate(texts):
        where = "'text'" if single else f"'texts'[{i}]"
        if not text.strip():
            raise _error(f"{where} is empty or only whitespace; give a text to classify")
        if len(text) > limits.max_chars:
            raise _error(
                f"{where} has {len(text)} characters; this service takes at most {limits.max_chars} per text: "
                "shorten it (a classifier reads mostly the start of a long text anyway)"
            )
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise _error(
                f"{where} is not valid Unicode (it holds a lone surrogate escape such as \\ud800)"
            ) from None
    return texts


def _where(loc: Sequence[Any]) -> str:
    parts = [p for p in loc if p != "body"]
    if not parts:
        return "the body"
    out = f"'{parts[0]}'"
    for p in parts[1:]:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def _describe(error: dict[str, Any]) -> str:
    """One plain sentence for one pydantic error."""
    kind, loc, msg = error.get("type", ""), error.get("loc", ()), str(error.get("msg", ""))
    if kind == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "")
        at = f" at character {loc[1]}" if len(loc) > 1 else ""
        return f"the body is not valid JSON ({reason}{at}); send a JSON object such as {BODY_EXAMPLE}"
    if kind == "missing" and len(loc) <= 1:
        return f"the request has no body; send a JSON object such as {BODY_EXAMPLE}"
    if kind in ("model_attributes_type", "dict_type", "model_type"):
        return (
            f"the body must be a JSON object such as {BODY_EXAMPLE}, sent with Content-Type: application/json"
        )
    if kind == "extra_forbidden":
        return f"unknown field {_where(loc)}; the body takes only 'text' or 'texts': {BODY_EXAMPLE}"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    return f"{_where(loc)}: {msg}"


async def _http_error(request: Request, exc: Exception) -> Response:
    """FastAPI's answer, except that a body it could not parse is a 422 like any other malformed JSON."""
    assert isinstance(exc, StarletteHTTPException)
    cause = exc.__cause__
    if exc.status_code == 400 and isinstance(cause, (RecursionError, UnicodeError)):
        reason = "nested too deeply" if isinstance(cause, RecursionError) else "not UTF-8 text"
        return JSONResponse(
            {"detail": f"the body is not valid JSON ({reason}); send a JSON object such as {BODY_EXAMPLE}"},
            status_code=422,
        )
    return await http_exception_handler(request, exc)


def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    messages = list(dict.fromkeys(_describe(e) for e in errors))  # unique, in order
    if len(messages) > 5:
        messages = [*messages[:5], f"and {len(messages) - 5} more problem(s)"]
    # The input is not echoed back: it may be megabytes, or something the client would rather not log.
    summary = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type", "")}
        for e in errors
    ]
    return JSONResponse({"detail": "; ".join(messages), "errors": summary[:20]}, status_code=422)


# --- the app ----------------------------------------------------------------------------------------

_PATH_LIKE = re.compile(r"(?<![\w.\-/])(?:~|\.{1,2})?/[^\s,;()\"']*|\b[A-Za-z]:\\[^\s,;()\"']*")


def _hide_paths(value: Any) -> Any:
    """Replace file paths (``/srv/models/x``, ``~/x``, ``C:\\x``) in strings by their last component."""
    if isinstance(value, str):
        return _PATH_LIKE.sub(lambda m: re.split(r"[\\/]", m.group(0).rstrip("/\\"))[-1] or "/", value)
    if isinstance(value, dict):
        return {k: _hide_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_hide_paths(v) for v in value]
    return value


def model_info(manifest: dict[str, Any]) -> dict[str, Any]:
    """What ``GET /model`` tells: the model's identity and expected accuracy, never a path on this server."""
    strategy = manifest.get("strategy") or {}
    info = {
        "strategy": {k: strategy[k] for k in ("name", "description", "params") if k in strategy},
        "backbone": manifest.get("backbone"),
        "labels": list(manifest.get("labels", [])),
        "metrics": manifest.get("metrics") or {},
        "fewlabel_version": manifest.get("fewlabel_version"),
        "created": manifest.get("created"),
    }
    return _hide_paths(info)


@dataclass
class _Service:
    model: TrainedModel | None = None
    batcher: MicroBatcher | None = None
    info: dict[str, Any] | None = None


def _key_checker(api_key: str) -> Callable[..., None]:
    expected = api_key.encode("utf-8")

    def require_api_key(
        provided: Annotated[str | None, Security(_API_KEY)],
    ) -> None:
        if not provided:
            raise _error(f"this service needs an API key: send it in the {API_KEY_HEADER} header", 401)
        # Starlette decodes headers as latin-1; encoding back gives the bytes the client sent.
        if not hmac.compare_digest(provided.encode("latin-1", errors="replace"), expected):
            raise _error(f"wrong API key in the {API_KEY_HEADER} header", 401)

    return require_api_key


def create_app(
    model_dir: str | Path,
    api_key: str | None = None,
    max_texts: int = 256,
    max_chars: int = 20_000,
    max_body_bytes: int = 2_000_000,
    batch_wait_ms: float = 5,
    max_batch: int = 64,
    engine: str = "auto",
) -> FastAPI:
    """The prediction service for the model in ``model_dir``, as a FastAPI (ASGI) app.

    The model is loaded once, when the app starts (its lifespan); ``model_dir`` is checked now, so a
    wrong path fails here with a :class:`~fewlabel.errors.ModelDirError` rather than at startup.

    Args:
        model_dir: a directory written by ``fewlabel train``.
        api_key: when set, ``/predict`` and ``/model`` need it in the ``X-API-Key`` header.
        max_texts: most texts in one request.
        max_chars: most characters in one text.
        max_body_bytes: largest request body.
        batch_wait_ms: how long a batch waits for more requests after the first arrives (latency cost
            for one client, throughput gain for many).
        max_batch: texts at which a batch closes without waiting.
        engine: how the model's encoder runs (see :func:`fewlabel.inference.loading.load_model`).
    """
    model_dir = Path(model_dir)
    read_manifest(model_dir)
    if engine not in ENGINES:
        raise FewlabelError(f"unknown engine {engine!r}; use {', '.join(ENGINES)}")
    limits = Limits(max_texts, max_chars, max_body_bytes)
    limits.check()
    if api_key is not None and not api_key:
        raise FewlabelError("the API key is empty; give a key or none")
    MicroBatcher.check_settings(max_batch, batch_wait_ms / 1000)
    service = _Service()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        model = load_model(model_dir, engine=engine)
        batcher = MicroBatcher(model.predict_proba, max_batch, batch_wait_ms / 1000)
        await batcher.start()
        try:
            # Loads whatever the model loads lazily (a backbone) before the first request has to wait.
            await batcher.run_in_thread(model.predict_proba, ["warm-up"])
            service.model, service.batcher, service.info = model, batcher, model_info(model.manifest)
            log.info(
                "serving %s (%s), labels %s", model_dir.name, model.manifest["strategy"]["name"], model.labels
            )
            yield
        finally:
            service.model = service.batcher = None
            await batcher.stop()

    app = FastAPI(
        title="fewlabel",
        version=__version__,
        description=(
            "Predictions of a fewlabel text classifier. "
            f"Limits: {max_texts} texts per request, {max_chars} characters per text, {max_body_bytes} bytes per body."
        ),
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    guarded = [Depends(_key_checker(api_key))] if api_key else []
    errors: dict[int | str, dict[str, Any]] = {
        413: {"model": ErrorResponse, "description": "The body is too large."},
        422: {"model": ValidationErrorResponse, "description": "The body is not a valid request."},
    }
    if api_key:
        errors[401] = {"model": ErrorResponse, "description": "Missing or wrong API key."}

    def ready() -> tuple[TrainedModel, MicroBatcher, dict[str, Any]]:
        if service.model is None or service.batcher is None or service.info is None:
            raise _error(
                "the model is not loaded (the service is starting or stopping); try again shortly", 503
            )
        return service.model, service.batcher, service.info

    @app.get("/health", response_model=Health, summary="Liveness: answers when the service runs.")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/model",
        response_model=ModelInfo,
        dependencies=guarded,
        responses=errors,
        summary="The model served.",
    )
    async def model_endpoint() -> dict[str, Any]:
        return ready()[2]

    @app.post(
        "/predict",
        response_model=PredictResponse,
        dependencies=guarded,
        responses=errors,
        summary="Classify one text or a list of texts.",
    )
    async def predict(body: PredictRequest) -> dict[str, Any]:
        texts = texts_to_predict(body, limits)
        model, batcher, _ = ready()
        try:
            proba = await batcher.predict_proba(texts)
        except ServiceStopping:
            raise _error("the service is stopping; try again shortly", 503) from None
        except Exception:
            raise _error("prediction failed; the server log has the details", 500) from None
        answers = model.decide(proba)
        predictions = [
            _prediction(row, int(best), model.labels) for row, best in zip(proba, answers, strict=True)
        ]
        return {"predictions": predictions}

    return app


def _prediction(row: np.ndarray, best: int, labels: list[str]) -> dict[str, Any]:
    """One answer: ``best`` is the model's decision (its tuned threshold, or the most probable label)."""
    return {
        "label": labels[best],
        "confidence": float(row[best]),
        "probabilities": {label: float(p) for label, p in zip(labels, row, strict=True)},
    }
