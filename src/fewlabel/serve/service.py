"""The service's state: the model served, loaded when the app starts, and how a request is predicted.

Everything that can be checked before serving is checked when the app is made (:func:`check_servable`,
:class:`Batching`), so a model or setting that cannot work fails at once rather than on a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
from fastapi import FastAPI, HTTPException, Request

from fewlabel.errors import FewlabelError, ModelDirError
from fewlabel.inference.loading import load_model
from fewlabel.model_dir.records import Manifest, Record
from fewlabel.model_dir.store import TrainedModel
from fewlabel.serve.batching import LONG_TEXT, MicroBatcher, Overloaded, ServiceStopping
from fewlabel.serve.http_errors import http_exception, unavailable
from fewlabel.serve.limits import Limits

log = logging.getLogger("fewlabel.serve")

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


def model_info(manifest: Manifest) -> dict[str, Any]:
    """What ``GET /model`` tells: the model's identity and expected accuracy, never a path on this server."""

    def fields(record: Record | None) -> dict[str, Any] | None:
        return record.model_dump(mode="json", exclude_unset=True) if record is not None else None

    info = {
        "strategy": fields(manifest.strategy),
        "backbone": fields(manifest.backbone),
        "labels": list(manifest.labels),
        "metrics": fields(manifest.metrics) or {},
        "fewlabel_version": manifest.fewlabel_version,
        "created": manifest.created,
    }
    return _hide_paths(info)


def check_servable(model_dir: Path, manifest: Manifest) -> None:
    """Refuse, before serving, a model whose answers would break the response schema or be wrong."""
    labels = manifest.labels
    if not labels or len(set(labels)) < len(labels):
        raise ModelDirError(
            f"{model_dir}: the service answers labels as distinct JSON strings, but the model's labels are "
            f"{str(labels)[:200]}; retrain it with text labels"
        )
    temperature = manifest.temperature
    if not _finite_number(temperature) or temperature <= 0:
        raise ModelDirError(
            f"{model_dir}: the calibration temperature must be a positive number, got {temperature!r} "
            "(0 or less gives no probabilities or reverses them); retrain the model"
        )
    if manifest.decision is not None:
        threshold = manifest.decision.threshold
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


@dataclass(frozen=True)
class Batching:
    """How the service batches and queues the texts of its requests (see :class:`MicroBatcher`)."""

    max_batch: int
    wait_s: float
    max_batch_chars: int
    max_queued_texts: int
    max_queued_chars: int

    def check(self, limits: Limits) -> None:
        MicroBatcher.check_settings(
            self.max_batch, self.wait_s, self.max_batch_chars, self.max_queued_texts, self.max_queued_chars
        )
        # One request the limits allow must fit in an empty queue, or it could never be served.
        largest = min(
            limits.max_texts * limits.max_chars, limits.max_body_bytes
        )  # a character takes at least a byte of JSON
        if self.max_queued_texts < limits.max_texts or self.max_queued_chars < largest:
            raise FewlabelError(
                f"the queue (max_queued_texts {self.max_queued_texts}, max_queued_chars {self.max_queued_chars}) must "
                f"hold at least one request at the limits ({limits.max_texts} texts, up to {largest} characters)"
            )

    def batcher(
        self, predict_proba: Callable[[list[str]], np.ndarray], text_cost_cap: int | None
    ) -> MicroBatcher:
        return MicroBatcher(
            predict_proba,
            self.max_batch,
            self.wait_s,
            self.max_batch_chars,
            self.max_queued_texts,
            self.max_queued_chars,
            text_cost_cap=text_cost_cap,
        )


class Service:
    """The model served and its batcher: loaded when the app starts (:meth:`lifespan`), dropped when it stops."""

    def __init__(self, model_dir: Path, manifest: Manifest, engine: str, batching: Batching):
        self.model_dir = model_dir
        self.manifest = manifest
        self.engine = engine
        self.batching = batching
        self.model: TrainedModel | None = None
        self.batcher: MicroBatcher | None = None
        self.info: dict[str, Any] | None = None

    @contextlib.asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        model = load_model(self.model_dir, engine=self.engine)
        # An encoder truncates a text to its first few hundred tokens; tfidf reads all of it.
        batcher = self.batching.batcher(model.predict_proba, LONG_TEXT if self.manifest.backbone else None)
        await batcher.start()
        try:
            # Loads whatever the model loads lazily (a backbone) before the first request has to wait.
            _check_warm_up(await batcher.run_in_thread(model.predict_proba, ["warm-up"]), model.labels)
            self.model, self.batcher, self.info = model, batcher, model_info(model.manifest)
            log.info(
                "serving %s (%s), labels %s",
                self.model_dir.name,
                model.manifest.strategy.name,
                model.labels,
            )
            yield
        finally:
            self.model = self.batcher = None
            await batcher.stop()

    def ready(self) -> tuple[TrainedModel, MicroBatcher, dict[str, Any]]:
        """The model, its batcher and what ``GET /model`` tells; a 503 while starting or stopping."""
        if self.model is None or self.batcher is None or self.info is None:
            raise unavailable("the model is not loaded (the service is starting or stopping)", 5)
        return self.model, self.batcher, self.info

    async def predict(self, texts: list[str], request: Request) -> list[dict[str, Any]]:
        """One prediction per text, in order; a 503 when busy or stopping, a 500 when the model fails."""
        model, batcher, _ = self.ready()
        try:
            proba = await _unless_disconnected(request, batcher.predict_proba(texts))
        except Overloaded as err:
            raise unavailable(str(err), err.retry_after_s) from None
        except ServiceStopping:
            raise unavailable("the service is stopping", 5) from None
        except HTTPException:
            raise  # 499: the client went away
        except Exception:
            raise http_exception("prediction failed; the server log has the details", 500) from None
        if not np.isfinite(proba).all():
            log.error("the model gave probabilities that are not finite numbers: %s", proba[:4].tolist())
            raise http_exception("prediction failed: the model gave probabilities that are not numbers", 500)
        if model.multi_label:
            chosen = proba >= model.label_thresholds
            return [_label_set(row, picked, model.labels) for row, picked in zip(proba, chosen, strict=True)]
        answers = model.decide(proba)
        return [_prediction(row, int(best), model.labels) for row, best in zip(proba, answers, strict=True)]


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
        raise http_exception("the client went away", 499)
    return task.result()


def _label_set(row: np.ndarray, picked: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """A multi-label answer: the labels that reach their thresholds, and every label's probability."""
    return {
        "labels": [label for label, chosen in zip(labels, picked, strict=True) if chosen],
        "probabilities": {label: float(p) for label, p in zip(labels, row, strict=True)},
    }


def _prediction(row: np.ndarray, best: int, labels: list[str]) -> dict[str, Any]:
    """One answer: ``best`` is the model's decision (its tuned threshold, or the most probable label)."""
    return {
        "label": labels[best],
        "confidence": float(row[best]),
        "probabilities": {label: float(p) for label, p in zip(labels, row, strict=True)},
    }
