"""`upload_sensor`: one run request per day whose settled upload files changed, keyed so that the
same files never start two runs; half-written and in-progress files are left for a later tick."""

from __future__ import annotations

import json
import os
from datetime import datetime

import pytest
from dagster import SensorResult, build_sensor_context

from coin_assets_tests.conftest import DAY, DAY2, SENSORS, age

SETTLE = 30
upload_sensor = SENSORS["upload_sensor"]  # of the project's definitions: partitions from 2025-01-01


@pytest.fixture(autouse=True)
def settle_window(lake):
    lake.settle(SETTLE)


def tick(lake, cursor: str | None = None, sensor=upload_sensor) -> SensorResult:
    context = build_sensor_context(cursor=cursor, resources={"storage": lake.storage}, instance=lake.instance)
    result = sensor(context)
    assert isinstance(result, SensorResult)
    return result


def requested(result: SensorResult) -> dict[str, str]:
    """{partition key: run key} of a tick's run requests."""
    keys = [r.partition_key for r in result.run_requests or []]
    assert len(keys) == len(set(keys)), "one request per day"
    return {r.partition_key: r.run_key for r in result.run_requests or []}


def test_new_files_request_one_run_per_day(lake):
    lake.coin(DAY, "c1")
    lake.coin(DAY, "c2", shade=10)
    lake.coin(DAY2, "c3", shade=20)
    result = tick(lake)
    runs = requested(result)
    assert set(runs) == {DAY, DAY2}
    cursor = json.loads(result.cursor)
    assert set(cursor) == {DAY, DAY2}
    for day, run_key in runs.items():
        assert run_key == f"{day}:{cursor[day]}"
    assert all(r.tags["coin_assets/trigger"] == "upload_sensor" for r in result.run_requests)
    assert upload_sensor.job_name == "ingestion_job"


def test_second_tick_with_the_returned_cursor_requests_nothing(lake):
    lake.coin(DAY, "c1")
    first = tick(lake)
    second = tick(lake, first.cursor)
    assert requested(second) == {}
    assert second.skip_reason is not None and "no new settled uploads" in second.skip_reason.skip_message
    assert json.loads(second.cursor) == json.loads(first.cursor)


def test_no_uploads_at_all_skips(lake):
    result = tick(lake)
    assert requested(result) == {}
    assert result.skip_reason.skip_message == "no new settled uploads among 0 files"


def test_same_files_give_the_same_run_key_even_without_a_cursor(lake):
    lake.coin(DAY, "c1")
    assert requested(tick(lake)) == requested(tick(lake))


def test_a_changed_file_requests_its_day_again_with_a_new_run_key(lake):
    front, _ = lake.coin(DAY, "c1")
    lake.coin(DAY2, "c2", shade=10)
    first = tick(lake)
    lake.upload(DAY, "c1", "front", color=(1, 200, 1))  # new bytes, new size and mtime
    age(front, 600)
    second = tick(lake, first.cursor)
    assert set(requested(second)) == {DAY}
    assert requested(second)[DAY] != requested(first)[DAY]
    assert json.loads(second.cursor)[DAY2] == json.loads(first.cursor)[DAY2]


def test_a_new_file_on_a_day_requests_that_day_again(lake):
    lake.coin(DAY, "c1")
    first = tick(lake)
    lake.coin(DAY, "c2", shade=30)
    second = tick(lake, first.cursor)
    assert set(requested(second)) == {DAY}
    assert requested(second)[DAY] != requested(first)[DAY]


def test_a_file_still_being_written_waits_until_it_has_settled(lake):
    path = lake.upload(DAY, "c1", settled=False)  # modified just now
    first = tick(lake)
    assert requested(first) == {}
    age(path, SETTLE / 2)  # still inside the window
    assert requested(tick(lake, first.cursor)) == {}
    age(path, SETTLE + 5)
    later = tick(lake, first.cursor)
    assert set(requested(later)) == {DAY}


def test_a_half_written_file_is_left_out_of_its_days_fingerprint_until_settled(lake):
    lake.coin(DAY, "done")
    writing = lake.upload(DAY, "late", settled=False)
    first = tick(lake)
    assert set(requested(first)) == {DAY}
    assert requested(tick(lake, first.cursor)) == {}  # the same half-written file: nothing new
    age(writing, SETTLE + 5)
    second = tick(lake, first.cursor)
    assert set(requested(second)) == {DAY}
    assert requested(second)[DAY] != requested(first)[DAY]


def test_settle_window_comes_from_the_storage_resource(lake):
    path = lake.upload(DAY, "c1", settled=False)
    age(path, 5)
    assert requested(tick(lake)) == {}
    lake.settle(2)
    assert set(requested(tick(lake))) == {DAY}


def test_the_storage_resource_carries_the_settle_window_of_the_settings():
    from coin_assets.defs.resources import default_resources
    from coin_assets.settings import Settings

    storage = default_resources(Settings.from_env({"COIN_ASSETS_SETTLE_SECONDS": "7"}))["storage"]
    assert storage.settle_seconds == 7


@pytest.mark.parametrize("name", [
    "c1__front.jpg.part", "c1__front.jpg.tmp", "c1__front.jpg.crdownload", "c1__front.jpg.partial",
    ".c1__front.jpg", "..__front.jpg", ".DS_Store",
])
def test_in_progress_names_never_start_a_run(lake, name):
    lake.upload(DAY, name=name)  # settled: an hour old
    result = tick(lake)
    assert requested(result) == {}
    assert result.skip_reason.skip_message == "no new settled uploads among 0 files"


def test_in_progress_names_do_not_change_a_days_fingerprint(lake):
    lake.coin(DAY, "c1")
    first = tick(lake)
    lake.upload(DAY, name="c2__front.jpg.part")
    lake.upload(DAY, name=".c2__back.jpg")
    assert requested(tick(lake, first.cursor)) == {}


@pytest.mark.parametrize("folder", ["2024-12-31", "2099-01-01"])
def test_uploads_for_a_day_outside_the_partitions_are_ignored(lake, folder):
    lake.coin(folder, "out")
    lake.coin(DAY, "in", shade=40)
    result = tick(lake)
    assert set(requested(result)) == {DAY}
    assert folder not in json.loads(result.cursor)
    assert requested(tick(lake, result.cursor)) == {}


def test_the_first_day_asked_for_is_the_configured_start_date(lake):
    from coin_assets.defs.jobs import build_jobs
    from coin_assets.defs.partitions import daily_partitions
    from coin_assets.defs.sensors import build_sensors

    partitions = daily_partitions(DAY2)
    sensors = {s.name: s for s in build_sensors(build_jobs(partitions), partitions, upload_interval_seconds=5,
                                                  retrain_interval_seconds=60)}
    assert sensors["upload_sensor"].minimum_interval_seconds == sensors["review_sensor"].minimum_interval_seconds == 5
    assert sensors["retraining_sensor"].minimum_interval_seconds == 60
    lake.coin(DAY, "before")
    lake.coin(DAY2, "first", shade=40)
    assert set(requested(tick(lake, sensor=sensors["upload_sensor"]))) == {DAY2}
    assert set(requested(tick(lake))) == {DAY, DAY2}


def test_folders_that_are_not_days_are_ignored(lake):
    lake.coin("not-a-day", "x")
    lake.coin("2026-02-30", "y")
    lake.upload("reviews", name="verdicts.csv", data=b"coin_id,year\nc1,1990\n")
    assert requested(tick(lake)) == {}


def test_a_file_put_directly_in_uploads_requests_the_day_of_its_mtime(lake):
    path = lake.upload(None, "loose")
    noon = datetime.fromisoformat(f"{DAY}T12:00:00+00:00").timestamp()
    os.utime(path, (noon, noon))
    assert set(requested(tick(lake))) == {DAY}


def test_sensor_only_reads_the_upload_zone(lake):
    lake.coin(DAY, "c1")
    lake.materialize(DAY)
    before = lake.files("bronze", "silver", "gold")
    mtimes = {p: p.stat().st_mtime for p in (lake.root / "uploads").rglob("*")}
    assert set(requested(tick(lake))) == {DAY}  # bronze/silver/gold files are not uploads
    assert lake.files("bronze", "silver", "gold") == before
    assert {p: p.stat().st_mtime for p in (lake.root / "uploads").rglob("*")} == mtimes


def test_after_the_requested_run_a_second_tick_starts_no_run_and_records_no_empty_materialization(lake):
    """The run a tick requested changes nothing the sensor watches, so the next tick
    with nothing new requests no run; the day's latest bronze materialization stays the real one."""
    from dagster import AssetKey

    lake.coin(DAY, "c1")
    first = tick(lake)
    assert set(requested(first)) == {DAY}
    lake.materialize(DAY)  # what the requested run does
    second = tick(lake, first.cursor)
    assert requested(second) == {} and second.skip_reason is not None
    events = lake.instance.fetch_materializations(AssetKey("bronze_images"), limit=10).records
    assert len(events) == 1
    assert events[0].asset_materialization.metadata["processed"].value == 3


def test_a_tick_lists_only_the_newest_day_folders_not_the_history(lake):
    """Nine day folders and a window of seven: the two oldest are not listed at all (a backfill takes them)."""
    from datetime import date, timedelta

    listed = []
    store = lake.storage.store()
    original = type(store).list

    def spy(self, prefix):
        listed.append(prefix)
        return original(self, prefix)

    days = [(date(2026, 11, 1) + timedelta(days=k)).isoformat() for k in range(9)]
    for k, day in enumerate(days):
        lake.coin(day, f"c{k}", shade=5 * k)
    lake.storage = lake.storage.model_copy(update={"upload_sensor_days": 7})
    type(store).list = spy
    try:
        result = tick(lake)
    finally:
        type(store).list = original
    assert set(requested(result)) == set(days[2:])
    assert sorted(listed) == [f"uploads/{day}" for day in days[2:]]
