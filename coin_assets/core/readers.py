"""A path for people and programs that read the metadata without blocking the writer.

DuckDB lets one process write a database file, and a process that merely reads it (even
``read_only=True``) holds a lock that makes the writer fail. So readers never open the writer's
file. Instead each writer step exports what it changed, as Parquet, one file per table and day:
``<name>.readers/<table>/<day>.parquet`` (a table without days, such as ``review_labels``, as
``<table>/all.parquet``), each written to a temporary file and renamed into place. The cost of a
refresh is the rows of the days the step wrote, not the history. ``<name>.snapshot.duckdb`` next to
the database holds only views over those files (rebuilt, by an atomic rename, when a table or view
appears). A notebook, a BI tool or a sensor opens it read-only for as long as it likes; each query
reads the Parquet files as they are at that moment, and a refresh never waits for a reader.

    from coin_assets.core.readers import open_snapshot
    with open_snapshot("data/coin_assets.duckdb") as conn:
        conn.sql("SELECT * FROM coins").df()

The first refresh on a database with no export yet (a new instance, or one from before this layout)
exports every day once.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

SNAPSHOT_SUFFIX = ".snapshot.duckdb"
READERS_SUFFIX = ".readers"
DAY_COLUMN = "partition_date"
_MANIFEST = "manifest.json"
_WHOLE = "all"


def snapshot_path(db_path: str | os.PathLike) -> Path:
    """The views file readers open."""
    path = Path(db_path)
    return path.with_name(path.name.removesuffix(".duckdb") + SNAPSHOT_SUFFIX)


def readers_dir(db_path: str | os.PathLike) -> Path:
    """Where the Parquet files live: ``<table>/<day>.parquet``."""
    path = Path(db_path)
    return path.with_name(path.name.removesuffix(".duckdb") + READERS_SUFFIX)


@dataclass
class Refresh:
    """What a refresh wrote: files and rows per table, and how long it took."""
    files: int = 0
    rows: int = 0
    seconds: float = 0.0
    full: bool = False  # the first export of this database: every day
    views_rebuilt: bool = False
    tables: dict[str, int] = field(default_factory=dict)


def _catalog(conn) -> tuple[dict[str, bool], dict[str, str]]:
    """({base table: whether it has days}, {view: its CREATE VIEW statement}) of the writer's database."""
    database = conn.execute("SELECT current_database()").fetchall()[0][0]
    tables = {name: False for (name,) in conn.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND NOT internal AND NOT temporary",
        [database]).fetchall()}
    for (name,) in conn.execute(
            "SELECT table_name FROM duckdb_columns() WHERE database_name = ? AND column_name = ?",
            [database, DAY_COLUMN]).fetchall():
        if name in tables:
            tables[name] = True
    views = dict(conn.execute(
        "SELECT view_name, sql FROM duckdb_views() WHERE database_name = ? AND NOT internal AND NOT temporary",
        [database]).fetchall())
    return tables, views


def _copy(conn, select: str, params: list, target: Path) -> int:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    (rows,) = conn.execute(f"COPY ({select}) TO '{_quote(tmp)}' (FORMAT parquet)", params).fetchall()[0]
    os.replace(tmp, target)
    return int(rows)


def refresh_snapshot(conn: duckdb.DuckDBPyConnection, db_path: str | os.PathLike, days: Iterable[str],
                     tables: Iterable[str] | None = None) -> Refresh:
    """Export ``days`` of ``tables`` (default: every table) from the writer's connection ``conn`` for
    readers; tables without days are exported whole. On a database never exported, every day of every
    table. Returns what was written."""
    started = time.perf_counter()
    out = readers_dir(db_path)
    manifest_path = out / _MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    catalog, views = _catalog(conn)
    report = Refresh(full=not manifest.get("complete"))
    wanted = set(catalog) if tables is None or report.full else set(tables) & set(catalog)
    for table in sorted(wanted):
        if catalog[table]:
            table_days = set(map(str, days))
            if report.full:  # and the given days, so that a table without rows yet still gets its view
                table_days |= {str(d) for (d,) in conn.execute(f'SELECT DISTINCT {DAY_COLUMN} FROM "{table}"').fetchall()}
            for day in sorted(table_days):
                rows = _copy(conn, f'SELECT * FROM "{table}" WHERE {DAY_COLUMN} = CAST(? AS DATE)', [day],
                             out / table / f"{day}.parquet")
                report.files += 1
                report.rows += rows
                report.tables[table] = report.tables.get(table, 0) + rows
        else:
            rows = _copy(conn, f'SELECT * FROM "{table}"', [], out / table / f"{_WHOLE}.parquet")
            report.files += 1
            report.rows += rows
            report.tables[table] = rows
    exported = sorted(t for t in catalog if any((out / t).glob("*.parquet")))
    if (not snapshot_path(db_path).is_file() or manifest.get("tables") != exported
            or manifest.get("views") != views or report.full):
        _write_views(db_path, out, exported, views)
        report.views_rebuilt = True
        manifest_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = manifest_path.with_name(f".{_MANIFEST}.tmp")
        tmp.write_text(json.dumps({"complete": True, "tables": exported, "views": views}))
        os.replace(tmp, manifest_path)
    report.seconds = time.perf_counter() - started
    return report


def _write_views(db_path, out: Path, tables: list[str], views: dict[str, str]) -> None:
    """The views file: one view per exported table over its Parquet files, then the database's own views."""
    target = snapshot_path(db_path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.unlink(missing_ok=True)  # a rebuild interrupted by a crash
    Path(str(tmp) + ".wal").unlink(missing_ok=True)
    with duckdb.connect(str(tmp)) as views_db:
        for table in tables:
            files = _quote(out.resolve() / table / "*.parquet")
            views_db.execute(f'CREATE VIEW "{table}" AS SELECT * FROM read_parquet(\'{files}\', union_by_name = true)')
        for sql in views.values():
            try:
                views_db.execute(sql)
            except duckdb.CatalogException:
                pass  # a view over a table not exported yet: it appears with that table
    os.replace(tmp, target)


def open_snapshot(db_path: str | os.PathLike) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the readers' views; it takes no lock on the writer's file."""
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
