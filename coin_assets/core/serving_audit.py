"""The serving request log in DuckDB: one UTC day of the API's requests and feedback, copied from the
API's own store, linked to the gold rows of the uploaded photos and to the predictions table.

Loading a day replaces that day's rows (idempotent). The view ``serving_lineage`` runs from the
photos' bytes (sha256, upload key) through gold to the answer the API gave and the batch prediction
of the same coin.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from coin_assets.core.metadata import Migration, ensure_schema, migrate

REQUEST_COLUMNS = {
    "request_id": "VARCHAR", "created_at": "TIMESTAMPTZ", "partition_date": "DATE", "status": "VARCHAR",
    "mode": "VARCHAR", "source": "VARCHAR", "user_id": "VARCHAR", "client_coin_id": "VARCHAR", "coin_id": "VARCHAR",
    "model_name": "VARCHAR", "model_version": "VARCHAR", "front_sha256": "VARCHAR", "back_sha256": "VARCHAR",
    "front_key": "VARCHAR", "back_key": "VARCHAR", "outcome": "VARCHAR", "error": "VARCHAR",
    "latency_ms": "DOUBLE", "year": "DOUBLE", "sigma": "DOUBLE", "lower_90": "DOUBLE", "upper_90": "DOUBLE",
    "needs_review": "BOOLEAN", "unreadable": "BOOLEAN", "completed_at": "TIMESTAMPTZ",
}
FEEDBACK_COLUMNS = {
    "feedback_id": "BIGINT", "request_id": "VARCHAR", "partition_date": "DATE", "year": "INTEGER",
    "sender": "VARCHAR", "role": "VARCHAR", "status": "VARCHAR", "review_key": "VARCHAR",
    "created_at": "TIMESTAMPTZ",
}

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS serving_requests ("
    + ", ".join(f"{name} {kind}" for name, kind in REQUEST_COLUMNS.items()) + ", PRIMARY KEY (request_id))",
    "CREATE TABLE IF NOT EXISTS serving_feedback ("
    + ", ".join(f"{name} {kind}" for name, kind in FEEDBACK_COLUMNS.items()) + ", PRIMARY KEY (feedback_id))",
    """
    CREATE OR REPLACE VIEW serving_lineage AS
    SELECT r.request_id, r.created_at, r.partition_date, r.user_id, r.coin_id, r.front_sha256, r.back_sha256,
           r.front_key, r.back_key, r.outcome, r.model_name, r.model_version AS served_version,
           r.year AS served_year, r.lower_90 AS served_lower_90, r.upper_90 AS served_upper_90,
           r.needs_review, r.latency_ms,
           c.coin_id IS NOT NULL AS in_gold, c.paired AS gold_paired, c.front_path AS gold_front_path,
           c.back_path AS gold_back_path, c.label_year, c.label_source,
           coalesce(c.front_sha256 = r.front_sha256 AND c.back_sha256 = r.back_sha256, false) AS same_bytes,
           p.predicted_year AS batch_year, p.model_version AS batch_version
    FROM serving_requests r
    LEFT JOIN coins c ON c.coin_id = r.coin_id
    LEFT JOIN (SELECT * FROM predictions
               QUALIFY row_number() OVER (PARTITION BY coin_id ORDER BY predicted_at DESC) = 1) p
           ON p.coin_id = r.coin_id
    """,
]


# The serving_audit component's migrations (core/metadata.py: migrate), oldest first.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "serving_requests, serving_feedback and the serving_lineage view", tuple(_SCHEMA)),
)


def ensure_serving_schema(conn: duckdb.DuckDBPyConnection) -> None:
    ensure_schema(conn)  # gold_images, coins, predictions
    migrate(conn, "serving_audit", MIGRATIONS)


def _frame(rows: list[dict], columns: dict[str, str], day: str) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame["partition_date"] = pd.Timestamp(day).date()
    for name in columns:
        if name not in frame.columns:
            frame[name] = None
    return frame[list(columns)]


def load_serving_day(conn: duckdb.DuckDBPyConnection, day: str, requests: list[dict],
                     feedback: list[dict]) -> dict:
    """Replace ``day``'s rows of serving_requests / serving_feedback with these; returns counts."""
    ensure_serving_schema(conn)
    reqs = [{**r, **{k.removeprefix("result_"): v for k, v in r.items() if k.startswith("result_")}}
            for r in requests]
    fbs = [{**f, "feedback_id": f["id"]} for f in feedback]
    conn.execute("BEGIN")
    try:
        conn.execute("DELETE FROM serving_requests WHERE partition_date = ?", [day])
        conn.execute("DELETE FROM serving_feedback WHERE partition_date = ?", [day])
        if reqs:
            req_frame = _frame(reqs, REQUEST_COLUMNS, day)  # noqa: F841 (read by DuckDB below)
            conn.execute(f"INSERT INTO serving_requests SELECT {', '.join(REQUEST_COLUMNS)} FROM req_frame")
        if fbs:
            fb_frame = _frame(fbs, FEEDBACK_COLUMNS, day)  # noqa: F841
            conn.execute(f"INSERT INTO serving_feedback SELECT {', '.join(FEEDBACK_COLUMNS)} FROM fb_frame")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return day_summary(conn, day)


def day_summary(conn: duckdb.DuckDBPyConnection, day: str) -> dict:
    row = conn.execute(
        """
        SELECT count(*), count(*) FILTER (WHERE in_gold), count(*) FILTER (WHERE batch_year IS NOT NULL),
               quantile_cont(latency_ms, 0.5), quantile_cont(latency_ms, 0.95)
        FROM serving_lineage WHERE partition_date = ?
        """, [day]).fetchone()
    outcomes = conn.execute(
        "SELECT outcome, model_version, count(*) AS requests FROM serving_requests WHERE partition_date = ? "
        "GROUP BY ALL ORDER BY requests DESC", [day]).df()
    feedback = conn.execute(
        "SELECT role, status, count(*) AS feedback FROM serving_feedback WHERE partition_date = ? GROUP BY ALL",
        [day]).df()
    # photos the API put into the upload zone whose request row was never committed (the process died
    # between the two): ingested like any upload, listed here so the audit shows them
    unrecorded = conn.execute(
        "SELECT DISTINCT u.coin_id FROM uploads u WHERE u.partition_date = ? AND u.kind = 'image' "
        "AND u.coin_id LIKE 'api-%' AND NOT EXISTS (SELECT 1 FROM serving_requests r WHERE r.coin_id = u.coin_id) "
        "ORDER BY u.coin_id", [day]).df()
    return {"requests": row[0], "in_gold": row[1], "with_batch_prediction": row[2],
            "latency_ms_p50": row[3], "latency_ms_p95": row[4], "outcomes": outcomes, "feedback": feedback,
            "uploads_without_request": unrecorded}
