"""Every answered request feeds the platform: its photos and a sidecar go into the upload zone under
the upload contract (the upload sensor ingests them like any upload), and a reviewer's feedback
becomes a review CSV in ``uploads/reviews/`` (the review sensor turns it into a gold label).

Keys are built from the server-made request id and the sniffed format only (``safe_key`` checks them
again); the caller's ``coin_id`` and ``user_id`` are data in the sidecar, never names.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime

from coin_assets.core.storage import LocalStore, ObjectStore, S3Store, safe_key
from coin_assets.core.uploads import REVIEW_PREFIX, UPLOAD_PREFIX
from coin_assets.serving.inputs import PreparedPhoto
from coin_assets.settings import Settings

SOURCE = "api"


def object_store(settings: Settings) -> ObjectStore:
    """The same store the Dagster resources use: the local data root or the S3 bucket."""
    if settings.s3_bucket:
        import boto3

        client = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region)
        return S3Store(client, settings.s3_bucket, settings.s3_prefix)
    return LocalStore(settings.data_dir)


def coin_id_for(request_id: str) -> str:
    return f"api-{request_id}"


def write_upload(store: ObjectStore, request_id: str, created_at: datetime, photos: list[PreparedPhoto],
                 user_id: str | None, client_coin_id: str | None) -> dict[str, str]:
    """Photos first, sidecar last (each written atomically); returns the keys written."""
    day = created_at.date().isoformat()
    coin = coin_id_for(request_id)
    keys = {}
    for photo in photos:
        key = safe_key(UPLOAD_PREFIX, day, f"{coin}__{photo.side}.{photo.extension}")
        store.write_bytes(key, photo.data)
        keys[photo.side] = key
    sidecar = {"user_id": user_id, "request_id": request_id, "source": SOURCE,
               "uploaded_at": created_at.isoformat(), "client_coin_id": client_coin_id}
    keys["sidecar"] = safe_key(UPLOAD_PREFIX, day, f"{coin}.json")
    store.write_bytes(keys["sidecar"], json.dumps({k: v for k, v in sidecar.items() if v is not None}).encode())
    return keys


def write_review_verdict(store: ObjectStore, request_id: str, feedback_id: int, year: int, reviewer: str,
                         reviewed_at: datetime) -> str:
    """One reviewer verdict as a review CSV (``coin_id,year,reviewer,reviewed_at``) for review_sensor."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["coin_id", "year", "reviewer", "reviewed_at"])
    writer.writerow([coin_id_for(request_id), year, reviewer, reviewed_at.isoformat()])
    key = safe_key(REVIEW_PREFIX, f"api-feedback-{request_id}-{feedback_id}.csv")
    store.write_bytes(key, buf.getvalue().encode())
    return key
