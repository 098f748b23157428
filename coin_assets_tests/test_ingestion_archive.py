"""Archive round trip: a day's bronze moves to archive/, the ledger follows, the lineage check still
verifies the archived bytes, a second archive run moves nothing, re-processing reads the archive."""

from __future__ import annotations

from datetime import timedelta

import duckdb
from dagster import materialize

from coin_assets.defs.resources import CoinStorage
from coin_assets_tests.conftest import (
    ASSETS,
    CHECKS,
    DAY,
    INGESTION_ASSETS,
    materialization_metadata,
    metadata_values,
)

archived_bronze = ASSETS["archived_bronze"]
gold_lineage_is_intact = CHECKS["gold_lineage_is_intact"]


def _archive(lake, after_days: int = 0):
    storage = CoinStorage(root=str(lake.root), archive_after_days=after_days)
    result = materialize([*INGESTION_ASSETS, archived_bronze], selection=[archived_bronze], partition_key=DAY,
                         resources={**lake.resources, "storage": storage}, instance=lake.instance)
    return materialization_metadata(result, "archived_bronze")


def test_archive_round_trip(lake):
    lake.coin(DAY, "c1")
    lake.upload(DAY, "bad", "front", data=b"not an image")
    lake.materialize(DAY)
    bronze = lake.files("bronze")
    gold_before = lake.gold(DAY)

    assert _archive(lake, after_days=36500)["archived"] is False  # a young day is left alone
    meta = _archive(lake)
    assert (meta["archived"], meta["moved"]) == (True, len(bronze))
    assert lake.files("bronze") == {}
    assert lake.files("archive") == {f"archive/{k}": v for k, v in bronze.items()}
    assert lake.scalar("SELECT count(*) FROM uploads WHERE NOT starts_with(bronze_path, 'archive/bronze/')") == 0
    assert all(row["raw_path"].startswith("archive/") for row in lake.gold(DAY).values())
    assert lake.run_checks(DAY, [gold_lineage_is_intact])["gold_lineage_is_intact"].passed
    assert _archive(lake)["moved"] == 0  # idempotent

    # a changed silver recipe: silver is rebuilt from the archived bytes, gold comes out the same
    with duckdb.connect(str(lake.db_path)) as conn:
        conn.execute("DELETE FROM silver_images")
    for path in (lake.root / "silver").rglob("*.jpg"):
        path.unlink()
    result = lake.materialize(DAY)
    assert materialization_metadata(result, "silver_images")["processed"] == 2
    assert materialization_metadata(result, "bronze_images")["processed"] == 0
    assert lake.files("bronze") == {}
    after = lake.gold(DAY)
    assert {k: (r["sha256"], r["clean_size"]) for k, r in after.items()} == \
        {k: (r["sha256"], r["clean_size"]) for k, r in gold_before.items()}

    # the lineage check verifies the archived bytes' sha256
    raw_path = after[("c1", "front")]["raw_path"]
    data = bytearray((lake.root / raw_path).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (lake.root / raw_path).write_bytes(bytes(data))
    evaluation = lake.run_checks(DAY, [gold_lineage_is_intact])["gold_lineage_is_intact"]
    assert not evaluation.passed and f"bronze {raw_path} hashes to" in metadata_values(evaluation)["problems"]


def test_the_archive_schedule_asks_for_the_day_that_just_turned_old_enough(tmp_path):
    from datetime import datetime, timezone

    from dagster import RunRequest, SkipReason, build_schedule_context

    from coin_assets.defs.jobs import build_jobs
    from coin_assets.defs.partitions import daily_partitions
    from coin_assets.defs.schedules import build_schedules

    partitions = daily_partitions("2026-03-01")  # the first day the schedule knows: the configured start date
    schedules = {s.name: s for s in build_schedules(build_jobs(partitions), partitions)}
    bronze_archive_schedule = schedules["bronze_archive_schedule"]
    storage = CoinStorage(root=str(tmp_path), archive_after_days=30)
    first = datetime(2026, 3, 1, tzinfo=timezone.utc)
    when = first.replace(hour=1, minute=15) + timedelta(days=40)
    request = bronze_archive_schedule(build_schedule_context(scheduled_execution_time=when, resources={"storage": storage}))
    assert isinstance(request, RunRequest) and request.partition_key == (when - timedelta(days=30)).date().isoformat()
    early = bronze_archive_schedule(build_schedule_context(scheduled_execution_time=first + timedelta(days=3),
                                                           resources={"storage": storage}))
    assert isinstance(early, SkipReason)
