"""A path for people and programs that read the metadata without blocking the writer.

DuckDB lets one process write a database file, and a process that merely reads it (even
``read_only=True``) holds a lock that makes the writer fail. So readers never open the writer's
file: after each ingestion run the writer copies the whole database into
``<name>.snapshot.duckdb`` next to it (``COPY FROM DATABASE`` into a temporary file, then an atomic
rename). A notebook, a BI tool or a sensor opens the snapshot read-only for as long as it likes;
the next refresh replaces the file under it without waiting (the reader keeps the version it
opened).

    from coin_assets.core.readers import open_snapshot
    with open_snapshot("data/coin_assets.duckdb") as conn:
        conn.sql("SELECT * FROM coins").df()
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import duckdb

SNAPSHOT_SUFFIX = ".snapshot.duckdb"


def snapshot_path(db_path: str | os.PathLike) -> Path:
    path = Path(db_path)
    return path.with_name(path.name.removesuffix(".duckdb") + SNAPSHOT_SUFFIX)


def refresh_snapshot(conn: duckdb.DuckDBPyConnection, db_path: str | os.PathLike) -> Path:
    """Copy the database the writer ``conn`` has open into its snapshot (atomic replace)."""
    target = snapshot_path(db_path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.unlink(missing_ok=True)  # a refresh interrupted by a crash
    Path(str(tmp) + ".wal").unlink(missing_ok=True)
    source = conn.execute("SELECT current_database()").fetchall()[0][0]
    conn.execute(f"ATTACH '{_quote(tmp)}' AS coin_assets_snapshot")
    try:
        conn.execute(f'COPY FROM DATABASE "{source}" TO coin_assets_snapshot')
    finally:
        conn.execute("DETACH coin_assets_snapshot")
    os.replace(tmp, target)
    return target


def open_snapshot(db_path: str | os.PathLike) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the latest snapshot; it takes no lock on the writer's file."""
    target = snapshot_path(db_path)
    if not target.is_file():
        raise FileNotFoundError(f"no metadata snapshot at {target} yet: it is written after the first ingestion run")
    return duckdb.connect(str(target), read_only=True)


_LOCK_RE = re.compile(r"Could not set lock on file|Conflicting lock", re.IGNORECASE)
_PID_RE = re.compile(r"PID (\d+)")


def is_lock_conflict(err: BaseException) -> bool:
    return isinstance(err, duckdb.IOException) and bool(_LOCK_RE.search(str(err)))


def lock_conflict_message(err: BaseException, db_path: str | os.PathLike) -> str:
    """What an operator needs to know when the writer cannot open its file."""
    pid = _PID_RE.search(str(err))
    holder = f"process {pid.group(1)}" if pid else "another process"
    return (f"The metadata database {db_path} is locked by {holder} (a notebook, a BI tool or a script "
            f"holding a connection?). Readers must use the snapshot {snapshot_path(db_path)} "
            "(coin_assets.core.readers.open_snapshot), which never blocks ingestion. This step is "
            "retried with backoff; close that connection to let it through.")


def _quote(path: os.PathLike) -> str:
    return str(path).replace("'", "''")
