"""What one request may hold: body size (checked as the bytes arrive), number of texts, text length."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fewlabel.errors import FewlabelError
from fewlabel.serve.http_errors import http_exception
from fewlabel.serve.schemas import PredictRequest


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


def texts_to_predict(body: PredictRequest, limits: Limits) -> list[str]:
    """The request's texts, or a 422 saying which one breaks which limit."""
    single = body.texts is None
    # cast: the request's validator lets exactly one of the two through; the assert below checks it
    texts = cast("list[str] | None", [body.text] if single else body.texts)
    assert texts is not None and all(t is not None for t in texts)
    if not texts:
        raise http_exception("'texts' is an empty list; give at least one text")
    if len(texts) > limits.max_texts:
        raise http_exception(
            f"'texts' has {len(texts)} texts; this service takes at most {limits.max_texts} per request: "
            "split them over several requests"
        )
    for i, text in enumerate(texts):
        where = "'text'" if single else f"'texts'[{i}]"
        if not text.strip():
            raise http_exception(f"{where} is empty or only whitespace; give a text to classify")
        if len(text) > limits.max_chars:
            raise http_exception(
                f"{where} has {len(text)} characters; this service takes at most {limits.max_chars} per text: "
                "shorten it (a classifier reads mostly the start of a long text anyway)"
            )
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise http_exception(
                f"{where} is not valid Unicode (it holds a lone surrogate escape such as \\ud800)"
            ) from None
    return texts
