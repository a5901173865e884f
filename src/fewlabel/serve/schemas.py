"""The request and response bodies of the HTTP service, as pydantic models (they make /openapi.json)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, model_validator

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


class MultiLabelPrediction(BaseModel):
    """A multi-label model's answer: any number of labels (docs/multi-label.md)."""

    labels: list[str] = Field(
        description="The labels whose probability reaches their own threshold, in label order; possibly none."
    )
    probabilities: dict[str, float] = Field(
        description="Each label's own probability; they need not sum to 1."
    )


class PredictResponse(BaseModel):
    predictions: list[Prediction | MultiLabelPrediction] = Field(
        description="One prediction per text, in the order given: a label (single-label models) or a "
        "list of labels (multi-label models)."
    )


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
