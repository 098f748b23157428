"""The request and response models of the synchronous routes (their names are the OpenAPI document's
component names)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from coin_assets.core.uploads import YEAR_MAX_PLAUSIBLE, YEAR_MIN
from coin_assets.serving.examples import BACK_JPEG_BASE64, FRONT_JPEG_BASE64


class PredictJSON(BaseModel):
    """JSON form of /predict: base64 photos (a data URL works too)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"front": FRONT_JPEG_BASE64, "back": BACK_JPEG_BASE64, "user_id": "u-42", "coin_id": "my-coin-7"}]})
    front: str = Field(description="front photo, base64")
    back: str = Field(description="back photo, base64")
    user_id: str | None = None
    coin_id: str | None = None


class Reading(BaseModel):
    """What the year reader read on the front: the year it trusts (or null), the digits with their
    probabilities, and where on the photo it read them (a polygon, in fractions of the photo's width and
    height: a box in the field, an arc along the rim)."""

    year: int | None
    confidence: float
    digits: str
    digit_probs: list[float]
    region: list[list[float]]
    view: str
    reason: str
    coin_found: bool = True
    coins: int = Field(1, description="coins found in the front photo: 0 (none: the whole photo was read), 1, or 2 "
                                      "side by side (both faces of a coin in one photo: the photo is split, both "
                                      "are read, and one year read on either is the answer)")
    lines: list[dict]


class Prediction(BaseModel):
    request_id: str
    year: float | None
    lower_90: float | None
    upper_90: float | None
    sigma: float | None
    needs_review: bool
    unreadable: bool
    reading: Reading | None = None
    model_name: str
    model_version: str
    latency_ms: float
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "request_id": "0b8e7c1e-4d43-4c1e-9d7e-0f8d1f1b2a3c", "year": 1987.4, "lower_90": 1979.2, "upper_90": 1995.6,
        "sigma": 5.0, "needs_review": False, "unreadable": False, "model_name": "coin_year_regressor",
        "model_version": "3", "latency_ms": 21.5}]})


class Health(BaseModel):
    """/health: 200 when a production model is served, 503 (with ``reason``) when none is."""

    status: Literal["ready", "not_ready"]
    model_name: str
    model_version: str | None
    alias: str | None
    since: str | None
    last_check: str | None
    last_error: str | None
    failed_version: str | None
    optimised: bool | None
    reason: str | None = Field(default=None, description="why no model is served (503 only)")


class FeedbackSaved(BaseModel):
    request_id: str
    feedback_id: int
    sender: str
    role: Literal["user", "reviewer"]
    status: Literal["awaiting_review", "label_submitted"]
    coin_id: str


class Feedback(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"year": 1987, "comment": "date legible"}]})
    year: int = Field(ge=YEAR_MIN, le=YEAR_MAX_PLAUSIBLE, description="the true mint year")
    comment: str | None = Field(default=None, max_length=1000)
