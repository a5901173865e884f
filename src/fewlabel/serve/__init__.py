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

The modules, in the order a request meets them: :mod:`~fewlabel.serve.app` (the app, its routes and
its settings), :mod:`~fewlabel.serve.limits` (what one request may hold),
:mod:`~fewlabel.serve.schemas` (request and response bodies), :mod:`~fewlabel.serve.service` (the
model served), :mod:`~fewlabel.serve.batching` (micro-batching, fairness, the bounded queue) and
:mod:`~fewlabel.serve.http_errors` (every error answer).

Needs the ``serve`` extra: ``pip install 'fewlabel[serve]'``.
"""

from fewlabel.serve.app import API_KEY_HEADER, check_api_key, create_app
from fewlabel.serve.batching import LONG_TEXT, MicroBatcher, Overloaded, ServiceStopping, prediction_thread
from fewlabel.serve.limits import BodyLimit, Limits, texts_to_predict
from fewlabel.serve.schemas import (
    BODY_EXAMPLE,
    ErrorResponse,
    Health,
    ModelInfo,
    Prediction,
    PredictRequest,
    PredictResponse,
    ValidationErrorResponse,
)
from fewlabel.serve.service import check_servable, model_info

__all__ = [
    "API_KEY_HEADER",
    "BODY_EXAMPLE",
    "LONG_TEXT",
    "BodyLimit",
    "ErrorResponse",
    "Health",
    "Limits",
    "MicroBatcher",
    "ModelInfo",
    "Overloaded",
    "Prediction",
    "PredictRequest",
    "PredictResponse",
    "ServiceStopping",
    "ValidationErrorResponse",
    "check_api_key",
    "check_servable",
    "create_app",
    "model_info",
    "prediction_thread",
    "texts_to_predict",
]
