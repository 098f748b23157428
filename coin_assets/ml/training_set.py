"""The training set: labelled, paired coins from gold with a split that never moves."""

from __future__ import annotations

import hashlib
import io

import pandas as pd

SPLITS = ("train", "val", "test")
SNAPSHOT_PREFIX = "ml/training_sets"


def split_for(coin_id: str, val_percent: int = 15, test_percent: int = 15) -> str:
    """A deterministic function of the coin id alone: a coin never changes split as data grows,
    so the test coins of one model are test coins of every model."""
    bucket = int(hashlib.sha256(f"coin-split:{coin_id}".encode()).hexdigest()[:8], 16) % 100
    if bucket < test_percent:
        return "test"
    if bucket < test_percent + val_percent:
        return "val"
    return "train"


def labelled_coins(conn) -> pd.DataFrame:
    """Every coin with both sides in gold and a label, across all partitions, with its coin-centred crops
    (``front_crop_path``/``back_crop_path``, null where the coin_crops asset found no coin or has not run)."""
    has_crops = bool(conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'coin_crops'").fetchall()[0][0])
    crops = (
        "LEFT JOIN (SELECT coin_id, crop_path AS front_crop_path FROM coin_crops WHERE side = 'front' AND found) fc "
        "USING (coin_id) "
        "LEFT JOIN (SELECT coin_id, crop_path AS back_crop_path FROM coin_crops WHERE side = 'back' AND found) bc "
        "USING (coin_id)"
        if has_crops else ""
    )
    crop_cols = "front_crop_path, back_crop_path" if has_crops else \
        "CAST(NULL AS VARCHAR) AS front_crop_path, CAST(NULL AS VARCHAR) AS back_crop_path"
    frame = conn.execute(
        f"""
        SELECT coin_id, partition_date, front_path, back_path, front_sha256, back_sha256,
               label_year, label_source, {crop_cols}
        FROM coins {crops} WHERE paired AND label_year IS NOT NULL ORDER BY coin_id
        """
    ).df()
    frame["split"] = [split_for(c) for c in frame["coin_id"]]
    return frame


def content_hash(frame: pd.DataFrame) -> str:
    """Hash of what a model would learn from: coins, image checksums, labels and splits."""
    cols = ["coin_id", "front_sha256", "back_sha256", "label_year", "split"]
    cols += [c for c in ("front_crop_path", "back_crop_path") if c in frame]
    text = frame[cols].sort_values("coin_id").to_csv(index=False)
    return hashlib.sha256(text.encode()).hexdigest()


def to_parquet_bytes(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def from_parquet_bytes(data: bytes) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(data))


def split_counts(frame: pd.DataFrame) -> dict[str, int]:
    counts = frame["split"].value_counts().to_dict() if len(frame) else {}
    return {s: int(counts.get(s, 0)) for s in SPLITS}
