"""Bronze, silver and gold for one day, as plain functions over a store and a DuckDB connection.

Each function is idempotent: running it again for the same day gives the same files and rows.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from coin_assets.core import metadata as md
from coin_assets.core import staging
from coin_assets.core.audit import record_verified_bronze
from coin_assets.core.clock import utcnow
from coin_assets.core.decode_pool import POOL_MIN_IMAGES, WrittenImage, clean_many, start_decoders_early
from coin_assets.core.images import MAX_SIDE, ImageRejected
from coin_assets.core.parallel import default_workers
from coin_assets.core.storage import ObjectStore, UnsafeKeyError, stage_copy
from coin_assets.core.uploads import (
    IMAGE_EXTENSIONS,
    NEVER_READ,
    UploadFile,
    list_uploads,
    load_sidecar,
    path_safe_id,
)

BRONZE, SILVER, GOLD = "bronze", "silver", "gold"
SILVER_BATCH = 128  # silver rows per INSERT
BRONZE_BATCH = 256  # uploads copied, then looked up and recorded together
PAIRING = "pairing"  # quarantine stage of uploads that lost their coin side to another upload


@dataclass
class LayerReport:
    partition: str
    processed: int = 0  # files newly written by this run
    skipped: int = 0  # already done with the same checksum
    quarantined: int = 0
    duplicates: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)
    extra: dict[str, int] = field(default_factory=dict)
    other_days: set[str] = field(default_factory=set)  # earlier days whose rows this run changed (a coin that moved)

    def quarantine(self, reason: str) -> None:
        self.quarantined += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


def _bronze_extension(name: str) -> str:
    ext = "." + name.lower().rsplit(".", 1)[-1] if "." in name else ""
    return ext if ext in IMAGE_EXTENSIONS | {".json"} else ".bin"


def ingest_bronze(store: ObjectStore, conn, partition: str, settle_seconds: float = 0.0,
                  now: datetime | None = None, files: list[UploadFile] | None = None,
                  reread_sidecars: bool = False) -> LayerReport:
    """Copy the day's settled uploads byte for byte into ``bronze/<day>/<sha256><ext>``.

    Only files unmodified for ``settle_seconds`` are taken (a file still being written is left for
    a later run; a later complete version of an upload replaces its record and its bronze bytes).
    Byte-identical uploads of the same kind are stored once; later copies point at the first
    (``duplicate_of``). Sidecars are kept in bronze too; their fields fill the image rows of the same
    coin. Crash leftovers (``.tmp-*``) and bronze files no ledger row points to are removed first.
    Links and special files are quarantined and never read. ``files``: the day's settled uploads when
    the caller has listed them already. ``reread_sidecars``: read every recorded sidecar again and put its
    fields on its coin's rows, for a day whose last run stopped between writing rows and applying
    sidecars (its sidecars are recorded, so they look unchanged).
    """
    started = time.perf_counter()
    md.ensure_schema(conn)
    report = LayerReport(partition)
    report.extra["leftovers_removed"] = remove_unreferenced_bronze(store, conn, partition)
    present = {obj.key for obj in store.list(f"bronze/{partition}")}  # one listing, not a stat per upload
    if files is None:
        files = list_uploads(store, partition, now=now, settle_seconds=settle_seconds)
    known = md.known_uploads(conn, partition)
    unchanged = {f.key for f in files if _unchanged(store, f, known.get(f.key))}
    md.clear_quarantine(conn, partition, BRONZE)
    # an unchanged sidecar keeps its recorded problems unless it is read again below
    md.clear_quarantine(conn, partition, "sidecar", keep_keys=[f.key for f in files if f.key in unchanged])
    sidecars = {}
    unread_sidecars = {}
    changed_coins = set()
    changed = []
    for f in files:
        if f.problem in NEVER_READ:
            md.record_quarantine(conn, f.key, BRONZE, partition, f.problem)
            report.quarantine(f.problem)
            continue
        if f.key in unchanged:
            report.skipped += 1  # same key, size and mtime: the recorded checksum stands
            size_mtime_path = known[f.key]
            if f.kind == "other":
                md.record_quarantine(conn, f.key, BRONZE, partition, f.problem, size_mtime_path[2], size_mtime_path[3])
                report.quarantine(f.problem)
            elif f.kind == "sidecar":
                unread_sidecars[f.coin_id] = (f, size_mtime_path[2])
            continue
        if f.kind == "image":
            changed_coins.add(f.coin_id)
        changed.append(f)
    # Changed files in chunks: copy and hash each once, look their checksums up in one query, write
    # their ledger rows in one statement. The rows of files changed in this run are stale in the
    # ledger, so they never count as the first copy; the first copy seen in this run does.
    changed_keys = {f.key for f in changed}
    if sum(f.kind == "image" for f in changed) >= POOL_MIN_IMAGES:
        start_decoders_early()  # overlaps the decode pool's start-up with this copy
    first_this_run: dict[tuple[str, str], tuple[str, str]] = {}
    hashed: dict[str, str] = {}  # bronze key → sha256 of the bytes as they were written there

    def stage(f):
        try:
            return f, stage_copy(store, f.key, f"bronze/{partition}"), None
        except (UnsafeKeyError, OSError) as err:
            return f, None, err

    # Reading, hashing and writing release the GIL: a thread per core copies several uploads at once,
    # one batch ahead of the batch whose rows this thread is writing.
    batches = [changed[start:start + BRONZE_BATCH] for start in range(0, len(changed), BRONZE_BATCH)]
    with ThreadPoolExecutor(max_workers=default_workers(), thread_name_prefix="bronze_copy") as copier:
        copying = [copier.submit(stage, f) for f in batches[0]] if batches else []
        for number in range(len(batches)):
            copied = [future.result() for future in copying]
            copying = [copier.submit(stage, f) for f in batches[number + 1]] if number + 1 < len(batches) else []
            staged = []
            for f, copy, err in copied:
                if copy is not None:
                    staged.append((f, copy))
                    continue
                # e.g. a backslash in the name, or a symlink out of the data root: refused, never read
                reason = f"upload cannot be read safely: {err}"
                md.record_quarantine(conn, f.key, BRONZE, partition, reason)
                report.quarantine(reason.split(":")[0])
            earlier = md.first_uploads_with_shas(conn, [c.sha256 for _, c in staged], changed_keys)
            rows = []
            for f, copy in staged:
                with copy:
                    sha, size = copy.sha256, copy.size
                    if f.kind == "sidecar":
                        sidecars[f.coin_id] = (f, load_sidecar(size, copy.read))
                    first = earlier.get((f.kind, sha)) or first_this_run.get((f.kind, sha))
                    if first:
                        duplicate_of, bronze_path = first
                        report.duplicates += 1
                    else:
                        duplicate_of = None
                        bronze_path = f"bronze/{partition}/{sha}{_bronze_extension(f.name)}"
                        first_this_run[(f.kind, sha)] = (f.key, bronze_path)
                        if bronze_path in present:
                            report.skipped += 1
                        else:
                            copy.place(bronze_path)
                            present.add(bronze_path)
                            hashed[bronze_path] = sha
                            report.processed += 1
                            report.bytes_written += size
                rows.append(dict(
                    upload_key=f.key, partition_date=partition, kind=f.kind, coin_id=f.coin_id, side=f.side,
                    raw_name=f.name, raw_size=size, sha256=sha, bronze_path=bronze_path, duplicate_of=duplicate_of,
                    user_id=None, uploaded_at=f.modified, ingested_at=utcnow(), label_year=None, label_note=None,
                    source_modified=f.modified,
                ))
                if f.kind == "other":
                    md.record_quarantine(conn, f.key, BRONZE, partition, f.problem, bronze_path, sha)
                    report.quarantine(f.problem)
            md.upsert_uploads(conn, rows)
    record_verified_bronze(store, partition, hashed)
    # An unchanged sidecar is read again only when an image of its coin changed (its row was reset), or
    # when the last run may have stopped before applying it.
    for coin_id in sorted((set(unread_sidecars) if reread_sidecars else changed_coins & set(unread_sidecars))
                          - set(sidecars)):
        f, bronze_path = unread_sidecars[coin_id]
        sidecars[coin_id] = (f, load_sidecar(f.size, partial(store.read_bytes, bronze_path)))
    # Sidecar fields onto the coin's image rows (after all rows exist, whatever the listing order).
    applicable = []
    for coin_id, (f, sidecar) in sidecars.items():
        problems = list(sidecar.problems)
        if sidecar.coin_id is not None and sidecar.coin_id != coin_id:
            problems.append(f"sidecar coin_id {sidecar.coin_id!r} disagrees with its file name {f.name!r}; "
                            "its fields are not used")
        if problems:
            reason = "; ".join(problems)
            md.record_quarantine(conn, f.key, "sidecar", partition, reason)
            report.quarantine(reason.split(":")[0] if len(sidecar.problems) else reason.split(";")[0])
        if sidecar.coin_id is None or sidecar.coin_id == coin_id:
            applicable.append((coin_id, sidecar))
    md.apply_sidecars(conn, partition, applicable)
    report.extra.update(files=len(files), sidecars=len(sidecars) + len(set(unread_sidecars) - set(sidecars)))
    report.extra["leftovers_removed"] += remove_unreferenced_bronze(store, conn, partition)
    report.seconds = time.perf_counter() - started
    return report


def _unchanged(store: ObjectStore, f, recorded: tuple | None) -> bool:
    """Same key, size and mtime as recorded, and the bronze bytes still there."""
    return bool(recorded and recorded[0] == f.size and recorded[1] is not None
                and abs(recorded[1].timestamp() - f.modified.timestamp()) < 1e-6
                and f.problem not in NEVER_READ and store.exists(recorded[2]))


def remove_unreferenced_bronze(store: ObjectStore, conn, partition: str) -> int:
    """Delete ``bronze/<day>/`` files that no ledger row points to: ``.tmp-*`` left by a crash during
    a copy, bytes of an upload since replaced by a newer version. Returns how many were removed."""
    md.ensure_schema(conn)
    prefix = f"bronze/{partition}"
    listed = [obj.key for obj in store.list(prefix)]
    return _remove_orphans(store, prefix, md.bronze_paths_of_files(conn, listed), listed)


STAGING = "staging/silver"  # decoded files waiting for the writer: staging/silver/<day>/<sha256>.jpg
_DECODED = "decoded"  # staged results: staging/silver/<day>/decoded-<chunk>-of-<chunks>.json


def staging_prefix(partition: str) -> str:
    return f"{STAGING}/{partition}"


def _silver_todo(store: ObjectStore, conn, partition: str) -> tuple[list, int]:
    """(rows of the day's distinct images whose checksum has no silver file yet, how many have one)."""
    images = md.uploads_for_partition(conn, partition, kind="image")
    images = images[images["duplicate_of"].isna()]
    done = md.silver_paths_for_partition(conn, partition)
    listed = {o.key for o in store.list(f"silver/{partition}")}  # one listing, not a stat per file
    todo, skipped = [], 0
    for row in images.itertuples(index=False):
        path = done.get(row.sha256)
        if path and (path in listed or (not path.startswith(f"silver/{partition}/") and store.exists(path))):
            skipped += 1
        else:
            todo.append(row)
    return todo, skipped


def write_decode_plan(store: ObjectStore, conn, partition: str, max_side: int = MAX_SIDE) -> int:
    """The checksums the decode step must turn into clean JPEGs (``staging/silver/<day>/plan.json``),
    so that step needs no DuckDB connection (it may run on any worker). Returns how many."""
    todo, _ = _silver_todo(store, conn, partition)
    staging.write_plan(store, staging_prefix(partition), {
        "partition": partition, "max_side": max_side,
        "images": [{"sha256": r.sha256, "bronze_path": r.bronze_path} for r in todo]})
    return len(todo)


def decode_chunks(store: ObjectStore, partition: str, chunk_photos: int) -> int:
    """How many chunks the day's decode plan splits into (each a step of its own, on any worker)."""
    plan = staging.read_plan(store, staging_prefix(partition)) or {"images": []}
    return staging.chunk_count(len(plan["images"]), chunk_photos)


def _decoded_entry(sha: str, clean, key: str, max_side: int, size: int | None = None) -> dict:
    if isinstance(clean, ImageRejected):
        return {"sha256": sha, "max_side": max_side, "rejected": str(clean)}
    return {"sha256": sha, "max_side": max_side, "key": key, "clean_size": len(clean.data) if size is None else size,
            "clean_width": clean.width, "clean_height": clean.height, "raw_format": clean.raw_format,
            "raw_mode": clean.raw_mode, "raw_width": clean.raw_width, "raw_height": clean.raw_height,
            "exif_orientation": clean.exif_orientation, "notes": "; ".join(clean.notes) or None}


def decode_staged(store: ObjectStore, partition: str, workers: int | None = None, chunk: int = 0,
                  chunks: int = 1) -> LayerReport:
    """The CPU-heavy half of silver, with no DuckDB: decode chunk ``chunk`` of ``chunks`` of the day's
    decode plan into ``staging/silver/<day>/<sha256>.jpg`` on every core (bounded), and stage the
    results (clean sizes or the rejection reason) in ``decoded-<chunk>-of-<chunks>.json``. Entries
    staged earlier (an interrupted run, another chunking) whose file is there are reused.
    ``build_silver`` then only moves files and records rows."""
    started = time.perf_counter()
    report = LayerReport(partition)
    prefix = staging_prefix(partition)
    plan = staging.read_plan(store, prefix) or {"images": [], "max_side": MAX_SIDE}
    max_side = plan["max_side"]
    previous = staging.read_results(store, prefix, _DECODED, lambda e: e["sha256"])
    entries, todo = [], []
    for item in staging.chunk_of(plan["images"], chunk, chunks):
        old = previous.get(item["sha256"])
        if old and old["max_side"] == max_side and ("rejected" in old or store.exists(old["key"])):
            entries.append(old)
            report.skipped += 1
        elif store.exists(item["bronze_path"]):  # moved since the plan (archived): the writer decodes it
            todo.append((item["sha256"], item["bronze_path"]))
    for sha, clean in clean_many(store, todo, max_side, workers, stage_key=lambda sha: f"{prefix}/{sha}.jpg"):
        key, size = f"{prefix}/{sha}.jpg", None
        if isinstance(clean, ImageRejected):
            report.quarantine(str(clean).split(":")[0])
        else:
            if isinstance(clean, WrittenImage):  # a worker wrote it (a local store)
                key, size, clean = clean.key, clean.size, clean.image
            else:
                size = len(clean.data)
                try:
                    store.write_bytes(key, clean.data)
                except OSError:
                    key = None
            if key is None:
                continue  # e.g. the folder emptied by a concurrent writer step: the writer decodes it itself
            report.processed += 1
            report.bytes_written += size
        entries.append(_decoded_entry(sha, clean, key, max_side, size))
    staging.write_results(store, prefix, _DECODED, chunk, chunks, entries)
    report.seconds = time.perf_counter() - started
    return report


def build_silver(store: ObjectStore, conn, partition: str, max_side: int = MAX_SIDE,
                 workers: int | None = None) -> LayerReport:
    """Record every new checksum of the day in ``silver/<day>/<sha256>.jpg`` and ``silver_images``;
    quarantine failures.

    Checksums already in silver are skipped. What the decode step (``decode_staged``) left in
    ``staging/silver/<day>/`` is moved into place (a rename on a local store) and recorded; any
    checksum it did not decode (no decode step ran, a crash, a concurrent run) is decoded here on
    ``workers`` processes (default: every core), bounded. Rows are written in batches, each after its
    files (a crash leaves at most files without rows, which the next run removes). The day's staging
    folder is emptied at the end.
    """
    started = time.perf_counter()
    md.ensure_schema(conn)
    report = LayerReport(partition)
    md.clear_quarantine(conn, partition, SILVER)
    todo, report.skipped = _silver_todo(store, conn, partition)
    prefix = staging_prefix(partition)
    decoded = {sha: e for sha, e in staging.read_results(store, prefix, _DECODED, lambda e: e["sha256"]).items()
               if e.get("max_side") == max_side}
    batch: list[dict] = []

    def record(row, entry: dict, data: bytes | None) -> None:
        if "rejected" in entry:
            md.record_quarantine(conn, row.upload_key, SILVER, partition, entry["rejected"], row.bronze_path, row.sha256)
            report.quarantine(entry["rejected"].split(":")[0])
            return
        clean_name = f"{row.sha256}.jpg"
        clean_path = f"silver/{partition}/{clean_name}"
        if data is None:
            store.copy(entry["key"], clean_path)
        else:
            store.write_bytes(clean_path, data)
        batch.append(dict(
            sha256=row.sha256, partition_date=partition, bronze_path=row.bronze_path, clean_name=clean_name,
            clean_path=clean_path, clean_size=entry["clean_size"], clean_width=entry["clean_width"],
            clean_height=entry["clean_height"], raw_format=entry["raw_format"], raw_mode=entry["raw_mode"],
            raw_width=entry["raw_width"], raw_height=entry["raw_height"],
            exif_orientation=entry["exif_orientation"], notes=entry["notes"], processed_at=utcnow(),
        ))
        report.processed += 1
        report.bytes_written += entry["clean_size"]
        if len(batch) >= SILVER_BATCH:
            md.insert_silver_rows(conn, batch)
            batch.clear()

    missing = []
    for row in todo:
        entry = decoded.get(row.sha256)
        if entry is not None and ("rejected" in entry or store.exists(entry["key"])):
            record(row, entry, None)
        else:
            missing.append((row, row.bronze_path))
    report.extra["decoded_here"] = len(missing)
    for row, clean in clean_many(store, missing, max_side, workers):
        record(row, _decoded_entry(row.sha256, clean, "", max_side),
               None if isinstance(clean, ImageRejected) else clean.data)
    md.insert_silver_rows(conn, batch)
    for key, bronze_path, sha, first_key, reason in md.duplicates_of_quarantined(conn, partition):
        md.record_quarantine(conn, key, SILVER, partition,
                             f"same bytes as {first_key}, which is quarantined: {reason}", bronze_path, sha)
        report.quarantine("same bytes as a quarantined file")
    report.extra["superseded_removed"] = md.delete_superseded_silver(conn, partition)
    report.extra["orphans_removed"] = _remove_orphans(
        store, f"silver/{partition}", md.silver_paths_recorded(conn, partition))
    _remove_orphans(store, prefix, set())
    report.seconds = time.perf_counter() - started
    return report


def build_gold(store: ObjectStore, conn, partition: str):
    """Publish the day's clean coin images under ``gold/<day>/<coin>__<side>.jpg`` and swap the
    day's rows of the ``gold_images`` table. Returns (report, gold rows as a DataFrame)."""
    started = time.perf_counter()
    md.ensure_schema(conn)
    report = LayerReport(partition)
    md.clear_quarantine(conn, partition, PAIRING)
    for key, bronze_path, sha, coin_id, side, chosen in md.superseded_uploads(conn, partition):
        reason = f"another upload of coin {coin_id!r} side {side} was taken: {chosen}"
        md.record_quarantine(conn, key, PAIRING, partition, reason, bronze_path, sha)
        report.quarantine("another upload of the same coin side was taken")
    frame = md.gold_candidates(conn, partition)
    frame["gold_path"] = [
        f"gold/{partition}/{path_safe_id(coin)}__{side}.jpg" for coin, side in zip(frame.coin_id, frame.side, strict=True)
    ]
    published = {
        (coin, side): (sha, path) for coin, side, sha, path in conn.execute(
            "SELECT coin_id, side, sha256, gold_path FROM gold_images WHERE list_contains(?, coin_id)",
            [list(frame.coin_id.unique())],
        ).fetchall()
    }
    for row in frame.itertuples(index=False):
        before = published.get((row.coin_id, row.side))
        if before == (row.sha256, row.gold_path) and store.exists(row.gold_path):
            report.skipped += 1
            continue
        store.copy(row.clean_path, row.gold_path)
        report.processed += 1
        report.bytes_written += int(row.clean_size)
    md.replace_gold_partition(conn, partition, frame[[c for c in md.GOLD_COLUMNS if c in frame.columns]])
    for key in zip(frame.coin_id, frame.side, strict=True):  # a coin side that moved here from an earlier day
        old_path = published.get(key, (None, None))[1]
        if old_path and not old_path.startswith(f"gold/{partition}/"):
            store.delete(old_path)
            report.other_days.add(old_path.split("/")[1])
    report.extra["orphans_removed"] = _remove_orphans(store, f"gold/{partition}", set(frame.gold_path))
    pairs = frame.groupby("coin_id")["side"].nunique() if len(frame) else frame
    report.extra["coins"] = int(len(pairs))
    report.extra["paired_coins"] = int((pairs == 2).sum()) if len(frame) else 0
    report.extra["labelled_images"] = int(frame["label_year"].notna().sum()) if len(frame) else 0
    report.seconds = time.perf_counter() - started
    return report, frame




def _remove_orphans(store: ObjectStore, prefix: str, referenced: set[str], listed: list[str] | None = None) -> int:
    removed = 0
    for key in listed if listed is not None else [obj.key for obj in store.list(prefix)]:
        if key not in referenced:
            store.delete(key)
            removed += 1
    return removed
