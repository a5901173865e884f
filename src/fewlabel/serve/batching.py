"""Micro-batching: the texts of concurrent requests predicted together, fairly, with a bounded queue.

One background task gathers the texts that arrive within a few milliseconds of each other and
predicts them in a single model call, in one worker thread, so the event loop keeps accepting
requests while the model works. Large requests are predicted in chunks, round-robin with the others,
so a one-text request never waits for a 256-text one to finish; the work waiting is bounded, and
beyond the bound a request is refused at once (:class:`Overloaded`) rather than left waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fewlabel.errors import FewlabelError

log = logging.getLogger("fewlabel.serve")

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
