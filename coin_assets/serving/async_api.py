"""DB-first asynchronous predictions: the API stores a request and answers 202; a worker scores it.

Routes (the module-level ``router``, which ``create_app`` includes; the store, the upload zone, the
settings and the model holder come from the dependencies of :mod:`coin_assets.serving.deps`):

- ``POST /predictions/requests``: front + back (multipart, optional ``user_id``/``coin_id``) → 202
  ``{request_id, status: pending}``. The photos are checked (sniffed and decoded by the silver code,
  size limit) and written to the upload zone under the upload contract; no inference here.
- ``POST /predictions/batch``: many coins at once: photos named ``<coin_id>__front|back.<ext>``
  and/or zips of them (field ``files``) → one request per complete coin, a ``batch_id``, and the
  files that could not be used with the reason.
- ``GET /predictions/batches/{batch_id}``: progress and the results of a batch.
- ``GET /predictions/history``: paging and filters (user, status, day, model version, batch, mode).
- ``GET /predictions/{request_id}`` (the serving app's route) gives the status and the result; this
  router is included before it, so ``/predictions/history`` is not read as a request id.
- ``GET /predictions/{request_id}/inputs/{side}``: the photo as the model sees it (cropped,
  letterboxed, resized) as a PNG, so people can check what was scored.
"""

from __future__ import annotations

import io
import re
import uuid
import zipfile
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import PurePosixPath
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, HTTPException, Query, UploadFile
from fastapi.responses import JSONResponse, Response
from pydantic import BeforeValidator
from sqlalchemy import func, insert, select

from coin_assets.core.clock import utcnow
from coin_assets.core.images import ImageRejected, clean_image
from coin_assets.core.storage import ObjectStore
from coin_assets.core.uploads import IMAGE_EXTENSIONS, SIDE_ALIASES
from coin_assets.ml.data import decode_letterboxed
from coin_assets.serving.deps import HolderDep, SettingsDep, StoreDep, UploadsDep
from coin_assets.serving.errors import MALFORMED_BODY, VALIDATION, error_responses
from coin_assets.serving.inputs import (
    SIDES,
    BadInput,
    PreparedPhoto,
    check_photo,
    clean_text_field,
    read_limited,
)
from coin_assets.serving.model_holder import ModelHolder
from coin_assets.serving.queue import ASYNC, batch_requests
from coin_assets.serving.request_log import coin_id_for, write_upload
from coin_assets.serving.store import COMPLETED, FAILED, PENDING, RequestStore, requests, results

MAX_BATCH_COINS = 1000
MAX_ZIP_ENTRIES = 2 * MAX_BATCH_COINS + 100
MAX_PAGE_SIZE = 200
MAX_PAGE = 1_000_000  # the row offset stays a small integer for every database
DEFAULT_INPUT_SIZE = 224
_BATCH_NAME = re.compile(r"^(?P<coin>[^/\\]+?)__(?P<side>[A-Za-z]+)(?P<ext>\.[A-Za-z0-9]+)$")
_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_day(value):
    """A day as the document declares it (``format: date``, YYYY-MM-DD), not pydantic's lax reading
    (which takes ``0`` for 1970-01-01)."""
    if isinstance(value, str) and not _ISO_DAY.fullmatch(value):
        raise ValueError("a day is written YYYY-MM-DD")
    return value


IsoDay = Annotated[date, BeforeValidator(_iso_day)]
RESULT_FIELDS = ("year", "sigma", "lower_90", "upper_90", "needs_review", "unreadable", "model_name",
                 "model_version")


# ---------------------------------------------------------------------------------------- checks


@dataclass
class BatchCoin:
    coin_id: str
    front: tuple[str, bytes] | None = None
    back: tuple[str, bytes] | None = None


def coins_from_files(files: list[tuple[str, bytes]], max_photo_bytes: int) -> tuple[list[BatchCoin], list[dict]]:
    """Photos and zips → complete coins (in first-seen order) and the files refused, with reasons.

    Only the base name of a file (or zip entry) is looked at, to read ``<coin_id>__<side>``: it is
    never used as a path. Zip entries are checked against the size limit before they are read."""
    coins: dict[str, BatchCoin] = {}
    rejected: list[dict] = []

    def add(name: str, data: bytes) -> None:
        base = PurePosixPath(name.replace("\\", "/")).name
        match = _BATCH_NAME.match(base)
        if not match or match["side"].lower() not in SIDE_ALIASES:
            rejected.append({"name": base, "reason": "name does not follow <coin_id>__front|back.<ext>"})
            return
        if match["ext"].lower() not in IMAGE_EXTENSIONS:
            rejected.append({"name": base, "reason": f"unsupported file type {match['ext']!r}"})
            return
        coin = coins.setdefault(match["coin"], BatchCoin(match["coin"]))
        side = SIDE_ALIASES[match["side"].lower()]
        if getattr(coin, side) is not None:
            rejected.append({"name": base, "reason": f"a second {side} photo for coin {coin.coin_id!r}"})
            return
        setattr(coin, side, (base, data))

    for name, data in files:
        if data[:4] == b"PK\x03\x04":
            try:
                archive = zipfile.ZipFile(io.BytesIO(data))
                entries = [i for i in archive.infolist() if not i.is_dir()]
            except zipfile.BadZipFile as err:
                rejected.append({"name": name, "reason": f"not a readable zip: {err}"})
                continue
            if len(entries) > MAX_ZIP_ENTRIES:
                rejected.append({"name": name, "reason": f"zip has {len(entries)} files; at most {MAX_ZIP_ENTRIES}"})
                continue
            for info in entries:
                base = PurePosixPath(info.filename).name
                if base.startswith(".") or info.filename.startswith("__MACOSX/"):
                    continue
                if info.file_size > max_photo_bytes:
                    rejected.append({"name": base, "reason": f"over the size limit of {max_photo_bytes} bytes"})
                    continue
                try:
                    with archive.open(info) as fh:
                        content = fh.read(max_photo_bytes + 1)
                except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as err:
                    rejected.append({"name": base, "reason": f"cannot be read from the zip: {err}"})
                    continue
                if len(content) > max_photo_bytes:  # the header lied about the size
                    rejected.append({"name": base, "reason": f"over the size limit of {max_photo_bytes} bytes"})
                    continue
                add(base, content)
        else:
            add(name, data)
    complete = []
    for coin in coins.values():
        if coin.front and coin.back:
            complete.append(coin)
        else:
            missing = "back" if coin.front else "front"
            rejected.append({"name": coin.coin_id, "reason": f"coin {coin.coin_id!r} has no {missing} photo"})
    return complete, rejected


# ---------------------------------------------------------------------------------------- reads
def _utc(value):
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).isoformat()
    return value


def request_view(row: dict, result: dict | None, batch_id: str | None = None) -> dict:
    out = {
        "request_id": row["request_id"], "status": row["status"], "mode": row["mode"],
        "created_at": _utc(row["created_at"]), "completed_at": _utc(row.get("completed_at")),
        "user_id": row.get("user_id"), "coin_id": row.get("client_coin_id"), "batch_id": batch_id,
        "attempts": row.get("attempts"), "error": row.get("error"), "outcome": row.get("outcome"),
        "model_name": row.get("model_name"), "model_version": row.get("model_version"),
        "result": None,
    }
    if result is not None and result.get("year") is not None:
        out["result"] = {k: result.get(k) for k in RESULT_FIELDS}
    return out


_JOINED = (select(requests, *[results.c[k].label(f"r_{k}") for k in RESULT_FIELDS], batch_requests.c.batch_id)
           .select_from(requests.outerjoin(results, results.c.request_id == requests.c.request_id)
                        .outerjoin(batch_requests, batch_requests.c.request_id == requests.c.request_id)))


def _views(conn, query) -> list[dict]:
    out = []
    for row in conn.execute(query).mappings():
        row = dict(row)
        result = {k: row.pop(f"r_{k}") for k in RESULT_FIELDS}
        out.append(request_view(row, result, row.pop("batch_id")))
    return out


def history(store: RequestStore, *, user_id=None, status=None, day=None, model_version=None, batch_id=None,
            mode=None, page: int = 1, page_size: int = 50) -> dict:
    conditions = []
    if user_id:
        conditions.append(requests.c.user_id == user_id)
    if status:
        conditions.append(requests.c.status == status)
    if model_version:
        conditions.append(requests.c.model_version == str(model_version))
    if mode:
        conditions.append(requests.c.mode == mode)
    if batch_id:
        conditions.append(batch_requests.c.batch_id == batch_id)
    if day:
        start = datetime.combine(day, time(0), tzinfo=timezone.utc)
        conditions.append(requests.c.created_at >= start)
        if day < date.max:  # the day after 9999-12-31 is no date
            conditions.append(requests.c.created_at < start + timedelta(days=1))
    query = _JOINED.where(*conditions)
    count = select(func.count()).select_from(query.subquery())
    with store.engine.connect() as conn:
        total = conn.execute(count).scalar_one()
        items = _views(conn, query.order_by(requests.c.id.desc()).limit(page_size).offset((page - 1) * page_size))
    return {"items": items, "total": total, "page": page, "page_size": page_size}


def batch_view(store: RequestStore, batch_id: str) -> dict | None:
    query = _JOINED.where(batch_requests.c.batch_id == batch_id).order_by(batch_requests.c.position)
    with store.engine.connect() as conn:
        items = _views(conn, query)
    if not items:
        return None
    counts: dict[str, int] = {}
    for item in items:
        counts[item["status"]] = counts.get(item["status"], 0) + 1
    done = counts.get(COMPLETED, 0) + counts.get(FAILED, 0)
    return {"batch_id": batch_id, "total": len(items), "done": done, "counts": counts, "items": items}


# ---------------------------------------------------------------------------------------- router
router = APIRouter(tags=["asynchronous predictions"])


def require_model(holder: ModelHolder) -> None:
    """Refuse (503) while no production model is loaded: nothing is queued that nothing could score."""
    if holder.current is None:
        reason = holder.state.last_error or "no production model loaded yet"
        raise BadInput(f"not ready: {reason}", 503, "not_ready")


def enqueue(store: RequestStore, objects: ObjectStore, coins: list[tuple[dict[str, PreparedPhoto], str | None]],
            user_id: str | None, batch_id: str | None) -> list[str]:
    """Photos to the upload zone first, then the request rows in one transaction: a crash in
    between leaves uploads without a request (ingested like any upload), never a request
    without its photos."""
    now = utcnow()
    rows, links = [], []
    for position, (photos, client_coin_id) in enumerate(coins):
        request_id = str(uuid.uuid4())
        keys = write_upload(objects, request_id, now, [photos["front"], photos["back"]], user_id, client_coin_id)
        rows.append({
            "request_id": request_id, "created_at": now, "status": PENDING, "mode": ASYNC, "source": "api",
            "user_id": user_id, "client_coin_id": client_coin_id, "coin_id": coin_id_for(request_id),
            "front_sha256": photos["front"].sha256, "back_sha256": photos["back"].sha256,
            "front_key": keys["front"], "back_key": keys["back"], "sidecar_key": keys["sidecar"], "attempts": 0,
        })
        if batch_id:
            links.append({"request_id": request_id, "batch_id": batch_id, "position": position})
    with store.session() as s:
        s.execute(insert(requests), rows)
        if links:
            s.execute(insert(batch_requests), links)
    return [r["request_id"] for r in rows]


@router.post("/predictions/requests", status_code=202, summary="Queue one coin (front + back)",
             responses=error_responses({
                 400: MALFORMED_BODY,
                 413: "a photo over the size limit",
                 422: "bad input: a missing side, an empty file, not an image, truncated, too many pixels, "
                      "a text field that is not short printable text",
                 503: "no production model loaded yet"}))
async def submit(settings: SettingsDep, store: StoreDep, objects: UploadsDep, holder: HolderDep,
                 front: UploadFile = File(...), back: UploadFile = File(...),
                 user_id: str | None = Form(None), coin_id: str | None = Form(None)) -> JSONResponse:
    require_model(holder)
    limit = settings.max_photo_bytes
    user_id, coin_id = clean_text_field("user_id", user_id), clean_text_field("coin_id", coin_id)
    photos = {}
    for side, upload in (("front", front), ("back", back)):
        photos[side] = check_photo(side, await read_limited(upload, side, limit), limit)
    (request_id,) = enqueue(store, objects, [(photos, coin_id)], user_id, None)
    return JSONResponse({"request_id": request_id, "status": PENDING, "url": f"/predictions/{request_id}"},
                        status_code=202)


@router.post("/predictions/batch", status_code=202, summary="Queue many coins: pairs or zips",
             responses=error_responses({
                 400: MALFORMED_BODY,
                 413: "a photo or zip over the size limit, or more than 1000 coins",
                 422: "no usable coin in the batch (the reasons per file in detail), or no files",
                 503: "no production model loaded yet"}))
async def submit_batch(settings: SettingsDep, store: StoreDep, objects: UploadsDep, holder: HolderDep,
                       files: list[UploadFile] = File(..., min_length=1), user_id: str | None = Form(None)
                       ) -> JSONResponse:
    require_model(holder)
    limit = settings.max_photo_bytes
    user_id = clean_text_field("user_id", user_id)
    raw = []
    for upload in files:
        name = upload.filename or "unnamed"
        size_cap = limit * 2 * MAX_BATCH_COINS if name.lower().endswith(".zip") else limit
        raw.append((name, await read_limited(upload, name, size_cap)))
    complete, rejected = coins_from_files(raw, limit)
    if len(complete) > MAX_BATCH_COINS:
        raise BadInput(f"{len(complete)} coins in one batch; at most {MAX_BATCH_COINS}", 413, "too_many")
    accepted = []
    for coin in complete:
        try:
            photos = {side: check_photo(side, getattr(coin, side)[1], limit) for side in SIDES}
        except BadInput as err:
            rejected.append({"name": coin.coin_id, "reason": err.message})
            continue
        accepted.append((photos, coin.coin_id))
    if not accepted:
        raise BadInput("no usable coin in this batch: " + "; ".join(f"{r['name']}: {r['reason']}"
                                                                     for r in rejected[:10]))
    batch_id = str(uuid.uuid4())
    ids = enqueue(store, objects, accepted, user_id, batch_id)
    return JSONResponse({"batch_id": batch_id, "request_ids": ids, "coins": [c for _, c in accepted],
                         "rejected": rejected, "url": f"/predictions/batches/{batch_id}"}, status_code=202)


@router.get("/predictions/batches/{batch_id}", summary="Progress and results of a batch",
            responses=error_responses({404: "no such batch", 422: VALIDATION}))
def get_batch(batch_id: str, store: StoreDep) -> dict:
    view = batch_view(store, batch_id)
    if view is None:
        raise HTTPException(404, detail=f"no batch {batch_id!r}")
    return view


@router.get("/predictions/history", summary="Requests, newest first, with filters",
            responses=error_responses({422: VALIDATION}))
def get_history(store: StoreDep, user_id: str | None = None,
                status: Literal["pending", "claimed", "completed", "failed"] | None = None,
                day: IsoDay | None = None, model_version: str | None = None, batch_id: str | None = None,
                mode: Literal["sync", "async"] | None = None, page: int = Query(1, ge=1, le=MAX_PAGE),
                page_size: int = Query(50, ge=1, le=MAX_PAGE_SIZE)) -> dict:
    return history(store, user_id=user_id, status=status, day=day, model_version=model_version,
                   batch_id=batch_id, mode=mode, page=page, page_size=page_size)


@router.get("/predictions/{request_id}/inputs/{side}", summary="The photo as the model sees it (PNG)",
            response_class=Response, responses={
                200: {"content": {"image/png": {}}},
                **error_responses({404: "no such request or side, or its photo is no longer stored",
                                   422: "the stored photo cannot be decoded, or " + VALIDATION})})
def get_input(request_id: str, side: str, store: StoreDep, objects: UploadsDep, holder: HolderDep) -> Response:
    if side not in SIDES:
        raise HTTPException(404, detail=f"side must be one of {list(SIDES)}")
    row = store.get_request(request_id)
    if row is None:
        raise HTTPException(404, detail=f"no request {request_id!r}")
    key = row.get(f"{side}_key")
    if not key:
        raise HTTPException(404, detail=f"request {request_id} has no stored {side} photo")
    try:
        data = objects.read_bytes(key)
    except (FileNotFoundError, OSError) as err:
        raise HTTPException(404, detail=f"the {side} photo is no longer in the upload zone: {err}") from None
    current = holder.current
    size = current.image_size if current is not None else DEFAULT_INPUT_SIZE
    try:
        img = decode_letterboxed(clean_image(data).data, size)
    except ImageRejected as err:
        raise HTTPException(422, detail=f"{side}: {err}") from None
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return Response(buf.getvalue(), media_type="image/png", headers={"Cache-Control": "max-age=3600"})
