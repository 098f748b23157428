"""The serving API: ``create_app(settings) -> FastAPI``; run by ``python -m coin_assets.serving``.

GET /health, POST /predict, GET /predictions/{id}, POST /predictions/{id}/feedback, GET /models,
GET /metadata, GET /metrics, POST /admin/reload, and the OpenAPI docs at /docs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Literal

from fastapi import FastAPI, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from coin_assets.core.clock import utcnow
from coin_assets.core.images import ACCEPTED_FORMATS, MAX_PIXELS
from coin_assets.core.uploads import YEAR_MAX_PLAUSIBLE, YEAR_MIN
from coin_assets.ml.pyfunc import apply_readings, interval_90, needs_review
from coin_assets.serving import auth, inputs
from coin_assets.serving.async_api import async_router
from coin_assets.serving.batching import MicroBatcher, QueueFull
from coin_assets.serving.errors import (
    MALFORMED_BODY,
    RETRY_AFTER,
    VALIDATION,
    WWW_AUTHENTICATE,
    error,
    error_responses,
)
from coin_assets.serving.examples import BACK_JPEG_BASE64, FRONT_JPEG_BASE64
from coin_assets.serving.inputs import BadInput, PreparedPhoto
from coin_assets.serving.metrics import ServingMetrics
from coin_assets.serving.model_holder import LoadedModel, ModelHolder
from coin_assets.serving.request_log import coin_id_for, object_store, write_review_verdict, write_upload
from coin_assets.serving.store import COMPLETED, RequestStore, async_status_counts
from coin_assets.settings import Settings

log = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 1
# a photo part of a multipart body, declared as FastAPI declares the async routes' UploadFiles (any bytes:
# the server sniffs the format; what is not a photo is a 422)
PHOTO_PART = {"type": "string", "contentMediaType": "application/octet-stream"}


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


class BodyTooLarge(Exception):
    pass


class PredictGate:
    """ASGI middleware for POST /predict: at most ``max_in_flight`` requests held (more → 503 with
    Retry-After, before any body is read), and the body refused while streaming once over the limit."""

    def __init__(self, app, max_in_flight: int, max_body: int, metrics: ServingMetrics):
        self.app, self.max_in_flight, self.max_body, self.metrics = app, max_in_flight, max_body, metrics
        self.in_flight = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != "/predict" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            self.metrics.requests.labels(outcome="too_large").inc()
            return await error(413, "too_large", f"request body over {self.max_body} bytes")(scope, receive, send)
        if self.in_flight >= self.max_in_flight:
            self.metrics.requests.labels(outcome="overloaded").inc()
            return await error(503, "overloaded", "too many requests in flight; retry shortly",
                               {"Retry-After": str(RETRY_AFTER_SECONDS)})(scope, receive, send)
        seen = 0
        started = False

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge()
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        self.in_flight += 1
        self.metrics.in_flight.set(self.in_flight)
        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            self.metrics.requests.labels(outcome="too_large").inc()
            if not started:
                await error(413, "too_large", f"request body over {self.max_body} bytes")(scope, receive, send)
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.set(self.in_flight)


def create_app(settings: Settings | None = None, holder: ModelHolder | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    metrics = ServingMetrics()
    store = RequestStore(settings.serving_db)
    callers = auth.parse_tokens(settings.api_tokens)
    uploads = object_store(settings)
    holder = holder or ModelHolder(settings, on_reload=lambda outcome: metrics.reloads.labels(outcome=outcome).inc())
    batcher = MicroBatcher(settings.serving_max_batch, settings.serving_queue, metrics)
    # Decoding (Pillow releases the GIL) on this worker's share of the cores, front and back at once;
    # the forward pass on the batcher's one thread with the torch threads set by threads_for_worker.
    decode_threads, torch_threads = threads_for_worker(settings.api_workers)
    preprocess_pool = ThreadPoolExecutor(max_workers=decode_threads, thread_name_prefix="preprocess")
    # upload-zone and request-log writes (I/O): never on the decode threads
    log_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="request-log")
    max_body = inputs.max_request_bytes(settings.max_photo_bytes)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if torch_threads:
            import torch

            torch.set_num_threads(torch_threads)
        await run_in_threadpool(store.create_tables)
        await run_in_threadpool(holder.refresh)
        sync_metrics()
        holder.start_polling()
        batcher.start()
        try:
            yield
        finally:
            holder.stop()
            await batcher.stop()
            preprocess_pool.shutdown(wait=True)
            log_pool.shutdown(wait=True)
            store.dispose()
            metrics.worker_exiting()

    app = FastAPI(title="coin_assets serving", version="1", lifespan=lifespan,
                  description="The production coin-year model over HTTP. Every answered request is logged and its "
                              "photos go into the upload zone, so they flow through bronze, silver and gold.")
    app.state.settings, app.state.store, app.state.holder, app.state.metrics = settings, store, holder, metrics
    app.state.batcher = batcher
    app.add_middleware(PredictGate, max_in_flight=settings.serving_queue, max_body=max_body, metrics=metrics)
    app.include_router(async_router(settings, store, uploads, holder))  # before GET /predictions/{request_id}

    def sync_metrics() -> None:
        cur = holder.current
        if cur is not None:
            metrics.set_served(cur.name, cur.version)
            metrics.optimised.set(1 if cur.inference["optimised"] else 0)
        metrics.load_failed.set(1 if holder.state.last_error else 0)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
                             for e in exc.errors())
        return error(422, "bad_input", problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return error(exc.status_code, "http_error", str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(BadInput)
    async def _bad(request: Request, exc: BadInput):
        return error(exc.status, exc.code, exc.message)

    @app.get("/health", summary="Liveness and readiness",
             responses={200: {"model": Health, "description": "a production model is served"},
                        503: {"model": Health, "description": "no production model loaded (the health report, "
                                                             "with the reason)"}})
    async def health():
        cur = holder.current
        state = holder.state
        body = {"status": "ready" if cur else "not_ready", "model_name": settings.model_name,
                "model_version": cur.version if cur else None, "alias": cur.alias if cur else None,
                "since": cur.loaded_at.isoformat() if cur else None,
                "last_check": state.last_check.isoformat() if state.last_check else None,
                "last_error": state.last_error, "failed_version": state.failed_version,
                "optimised": cur.inference["optimised"] if cur else None}
        if cur is None:
            body["reason"] = state.last_error or "model not loaded yet"
            return JSONResponse(body, status_code=503)
        return body

    async def read_body(request: Request) -> tuple[dict[str, bytes], str | None, str | None]:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        limit = settings.max_photo_bytes
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

    async def prepare_pair(raw_sides: dict[str, bytes], model: LoadedModel) -> list[PreparedPhoto]:
        """Front and back decoded at the same time on the pool; the front's error first."""
        config = model.predictor.config
        crop = bool(config.extra.get("coin_crop", False))
        loop = asyncio.get_running_loop()
        done = await asyncio.gather(*(loop.run_in_executor(
            preprocess_pool, inputs.prepare_photo, side, raw_sides[side], model.image_size,
            settings.max_photo_bytes, config.max_pixels, crop, model.predictor.reader is not None)
            for side in inputs.SIDES), return_exceptions=True)
        for outcome in done:
            if isinstance(outcome, BaseException):
                raise outcome
        return list(done)

    @app.post("/predict", response_model=Prediction, summary="The mint year of one coin from its two photos",
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
    async def predict(request: Request):
        started = time.perf_counter()
        model = holder.current  # this request finishes on this version, whatever happens meanwhile
        if model is None:
            metrics.requests.labels(outcome="not_ready").inc()
            return error(503, "not_ready", holder.state.last_error or "no model loaded",
                         {"Retry-After": str(RETRY_AFTER_SECONDS)})
        try:
            raw_sides, user_id, client_coin = await read_body(request)
            photos = await prepare_pair(raw_sides, model)
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
        uploading = loop.run_in_executor(log_pool, _store_photos, request_id, created, photos, user_id, client_coin)
        reading = loop.run_in_executor(preprocess_pool, model.predictor.read_front, raw_sides["front"])
        try:
            raw = await scored
            read = await reading
        except BaseException:
            keys, _ = await uploading
            await loop.run_in_executor(log_pool, _delete_keys, keys)
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
            await loop.run_in_executor(log_pool, store.record_prediction, row, result)
        except Exception as err:
            log.exception("request %s: request log write failed; no answer given", request_id)
            metrics.requests.labels(outcome="log_unavailable").inc()
            await loop.run_in_executor(log_pool, _delete_keys, keys)
            return error(503, "log_unavailable", f"the request log could not be written ({type(err).__name__}), "
                         "so no answer is given; retry shortly", {"Retry-After": str(RETRY_AFTER_SECONDS)})
        metrics.requests.labels(outcome=outcome).inc()
        metrics.latency.observe(latency_ms / 1000)
        return JSONResponse({"request_id": request_id, **answer, "model_name": model.name,
                             "model_version": model.version, "latency_ms": round(latency_ms, 2)})

    def _store_photos(request_id: str, created: datetime, photos: list[PreparedPhoto], user_id, client_coin
                      ) -> tuple[dict[str, str], str | None]:
        """Photos + sidecar into the upload zone; (keys written, why not all of them)."""
        try:
            return write_upload(uploads, request_id, created, photos, user_id, client_coin), None
        except Exception as err:  # the answer stands; the row says the photos were not stored
            log.exception("request %s: upload zone write failed", request_id)
            return {}, f"upload zone write failed: {err}"

    def _delete_keys(keys: dict[str, str]) -> None:
        """The photos of a request that got no answer leave the upload zone (sidecar first)."""
        for key in sorted(keys.values(), key=lambda k: not k.endswith(".json")):
            try:
                uploads.delete(key)
            except Exception:
                log.exception("could not remove %s of an unanswered request", key)

    @app.get("/predictions/{request_id}", summary="A logged request and its answer",
             responses=error_responses({404: "no such request (or not a request id)", 422: VALIDATION}))
    async def get_prediction(request_id: str):
        rid = _request_uuid(request_id)
        row = await run_in_threadpool(store.get_request, rid)
        if row is None:
            return error(404, "not_found", f"no request {rid}")
        result = await run_in_threadpool(store.get_result, rid)
        keep = ("request_id", "created_at", "status", "mode", "user_id", "client_coin_id", "model_name",
                "model_version", "outcome", "error", "latency_ms", "completed_at")
        return {**{k: _jsonable(row[k]) for k in keep},
                "result": {k: _jsonable(v) for k, v in result.items() if k not in ("id", "request_id")} if result else None}

    @app.post("/predictions/{request_id}/feedback", status_code=201, summary="The true year of a predicted coin",
              response_model=FeedbackSaved,
              responses=error_responses({400: MALFORMED_BODY,
                                         401: "no or unknown token (a user or reviewer token is needed)",
                                         404: "no such request (or not a request id)", 422: VALIDATION},
                                        headers={401: WWW_AUTHENTICATE}))
    async def post_feedback(request_id: str, body: Feedback, authorization: str | None = Header(default=None)):
        caller = auth.identify(callers, auth.bearer_token(authorization))
        if caller is None:
            return error(401, "unauthorized", "feedback needs an identified caller: send 'Authorization: Bearer "
                                              "<token>' with a user or reviewer token",
                         {"WWW-Authenticate": "Bearer"})
        rid = _request_uuid(request_id)
        row = await run_in_threadpool(store.get_request, rid)
        if row is None:
            return error(404, "not_found", f"no request {rid}")
        now = utcnow()
        is_reviewer = caller.role == "reviewer"

        def record() -> dict:
            fid = store.record_feedback({"request_id": rid, "year": body.year, "sender": caller.name,
                                         "role": caller.role, "comment": body.comment, "created_at": now,
                                         "status": "label_submitted" if is_reviewer else "awaiting_review"})
            key = write_review_verdict(uploads, rid, fid, body.year, caller.name, now) if is_reviewer else None
            if key:
                from sqlalchemy import update

                from coin_assets.serving.store import feedback as fb_table
                with store.session() as s:
                    s.execute(update(fb_table).where(fb_table.c.id == fid).values(review_key=key))
            return {"feedback_id": fid, "review_key": key}

        saved = await run_in_threadpool(record)
        metrics.feedback.labels(role=caller.role).inc()
        return JSONResponse({"request_id": rid, "feedback_id": saved["feedback_id"], "sender": caller.name,
                             "role": caller.role,
                             "status": "label_submitted" if is_reviewer else "awaiting_review",
                             "coin_id": coin_id_for(rid)}, status_code=201)

    @app.get("/models", summary="Registered versions with aliases, test metrics and decision reasons")
    async def models():
        return await run_in_threadpool(_list_models, holder)

    @app.get("/metadata", summary="The serving model's signature, input limits and lineage",
             responses=error_responses({503: "no production model loaded yet"}))
    async def metadata():
        cur = holder.current
        if cur is None:
            return error(503, "not_ready", holder.state.last_error or "no model loaded")
        signature = await run_in_threadpool(_signature, cur.source)
        tags = cur.tags
        return {"model_name": cur.name, "model_version": cur.version, "alias": cur.alias,
                "since": cur.loaded_at.isoformat(), "source": cur.source, "signature": signature,
                "input_limits": {"max_photo_bytes": settings.max_photo_bytes,
                                 "max_pixels": cur.predictor.config.max_pixels or MAX_PIXELS,
                                 "accepted_formats": sorted(ACCEPTED_FORMATS), "image_size": cur.image_size,
                                 "max_request_bytes": max_body},
                "review_max_interval": cur.predictor.config.review_max_interval,
                "training_set_hash": tags.get("training_set_hash"), "mlflow_run_id": cur.run_id,
                "dagster_run_id": tags.get("dagster_run_id"), "tags": tags, "inference": cur.inference}

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response,
             responses={200: {"description": "the Prometheus text exposition", "content": {"text/plain": {}}}})
    async def prometheus():
        sync_metrics()
        counts = await run_in_threadpool(async_status_counts, store)
        for status in ("pending", "claimed", "completed", "failed"):
            metrics.async_requests.labels(status=status).set(counts.get(status, 0))
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/admin/reload", summary="Check the production alias now (token from COIN_ASSETS_RELOAD_TOKEN)",
              responses=error_responses({401: "missing or wrong token (X-Reload-Token or Authorization: Bearer)",
                                         403: "reload disabled: COIN_ASSETS_RELOAD_TOKEN is not set on the service",
                                         422: VALIDATION}, headers={401: WWW_AUTHENTICATE}))
    async def reload(x_reload_token: str | None = Header(default=None), authorization: str | None = Header(default=None)):
        if not settings.reload_token:  # no token can be right: refused, whoever asks (not a server fault)
            return error(403, "reload_disabled", "set COIN_ASSETS_RELOAD_TOKEN to enable the reload endpoint")
        if not auth.token_matches(settings.reload_token, x_reload_token or auth.bearer_token(authorization)):
            return error(401, "unauthorized", "reload needs the token from COIN_ASSETS_RELOAD_TOKEN",
                         {"WWW-Authenticate": "Bearer"})
        report = await run_in_threadpool(holder.refresh, True)
        sync_metrics()
        return report

    return app


def threads_for_worker(api_workers: int = 1) -> tuple[int, int]:
    """(decode threads, torch intra-op threads) for one API process: its share of the cores
    (``api_workers`` processes share them), half of it for torch, so that the forward pass and the
    decoding never fight over more threads than cores. ``OMP_NUM_THREADS``, when set, wins for torch
    (0 returned: leave torch alone)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    workers = max(1, api_workers)
    share = max(1, cores // workers)
    torch_threads = 0 if os.environ.get("OMP_NUM_THREADS") else max(1, share // 2)
    return max(2, share), torch_threads


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


def _request_uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise BadInput("request_id must be a UUID returned by /predict", 404, "not_found") from None


def _jsonable(value):
    return value.isoformat() if isinstance(value, datetime) else value


def _pydantic_message(err: Exception) -> str:
    errors = getattr(err, "errors", None)
    if callable(errors):
        return "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())) or 'body'}: {e.get('msg')}" for e in errors())
    return str(err)


def _float(value: str):
    try:
        return float(value)
    except ValueError:
        return value


def _signature(source: str) -> dict | None:
    import mlflow.artifacts
    from mlflow.models import Model
    from mlflow.utils.file_utils import local_file_uri_to_path

    if source.startswith("file:"):
        path = local_file_uri_to_path(source)
    else:
        path = mlflow.artifacts.download_artifacts(artifact_uri=f"{source.rstrip('/')}/MLmodel")
    model = Model.load(path)
    return model.signature.to_dict() if model.signature is not None else None


def _list_models(holder: ModelHolder) -> dict:
    from coin_assets.ml.registry import all_versions

    client = holder.client
    try:
        aliases = client.get_registered_model(holder.name).aliases or {}
    except Exception as err:
        return {"model_name": holder.name, "versions": [], "error": str(err)}
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases.items():
        by_version.setdefault(str(version), []).append(alias)
    out = []
    for mv in all_versions(client, holder.name):
        tags = dict(mv.tags or {})
        metrics = {k: _float(v) for k, v in tags.items() if k.startswith("test_")}
        out.append({"version": str(mv.version), "aliases": sorted(by_version.get(str(mv.version), [])),
                    "created_at": mv.creation_timestamp, "run_id": mv.run_id, "test_metrics": metrics,
                    "decision": tags.get("decision"), "decision_reason": tags.get("decision_reason"),
                    "input_kind": tags.get("input_kind"), "tags": tags})
    cur = holder.current
    return {"model_name": holder.name, "serving_version": cur.version if cur else None, "aliases": aliases,
            "versions": sorted(out, key=lambda v: int(v["version"]), reverse=True)}
