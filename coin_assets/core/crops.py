"""Gold coin crops: every gold image's coin found once, its centred crop stored, centre/radius in DuckDB.

Table ``coin_crops`` (one row per coin side): where the coin was found in the gold image (``centre_x``,
``centre_y``, ``radius`` in gold pixels, ``support``), the crop's key ``crops/<day>/<coin>__<side>.png``,
or ``found = false`` and the ``reason``. A side whose gold checksum and crop size are unchanged is not
redone; the crop file is written before its row, so a crash leaves at worst a file that the next run
overwrites.

The circle search (about 30 ms a photo) needs no database: ``write_crop_plan`` (in the writer step
before it) lists the images to search in ``staging/crops/<day>/plan.json``, ``find_coins_staged``
searches one chunk of them on any worker and stages its rows; the writer step takes the staged rows
(``crops_for_plan``, which searches, without a connection, what no chunk staged) and ``record_crops``
writes them.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd
from PIL import Image

from coin_assets.core import staging
from coin_assets.core.clock import utcnow
from coin_assets.core.coin_crop import CoinFinding, coin_centred
from coin_assets.core.metadata import Migration, ensure_schema, migrate
from coin_assets.core.parallel import bounded_map
from coin_assets.core.storage import LocalStore

CROP_SIZE = 128  # stored crop side (px); the model resizes to its input size
CROP_PREFIX = "crops"
CROP_STAGING = "staging/crops"  # staging/crops/<day>/plan.json and found-<chunk>-of-<chunks>.json
_FOUND = "found"

COIN_CROPS_SQL = """
CREATE TABLE IF NOT EXISTS coin_crops (
    coin_id VARCHAR NOT NULL,
    side VARCHAR NOT NULL,
    partition_date DATE NOT NULL,
    gold_path VARCHAR NOT NULL,
    gold_sha256 VARCHAR NOT NULL,
    found BOOLEAN NOT NULL,
    centre_x DOUBLE,
    centre_y DOUBLE,
    radius DOUBLE,
    support DOUBLE,
    reason VARCHAR,
    crop_path VARCHAR,
    crop_size INTEGER NOT NULL,
    cropped_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (coin_id, side)
)
"""
# The coin_crops component's migrations (core/metadata.py: migrate), oldest first.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "coin_crops: where each gold image's coin was found and its crop", (COIN_CROPS_SQL,)),
)


@dataclass
class CropReport:
    processed: int = 0
    skipped_unchanged: int = 0
    found: int = 0
    not_found: int = 0
    removed: int = 0
    other_days: set[str] = field(default_factory=set)  # earlier days whose rows were replaced (a coin that moved)
    staged: int = 0  # rows the search chunks staged, recorded as they are
    seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)


def ensure_crops_schema(conn) -> None:
    ensure_schema(conn)
    migrate(conn, "coin_crops", MIGRATIONS)


def crop_key(partition: str, coin_id: str, side: str) -> str:
    return f"{CROP_PREFIX}/{partition}/{coin_id}__{side}.png"


def _find_and_crop(local: LocalStore | None, key: str, data: bytes | None, size: int
                   ) -> tuple[CoinFinding, bytes | None]:
    """(the finding, the crop as PNG bytes or None) for one gold image; runs in a pool worker."""
    img = Image.open(io.BytesIO(local.read_bytes(key) if data is None else data)).convert("RGB")
    crop, finding = coin_centred(img, size)
    if crop is None:
        return finding, None
    buf = io.BytesIO()
    crop.save(buf, "PNG", compress_level=1)
    return finding, buf.getvalue()


@dataclass
class CropPlan:
    partition: str
    size: int
    todo: pd.DataFrame  # gold rows (coin_id, side, gold_path, sha256) whose crop is missing or stale
    skipped_unchanged: int


def plan_crops(conn, partition: str, size: int = CROP_SIZE) -> CropPlan:
    """Which gold images of the partition need their coin found (a short read of the metadata)."""
    ensure_crops_schema(conn)
    gold = conn.execute(
        "SELECT coin_id, side, gold_path, sha256 FROM gold_images WHERE partition_date = ? ORDER BY coin_id, side",
        [partition],
    ).df()
    done = conn.execute(
        "SELECT coin_id, side, gold_sha256, crop_size FROM coin_crops WHERE partition_date = ?", [partition]
    ).df()
    current = {(g.coin_id, g.side, g.sha256, size) for g in gold.itertuples()}
    unchanged = {(r.coin_id, r.side) for r in done.itertuples()
                 if (r.coin_id, r.side, r.gold_sha256, r.crop_size) in current}
    stale = [(c, s) not in unchanged for c, s in zip(gold.coin_id, gold.side, strict=True)]
    return CropPlan(partition, size, gold[stale].reset_index(drop=True), len(gold) - sum(stale))


def crop_staging_prefix(partition: str) -> str:
    return f"{CROP_STAGING}/{partition}"


def write_crop_plan(store, conn, partition: str, size: int = CROP_SIZE) -> int:
    """The gold images whose coin must be found (``staging/crops/<day>/plan.json``), so that the search
    needs no DuckDB connection (it may run on any worker, in chunks). Returns how many."""
    plan = plan_crops(conn, partition, size)
    staging.write_plan(store, crop_staging_prefix(partition), {
        "partition": partition, "size": size, "skipped_unchanged": plan.skipped_unchanged,
        "images": plan.todo.to_dict("records")})
    return len(plan.todo)


def _read_crop_plan(store, partition: str) -> CropPlan:
    plan = staging.read_plan(store, crop_staging_prefix(partition)) or {"images": [], "size": CROP_SIZE}
    todo = pd.DataFrame(plan["images"], columns=["coin_id", "side", "gold_path", "sha256"])
    return CropPlan(partition, plan["size"], todo, plan.get("skipped_unchanged", 0))


def crop_chunks(store, partition: str, chunk_photos: int) -> int:
    """How many chunks the day's crop plan splits into (each a step of its own, on any worker)."""
    return staging.chunk_count(len(_read_crop_plan(store, partition).todo), chunk_photos)


def _staged_key(row: dict) -> tuple:
    return row["coin_id"], row["side"], row["gold_sha256"], row["crop_size"]


def _staged_rows(store, partition: str) -> dict:
    """Rows staged by the search chunks whose crop file (for a found coin) is still there."""
    rows = staging.read_results(store, crop_staging_prefix(partition), _FOUND, _staged_key)
    listed = {o.key for o in store.list(f"{CROP_PREFIX}/{partition}")}
    return {k: r for k, r in rows.items() if not r["found"] or r["crop_path"] in listed}


def find_coins_staged(store, partition: str, chunk: int = 0, chunks: int = 1) -> CropReport:
    """Chunk ``chunk`` of ``chunks`` of the day's crop plan: find each coin (on every core), write its crop
    file, and stage its ``coin_crops`` row in ``found-<chunk>-of-<chunks>.json``. Rows staged earlier for
    the same image (an interrupted run, another chunking) are reused. No database connection."""
    plan = _read_crop_plan(store, partition)
    todo = staging.chunk_of(plan.todo.to_dict("records"), chunk, chunks)
    staged = _staged_rows(store, partition)
    reused = [staged[k] for k in ((g["coin_id"], g["side"], g["sha256"], plan.size) for g in todo) if k in staged]
    done = {(r["coin_id"], r["side"]) for r in reused}
    rest = pd.DataFrame([g for g in todo if (g["coin_id"], g["side"]) not in done],
                        columns=["coin_id", "side", "gold_path", "sha256"])
    report, rows = find_coins(store, CropPlan(partition, plan.size, rest, 0))
    report.skipped_unchanged = len(reused)
    entries = reused + [{**r, "cropped_at": r["cropped_at"].isoformat()} for r in rows]
    staging.write_results(store, crop_staging_prefix(partition), _FOUND, chunk, chunks, entries)
    return report


def find_coins(store, plan: CropPlan) -> tuple[CropReport, list[dict]]:
    """Find the coin in every planned gold image on every core (no database connection: the slow part)
    and write its crop file; returns the report and the ``coin_crops`` rows to record."""
    started = time.perf_counter()
    report = CropReport(skipped_unchanged=plan.skipped_unchanged)
    local = store if isinstance(store, LocalStore) else None

    def work():  # the bytes are read here only when the worker cannot read the store itself
        for g in plan.todo.itertuples(index=False):
            yield g, (local, g.gold_path, None if local else store.read_bytes(g.gold_path), plan.size)

    rows = []
    for g, (finding, png) in bounded_map(_find_and_crop, work(), ordered=False):
        report.processed += 1
        row = {"coin_id": g.coin_id, "side": g.side, "partition_date": plan.partition, "gold_path": g.gold_path,
               "gold_sha256": g.sha256, "found": finding.found, "centre_x": None, "centre_y": None, "radius": None,
               "support": None, "reason": finding.reason, "crop_path": None, "crop_size": plan.size,
               "cropped_at": utcnow()}
        if png is not None:
            key = crop_key(plan.partition, g.coin_id, g.side)
            store.write_bytes(key, png)
            c = finding.circle
            row.update(centre_x=c.cx, centre_y=c.cy, radius=c.radius, support=c.support, crop_path=key)
        _count(report, row)
        rows.append(row)
    report.seconds = time.perf_counter() - started
    return report, rows


def _count(report: CropReport, row: dict) -> None:
    if row["found"]:
        report.found += 1
    else:
        report.not_found += 1
        reason = (row["reason"] or "").split(":")[0]
        report.reasons[reason] = report.reasons.get(reason, 0) + 1


def take_staged(store, plan: CropPlan) -> tuple[list[dict], CropPlan]:
    """(the rows the search chunks staged for ``plan``'s images, the plan of the images they did not do)."""
    staged = _staged_rows(store, plan.partition)
    rows, rest = [], []
    for g in plan.todo.itertuples(index=False):
        row = staged.get((g.coin_id, g.side, g.sha256, plan.size))
        if row is None:
            rest.append(g)
        else:
            rows.append({**row, "cropped_at": datetime.fromisoformat(row["cropped_at"])})
    remaining = pd.DataFrame(rest, columns=["coin_id", "side", "gold_path", "sha256"])
    return rows, CropPlan(plan.partition, plan.size, remaining, plan.skipped_unchanged)


def crops_for_plan(store, plan: CropPlan) -> tuple[CropReport, list[dict]]:
    """The writer step's rows for ``plan``: those the search chunks staged, and the coins of the images
    no chunk did (found here, on every core; holds no connection either)."""
    staged, remaining = take_staged(store, plan)
    report, rows = find_coins(store, remaining)
    report.skipped_unchanged = plan.skipped_unchanged
    report.staged = len(staged)
    for row in staged:
        _count(report, row)
    return report, staged + rows


def clear_crop_staging(store, partition: str) -> None:
    for obj in list(store.list(crop_staging_prefix(partition))):
        store.delete(obj.key)


def record_crops(conn, partition: str, report: CropReport, rows: list[dict]) -> pd.DataFrame:
    """Write the found coins' rows and drop the rows of sides that left gold, in one transaction;
    returns the partition's rows of ``coin_crops``."""
    started = time.perf_counter()
    ensure_crops_schema(conn)
    conn.execute("BEGIN TRANSACTION")
    try:
        # sides that left gold (re-ingested, removed) lose their crop row
        gone = conn.execute(
            "SELECT count(*) FROM coin_crops c WHERE partition_date = ? AND NOT EXISTS "
            "(SELECT 1 FROM gold_images g WHERE g.coin_id = c.coin_id AND g.side = c.side AND g.partition_date = ?)",
            [partition, partition]).fetchall()[0][0]
        conn.execute(
            "DELETE FROM coin_crops c WHERE partition_date = ? AND NOT EXISTS "
            "(SELECT 1 FROM gold_images g WHERE g.coin_id = c.coin_id AND g.side = c.side AND g.partition_date = ?)",
            [partition, partition])
        report.removed = int(gone)
        if rows:
            frame = pd.DataFrame(rows)
            conn.register("new_crops", frame)
            report.other_days |= {str(d) for (d,) in conn.execute(
                "SELECT DISTINCT partition_date FROM coin_crops WHERE partition_date <> CAST(? AS DATE) AND "
                "(coin_id, side) IN (SELECT coin_id, side FROM new_crops)", [partition]).fetchall()}
            conn.execute("DELETE FROM coin_crops WHERE (coin_id, side) IN (SELECT coin_id, side FROM new_crops)")
            conn.execute("INSERT INTO coin_crops SELECT coin_id, side, CAST(partition_date AS DATE), gold_path, "
                         "gold_sha256, found, centre_x, centre_y, radius, support, reason, crop_path, crop_size, "
                         "cropped_at FROM new_crops")
            conn.unregister("new_crops")
        conn.execute("COMMIT")
    except Exception:
        conn.execute("ROLLBACK")
        raise
    report.seconds += time.perf_counter() - started
    return conn.execute("SELECT * FROM coin_crops WHERE partition_date = ? ORDER BY coin_id, side", [partition]).df()
