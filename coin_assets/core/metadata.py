"""DuckDB schema and SQL for the image metadata. Plain functions over a DuckDB connection.

The schema is versioned: table ``schema_version`` has one row per migration applied, per component
(``metadata`` here; ``coin_crops`` in core/crops.py, ``review_queue`` in core/predictions.py,
``serving_audit`` in core/serving_audit.py, each created where it is used, as before). Each component
keeps an ordered tuple of :class:`Migration`; :func:`migrate` applies those above the database's
version, each in its own transaction with its ``schema_version`` row. Migration 1 of each is the schema
as it was when versioning began, written with ``IF NOT EXISTS`` so that it also takes up a database made
by an earlier release (tables and columns that are missing are added, rows are kept).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from typing import NamedTuple

import duckdb
import pandas as pd

from coin_assets.core.clock import utcnow

SCHEMA = [
    # Bronze ledger: one row per uploaded file (images and anything else), bytes kept as uploaded.
    """
    CREATE TABLE IF NOT EXISTS uploads (
        upload_key VARCHAR PRIMARY KEY,
        partition_date DATE NOT NULL,
        kind VARCHAR NOT NULL,
        coin_id VARCHAR,
        side VARCHAR,
        raw_name VARCHAR NOT NULL,
        raw_size BIGINT NOT NULL,
        sha256 VARCHAR NOT NULL,
        bronze_path VARCHAR NOT NULL,
        duplicate_of VARCHAR,
        user_id VARCHAR,
        uploaded_at TIMESTAMPTZ,
        ingested_at TIMESTAMPTZ NOT NULL,
        label_year INTEGER,
        label_note VARCHAR,
        source_modified TIMESTAMPTZ
    )
    """,
    # the upload file's mtime, so an unchanged file (same key, size, mtime) is not hashed again
    "ALTER TABLE uploads ADD COLUMN IF NOT EXISTS source_modified TIMESTAMPTZ",
    # Silver: one row per distinct raw checksum that decoded cleanly.
    """
    CREATE TABLE IF NOT EXISTS silver_images (
        sha256 VARCHAR PRIMARY KEY,
        partition_date DATE NOT NULL,
        bronze_path VARCHAR NOT NULL,
        clean_name VARCHAR NOT NULL,
        clean_path VARCHAR NOT NULL,
        clean_size BIGINT NOT NULL,
        clean_width INTEGER NOT NULL,
        clean_height INTEGER NOT NULL,
        raw_format VARCHAR NOT NULL,
        raw_mode VARCHAR NOT NULL,
        raw_width INTEGER NOT NULL,
        raw_height INTEGER NOT NULL,
        exif_orientation INTEGER NOT NULL,
        notes VARCHAR,
        processed_at TIMESTAMPTZ NOT NULL
    )
    """,
    # Dead letters: every file that could not be used, with the reason. Keyed per stage.
    """
    CREATE TABLE IF NOT EXISTS quarantine (
        upload_key VARCHAR NOT NULL,
        stage VARCHAR NOT NULL,
        partition_date DATE NOT NULL,
        bronze_path VARCHAR,
        sha256 VARCHAR,
        reason VARCHAR NOT NULL,
        recorded_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (upload_key, stage)
    )
    """,
    # One row per day: the fingerprint of the day after the last run in which the whole ingestion chain ran
    # (coin_assets.core.ingest_state); a run that finds it unchanged has nothing to do.
    """
    CREATE TABLE IF NOT EXISTS ingest_state (
        partition_date DATE PRIMARY KEY,
        run_id VARCHAR NOT NULL,
        uploads_digest VARCHAR NOT NULL,
        gold_inputs_digest VARCHAR,
        complete_fingerprint VARCHAR,
        completed_by VARCHAR,
        completed_at TIMESTAMPTZ
    )
    """,
    # Review verdicts: labels given by a person; they win over sidecar labels.
    """
    CREATE TABLE IF NOT EXISTS review_labels (
        coin_id VARCHAR NOT NULL,
        year INTEGER NOT NULL,
        reviewer VARCHAR NOT NULL,
        reviewed_at TIMESTAMPTZ NOT NULL,
        source VARCHAR NOT NULL,
        PRIMARY KEY (coin_id, reviewed_at)
    )
    """,
    # Predictions history: never overwritten, one row per coin and model version.
    """
    CREATE TABLE IF NOT EXISTS predictions (
        coin_id VARCHAR NOT NULL,
        partition_date DATE NOT NULL,
        predicted_year DOUBLE NOT NULL,
        sigma DOUBLE NOT NULL,
        lower_90 DOUBLE NOT NULL,
        upper_90 DOUBLE NOT NULL,
        model_name VARCHAR NOT NULL,
        model_version VARCHAR NOT NULL,
        predicted_at TIMESTAMPTZ NOT NULL,
        dagster_run_id VARCHAR,
        PRIMARY KEY (coin_id, model_name, model_version)
    )
    """,
    # what the year reader read (JSON: year, digits, their probabilities, the region on the front photo)
    "ALTER TABLE predictions ADD COLUMN IF NOT EXISTS reading VARCHAR",
    # Gold: the ML-ready image metadata, one row per coin side.
    """
    CREATE TABLE IF NOT EXISTS gold_images (
        coin_id VARCHAR NOT NULL,
        side VARCHAR NOT NULL,
        partition_date DATE NOT NULL,
        user_id VARCHAR,
        uploaded_at TIMESTAMPTZ,
        ingested_at TIMESTAMPTZ NOT NULL,
        upload_key VARCHAR NOT NULL,
        raw_name VARCHAR NOT NULL,
        raw_path VARCHAR NOT NULL,
        raw_size BIGINT NOT NULL,
        raw_width INTEGER NOT NULL,
        raw_height INTEGER NOT NULL,
        clean_name VARCHAR NOT NULL,
        clean_path VARCHAR NOT NULL,
        clean_size BIGINT NOT NULL,
        clean_width INTEGER NOT NULL,
        clean_height INTEGER NOT NULL,
        gold_path VARCHAR NOT NULL,
        sha256 VARCHAR NOT NULL,
        label_year INTEGER,
        label_source VARCHAR,
        labelled_by VARCHAR,
        labelled_at TIMESTAMPTZ,
        model_version VARCHAR,
        PRIMARY KEY (coin_id, side)
    )
    """,
    """
    CREATE OR REPLACE VIEW coins AS
    SELECT
        coalesce(f.coin_id, b.coin_id) AS coin_id,
        coalesce(f.partition_date, b.partition_date) AS partition_date,
        coalesce(f.user_id, b.user_id) AS user_id,
        f.gold_path AS front_path,
        b.gold_path AS back_path,
        f.raw_path AS front_raw_path,
        b.raw_path AS back_raw_path,
        f.sha256 AS front_sha256,
        b.sha256 AS back_sha256,
        coalesce(f.label_year, b.label_year) AS label_year,
        coalesce(f.label_source, b.label_source) AS label_source,
        coalesce(f.model_version, b.model_version) AS model_version,
        f.coin_id IS NOT NULL AND b.coin_id IS NOT NULL AS paired
    FROM (SELECT * FROM gold_images WHERE side = 'front') f
    FULL OUTER JOIN (SELECT * FROM gold_images WHERE side = 'back') b USING (coin_id)
    """,
]

# The gold_images columns in table order (the DDL above), and those that may be null.
GOLD_COLUMNS = (
    "coin_id", "side", "partition_date", "user_id", "uploaded_at", "ingested_at", "upload_key", "raw_name",
    "raw_path", "raw_size", "raw_width", "raw_height", "clean_name", "clean_path", "clean_size",
    "clean_width", "clean_height", "gold_path", "sha256", "label_year", "label_source", "labelled_by",
    "labelled_at", "model_version",
)
GOLD_NULLABLE_COLUMNS = frozenset(
    {"user_id", "uploaded_at", "label_year", "label_source", "labelled_by", "labelled_at", "model_version"})
GOLD_REQUIRED_COLUMNS = tuple(c for c in GOLD_COLUMNS if c not in GOLD_NULLABLE_COLUMNS)


class Migration(NamedTuple):
    """One step of a component's schema: ``steps`` are SQL statements or functions of the connection."""

    version: int
    description: str
    steps: tuple[str | Callable[[duckdb.DuckDBPyConnection], None], ...]


SCHEMA_VERSION_SQL = """
CREATE TABLE IF NOT EXISTS schema_version (
    component VARCHAR NOT NULL,
    version INTEGER NOT NULL,
    description VARCHAR NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (component, version)
)
"""

# The metadata component's migrations, oldest first; add a new one at the end (never edit an applied one).
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "bronze ledger, silver, quarantine, ingest state, review labels, predictions, gold, coins view",
              tuple(SCHEMA)),
    # a day's lookups into the history (an earlier upload of the same bytes, a coin published on another day)
    # by index, not by a scan of every row ever ingested. DuckDB alters no table with an index on it: a later
    # migration that alters uploads or gold_images drops the index first and creates it again after.
    Migration(2, "indexes: uploads by checksum, gold images by coin id",
              ("CREATE INDEX IF NOT EXISTS uploads_by_sha256 ON uploads (sha256)",
               "CREATE INDEX IF NOT EXISTS gold_images_by_coin_id ON gold_images (coin_id)")),
)

_migrating = threading.Lock()  # one migration at a time in this process (DuckDB: one writing process)


def schema_version(conn, component: str = "metadata") -> int:
    """The newest migration of ``component`` applied to this database (0: none; reads only)."""
    has_table = conn.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = current_schema() AND table_name = 'schema_version'").fetchall()[0][0]
    if not has_table:
        return 0
    return conn.execute("SELECT coalesce(max(version), 0) FROM schema_version WHERE component = ?",
                        [component]).fetchall()[0][0]


def _in_transaction(conn) -> bool:
    """Whether the caller holds an open transaction (in autocommit every statement has a new id)."""
    return conn.execute("SELECT txid_current()").fetchall() == conn.execute("SELECT txid_current()").fetchall()


def migrate(conn, component: str, migrations: Sequence[Migration]) -> int:
    """Apply ``component``'s migrations above the database's version, in order, each in one transaction
    together with its ``schema_version`` row (inside the caller's transaction when one is open). A
    database at the newest version is only read. Returns the version reached."""
    head = len(migrations)
    if [m.version for m in migrations] != list(range(1, head + 1)):
        raise ValueError(f"{component} migrations must be numbered 1..{head} in order")
    current = schema_version(conn, component)
    if current > head:
        raise RuntimeError(f"the database's {component} schema is at version {current}, newer than this code "
                           f"knows ({head}): run the newer release against it")
    if current == head:
        return head
    with _migrating:
        own = not _in_transaction(conn)
        for migration in migrations[current:]:
            if own:
                conn.execute("BEGIN TRANSACTION")
            try:
                conn.execute(SCHEMA_VERSION_SQL)
                if schema_version(conn, component) < migration.version:  # not applied while we waited
                    for step in migration.steps:
                        if isinstance(step, str):
                            conn.execute(step)
                        else:
                            step(conn)
                    conn.execute("INSERT INTO schema_version VALUES (?, ?, ?, ?)",
                                 [component, migration.version, migration.description, utcnow()])
                if own:
                    conn.execute("COMMIT")
            except BaseException:
                if own:
                    conn.execute("ROLLBACK")
                raise
    return head


def ensure_schema(conn: duckdb.DuckDBPyConnection) -> None:
    """The metadata tables at their newest version (migrations applied where the database is older)."""
    migrate(conn, "metadata", MIGRATIONS)


def upsert_upload(conn, row: dict) -> None:
    """Insert or refresh one bronze ledger row; the first ingestion time is kept."""
    upsert_uploads(conn, [row])


def _write_new_then_known(conn, table: str, key: str, rows: list[dict], insert_new: str, replace_known: str) -> None:
    """Write ``rows`` into ``table`` in two statements over the registered frame ``batch``: those whose ``key``
    is not in the table yet with ``insert_new``, those whose key is with ``replace_known``. The keys are
    looked up by index. DuckDB's ``ON CONFLICT`` (and ``INSERT OR REPLACE``) costs about half a second a
    statement on a table of millions of rows, whatever the batch's size, where a plain insert costs
    milliseconds; the rows of new uploads, nearly all, never need it."""
    if not rows:
        return
    frame = pd.DataFrame(rows)
    known = {k for (k,) in conn.execute(f"SELECT {key} FROM {table} WHERE list_contains(?, {key})",
                                        [frame[key].tolist()]).fetchall()}
    is_known = frame[key].isin(known)
    for batch, sql in ((frame[~is_known], insert_new), (frame[is_known], replace_known)):
        if batch.empty:
            continue
        conn.register("batch", batch)
        try:
            conn.execute(sql.format(cols=", ".join(frame.columns)))
        finally:
            conn.unregister("batch")


def upsert_uploads(conn, rows: list[dict]) -> None:
    """Insert or refresh many bronze ledger rows (a file changed in place is refreshed); first ingestion
    times are kept."""
    if not rows:
        return
    updates = ", ".join(f"{c} = excluded.{c}" for c in rows[0] if c not in ("upload_key", "ingested_at"))
    insert = "INSERT INTO uploads ({cols}) SELECT {cols} FROM batch"
    _write_new_then_known(conn, "uploads", "upload_key", rows, insert,
                          insert + f" ON CONFLICT (upload_key) DO UPDATE SET {updates}")


def first_uploads_with_shas(conn, shas: list[str], excluding_keys: AbstractSet[str]
                            ) -> dict[tuple[str, str], tuple[str, str]]:
    """{(kind, sha256): (upload key, bronze path)} of the upload that first brought each checksum
    (per kind), among ledger rows other than ``excluding_keys``. The checksums are looked up by index;
    the exclusion is applied to the few rows found (never sent to the database: a day's keys, per batch,
    would make a day's bronze quadratic in its size)."""
    if not shas:
        return {}
    rows = conn.execute(
        "SELECT kind, sha256, upload_key, bronze_path, ingested_at FROM uploads WHERE list_contains(?, sha256) "
        "AND duplicate_of IS NULL", [list(set(shas))],
    ).fetchall()
    first: dict[tuple[str, str], tuple[str, str]] = {}
    for kind, sha, key, path, _ in sorted((r for r in rows if r[2] not in excluding_keys), key=lambda r: (r[4], r[2])):
        first.setdefault((kind, sha), (key, path))
    return first


def first_upload_with_sha(conn, sha256: str, excluding_key: str, kind: str | None = None) -> str | None:
    """The upload that first brought these bytes, if another upload (of the same kind) did."""
    found = conn.execute(
        "SELECT upload_key FROM uploads WHERE sha256 = ? AND upload_key <> ? AND duplicate_of IS NULL "
        "AND (? IS NULL OR kind = ?) ORDER BY ingested_at, upload_key LIMIT 1",
        [sha256, excluding_key, kind, kind],
    ).fetchall()
    return found[0][0] if found else None


def known_uploads(conn, partition: str) -> dict[str, tuple]:
    """{upload key: (raw size, source mtime, bronze path, sha256)} of the day's ledger."""
    return {
        key: (size, modified, path, sha) for key, size, modified, path, sha in conn.execute(
            "SELECT upload_key, raw_size, source_modified, bronze_path, sha256 FROM uploads WHERE partition_date = ?",
            [partition],
        ).fetchall()
    }


def bronze_path_of(conn, upload_key: str) -> str:
    return conn.execute("SELECT bronze_path FROM uploads WHERE upload_key = ?", [upload_key]).fetchall()[0][0]


# Up to this many checksums, a day's rows are looked up in the history by index; a join reads the checksum of
# every row ever recorded (gold's candidates: 0.29 s on a year of 10 000-photo days, for a day of 300). Above
# it DuckDB scans the table either way, and the join is the faster scan.
INDEX_LOOKUP_MAX = 2048


_CHECKSUM_NAME = re.compile(r"[0-9a-f]{64}(\.|$)")


def bronze_paths_of_files(conn, keys: list[str]) -> set[str]:
    """Which of the bronze files ``keys`` (``bronze/<day>/<sha256><ext>``) a ledger row points to. Their
    checksums are looked up by index (a bronze file is named by the checksum of its bytes), not every path in
    the ledger scanned."""
    # a name that is no checksum (a crash's .tmp-*, a file someone put there) no row can point to
    shas = sorted({name[:64] for key in keys if _CHECKSUM_NAME.match(name := key.rsplit("/", 1)[-1])})
    if not shas:
        return set()
    if len(shas) > INDEX_LOOKUP_MAX:
        prefixes = {key.rsplit("/", 1)[0] + "/" for key in keys}
        return {path for prefix in prefixes for path in bronze_paths_under(conn, prefix)} & set(keys)
    return {path for (path,) in conn.execute(
        "SELECT DISTINCT bronze_path FROM uploads WHERE list_contains(?, sha256)", [shas]).fetchall()} & set(keys)


def bronze_paths_under(conn, prefix: str) -> set[str]:
    """Bronze paths the ledger points to under ``prefix`` (any day's rows: duplicates share paths)."""
    return {r[0] for r in conn.execute(
        "SELECT DISTINCT bronze_path FROM uploads WHERE starts_with(bronze_path, ?)", [prefix]).fetchall()}


def repoint_bronze(conn, old_path: str, new_path: str) -> None:
    """Every row that names ``old_path`` as its bronze bytes names ``new_path`` instead (one transaction)."""
    conn.execute("BEGIN TRANSACTION")
    try:
        conn.execute("UPDATE uploads SET bronze_path = ? WHERE bronze_path = ?", [new_path, old_path])
        conn.execute("UPDATE silver_images SET bronze_path = ? WHERE bronze_path = ?", [new_path, old_path])
        conn.execute("UPDATE quarantine SET bronze_path = ? WHERE bronze_path = ?", [new_path, old_path])
        conn.execute("UPDATE gold_images SET raw_path = ? WHERE raw_path = ?", [new_path, old_path])
        conn.execute("COMMIT")
    except Exception:
        conn.execute("ROLLBACK")
        raise


def bronze_partitions(conn) -> list[str]:
    """Days that still have bronze files outside the archive."""
    return [str(r[0]) for r in conn.execute(
        "SELECT DISTINCT partition_date FROM uploads WHERE starts_with(bronze_path, 'bronze/') ORDER BY 1").fetchall()]


def apply_sidecars(conn, partition: str, sidecars: list[tuple[str, object]]) -> None:
    """Each (coin_id, sidecar)'s uploader, time and label onto the coin's image rows of the day, in one
    statement."""
    if not sidecars:
        return
    frame = pd.DataFrame({
        "coin_id": [coin_id for coin_id, _ in sidecars],
        "user_id": pd.Series([s.user_id for _, s in sidecars], dtype=object),
        "uploaded_at": pd.Series([s.uploaded_at for _, s in sidecars], dtype=object),
        "label_year": pd.Series([s.year for _, s in sidecars], dtype=object),
        "label_note": pd.Series([s.label_note for _, s in sidecars], dtype=object),
    })
    conn.register("sidecar_batch", frame)
    try:
        conn.execute(
            "UPDATE uploads SET user_id = CAST(b.user_id AS VARCHAR), "
            "uploaded_at = coalesce(CAST(b.uploaded_at AS TIMESTAMPTZ), uploads.uploaded_at), "
            "label_year = CAST(b.label_year AS INTEGER), label_note = CAST(b.label_note AS VARCHAR) "
            "FROM sidecar_batch AS b WHERE uploads.partition_date = ? AND uploads.kind = 'image' "
            "AND uploads.coin_id = b.coin_id",
            [partition],
        )
    finally:
        conn.unregister("sidecar_batch")


def record_quarantine(conn, upload_key, stage, partition, reason, bronze_path=None, sha256=None) -> None:
    conn.execute(
        "INSERT INTO quarantine VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (upload_key, stage) DO UPDATE SET "
        "partition_date = excluded.partition_date, bronze_path = excluded.bronze_path, "
        "sha256 = excluded.sha256, reason = excluded.reason, recorded_at = excluded.recorded_at",
        [upload_key, stage, partition, bronze_path, sha256, reason, utcnow()],
    )


def clear_quarantine(conn, partition: str, stage: str, keep_keys: Iterable[str] = ()) -> None:
    """Forget a stage's dead letters for a day before it is recomputed (keep the given keys)."""
    keep = list(keep_keys)
    if keep:
        conn.execute(
            "DELETE FROM quarantine WHERE partition_date = ? AND stage = ? AND NOT list_contains(?, upload_key)",
            [partition, stage, keep],
        )
    else:
        conn.execute("DELETE FROM quarantine WHERE partition_date = ? AND stage = ?", [partition, stage])


def uploads_for_partition(conn, partition: str, kind: str | None = None) -> pd.DataFrame:
    sql = "SELECT * FROM uploads WHERE partition_date = ?"
    params: list = [partition]
    if kind:
        sql += " AND kind = ?"
        params.append(kind)
    return conn.execute(sql + " ORDER BY upload_key", params).df()


def silver_row(conn, sha256: str) -> dict | None:
    cur = conn.execute("SELECT * FROM silver_images WHERE sha256 = ?", [sha256])
    rows = cur.fetchall()
    if not rows:
        return None
    return dict(zip([d[0] for d in cur.description], rows[0], strict=True))


def silver_paths_for_partition(conn, partition: str) -> dict[str, str]:
    """{sha256: clean path} of the silver rows for the day's uploads (wherever they were first seen)."""
    shas = conn.execute("SELECT list(DISTINCT sha256) FROM uploads WHERE partition_date = ?",
                        [partition]).fetchall()[0][0] or []
    if len(shas) > INDEX_LOOKUP_MAX:
        return dict(conn.execute("SELECT sha256, clean_path FROM silver_images WHERE sha256 IN "
                                 "(SELECT sha256 FROM uploads WHERE partition_date = ?)", [partition]).fetchall())
    return dict(conn.execute("SELECT sha256, clean_path FROM silver_images WHERE list_contains(?, sha256)",
                             [shas]).fetchall())


def insert_silver_rows(conn, rows: list[dict]) -> None:
    """Insert or replace many silver rows."""
    _write_new_then_known(conn, "silver_images", "sha256", rows, "INSERT INTO silver_images BY NAME SELECT * FROM batch",
                          "INSERT OR REPLACE INTO silver_images BY NAME SELECT * FROM batch")


def delete_superseded_silver(conn, partition: str) -> int:
    """Drop the day's silver rows whose checksum no upload has any more (replaced by a newer version). The
    day's checksums are looked up in the ledger by index, not joined against every upload ever recorded."""
    shas = [sha for (sha,) in conn.execute("SELECT sha256 FROM silver_images WHERE partition_date = ?",
                                           [partition]).fetchall()]
    if not shas:
        return 0
    kept = {sha for (sha,) in conn.execute("SELECT DISTINCT sha256 FROM uploads WHERE list_contains(?, sha256)",
                                           [shas]).fetchall()}
    gone = [sha for sha in shas if sha not in kept]
    if gone:
        conn.execute("DELETE FROM silver_images WHERE list_contains(?, sha256)", [gone])
    return len(gone)


def silver_paths_recorded(conn, partition: str) -> set[str]:
    return {r[0] for r in conn.execute(
        "SELECT clean_path FROM silver_images WHERE partition_date = ?", [partition]).fetchall()}


def insert_silver(conn, row: dict) -> None:
    cols = list(row)
    conn.execute(
        f"INSERT OR REPLACE INTO silver_images ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
        [row[c] for c in cols],
    )


_GOLD_CANDIDATES = """
    WITH day_coins AS (
        SELECT DISTINCT coin_id FROM uploads WHERE partition_date = $day AND kind = 'image'
    ), latest_review AS (
        SELECT * FROM review_labels WHERE coin_id IN (SELECT coin_id FROM day_coins)
        QUALIFY row_number() OVER (PARTITION BY coin_id ORDER BY reviewed_at DESC) = 1
    ), latest_prediction AS (
        SELECT coin_id, model_version FROM predictions WHERE coin_id IN (SELECT coin_id FROM day_coins)
        QUALIFY row_number() OVER (PARTITION BY coin_id ORDER BY predicted_at DESC) = 1
    )
    SELECT u.coin_id, u.side, u.partition_date, u.user_id, u.uploaded_at, u.ingested_at,
           u.upload_key, u.raw_name, u.bronze_path AS raw_path, u.raw_size,
           s.raw_width, s.raw_height, s.clean_name, s.clean_path, s.clean_size,
           s.clean_width, s.clean_height, u.sha256,
           coalesce(r.year, u.label_year) AS label_year,
           CASE WHEN r.year IS NOT NULL THEN 'review' WHEN u.label_year IS NOT NULL THEN 'sidecar' END
               AS label_source,
           CASE WHEN r.year IS NOT NULL THEN r.reviewer ELSE u.user_id END AS labelled_by,
           CASE WHEN r.year IS NOT NULL THEN r.reviewed_at ELSE u.uploaded_at END AS labelled_at,
           p.model_version,
           -- a coin side uploaded twice with different bytes (or as front and obverse): the latest wins
           row_number() OVER side_uploads AS pick,
           first_value(u.upload_key) OVER side_uploads AS chosen_key
    FROM uploads u
    JOIN {silver} s USING (sha256)
    LEFT JOIN latest_review r USING (coin_id)
    LEFT JOIN latest_prediction p USING (coin_id)
    WHERE u.partition_date = $day AND u.kind = 'image' AND u.duplicate_of IS NULL
      AND NOT EXISTS (SELECT 1 FROM quarantine q WHERE q.upload_key = u.upload_key)
      -- a coin side uploaded again on a later day belongs to that later day
      AND NOT EXISTS (SELECT 1 FROM uploads later WHERE later.coin_id = u.coin_id AND later.side = u.side
                      AND later.kind = 'image' AND later.duplicate_of IS NULL
                      AND later.partition_date > $day)
    WINDOW side_uploads AS (PARTITION BY u.coin_id, u.side ORDER BY u.uploaded_at DESC NULLS LAST,
                            u.upload_key DESC)
"""


def _gold_candidates_sql(conn, partition: str) -> tuple[str, dict]:
    shas = conn.execute("SELECT list(DISTINCT sha256) FROM uploads WHERE partition_date = ? AND kind = 'image' "
                        "AND duplicate_of IS NULL", [partition]).fetchall()[0][0] or []
    if len(shas) > INDEX_LOOKUP_MAX:
        return _GOLD_CANDIDATES.format(silver="silver_images"), {"day": partition}
    silver = "(SELECT * FROM silver_images WHERE list_contains($shas, sha256))"
    return _GOLD_CANDIDATES.format(silver=silver), {"day": partition, "shas": shas}


def gold_candidates(conn, partition: str) -> pd.DataFrame:
    """Every clean, non-duplicate coin image of the day, one per coin side, with its label resolved
    (latest review verdict first, then the sidecar) and its latest model version."""
    sql, params = _gold_candidates_sql(conn, partition)
    return conn.execute(f"SELECT * EXCLUDE (pick, chosen_key) FROM ({sql}) WHERE pick = 1 ORDER BY coin_id, side",
                        params).df()


def superseded_uploads(conn, partition: str) -> list[tuple]:
    """(upload key, bronze path, sha256, coin id, side, the key chosen instead) of the day's clean images
    that lost their coin side to another upload (e.g. both ``__front`` and ``__obverse``)."""
    sql, params = _gold_candidates_sql(conn, partition)
    return conn.execute(f"SELECT upload_key, raw_path, sha256, coin_id, side, chosen_key FROM ({sql}) "
                        "WHERE pick > 1 ORDER BY upload_key", params).fetchall()


def duplicates_of_quarantined(conn, partition: str) -> list[tuple]:
    """(upload key, bronze path, sha256, first key, its reason) of the day's image uploads whose bytes
    equal an image that was quarantined."""
    return conn.execute(
        "SELECT u.upload_key, u.bronze_path, u.sha256, u.duplicate_of, q.reason FROM uploads u "
        "JOIN quarantine q ON q.upload_key = u.duplicate_of AND q.stage = 'silver' "
        "WHERE u.partition_date = ? AND u.kind = 'image' ORDER BY u.upload_key",
        [partition],
    ).fetchall()


def replace_gold_partition(conn, partition: str, frame: pd.DataFrame) -> None:
    """Swap one day's gold rows in a single transaction (idempotent re-materialization)."""
    conn.execute("BEGIN TRANSACTION")
    try:
        conn.execute("DELETE FROM gold_images WHERE partition_date = ?", [partition])
        if len(frame):
            conn.register("gold_frame", frame)
            cols = ", ".join(frame.columns)
            conn.execute("DELETE FROM gold_images WHERE (coin_id, side) IN (SELECT coin_id, side FROM gold_frame)")
            conn.execute(f"INSERT INTO gold_images ({cols}) SELECT {cols} FROM gold_frame")
            conn.unregister("gold_frame")
        conn.execute("COMMIT")
    except Exception:
        conn.execute("ROLLBACK")
        raise


def row_counts(conn, tables: Iterable[str]) -> dict[str, int]:
    """Rows of each table (a table that does not exist yet counts 0)."""
    existing = {r[0] for r in conn.execute("SELECT table_name FROM duckdb_tables() UNION SELECT view_name FROM duckdb_views()").fetchall()}
    return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchall()[0][0] if t in existing else 0 for t in tables}


def paired_coin_count(conn) -> int:
    return conn.execute("SELECT count(*) FROM coins WHERE paired").fetchall()[0][0]


def table_counts(conn, partition: str | None = None) -> dict[str, int]:
    where = " WHERE partition_date = ?" if partition else ""
    params: Sequence = [partition] if partition else []
    return {
        table: conn.execute(f"SELECT count(*) FROM {table}{where}", params).fetchall()[0][0]
        for table in ("uploads", "silver_images", "quarantine", "gold_images")
    }


INGESTION_TABLES = ("uploads", "silver_images", "quarantine", "gold_images", "coin_crops")


def ingestion_rows_by_day(conn, partition: str) -> dict[str, list]:
    """[row count, xor of row hashes] of the day in each ingestion table (a table not created yet: absent)."""
    existing = {r[0] for r in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    return {t: list(conn.execute(f"SELECT count(*), bit_xor(hash(t)) FROM {t} t WHERE partition_date = ?",
                                 [partition]).fetchall()[0])
            for t in INGESTION_TABLES if t in existing}


def ingest_state(conn, partition: str) -> dict | None:
    cursor = conn.execute("SELECT * EXCLUDE (partition_date) FROM ingest_state WHERE partition_date = ?", [partition])
    row = cursor.fetchone()
    return dict(zip([d[0] for d in cursor.description], row, strict=True)) if row else None


def set_ingest_state(conn, partition: str, *, run_id: str, uploads_digest: str, gold_inputs_digest: str | None,
                     complete_fingerprint: str | None, completed_by: str | None, **_ignored) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO ingest_state VALUES (?, ?, ?, ?, ?, ?, ?)",
        [partition, run_id, uploads_digest, gold_inputs_digest, complete_fingerprint, completed_by,
         utcnow() if complete_fingerprint else None])
