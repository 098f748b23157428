"""Audit queries behind the asset checks: each returns the list of problems it found (empty = pass)."""

from __future__ import annotations

import io

import pandas as pd
from PIL import Image

from coin_assets.core.images import MAX_SIDE, aspect_kept, oriented_size
from coin_assets.core.metadata import GOLD_REQUIRED_COLUMNS, bronze_paths_under
from coin_assets.core.storage import ObjectStore, sha256_of


def silver_problems(store: ObjectStore, conn, partition: str, max_side: int = MAX_SIDE) -> list[str]:
    """Long side ≤ max_side, aspect ratio kept within a pixel, RGB — read from the files themselves."""
    problems = []
    rows = conn.execute("SELECT * FROM silver_images WHERE partition_date = ?", [partition]).df()
    for row in rows.itertuples(index=False):
        if not store.exists(row.clean_path):
            problems.append(f"{row.clean_path}: file missing")
            continue
        with Image.open(io.BytesIO(store.read_bytes(row.clean_path))) as img:
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


def lineage_problems(store: ObjectStore, conn, partition: str) -> tuple[list[str], list[str]]:
    """(problems, unpaired coin ids). Every gold row's gold, silver and bronze file exists, bronze
    bytes still hash to the recorded sha256, and no file in bronze/, silver/ or gold/ of the day is an
    orphan or a crash leftover (``.tmp-*``)."""
    problems = []
    gold = conn.execute(
        "SELECT coin_id, side, gold_path, clean_path, raw_path, sha256 FROM gold_images WHERE partition_date = ?",
        [partition],
    ).df()
    for row in gold.itertuples(index=False):
        for label, key in (("gold", row.gold_path), ("silver", row.clean_path)):
            if not store.exists(key):
                problems.append(f"{row.coin_id}/{row.side}: {label} file {key} missing")
        if not store.exists(row.raw_path):
            problems.append(f"{row.coin_id}/{row.side}: bronze file {row.raw_path} missing")
        elif (actual := sha256_of(store, row.raw_path)) != row.sha256:
            problems.append(f"{row.coin_id}/{row.side}: bronze {row.raw_path} hashes to {actual[:12]}…, recorded {row.sha256[:12]}…")
    known_silver = {r[0] for r in conn.execute("SELECT clean_path FROM silver_images").fetchall()}
    known_gold = set(gold.gold_path)
    for prefix, known in ((f"silver/{partition}", known_silver), (f"gold/{partition}", known_gold)):
        for obj in store.list(prefix):
            if obj.key not in known:
                problems.append(f"orphan file {obj.key} (no metadata row)")
    known_bronze = bronze_paths_under(conn, f"bronze/{partition}/")
    for obj in store.list(f"bronze/{partition}"):
        if obj.key.rsplit("/", 1)[-1].startswith(".tmp-"):
            problems.append(f"leftover temporary file {obj.key} (a copy interrupted by a crash)")
        elif obj.key not in known_bronze:
            problems.append(f"orphan file {obj.key} (no ledger row points to it)")
    for path in sorted(known_bronze):
        if not store.exists(path):
            problems.append(f"bronze file {path} missing (the ledger points to it)")
    unpaired = conn.execute(
        "SELECT coin_id FROM coins WHERE partition_date = ? AND NOT paired ORDER BY coin_id", [partition]
    ).fetchall()
    return problems, [r[0] for r in unpaired]


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
