"""Whether a day's ingestion has anything to do, decided before any step runs.

A run of the ingestion chain (bronze → decode → silver → gold → coin crops) records, when every step of it
ran in that same run, a fingerprint of the day: its settled uploads (key, size, mtime, regular file), every
file of the day under the lake's layers (key, size, mtime), its rows in the ingestion tables, and the
inputs gold was built from (which also follow review verdicts, predictions and later re-uploads of the
day's coins). The next run computes the same fingerprint first; when it is equal, nothing any step would
read has changed since a complete run, so the whole chain is skipped. Any difference (a new or changed
upload, a file deleted or changed in the lake, a row removed, a new verdict) and the chain runs and repairs.

Each part is taken when the step that consumed it ran (the uploads when bronze listed them, gold's inputs
when gold wrote), so a change made by another run while this one was in flight is never recorded as done.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from coin_assets.core import metadata as md
from coin_assets.core.archive import ARCHIVE_PREFIX
from coin_assets.core.crops import CROP_SIZE
from coin_assets.core.images import JPEG_QUALITY, MAX_FILE_BYTES, MAX_PIXELS, MAX_SIDE
from coin_assets.core.storage import ObjectStore
from coin_assets.core.uploads import MAX_SIDECAR_BYTES, UploadFile, list_uploads

# What the steps make of the same inputs: a change here re-runs every day once.
RECIPE = json.dumps({"max_side": MAX_SIDE, "jpeg_quality": JPEG_QUALITY, "max_pixels": MAX_PIXELS,
                     "max_file_bytes": MAX_FILE_BYTES, "max_sidecar_bytes": MAX_SIDECAR_BYTES,
                     "crop_size": CROP_SIZE, "version": 1}, sort_keys=True)
LAKE_PREFIXES = ("bronze", f"{ARCHIVE_PREFIX}/bronze", "staging/silver", "silver", "gold", "crops")


def _sha(lines) -> str:
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode("utf-8", "surrogateescape"))  # a file someone put in the lake by hand
        digest.update(b"\n")
    return digest.hexdigest()


def uploads_digest(files: list[UploadFile]) -> str:
    """The settled uploads of a day, as bronze listed them."""
    return _sha(sorted(f"{f.key}\0{f.size}\0{f.modified.timestamp():.6f}\0{f.problem or ''}" for f in files))


def lake_digest(store: ObjectStore, partition: str) -> str:
    """Every file of the day under the lake's layers."""
    return _sha(f"{obj.key}\0{obj.size}\0{obj.modified.timestamp():.6f}\0{obj.regular}"
                for prefix in LAKE_PREFIXES for obj in store.list(f"{prefix}/{partition}"))


def gold_inputs_digest(conn, partition: str) -> str:
    """What gold would be built from now (labels, predictions and later uploads included)."""
    frame = md.gold_candidates(conn, partition)
    return _sha([json.dumps(list(frame.columns)), *map(str, pd.util.hash_pandas_object(frame, index=False))])


def rows_digest(conn, partition: str) -> str:
    return _sha([json.dumps(md.ingestion_rows_by_day(conn, partition), sort_keys=True, default=str)])


def fingerprint(uploads: str, gold_inputs: str, lake: str, rows: str) -> str:
    return _sha([RECIPE, uploads, gold_inputs, lake, rows])


@dataclass(frozen=True)
class DayCheck:
    up_to_date: bool
    files: list[UploadFile]  # the day's settled uploads, listed once for the check and for bronze
    uploads: str  # their digest: recorded by start_chain when the chain runs
    reason: str
    # a chain of this day started and never completed (a crash, a kill, a failed step): what bronze
    # finishes after its rows (the sidecars' fields on their coins' rows) may be missing
    last_chain_incomplete: bool = False


def check_day(store: ObjectStore, conn, partition: str, settle_seconds: float = 0.0,
              now: datetime | None = None) -> DayCheck:
    """Compare the day as it is now with the record of the last complete chain."""
    md.ensure_schema(conn)
    files = list_uploads(store, partition, now=now, settle_seconds=settle_seconds)
    uploads = uploads_digest(files)
    recorded = md.ingest_state(conn, partition)
    if recorded is None:
        return DayCheck(False, files, uploads, "no ingestion of this day is recorded")
    if recorded["complete_fingerprint"] is None:
        return DayCheck(False, files, uploads, f"run {recorded['run_id']} started this day's ingestion and did not "
                                               "complete it", last_chain_incomplete=True)
    current = fingerprint(uploads, gold_inputs_digest(conn, partition), lake_digest(store, partition),
                          rows_digest(conn, partition))
    if current != recorded["complete_fingerprint"]:
        return DayCheck(False, files, uploads, "uploads, lake files, rows or labels changed since the last complete run")
    return DayCheck(True, files, uploads, f"nothing changed since run {recorded['completed_by']} ingested it "
                                          f"completely ({recorded['completed_at']})")


def start_chain(conn, partition: str, run_id: str, check: DayCheck) -> None:
    """Bronze is about to run: forget the last record (a crash from here on leaves the day to be re-run)."""
    md.set_ingest_state(conn, partition, run_id=run_id, uploads_digest=check.uploads, gold_inputs_digest=None,
                        complete_fingerprint=None, completed_by=None)


def gold_written(conn, partition: str, run_id: str) -> None:
    """Gold has just swapped the day's rows: record what it was built from, if this run started the chain."""
    recorded = md.ingest_state(conn, partition)
    if recorded and recorded["run_id"] == run_id:
        md.set_ingest_state(conn, partition, **{**recorded, "gold_inputs_digest": gold_inputs_digest(conn, partition)})


def complete_chain(store: ObjectStore, conn, partition: str, run_id: str) -> bool:
    """The chain's last step is done: record the day's fingerprint when every step ran in this run."""
    recorded = md.ingest_state(conn, partition)
    if not recorded or recorded["run_id"] != run_id or recorded["gold_inputs_digest"] is None:
        return False
    complete = fingerprint(recorded["uploads_digest"], recorded["gold_inputs_digest"],
                           lake_digest(store, partition), rows_digest(conn, partition))
    md.set_ingest_state(conn, partition, **{**recorded, "complete_fingerprint": complete, "completed_by": run_id})
    return True
