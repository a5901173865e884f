"""The FastAPI app: settings checked, routes, API key, error handlers; the work is in :class:`Service`."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException as StarletteHTTPException

from fewlabel import __version__
from fewlabel.errors import FewlabelError
from fewlabel.inference.loading import ENGINES
from fewlabel.model_dir.manifest import load_manifest
from fewlabel.serve.http_errors import handle_http_exception, handle_validation_error, http_exception
from fewlabel.serve.limits import BodyLimit, Limits, texts_to_predict
from fewlabel.serve.schemas import (
    ErrorResponse,
    Health,
    ModelInfo,
    PredictRequest,
    PredictResponse,
    ValidationErrorResponse,
)
from fewlabel.serve.service import Batching, Service, check_servable

API_KEY_HEADER = "X-API-Key"
_API_KEY = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, description="The key the service was started with."
)


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
    manifest = load_manifest(model_dir)
    check_servable(model_dir, manifest)
    limits = Limits(max_texts, max_chars, max_body_bytes)
    batching = Batching(max_batch, batch_wait_ms / 1000, max_batch_chars, max_queued_texts, max_queued_chars)
    _check_settings(engine, limits, api_key, batching)
    service = Service(model_dir, manifest, engine, batching)
    app = FastAPI(
        title="fewlabel",
        version=__version__,
        description=_description(limits, batching),
        lifespan=service.lifespan,
    )
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, handle_http_exception)
    _add_routes(app, service, limits, api_key)
    return app


def _check_settings(engine: str, limits: Limits, api_key: str | None, batching: Batching) -> None:
    if engine not in ENGINES:
        raise FewlabelError(f"unknown engine {engine!r}; use {', '.join(ENGINES)}")
    limits.check()
    if api_key is not None:
        check_api_key(api_key)
    batching.check(limits)


def _description(limits: Limits, batching: Batching) -> str:
    return (
        "Predictions of a fewlabel text classifier. "
        f"Limits: {limits.max_texts} texts per request, {limits.max_chars} characters per text, "
        f"{limits.max_body_bytes} bytes per body; "
        f"at most {batching.max_queued_texts} texts and {batching.max_queued_chars} characters waiting, "
        "beyond which requests get a 503 with a Retry-After header."
    )


def _error_responses(api_key: str | None) -> dict[int | str, dict[str, Any]]:
    """The error answers the OpenAPI schema documents for the guarded endpoints."""
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
    return errors


def _add_routes(app: FastAPI, service: Service, limits: Limits, api_key: str | None) -> None:
    guarded = [Depends(_key_checker(api_key))] if api_key else []
    errors = _error_responses(api_key)

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
        return service.ready()[2]

    @app.post(
        "/predict",
        response_model=PredictResponse,
        dependencies=guarded,
        responses=errors,
        summary="Classify one text or a list of texts.",
    )
    async def predict(body: PredictRequest, request: Request) -> dict[str, Any]:
        texts = texts_to_predict(body, limits)
        return {"predictions": await service.predict(texts, request)}


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


def _key_checker(api_key: str) -> Callable[..., None]:
    expected = api_key.encode("utf-8")

    def require_api_key(
        provided: Annotated[str | None, Security(_API_KEY)],
    ) -> None:
        if not provided:
            raise http_exception(
                f"this service needs an API key: send it in the {API_KEY_HEADER} header", 401
            )
        # Starlette decodes headers as latin-1; encoding back gives the bytes the client sent.
        if not hmac.compare_digest(provided.encode("latin-1", errors="replace"), expected):
            raise http_exception(f"wrong API key in the {API_KEY_HEADER} header", 401)

    return require_api_key
