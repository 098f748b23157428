"""How ingestion steps and checks open the DuckDB file, and how they retry.

A writer step (pool `duckdb_writer`) opens a read-write connection; a check opens a read-only one
and holds it only while it copies the rows it audits (milliseconds), outside the pool. Both wait
up to a second for the file (another run's check reading it, or a step of another run writing
it), polling every 20 ms, instead of dagster-duckdb's silent ~100 s connect loop; if the file is
still held, the step fails with a message that names the holder and the reader path
(coin_assets.core.readers), and Dagster's retry policy waits and tries again, each attempt visible
in the run's log. Every ingestion step is idempotent, so a retry is safe; file-level problems never
raise (they go to the quarantine table), so they are never retried.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
from dagster import Backoff, Failure, Jitter, PartitionsDefinition, RetryPolicy, asset
from dagster_duckdb import DuckDBResource

from coin_assets.core.readers import is_lock_conflict, lock_conflict_message
from coin_assets.defs.pools import DUCKDB_WRITER_POOL

# 2, 4, 8, 16, 32, 64 s: a reader holding the file for two minutes delays the run, never fails it.
INGESTION_RETRY = RetryPolicy(max_retries=6, delay=2, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)



def ingestion_writer_asset(partitions: PartitionsDefinition, **kwargs):
    """``@asset`` for a day's ingestion step that writes the DuckDB file: partitioned by day, in the
    `ingestion` group and the `duckdb_writer` pool, retried by ``INGESTION_RETRY``."""
    return asset(partitions_def=partitions, group_name="ingestion", pool=DUCKDB_WRITER_POOL,
                 retry_policy=INGESTION_RETRY, **kwargs)


LOCK_WAIT_SECONDS = 1.0
_POLL_SECONDS = 0.02


def _connect(resource: DuckDBResource, read_only: bool) -> duckdb.DuckDBPyConnection:
    database = resource.database
    if not read_only and database not in ("", ":memory:") and "://" not in database:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            return duckdb.connect(database, read_only=read_only, config=dict(resource.connection_config))
        except duckdb.IOException as err:
            if not is_lock_conflict(err):
                raise
            if time.monotonic() >= deadline:
                raise Failure(description=lock_conflict_message(err, database)) from err
            time.sleep(_POLL_SECONDS)


@contextmanager
def writer_connection(resource: DuckDBResource) -> Iterator[duckdb.DuckDBPyConnection]:
    conn = _connect(resource, read_only=False)
    try:
        yield conn
    finally:
        conn.close()


@contextmanager
def reader_connection(resource: DuckDBResource) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection for a check: it takes no writer slot; close it as soon as the rows
    are read (while it is open, writers of other runs wait)."""
    conn = _connect(resource, read_only=True)
    try:
        yield conn
    finally:
        conn.close()
