"""The service's error answers: every problem is a status code and a JSON ``detail`` saying what to change.

FastAPI's own answers to a body it cannot validate are lists of pydantic errors; here they become one
plain sentence per problem (the input is never echoed back), and a body it cannot even parse is a 422
like any other malformed JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from fewlabel.serve.schemas import BODY_EXAMPLE


def http_exception(detail: str, status: int = 422) -> HTTPException:
    """An answer with ``status`` and ``detail``; 422 (the request is wrong) unless told otherwise."""
    return HTTPException(status_code=status, detail=detail)


def unavailable(reason: str, retry_after_s: int) -> HTTPException:
    """A 503 that says when to come back, in its detail and in the Retry-After header."""
    return HTTPException(
        status_code=503,
        detail=f"{reason}; try again in {retry_after_s} s",
        headers={"Retry-After": str(retry_after_s)},
    )


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


async def handle_http_exception(request: Request, exc: Exception) -> Response:
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


def handle_validation_error(request: Request, exc: Exception) -> JSONResponse:
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
