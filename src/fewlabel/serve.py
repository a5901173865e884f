"""The HTTP prediction service: a saved model behind a small FastAPI app.

Endpoints: ``POST /predict`` (one text or a list), ``GET /model`` (what the model is and how accurate
it is expected to be), ``GET /health``; the OpenAPI schema is at ``/openapi.json``.

Concurrent requests are micro-batched: one background task gathers the texts that arrive within a few
milliseconds of each other and predicts them in a single model call, in one worker thread, so the
event loop keeps accepting requests while the model works. Large requests are predicted in chunks,
round-robin with the others, so a one-text request never waits for a 256-text one to finish; the work
waiting is bounded, and beyond the bound a request gets a 503 with a ``Retry-After`` header at once
rather than a long wait. Every problem with a request is answered with a 4xx status and a JSON
``detail`` that says what to change.

Needs the ``serve`` extra: ``pip install 'fewlabel[serve]'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeGuard, cast

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
from fewlabel.errors import FewlabelError, ModelDirError
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

# Texts longer than this are batched apart from shorter ones. An encoder pads every text of a model call
# to the longest one and reads about its first 1,000 characters (256 tokens for minilm), so one long
# text among 16 short ones made the call cost about 17 long texts: measured with two clients sending
# 1.9 MB requests, one-text requests waited seconds for batches mostly made of padding.
LONG_TEXT = 1_000


class ServiceStopping(RuntimeError):
    """A request was still waiting for its prediction when the service stopped."""


class Overloaded(RuntimeError):
    """The queue of texts to predict is full; ``retry_after_s`` estimates when it will have room."""

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(eq=False)
class _Job:
    """One request's texts, predicted chunk by chunk; its future gets all their probabilities."""

    texts: list[str]
    future: asyncio.Future[np.ndarray]
    todo: tuple[deque[int], deque[int]]  # positions of the texts not yet in a batch: short, long
    proba: np.ndarray | None = None
    answered: int = 0

    def add(self, positions: list[int], proba: np.ndarray) -> None:
        if self.proba is None:
            self.proba = np.empty((len(self.texts), *proba.shape[1:]), dtype=proba.dtype)
        self.proba[positions] = proba
        self.answered += len(positions)
        if self.answered == len(self.texts) and not self.future.done():
            self.future.set_result(self.proba)


@dataclass
class _Chunk:
    """Some texts of a job, in one batch."""

    job: _Job
    positions: list[int]

    @property
    def texts(self) -> list[str]:
        return [self.job.texts[i] for i in self.positions]


@dataclass
class _Lane:
    """The jobs with texts of one length class waiting, in serving order, and how much waits."""

    jobs: deque[_Job] = field(default_factory=deque)
    texts: int = 0
    cost: int = 0


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
    """Predicts the texts of concurrent requests together, fairly, with a bounded queue.

    One model call per batch, in :func:`prediction_thread`, off the event loop. A batch closes
    ``wait_s`` after the worker picks up its first request, or as soon as ``max_batch`` texts or
    ``max_batch_chars`` of cost are waiting. A text's cost is its length, counted up to
    ``text_cost_cap`` characters when the model reads no further (an encoder truncates; tfidf reads
    everything).

    Fairness: texts up to :data:`LONG_TEXT` characters and longer ones wait in two lanes, and batches
    take turns between the lanes, so short texts are never padded to long ones nor wait for more than
    one batch of them. Within a lane a large request is split: each batch takes one text per waiting
    request per round, and the requests served go behind those that were not. A one-text request that
    arrives while 256-text requests are being predicted is in the next batch of its lane. Short texts
    batch as before: 64 reviews are one call.

    Bounded: the texts accepted and not yet answered are at most ``max_queued_texts`` and
    ``max_queued_chars`` characters; a request that would exceed either raises :class:`Overloaded`,
    with an estimate of when to retry, instead of waiting behind unbounded work. A small request still
    fits when a large one does not.
    """

    def __init__(
        self,
        predict_proba: Callable[[list[str]], np.ndarray],
        max_batch: int = 64,
        wait_s: float = 0.005,
        max_batch_chars: int = 8_000,
        max_queued_texts: int = 4_096,
        max_queued_chars: int = 8_000_000,
        text_cost_cap: int | None = None,
    ):
        self.check_settings(max_batch, wait_s, max_batch_chars, max_queued_texts, max_queued_chars)
        self._predict_proba = predict_proba
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.max_batch_chars = max_batch_chars
        self.max_queued_texts = max_queued_texts
        self.max_queued_chars = max_queued_chars
        self.text_cost_cap = text_cost_cap
        self._lanes = (_Lane(), _Lane())  # texts up to LONG_TEXT characters, longer texts
        self._last_lane = 1
        self._queued_texts = self._queued_chars = 0  # accepted, not yet answered
        self._chars_per_s: float | None = None  # measured prediction speed, for Retry-After
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @staticmethod
    def check_settings(
        max_batch: int,
        wait_s: float,
        max_batch_chars: int = 8_000,
        max_queued_texts: int = 4_096,
        max_queued_chars: int = 8_000_000,
    ) -> None:
        for name, value in (
            ("max_batch", max_batch),
            ("max_batch_chars", max_batch_chars),
            ("max_queued_texts", max_queued_texts),
            ("max_queued_chars", max_queued_chars),
        ):
            if value < 1:
                raise FewlabelError(f"{name} must be at least 1, got {value}")
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
        for lane in self._lanes:
            _fail_all(lane.jobs, ServiceStopping("the service is shutting down"))
            lane.jobs.clear()
            lane.texts = lane.cost = 0

    async def run_in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` in the prediction thread (for warming the model up before serving)."""
        return await asyncio.get_running_loop().run_in_executor(prediction_thread(), fn, *args)

    def retry_after_s(self) -> int:
        """Whole seconds until the queue has drained, by the speed measured so far (1 to 60)."""
        if not self._chars_per_s:
            return 1
        return max(1, min(60, math.ceil(self._queued_chars / self._chars_per_s)))

    def _cost(self, text: str) -> int:
        return len(text) if self.text_cost_cap is None else min(len(text), self.text_cost_cap)

    async def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities of ``texts``, shape (len(texts), n_classes).

        Raises :class:`Overloaded` at once when the queue has no room for ``texts``.
        """
        if self._task is None or self._task.done():
            raise RuntimeError("the batcher is not running")
        texts = list(texts)
        chars = sum(map(len, texts))
        if (
            self._queued_texts + len(texts) > self.max_queued_texts
            or self._queued_chars + chars > self.max_queued_chars
        ):
            raise Overloaded(
                f"the service is busy: {self._queued_texts} texts ({self._queued_chars} characters) are "
                f"waiting and it queues at most {self.max_queued_texts} texts and {self.max_queued_chars} "
                "characters (a smaller request fits sooner)",
                self.retry_after_s(),
            )
        todo: tuple[deque[int], deque[int]] = (deque(), deque())
        for i, text in enumerate(texts):
            todo[len(text) > LONG_TEXT].append(i)
        job = _Job(texts, asyncio.get_running_loop().create_future(), todo)
        self._queued_texts += len(texts)
        self._queued_chars += chars
        for lane, positions in zip(self._lanes, todo, strict=True):
            if positions:
                lane.jobs.append(job)
                lane.texts += len(positions)
                lane.cost += sum(self._cost(texts[i]) for i in positions)
        self._arrived.set()
        if self._is_full():
            self._full.set()
        try:
            return await job.future
        finally:
            # Answered, failed or abandoned (its client went away): its room in the queue is free again.
            self._queued_texts -= len(texts)
            self._queued_chars -= chars

    def _is_full(self) -> bool:
        return any(lane.texts >= self.max_batch or lane.cost >= self.max_batch_chars for lane in self._lanes)

    async def _run(self) -> None:
        while True:
            await self._arrived.wait()
            if not self._is_full() and self.wait_s > 0:
                # An Event, not a timed Queue.get: a wait that times out can never swallow a request.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.wait_s)
            chunks = self._take_batch()
            try:
                await self._predict(chunks)
            except asyncio.CancelledError:
                _fail_all((c.job for c in chunks), ServiceStopping("the service is shutting down"))
                raise

    def _take_batch(self) -> list[_Chunk]:
        """The next batch: from the other lane than last time if it has texts waiting; round-robin."""
        for side, lane in enumerate(self._lanes):
            for job in [j for j in lane.jobs if j.future.done()]:  # failed, or the client went away
                self._forget(side, job)
        sides = [side for side, lane in enumerate(self._lanes) if lane.jobs]
        chunks: dict[_Job, list[int]] = {}
        if sides:
            side = sides[0] if len(sides) == 1 else 1 - self._last_lane
            self._last_lane = side
            lane = self._lanes[side]
            size = cost = 0
            full = False
            while not full:
                added = False
                for job in lane.jobs:
                    todo = job.todo[side]
                    if not todo:
                        continue
                    c = self._cost(job.texts[todo[0]])
                    if size and cost + c > self.max_batch_chars:
                        full = True
                        break
                    chunks.setdefault(job, []).append(todo.popleft())
                    size, cost, added = size + 1, cost + c, True
                    if size == self.max_batch:
                        full = True
                        break
                if not added:
                    break
            lane.texts -= size
            lane.cost -= cost
            # Round-robin: the jobs served now go behind those that were not, in their order.
            rest = [j for j in lane.jobs if j not in chunks]
            again = [j for j in lane.jobs if j in chunks and j.todo[side]]
            lane.jobs = deque(rest + again)
        if not any(lane.jobs for lane in self._lanes):
            self._arrived.clear()
        if not self._is_full():
            self._full.clear()
        return [_Chunk(job, positions) for job, positions in chunks.items()]

    def _forget(self, side: int, job: _Job) -> None:
        lane, todo = self._lanes[side], job.todo[side]
        lane.jobs.remove(job)
        lane.texts -= len(todo)
        lane.cost -= sum(self._cost(job.texts[i]) for i in todo)
        todo.clear()

    async def _predict(self, chunks: list[_Chunk]) -> None:
        chunks = [c for c in chunks if not c.job.future.done()]
        if not chunks:
            return
        texts = [text for chunk in chunks for text in chunk.texts]
        start = time.perf_counter()
        try:
            proba = await self.run_in_thread(self._predict_proba, texts)
        except Exception as err:
            if len(chunks) > 1:
                # Retry one chunk at a time, so a text that breaks the model fails only its own request.
                for chunk in chunks:
                    await self._predict([chunk])
                return
            log.exception("prediction failed for a request of %d text(s)", len(chunks[0].job.texts))
            if not chunks[0].job.future.done():
                chunks[0].job.future.set_exception(err)
            return
        self._measure(sum(map(len, texts)), time.perf_counter() - start)
        at = 0
        for chunk in chunks:
            n = len(chunk.positions)
            chunk.job.add(chunk.positions, proba[at : at + n])
            at += n

    def _measure(self, chars: int, seconds: float) -> None:
        if seconds <= 0:
            return
        speed = chars / seconds
        self._chars_per_s = speed if self._chars_per_s is None else 0.8 * self._chars_per_s + 0.2 * speed


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


def check_api_key(api_key: str) -> None:
    """Refuse a key that would protect nothing, or that no client could send in a header."""
    if not api_key.strip():
        raise FewlabelError(
            "the API key is empty or only whitespace, which would protect nothing; give a real key, "
            "or none to serve without authentication"
        )
    if api_key != api_key.strip() or any(ord(c) < 32 or ord(c) == 127 for c in api_key):
        raise FewlabelError(
            "the API key starts or ends with whitespace or holds a control character: HTTP headers "
            "cannot carry those, so no client could send it"
        )


def check_servable(model_dir: Path, manifest: dict[str, Any]) -> None:
    """Refuse, before serving, a model whose answers would break the response schema or be wrong."""
    labels = manifest["labels"]
    if not labels or not all(isinstance(label, str) for label in labels) or len(set(labels)) < len(labels):
        raise ModelDirError(
            f"{model_dir}: the service answers labels as distinct JSON strings, but the model's labels are "
            f"{str(labels)[:200]}; retrain it with text labels"
        )
    temperature = (manifest.get("calibration") or {}).get("temperature", 1.0)
    if not _finite_number(temperature) or temperature <= 0:
        raise ModelDirError(
            f"{model_dir}: the calibration temperature must be a positive number, got {temperature!r} "
            "(0 or less gives no probabilities or reverses them); retrain the model"
        )
    decision = manifest.get("decision")
    if decision is not None:
        threshold = decision.get("threshold") if isinstance(decision, dict) else None
        if not _finite_number(threshold) or not 0 <= threshold <= 1:
            raise ModelDirError(
                f"{model_dir}: the decision threshold must be a probability between 0 and 1, got "
                f"{threshold!r}; retrain the model"
            )


def _finite_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_warm_up(proba: np.ndarray, labels: list[str]) -> None:
    if np.shape(proba) != (1, len(labels)) or not np.isfinite(proba).all():
        raise ModelDirError(
            f"the model's probabilities for a test text are {np.asarray(proba).tolist()!s:.200} for "
            f"{len(labels)} labels, not one finite probability per label; retrain the model"
        )


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
    max_batch_chars: int = 8_000,
    max_queued_texts: int = 4_096,
    max_queued_chars: int = 8_000_000,
) -> FastAPI:
    """The prediction service for the model in ``model_dir``, as a FastAPI (ASGI) app.

    The model is loaded once, when the app starts (its lifespan); ``model_dir`` and the settings are
    checked now, so a wrong path or a model that cannot be served fails here with a
    :class:`~fewlabel.errors.FewlabelError` rather than at startup or on the first request.

    Args:
        model_dir: a directory written by ``fewlabel train``.
        api_key: when set, ``/predict`` and ``/model`` need it in the ``X-API-Key`` header. An empty
            or whitespace-only key is refused: it would protect nothing.
        max_texts: most texts in one request.
        max_chars: most characters in one text.
        max_body_bytes: largest request body.
        batch_wait_ms: how long a batch waits for more requests after the first arrives (latency cost
            for one client, throughput gain for many).
        max_batch: texts at which a batch closes without waiting.
        engine: how the model's encoder runs (see :func:`fewlabel.inference.loading.load_model`).
        max_batch_chars: characters at which a batch closes (each text counted up to
            :data:`LONG_TEXT` when the model has an encoder, which reads no further); keeps batches of
            long texts short, so small requests wait little behind them.
        max_queued_texts: most texts accepted and not yet answered; beyond, requests get a 503.
        max_queued_chars: most characters accepted and not yet answered; beyond, requests get a 503.
    """
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    check_servable(model_dir, manifest)
    if engine not in ENGINES:
        raise FewlabelError(f"unknown engine {engine!r}; use {', '.join(ENGINES)}")
    limits = Limits(max_texts, max_chars, max_body_bytes)
    limits.check()
    if api_key is not None:
        check_api_key(api_key)
    MicroBatcher.check_settings(
        max_batch, batch_wait_ms / 1000, max_batch_chars, max_queued_texts, max_queued_chars
    )
    # One request the limits allow must fit in an empty queue, or it could never be served.
    largest = min(max_texts * max_chars, max_body_bytes)  # a character takes at least a byte of JSON
    if max_queued_texts < max_texts or max_queued_chars < largest:
        raise FewlabelError(
            f"the queue (max_queued_texts {max_queued_texts}, max_queued_chars {max_queued_chars}) must "
            f"hold at least one request at the limits ({max_texts} texts, up to {largest} characters)"
        )
    service = _Service()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        model = load_model(model_dir, engine=engine)
        batcher = MicroBatcher(
            model.predict_proba,
            max_batch,
            batch_wait_ms / 1000,
            max_batch_chars,
            max_queued_texts,
            max_queued_chars,
            # An encoder truncates a text to its first few hundred tokens; tfidf reads all of it.
            text_cost_cap=LONG_TEXT if manifest.get("backbone") else None,
        )
        await batcher.start()
        try:
            # Loads whatever the model loads lazily (a backbone) before the first request has to wait.
            _check_warm_up(await batcher.run_in_thread(model.predict_proba, ["warm-up"]), model.labels)
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
            f"Limits: {max_texts} texts per request, {max_chars} characters per text, {max_body_bytes} bytes per body; "
            f"at most {max_queued_texts} texts and {max_queued_chars} characters waiting, beyond which "
            "requests get a 503 with a Retry-After header."
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
        503: {
            "model": ErrorResponse,
            "description": "Busy (too much work queued), starting or stopping: retry after the "
            "number of seconds in the Retry-After header.",
        },
    }
    if api_key:
        errors[401] = {"model": ErrorResponse, "description": "Missing or wrong API key."}

    def ready() -> tuple[TrainedModel, MicroBatcher, dict[str, Any]]:
        if service.model is None or service.batcher is None or service.info is None:
            raise _unavailable("the model is not loaded (the service is starting or stopping)", 5)
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
    async def predict(body: PredictRequest, request: Request) -> dict[str, Any]:
        texts = texts_to_predict(body, limits)
        model, batcher, _ = ready()
        try:
            proba = await _unless_disconnected(request, batcher.predict_proba(texts))
        except Overloaded as err:
            raise _unavailable(str(err), err.retry_after_s) from None
        except ServiceStopping:
            raise _unavailable("the service is stopping", 5) from None
        except Exception:
            raise _error("prediction failed; the server log has the details", 500) from None
        if not np.isfinite(proba).all():
            log.error("the model gave probabilities that are not finite numbers: %s", proba[:4].tolist())
            raise _error("prediction failed: the model gave probabilities that are not numbers", 500)
        answers = model.decide(proba)
        predictions = [
            _prediction(row, int(best), model.labels) for row, best in zip(proba, answers, strict=True)
        ]
        return {"predictions": predictions}

    return app


async def _unless_disconnected(request: Request, work: Awaitable[np.ndarray]) -> np.ndarray:
    """The result of ``work``; cancelled when the client goes away first, so its texts leave the queue.

    A request whose client timed out would otherwise still be predicted, and a client that retries
    would queue the same work again and again.
    """
    task = asyncio.ensure_future(work)

    async def disconnected() -> None:
        # The body is read; the next message says the client went away (or the response was sent).
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watch = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait((task, watch), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
    if not task.done():
        task.cancel()
        raise _error("the client went away", 499)
    return task.result()


def _unavailable(reason: str, retry_after_s: int) -> HTTPException:
    """A 503 that says when to come back, in its detail and in the Retry-After header."""
    return HTTPException(
        status_code=503,
        detail=f"{reason}; try again in {retry_after_s} s",
        headers={"Retry-After": str(retry_after_s)},
    )


def _prediction(row: np.ndarray, best: int, labels: list[str]) -> dict[str, Any]:
    """One answer: ``best`` is the model's decision (its tuned threshold, or the most probable label)."""
    return {
        "label": labels[best],
        "confidence": float(row[best]),
        "probabilities": {label: float(p) for label, p in zip(labels, row, strict=True)},
    }
