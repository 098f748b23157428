"""DuckDB SQL for predictions history and the review queue."""

from __future__ import annotations

import pandas as pd

from coin_assets.core.clock import utcnow
from coin_assets.core.metadata import Migration, migrate

REVIEW_QUEUE_SQL = """
CREATE TABLE IF NOT EXISTS review_queue (
    coin_id VARCHAR NOT NULL,
    partition_date DATE NOT NULL,
    predicted_year DOUBLE NOT NULL,
    lower_90 DOUBLE NOT NULL,
    upper_90 DOUBLE NOT NULL,
    label_year INTEGER,
    model_version VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    queued_at TIMESTAMPTZ NOT NULL,
    reading VARCHAR,
    PRIMARY KEY (coin_id, model_version)
)
"""
# queues made before the year reader kept no reading
REVIEW_QUEUE_READING_SQL = "ALTER TABLE review_queue ADD COLUMN IF NOT EXISTS reading VARCHAR"
# The review_queue component's migrations (core/metadata.py: migrate), oldest first.
REVIEW_QUEUE_MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "review_queue: predictions queued for a person, with the year reader's reading",
              (REVIEW_QUEUE_SQL, REVIEW_QUEUE_READING_SQL)),
)


def ensure_review_queue_schema(conn) -> None:
    """The metadata, coin_crops and review_queue tables at their newest versions."""
    from coin_assets.core.crops import ensure_crops_schema

    ensure_crops_schema(conn)
    migrate(conn, "review_queue", REVIEW_QUEUE_MIGRATIONS)


def coins_to_score(conn, partition: str) -> pd.DataFrame:
    """The day's paired coins with their coin-centred crops where the coin_crops asset found both sides
    (the model scores the same input it was trained on)."""
    from coin_assets.core.crops import ensure_crops_schema

    ensure_crops_schema(conn)
    return conn.execute(
        """
        SELECT coin_id, front_path, back_path, front_raw_path, back_raw_path, label_year,
               fc.crop_path AS front_crop_path,
               bc.crop_path AS back_crop_path
        FROM coins
        LEFT JOIN (SELECT coin_id, crop_path FROM coin_crops WHERE side = 'front' AND found) fc USING (coin_id)
        LEFT JOIN (SELECT coin_id, crop_path FROM coin_crops WHERE side = 'back' AND found) bc USING (coin_id)
        WHERE paired AND partition_date = ? ORDER BY coin_id
        """,
        [partition],
    ).df()


def insert_predictions(conn, frame: pd.DataFrame) -> int:
    """Append predictions; the same coin scored again by the same model version is not duplicated."""
    if frame.empty:
        return 0
    before = conn.execute("SELECT count(*) FROM predictions").fetchall()[0][0]
    if "reading" not in frame:  # a model without a year reader
        frame = frame.assign(reading=pd.Series([None] * len(frame), dtype="object"))
    conn.register("new_predictions", frame)
    conn.execute(
        "INSERT INTO predictions (coin_id, partition_date, predicted_year, sigma, lower_90, upper_90, model_name, "
        "model_version, predicted_at, dagster_run_id, reading) SELECT coin_id, partition_date, predicted_year, sigma, "
        "lower_90, upper_90, model_name, model_version, predicted_at, dagster_run_id, reading FROM new_predictions "
        "ON CONFLICT DO NOTHING"
    )
    conn.unregister("new_predictions")
    conn.execute(
        "UPDATE gold_images SET model_version = ? WHERE list_contains(?, coin_id)",
        [str(frame["model_version"].iloc[0]), list(frame["coin_id"])],
    )
    return conn.execute("SELECT count(*) FROM predictions").fetchall()[0][0] - before


def refresh_review_queue(conn, partition: str, model_version: str, max_interval_years: float,
                         label_tolerance_years: float) -> pd.DataFrame:
    """Predictions of the day by this model whose 90 % interval is wider than allowed (an unreadable coin
    gets a wide one), that disagree with a known label, or whose photo showed no coin to the coin finder,
    are queued for a person (replacing the day's queue for this model)."""
    ensure_review_queue_schema(conn)
    conn.execute("DELETE FROM review_queue WHERE partition_date = ? AND model_version = ?", [partition, model_version])
    conn.execute(
        """
        INSERT INTO review_queue (coin_id, partition_date, predicted_year, lower_90, upper_90, label_year,
                                  model_version, reason, queued_at, reading)
        SELECT p.coin_id, p.partition_date, p.predicted_year, p.lower_90, p.upper_90, c.label_year, p.model_version,
               concat_ws('; ',
                   CASE WHEN p.reading IS NOT NULL AND json_extract_string(p.reading, '$.year') IS NULL THEN
                        'the year reader: ' || json_extract_string(p.reading, '$.reason') END,
                   CASE WHEN p.upper_90 - p.lower_90 > ? THEN
                        printf('90%% interval %.1f years wide > %.1f', p.upper_90 - p.lower_90, CAST(? AS DOUBLE)) END,
                   CASE WHEN c.label_year IS NOT NULL AND abs(p.predicted_year - c.label_year) > ? THEN
                        printf('predicted %.1f but labelled %d', p.predicted_year, c.label_year) END,
                   nc.no_coin),
               ?, p.reading
        FROM predictions p JOIN coins c USING (coin_id)
        LEFT JOIN (SELECT coin_id, 'no coin found (' || string_agg(side || ': ' || reason, '; ' ORDER BY side) || ')'
                   AS no_coin FROM coin_crops WHERE NOT found GROUP BY coin_id) nc USING (coin_id)
        WHERE p.partition_date = ? AND p.model_version = ?
          AND (p.upper_90 - p.lower_90 > ? OR (c.label_year IS NOT NULL AND abs(p.predicted_year - c.label_year) > ?)
               OR nc.no_coin IS NOT NULL)
        """,
        [max_interval_years, max_interval_years, label_tolerance_years, utcnow(), partition, model_version,
         max_interval_years, label_tolerance_years],
    )
    return conn.execute(
        "SELECT * FROM review_queue WHERE partition_date = ? AND model_version = ? ORDER BY upper_90 - lower_90 DESC",
        [partition, model_version],
    ).df()


def labelled_coin_count(conn) -> int:
    """Labelled paired coins in gold (works on a read-only connection)."""
    return conn.execute("SELECT count(*) FROM coins WHERE paired AND label_year IS NOT NULL").fetchall()[0][0]


def scoring_gaps(conn, day: str) -> tuple[list[str], list[tuple]]:
    """(versions that scored the day, problems): paired coins of the day not scored exactly once by the
    version that scored the day last, and coins any version scored more than once."""
    versions = [r[0] for r in conn.execute(
        "SELECT DISTINCT model_version FROM predictions WHERE partition_date = ?", [day]).fetchall()]
    latest = next(iter(conn.execute(
        "SELECT model_version FROM predictions WHERE partition_date = ? ORDER BY predicted_at DESC LIMIT 1", [day]
    ).fetchall()), None)
    if latest is None:
        return versions, []
    gaps = conn.execute(
        """
        SELECT ? AS model_version, c.coin_id, count(p.coin_id) AS n
        FROM (SELECT coin_id FROM coins WHERE paired AND partition_date = ?) c
        LEFT JOIN predictions p ON p.coin_id = c.coin_id AND p.model_version = ?
        GROUP BY ALL HAVING count(p.coin_id) <> 1
        UNION ALL
        SELECT model_version, coin_id, count(*) FROM predictions WHERE partition_date = ?
        GROUP BY ALL HAVING count(*) > 1
        """,
        [latest[0], day, latest[0], day],
    ).fetchall()
    return versions, gaps
