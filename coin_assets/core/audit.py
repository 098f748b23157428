"""Audit queries behind the asset checks: each returns the list of problems it found (empty = pass)."""

from __future__ import annotations

import io
import json
import random
from dataclasses import dataclass

import pandas as pd
from PIL import Image

from coin_assets.core.images import MAX_SIDE, aspect_kept, oriented_size
from coin_assets.core.metadata import GOLD_REQUIRED_COLUMNS, bronze_paths_under
from coin_assets.core.storage import LocalStore, ObjectStore, sha256_of


def silver_rows(conn, partition: str) -> pd.DataFrame:
    return conn.execute("SELECT * FROM silver_images WHERE partition_date = ?", [partition]).df()


def silver_problems(store: ObjectStore, conn_or_rows, partition: str, max_side: int = MAX_SIDE) -> list[str]:
    """Long side ≤ max_side, aspect ratio kept within a pixel, RGB — read from the files themselves.
    Takes a connection, or the rows ``silver_rows`` read (so a reader can close its connection first)."""
    problems = []
    rows = conn_or_rows if isinstance(conn_or_rows, pd.DataFrame) else silver_rows(conn_or_rows, partition)
    for row in rows.itertuples(index=False):
        if not store.exists(row.clean_path):
            problems.append(f"{row.clean_path}: file missing")
            continue
        # a local file is opened, not read: the header is enough
        source = store.open_read(row.clean_path) if isinstance(store, LocalStore) else io.BytesIO(
            store.read_bytes(row.clean_path))
        with source, Image.open(source) as img:
            width, height, mode = img.width, img.height, img.mode
        if (width, height) != (row.clean_width, row.clean_height):
            problems.append(f"{row.clean_path}: file is {width}x{height}, table says {row.clean_width}x{row.clean_height}")
        if max(width, height) > max_side:
            problems.append(f"{row.clean_path}: long side {max(width, height)} > {max_side}")
        if mode != "RGB":
            problems.append(f"{row.clean_path}: mode {mode}, not RGB")
        raw_w, raw_h = oriented_size(row.raw_width, row.raw_height, row.exif_orientation)
        if not aspect_kept(raw_w, raw_h, width, height):
            problems.append(f"{row.clean_path}: {width}x{height} does not keep the aspect of {raw_w}x{raw_h}")
    return problems


@dataclass
class LineageFacts:
    """What the lineage check needs from the metadata, read in one go."""
    partition: str
    gold: pd.DataFrame  # coin_id, side, gold_path, clean_path, raw_path, sha256
    known_silver: set[str]
    known_bronze: set[str]
    unpaired: list[str]


def lineage_facts(conn, partition: str) -> LineageFacts:
    gold = conn.execute(
        "SELECT coin_id, side, gold_path, clean_path, raw_path, sha256 FROM gold_images WHERE partition_date = ?",
        [partition],
    ).df()
    unpaired = conn.execute(
        "SELECT coin_id FROM coins WHERE partition_date = ? AND NOT paired ORDER BY coin_id", [partition]
    ).fetchall()
    return LineageFacts(
        partition, gold,
        # the day's folder only: the orphans looked for are under silver/<day>/
        known_silver={r[0] for r in conn.execute("SELECT clean_path FROM silver_images WHERE starts_with(clean_path, ?)",
                                                 [f"silver/{partition}/"]).fetchall()},
        known_bronze=bronze_paths_under(conn, f"bronze/{partition}/"),
        unpaired=[r[0] for r in unpaired],
    )


# Bronze bytes already verified: {bronze key: [size, mtime, sha256]} per day, under audit/ in the store.
VERIFIED_PREFIX = "audit/bronze_verified"
LINEAGE_SAMPLE = 8  # cached files re-hashed anyway on each check, chosen at random


def _verified_cache_key(partition: str) -> str:
    return f"{VERIFIED_PREFIX}/{partition}.json"


def _read_verified(store: ObjectStore, partition: str) -> dict:
    key = _verified_cache_key(partition)
    try:
        return json.loads(store.read_bytes(key)) if store.exists(key) else {}
    except (OSError, ValueError):
        return {}


def record_verified_bronze(store: ObjectStore, partition: str, hashed: dict[str, str]) -> None:
    """Bronze files whose bytes were hashed while they were written ({key: sha256}) count as verified
    at their current size and mtime: the lineage check does not read them again (bytes hashed once),
    except when its random sample picks them or they change."""
    if not hashed:
        return
    listing = {o.key: o for o in store.list(f"bronze/{partition}") if o.key in hashed}
    verified = _read_verified(store, partition)
    verified.update({key: [o.size, o.modified.timestamp(), hashed[key]] for key, o in listing.items()})
    store.write_bytes(_verified_cache_key(partition), json.dumps(verified).encode())


def lineage_problems(store: ObjectStore, conn_or_facts, partition: str,
                     sample: int = LINEAGE_SAMPLE) -> tuple[list[str], list[str]]:
    """(problems, unpaired coin ids). Every gold row's gold, silver and bronze file exists, bronze
    bytes still hash to the recorded sha256, and no file in bronze/, silver/ or gold/ of the day is an
    orphan or a crash leftover (``.tmp-*``).

    Incremental: a bronze file whose size and modification time equal those recorded when its bytes
    last hashed to the ledger's sha256 (by this check, or by bronze while writing them) is not read
    again, except ``sample`` of them picked at random on every check (so silent corruption that keeps size and mtime is still found, over runs);
    any file written or changed since is hashed in full."""
    facts = conn_or_facts if isinstance(conn_or_facts, LineageFacts) else lineage_facts(conn_or_facts, partition)
    problems = []
    bronze_listing = {o.key: o for prefix in (f"bronze/{partition}", f"archive/bronze/{partition}")
                      for o in store.list(prefix)}
    cache_key = _verified_cache_key(partition)
    verified = _read_verified(store, partition)
    cached_ok = [k for k, v in verified.items() if k in bronze_listing
                 and [bronze_listing[k].size, bronze_listing[k].modified.timestamp()] == v[:2]]
    resample = set(random.sample(cached_ok, min(sample, len(cached_ok))))
    fresh: dict[str, list] = {}
    listed = {prefix: {o.key for o in store.list(prefix)} for prefix in (f"silver/{partition}", f"gold/{partition}")}

    def exists(key: str) -> bool:  # from the day's listings; a stat only for a file of another day
        folder = key.rsplit("/", 1)[0]
        return key in listed[folder] if folder in listed else store.exists(key)

    for row in facts.gold.itertuples(index=False):
        for label, key in (("gold", row.gold_path), ("silver", row.clean_path)):
            if not exists(key):
                problems.append(f"{row.coin_id}/{row.side}: {label} file {key} missing")
        obj = bronze_listing.get(row.raw_path)
        if obj is None and not store.exists(row.raw_path):
            problems.append(f"{row.coin_id}/{row.side}: bronze file {row.raw_path} missing")
            continue
        stamp = [obj.size, obj.modified.timestamp(), row.sha256] if obj else None
        if stamp and verified.get(row.raw_path) == stamp and row.raw_path not in resample:
            fresh[row.raw_path] = stamp
        elif (actual := sha256_of(store, row.raw_path)) != row.sha256:
            problems.append(f"{row.coin_id}/{row.side}: bronze {row.raw_path} hashes to {actual[:12]}…, recorded {row.sha256[:12]}…")
        elif stamp:
            fresh[row.raw_path] = stamp
    if fresh != verified:
        store.write_bytes(cache_key, json.dumps(fresh).encode())
    known_gold = set(facts.gold.gold_path)
    for prefix, known in ((f"silver/{partition}", facts.known_silver), (f"gold/{partition}", known_gold)):
        for key in sorted(listed[prefix]):
            if key not in known:
                problems.append(f"orphan file {key} (no metadata row)")
    for key in bronze_listing:
        if not key.startswith("bronze/"):
            continue
        if key.rsplit("/", 1)[-1].startswith(".tmp-"):
            problems.append(f"leftover temporary file {key} (a copy interrupted by a crash)")
        elif key not in facts.known_bronze:
            problems.append(f"orphan file {key} (no ledger row points to it)")
    for path in sorted(facts.known_bronze):
        if path not in bronze_listing:
            problems.append(f"bronze file {path} missing (the ledger points to it)")
    return problems, facts.unpaired


def metadata_problems(conn, partition: str) -> list[str]:
    """Required gold columns are not null; no sha256 twice for a coin side, nor across coin sides."""
    problems = []
    for column in GOLD_REQUIRED_COLUMNS:
        nulls = conn.execute(
            f"SELECT count(*) FROM gold_images WHERE partition_date = ? AND {column} IS NULL", [partition]
        ).fetchall()[0][0]
        if nulls:
            problems.append(f"{column}: {nulls} null value(s)")
    dupes = conn.execute(
        """
        SELECT sha256, count(*) AS n, string_agg(coin_id || '/' || side, ', ') AS used_by
        FROM gold_images WHERE partition_date = ? GROUP BY sha256 HAVING count(*) > 1
        """,
        [partition],
    ).fetchall()
    problems += [f"sha256 {sha[:12]}… used {n} times: {who}" for sha, n, who in dupes]
    return problems


def quarantine_for(conn, partition: str) -> pd.DataFrame:
    return conn.execute(
        "SELECT upload_key, stage, reason, bronze_path FROM quarantine WHERE partition_date = ? ORDER BY upload_key",
        [partition],
    ).df()


LAKE_LAYERS = ("bronze", "silver", "gold", "crops")


def lake_state(root, db_file) -> tuple[dict[str, str], list[tuple]]:
    """(sha256 of every file under the image layers of a local lake, every metadata row that defines it),
    in a stable order: two lakes built from the same uploads compare equal exactly when a crash or a
    re-run left nothing different behind."""
    import duckdb

    store = LocalStore(root)
    files = {key: sha256_of(store, key) for layer in LAKE_LAYERS
             for key in sorted(p.relative_to(store.root).as_posix() for p in (store.root / layer).rglob("*")
                               if p.is_file())}
    with duckdb.connect(str(db_file), read_only=True) as conn:
        rows = conn.execute("SELECT coin_id, side, raw_path, clean_path, gold_path, sha256, clean_size, label_year "
                            "FROM gold_images ORDER BY coin_id, side").fetchall()
        rows += conn.execute("SELECT upload_key, sha256, bronze_path, duplicate_of, label_year FROM uploads "
                             "ORDER BY upload_key").fetchall()
        rows += conn.execute("SELECT sha256, clean_path, clean_size FROM silver_images ORDER BY sha256").fetchall()
        rows += conn.execute("SELECT upload_key, stage, reason FROM quarantine ORDER BY ALL").fetchall()
        tables = {t for (t,) in conn.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if "coin_crops" in tables:
            rows += conn.execute("SELECT coin_id, side, found, crop_path FROM coin_crops ORDER BY ALL").fetchall()
    return files, rows
