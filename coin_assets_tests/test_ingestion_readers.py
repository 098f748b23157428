"""A person reading the metadata never blocks ingestion (the reader snapshot, refreshed day by day), and a step that meets
a transient failure (the writer's file locked by another process) succeeds on retry, while a bad
file still goes to quarantine without any retry."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

from dagster import DagsterEventType

from coin_assets.core.readers import open_snapshot, readers_dir, snapshot_path
from coin_assets.defs.assets.ingestion import GOLD_STEP_TABLES
from coin_assets_tests.conftest import DAY, DAY2, materialization_metadata

HOLD = textwrap.dedent("""
    import sys, time, duckdb
    conn = duckdb.connect(sys.argv[1], read_only=True)
    print(conn.execute("SELECT count(*) FROM gold_images").fetchall()[0][0], flush=True)
    time.sleep(float(sys.argv[2]))
    print(conn.execute("SELECT count(*) FROM gold_images").fetchall()[0][0], flush=True)
""")


def _hold(path, seconds: float) -> tuple[subprocess.Popen, int]:
    """Another process holding a read-only connection; returns it and the gold rows it saw."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    return proc, int(proc.stdout.readline())


def _retries(result, step: str) -> list[str]:
    return [e.message for e in result.all_events
            if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY and e.step_key == step]


def test_a_reader_on_the_snapshot_never_blocks_a_run_and_sees_it_on_its_next_query(lake):
    lake.coin(DAY, "c1")
    lake.materialize(DAY)
    assert snapshot_path(lake.db_path).is_file()
    reader, seen_before = _hold(snapshot_path(lake.db_path), 4)
    try:
        lake.coin(DAY, "c2", shade=20)
        result = lake.materialize(DAY)
    finally:
        out, _ = reader.communicate(timeout=30)
    assert result.success and not _retries(result, "bronze_images")
    assert (seen_before, int(out)) == (2, 4)  # the connection it held all along reads the new run's files
    with open_snapshot(lake.db_path) as conn:
        assert conn.execute("SELECT count(*) FROM gold_images").fetchall()[0][0] == 4
        assert conn.execute("SELECT count(*) FROM coins WHERE paired").fetchall()[0][0] == 2


def test_a_refresh_writes_only_the_days_the_run_changed(lake):
    for day in (DAY, DAY2):
        lake.coin(day, "c1" if day == DAY else "c2", shade=0 if day == DAY else 10)
        lake.materialize(day)
    files = {p.relative_to(readers_dir(lake.db_path)).as_posix(): p.stat().st_mtime_ns
             for p in readers_dir(lake.db_path).rglob("*.parquet")}
    assert {"gold_images/2026-11-20.parquet", "gold_images/2026-11-21.parquet",
            "uploads/2026-11-21.parquet"} <= set(files)
    lake.coin(DAY2, "c3", shade=30)
    result = lake.materialize(DAY2)
    after = {p.relative_to(readers_dir(lake.db_path)).as_posix(): p.stat().st_mtime_ns
             for p in readers_dir(lake.db_path).rglob("*.parquet")}
    changed = {name for name in after if after[name] != files.get(name)}
    assert changed == {f"{t}/{DAY2}.parquet" for t in GOLD_STEP_TABLES}, changed
    assert materialization_metadata(result, "gold_images")["reader_snapshot_rows"] == lake.scalar(
        "SELECT (SELECT count(*) FROM uploads WHERE partition_date = ?) + (SELECT count(*) FROM silver_images "
        "WHERE partition_date = ?) + (SELECT count(*) FROM gold_images WHERE partition_date = ?) + 1",
        DAY2, DAY2, DAY2)
    with open_snapshot(lake.db_path) as conn:
        assert conn.execute("SELECT count(*) FROM gold_images").fetchall()[0][0] == 6


def test_the_first_refresh_of_a_database_exports_every_day(lake):
    import duckdb

    from coin_assets.core.readers import refresh_snapshot

    for shade, day in enumerate((DAY, DAY2)):
        lake.coin(day, f"c-{day}", shade=10 * shade)
        lake.materialize(day)
    shutil.rmtree(readers_dir(lake.db_path))  # a database from before this layout
    with duckdb.connect(str(lake.db_path)) as conn:
        refresh = refresh_snapshot(conn, lake.db_path, days=[DAY2])
    assert refresh.full and refresh.views_rebuilt
    with open_snapshot(lake.db_path) as conn:
        assert conn.execute("SELECT count(DISTINCT partition_date) FROM gold_images").fetchall()[0][0] == 2


def test_a_locked_metadata_file_is_retried_with_a_clear_message_and_bad_files_are_not(lake):
    lake.coin(DAY, "c1")
    lake.materialize(DAY)
    lake.coin(DAY, "c2", shade=20)
    lake.upload(DAY, "broken", "front", data=b"not an image")
    holder, _ = _hold(lake.db_path, 2.5)  # someone opened the writer's own file
    try:
        result = lake.materialize(DAY)
    finally:
        holder.communicate(timeout=30)
    assert result.success
    retries = _retries(result, "bronze_images")
    assert retries, "the first attempt met the lock and was retried"
    failures = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
    assert failures == []
    messages = " ".join(str(e.event_specific_data) for e in result.all_events
                        if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY)
    assert f"locked by process {holder.pid}" in messages and "snapshot" in messages
    assert set(lake.gold(DAY)) == {("c1", "front"), ("c1", "back"), ("c2", "front"), ("c2", "back")}
    assert "not a recognised image" in lake.quarantine(DAY)[("broken__front.jpg", "silver")]
    assert not _retries(result, "silver_images")  # the bad file did not make silver retry
