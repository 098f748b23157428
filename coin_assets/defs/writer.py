"""How ingestion steps open the DuckDB file, and how they retry.

A step opens the writer's connection once, without dagster-duckdb's silent ~100 s connect loop:
if another process holds the file, the step fails at once with a message that names the holder
and the reader path (coin_assets.core.readers), and Dagster's retry policy waits and tries again,
each attempt visible in the run's log. Every ingestion step is idempotent, so a retry is safe;
file-level problems never raise (they go to the quarantine table), so they are never retried.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
from dagster import Backoff, Failure, Jitter, RetryPolicy
from dagster_duckdb import DuckDBResource

from coin_assets.core.readers import is_lock_conflict, lock_conflict_message

# 2, 4, 8, 16, 32, 64 s: a reader holding the file for two minutes delays the run, never fails it.
INGESTION_RETRY = RetryPolicy(max_retries=6, delay=2, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)


@contextmanager
def writer_connection(resource: DuckDBResource) -> Iterator[duckdb.DuckDBPyConnection]:
    database = resource.database
    if database not in ("", ":memory:") and "://" not in database:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = duckdb.connect(database, read_only=False, config=dict(resource.connection_config))
    except duckdb.IOException as err:
        if is_lock_conflict(err):
            raise Failure(description=lock_conflict_message(err, database)) from err
        raise
    try:
        yield conn
    finally:
        conn.close()
