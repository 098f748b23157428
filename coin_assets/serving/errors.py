"""The one shape of every error the serving API answers, and its place in the OpenAPI document.

Every 4xx/5xx body is ``{"error": <code>, "detail": <sentence>}`` (:class:`ErrorBody`): refused inputs
(:class:`~coin_assets.serving.inputs.BadInput`), FastAPI's request validation (mapped by the app's
handler), ``HTTPException``s and the ``/predict`` gate. Each route lists its error statuses with
:func:`error_responses`, so the document declares every status a route answers, with this model
(the contract test, ``coin_assets_tests/test_api_contract.py``, holds the API to it). The one answer
that is not an error body is ``/health``'s 503, which is the health report itself.
"""

from __future__ import annotations

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field


class ErrorBody(BaseModel):
    """An error: a stable code for programs, a sentence for people."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"error": "bad_input", "detail": "back: missing (send the front and the back)"}]})
    error: str = Field(description="machine-readable code, e.g. bad_input, bad_image, too_large, "
                                   "unsupported_media_type, not_found, unauthorized, not_ready, overloaded")
    detail: str = Field(description="what was wrong, in words")


def error(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": message}, status_code=status, headers=headers)


RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "string"}}}
WWW_AUTHENTICATE = {"WWW-Authenticate": {"description": "the scheme to authenticate with (Bearer)",
                                         "schema": {"type": "string"}}}
VALIDATION = "the request does not match this operation's parameters or body (which ones, in detail)"
MALFORMED_BODY = "a body that cannot be parsed: broken multipart (or too many parts), JSON that is not UTF-8"


def error_responses(statuses: dict[int, str], headers: dict[int, dict] | None = None) -> dict:
    """``responses=`` for a route: each status with its description, answered as :class:`ErrorBody`
    (and the response headers it always carries)."""
    out = {}
    for status, description in statuses.items():
        out[status] = {"model": ErrorBody, "description": description}
        if headers and status in headers:
            out[status]["headers"] = headers[status]
    return out
