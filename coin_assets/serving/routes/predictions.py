"""One logged request: GET /predictions/{request_id} (the request and its answer) and
POST /predictions/{request_id}/feedback (the true year, from an identified user or reviewer)."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from coin_assets.core.clock import utcnow
from coin_assets.core.storage import ObjectStore
from coin_assets.serving.auth import Caller
from coin_assets.serving.deps import CallerDep, MetricsDep, StoreDep, UploadsDep
from coin_assets.serving.errors import MALFORMED_BODY, VALIDATION, WWW_AUTHENTICATE, error, error_responses
from coin_assets.serving.inputs import BadInput
from coin_assets.serving.request_log import coin_id_for, write_review_verdict
from coin_assets.serving.schemas import Feedback, FeedbackSaved
from coin_assets.serving.store import RequestStore

router = APIRouter()
REQUEST_FIELDS = ("request_id", "created_at", "status", "mode", "user_id", "client_coin_id", "model_name",
                  "model_version", "outcome", "error", "latency_ms", "completed_at")


@router.get("/predictions/{request_id}", summary="A logged request and its answer",
            responses=error_responses({404: "no such request (or not a request id)", 422: VALIDATION}))
async def get_prediction(request_id: str, store: StoreDep):
    rid = _request_uuid(request_id)
    row = await run_in_threadpool(store.get_request, rid)
    if row is None:
        return error(404, "not_found", f"no request {rid}")
    result = await run_in_threadpool(store.get_result, rid)
    return {**{k: _jsonable(row[k]) for k in REQUEST_FIELDS},
            "result": {k: _jsonable(v) for k, v in result.items() if k not in ("id", "request_id")} if result else None}


@router.post("/predictions/{request_id}/feedback", status_code=201, summary="The true year of a predicted coin",
             response_model=FeedbackSaved,
             responses=error_responses({400: MALFORMED_BODY,
                                        401: "no or unknown token (a user or reviewer token is needed)",
                                        404: "no such request (or not a request id)", 422: VALIDATION},
                                       headers={401: WWW_AUTHENTICATE}))
async def post_feedback(request_id: str, body: Feedback, caller: CallerDep, store: StoreDep, uploads: UploadsDep,
                        metrics: MetricsDep):
    if caller is None:
        return error(401, "unauthorized", "feedback needs an identified caller: send 'Authorization: Bearer "
                                          "<token>' with a user or reviewer token",
                     {"WWW-Authenticate": "Bearer"})
    rid = _request_uuid(request_id)
    row = await run_in_threadpool(store.get_request, rid)
    if row is None:
        return error(404, "not_found", f"no request {rid}")
    is_reviewer = caller.role == "reviewer"
    saved = await run_in_threadpool(_record_feedback, store, uploads, rid, body, caller, utcnow())
    metrics.feedback.labels(role=caller.role).inc()
    return JSONResponse({"request_id": rid, "feedback_id": saved["feedback_id"], "sender": caller.name,
                         "role": caller.role,
                         "status": "label_submitted" if is_reviewer else "awaiting_review",
                         "coin_id": coin_id_for(rid)}, status_code=201)


def _record_feedback(store: RequestStore, uploads: ObjectStore, rid: str, body: Feedback, caller: Caller,
                     now: datetime) -> dict:
    """The feedback row; a reviewer's verdict also goes to the upload zone (a label) and its key on the row."""
    is_reviewer = caller.role == "reviewer"
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


def _request_uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise BadInput("request_id must be a UUID returned by /predict", 404, "not_found") from None


def _jsonable(value):
    return value.isoformat() if isinstance(value, datetime) else value
