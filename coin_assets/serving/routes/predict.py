"""POST /predict: the mint year of one coin from its two photos, answered at once (and on record before
the answer leaves)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

from coin_assets.core.clock import utcnow
from coin_assets.core.storage import ObjectStore
from coin_assets.ml.pyfunc import apply_readings, interval_90, needs_review
from coin_assets.serving import inputs
from coin_assets.serving.batching import QueueFull
from coin_assets.serving.deps import (
    BatcherDep,
    HolderDep,
    MetricsDep,
    Pools,
    PoolsDep,
    SettingsDep,
    StoreDep,
    UploadsDep,
)
from coin_assets.serving.errors import MALFORMED_BODY, RETRY_AFTER, error, error_responses
from coin_assets.serving.gate import RETRY_AFTER_SECONDS
from coin_assets.serving.inputs import BadInput, PreparedPhoto
from coin_assets.serving.model_holder import LoadedModel
from coin_assets.serving.request_log import coin_id_for, write_upload
from coin_assets.serving.schemas import Prediction, PredictJSON
from coin_assets.serving.store import COMPLETED

log = logging.getLogger(__name__)
# a photo part of a multipart body, declared as FastAPI declares the async routes' UploadFiles (any bytes:
# the server sniffs the format; what is not a photo is a 422)
PHOTO_PART = {"type": "string", "contentMediaType": "application/octet-stream"}

router = APIRouter()


@router.post("/predict", response_model=Prediction, summary="The mint year of one coin from its two photos",
             responses=error_responses({
                 400: MALFORMED_BODY,
                 413: "a photo (or the whole body) over the size limit",
                 415: "a body that is neither multipart/form-data nor application/json",
                 422: "bad input: a missing side, not an image, truncated, too many pixels, invalid base64, "
                      "not valid JSON, an unknown field, a text field that is not short printable text",
                 503: "no production model yet, too many requests in flight, or the request log cannot be "
                      "written: retry after Retry-After seconds"}, headers={503: RETRY_AFTER}),
             openapi_extra={"requestBody": {"required": True, "content": {
                 "multipart/form-data": {"schema": {
                     "type": "object", "required": ["front", "back"], "additionalProperties": False, "properties": {
                         "front": PHOTO_PART, "back": PHOTO_PART,
                         "user_id": {"type": "string"}, "coin_id": {"type": "string"}}}},
                 "application/json": {"schema": PredictJSON.model_json_schema(),
                                      "example": PredictJSON.model_config["json_schema_extra"]["examples"][0]}}}})
async def predict(request: Request, settings: SettingsDep, holder: HolderDep, metrics: MetricsDep,
                  batcher: BatcherDep, store: StoreDep, uploads: UploadsDep, pools: PoolsDep):
    started = time.perf_counter()
    model = holder.current  # this request finishes on this version, whatever happens meanwhile
    if model is None:
        metrics.requests.labels(outcome="not_ready").inc()
        return error(503, "not_ready", holder.state.last_error or "no model loaded",
                     {"Retry-After": str(RETRY_AFTER_SECONDS)})
    try:
        raw_sides, user_id, client_coin = await read_body(request, settings.max_photo_bytes)
        photos = await prepare_pair(raw_sides, model, settings.max_photo_bytes, pools)
    except BadInput as err:
        metrics.requests.labels(outcome=err.code).inc()
        raise
    try:
        scored = batcher.submit(model, _stack(photos))
    except QueueFull as err:
        metrics.requests.labels(outcome="overloaded").inc()
        return error(503, "overloaded", str(err), {"Retry-After": str(RETRY_AFTER_SECONDS)})
    request_id, created = str(uuid.uuid4()), utcnow()
    loop = asyncio.get_running_loop()
    # the photos go to the upload zone while the forward pass runs
    uploading = loop.run_in_executor(pools.log, _store_photos, uploads, request_id, created, photos, user_id,
                                     client_coin)
    reading = loop.run_in_executor(pools.decode, model.predictor.read_front, raw_sides["front"])
    try:
        raw = await scored
        read = await reading
    except BaseException:
        keys, _ = await uploading
        await loop.run_in_executor(pools.log, _delete_keys, uploads, keys)
        raise
    answer = _answer(raw, model, read)
    keys, upload_error = await uploading
    latency_ms = (time.perf_counter() - started) * 1000
    outcome = "unreadable" if answer["unreadable"] else ("needs_review" if answer["needs_review"] else "ok")
    row, result = _log_rows(request_id, created, photos, user_id, client_coin, model, answer, latency_ms,
                            outcome, keys, upload_error)
    # An answer that is given is on record: the request row and its result are committed before the
    # answer leaves; if the log cannot be written the caller gets a clear 503, not an unrecorded answer.
    try:
        await loop.run_in_executor(pools.log, store.record_prediction, row, result)
    except Exception as err:
        log.exception("request %s: request log write failed; no answer given", request_id)
        metrics.requests.labels(outcome="log_unavailable").inc()
        await loop.run_in_executor(pools.log, _delete_keys, uploads, keys)
        return error(503, "log_unavailable", f"the request log could not be written ({type(err).__name__}), "
                     "so no answer is given; retry shortly", {"Retry-After": str(RETRY_AFTER_SECONDS)})
    metrics.requests.labels(outcome=outcome).inc()
    metrics.latency.observe(latency_ms / 1000)
    return JSONResponse({"request_id": request_id, **answer, "model_name": model.name,
                         "model_version": model.version, "latency_ms": round(latency_ms, 2)})


async def read_body(request: Request, limit: int) -> tuple[dict[str, bytes], str | None, str | None]:
    """The two photos (each at most ``limit`` bytes) and the text fields of a multipart or JSON body."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            raw = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise BadInput(f"body is not valid JSON: {err}") from None
        try:
            body = PredictJSON.model_validate(raw)
        except Exception as err:
            raise BadInput(_pydantic_message(err)) from None
        raw_sides = {side: inputs.decode_base64(side, getattr(body, side), limit) for side in inputs.SIDES}
        user_id, client_coin = body.user_id, body.coin_id
    elif content_type == "multipart/form-data":
        async with request.form(max_files=2, max_fields=4, max_part_size=4096) as form:
            unknown = sorted(set(form.keys()) - inputs.FORM_FIELDS)
            if unknown:
                raise BadInput(f"unknown field(s) {unknown}; expected front, back, user_id, coin_id")
            raw_sides = {}
            for side in inputs.SIDES:
                part = form.get(side)
                if part is None:
                    raise BadInput(f"{side}: missing (send the front and the back)")
                if not isinstance(part, UploadFile):
                    raise BadInput(f"{side}: must be a file")
                raw_sides[side] = await inputs.read_limited(part, side, limit)
            user_id, client_coin = form.get("user_id"), form.get("coin_id")
            if isinstance(user_id, UploadFile) or isinstance(client_coin, UploadFile):
                raise BadInput("user_id and coin_id must be text fields")
    else:
        raise BadInput("send multipart/form-data (front, back files) or application/json (base64 photos)",
                       415, "unsupported_media_type")
    user_id = inputs.clean_text_field("user_id", user_id)
    client_coin = inputs.clean_text_field("coin_id", client_coin)
    return raw_sides, user_id, client_coin


async def prepare_pair(raw_sides: dict[str, bytes], model: LoadedModel, max_photo_bytes: int, pools: Pools
                       ) -> list[PreparedPhoto]:
    """Front and back decoded at the same time on the decode pool; the front's error first."""
    config = model.predictor.config
    crop = bool(config.extra.get("coin_crop", False))
    loop = asyncio.get_running_loop()
    done = await asyncio.gather(*(loop.run_in_executor(
        pools.decode, inputs.prepare_photo, side, raw_sides[side], model.image_size,
        max_photo_bytes, config.max_pixels, crop, model.predictor.reader is not None)
        for side in inputs.SIDES), return_exceptions=True)
    for outcome in done:
        if isinstance(outcome, BaseException):
            raise outcome
    return list(done)


def _store_photos(uploads: ObjectStore, request_id: str, created: datetime, photos: list[PreparedPhoto], user_id,
                  client_coin) -> tuple[dict[str, str], str | None]:
    """Photos + sidecar into the upload zone; (keys written, why not all of them)."""
    try:
        return write_upload(uploads, request_id, created, photos, user_id, client_coin), None
    except Exception as err:  # the answer stands; the row says the photos were not stored
        log.exception("request %s: upload zone write failed", request_id)
        return {}, f"upload zone write failed: {err}"


def _delete_keys(uploads: ObjectStore, keys: dict[str, str]) -> None:
    """The photos of a request that got no answer leave the upload zone (sidecar first)."""
    for key in sorted(keys.values(), key=lambda k: not k.endswith(".json")):
        try:
            uploads.delete(key)
        except Exception:
            log.exception("could not remove %s of an unanswered request", key)


def _log_rows(request_id: str, created: datetime, photos: list[PreparedPhoto], user_id, client_coin,
              model: LoadedModel, answer: dict, latency_ms: float, outcome: str, keys: dict[str, str],
              upload_error: str | None) -> tuple[dict, dict]:
    row = {"request_id": request_id, "created_at": created, "status": COMPLETED, "mode": "sync", "source": "api",
           "user_id": user_id, "client_coin_id": client_coin, "coin_id": coin_id_for(request_id),
           "model_name": model.name, "model_version": model.version,
           "front_sha256": photos[0].sha256, "back_sha256": photos[1].sha256,
           "front_key": keys.get("front"), "back_key": keys.get("back"), "sidecar_key": keys.get("sidecar"),
           "outcome": outcome, "error": upload_error, "latency_ms": latency_ms, "attempts": 1,
           "completed_at": utcnow()}
    result = {"request_id": request_id, "model_name": model.name, "model_version": model.version,
              "created_at": row["completed_at"],
              **{k: answer[k] for k in ("year", "sigma", "lower_90", "upper_90", "needs_review", "unreadable")}}
    return row, result


def _stack(photos: list[PreparedPhoto]):
    import numpy as np

    return np.stack([p.array for p in photos])


def _answer(raw: dict, model: LoadedModel, reading=None) -> dict:
    import numpy as np

    year, sigma = np.array([raw["year"]], dtype=float), np.array([raw["sigma"]], dtype=float)
    unreadable = np.array([raw["unreadable"]], dtype=bool)
    forced = apply_readings(year, sigma, unreadable, [reading])
    lower, upper = interval_90(year, sigma)
    review = needs_review(lower, upper, unreadable, model.predictor.config.review_max_interval) | forced
    # an unreadable coin keeps its estimate and (wide) interval, flagged; only non-finite figures are hidden
    finite = bool(np.isfinite(year).all() and np.isfinite(sigma).all())

    def num(v):
        return round(float(v), 3) if finite else None

    return {"year": num(year[0]), "lower_90": num(lower[0]), "upper_90": num(upper[0]), "sigma": num(sigma[0]),
            "needs_review": bool(review[0]), "unreadable": bool(unreadable[0]),
            "reading": None if reading is None else reading.to_dict()}


def _pydantic_message(err: Exception) -> str:
    errors = getattr(err, "errors", None)
    if callable(errors):
        return "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())) or 'body'}: {e.get('msg')}" for e in errors())
    return str(err)
