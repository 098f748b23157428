"""A run with nothing new skips the ingestion chain; any change anywhere the chain reads makes it run again."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import duckdb
from dagster import materialize

from coin_assets.core import ingest_state
from coin_assets.core import metadata as md
from coin_assets_tests.conftest import ASSETS, DAY, INGESTION_ASSETS, INGESTION_CHECKS, LAYERS, age

CHAIN = [*LAYERS, "found_coins", "coin_crops"]


def run_chain(lake, selection=CHAIN, run_config=None):
    return materialize([*INGESTION_ASSETS, ASSETS["coin_crops"], *INGESTION_CHECKS], partition_key=DAY,
                       resources=lake.resources, instance=lake.instance, selection=selection,
                       run_config=run_config)


def materialized(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def test_nothing_new_skips_the_whole_chain_and_its_checks(lake):
    for i in range(3):
        lake.coin(DAY, f"c{i}", shade=10 * i)
    first = run_chain(lake)
    assert materialized(first) == set(CHAIN)
    assert first.asset_materializations_for_node("coin_crops")[0].metadata["chain_complete"].value is True
    files = lake.files("bronze", "silver", "gold", "crops")

    second = run_chain(lake)
    assert second.success
    assert materialized(second) == set()
    assert not second.get_asset_check_evaluations()  # nothing changed, nothing re-checked
    assert lake.files("bronze", "silver", "gold", "crops") == files

    forced = run_chain(lake, run_config={"ops": {"bronze_images": {"config": {"force": True}}}})
    assert materialized(forced) == set(CHAIN)


def test_a_change_anywhere_the_chain_reads_runs_it_again(lake):
    lake.coin(DAY, "c0")
    lake.coin(DAY, "c1", shade=20)
    run_chain(lake)

    silver = next((lake.root / "silver" / DAY).glob("*.jpg"))
    silver.unlink()  # a lake file lost
    repaired = run_chain(lake)
    assert materialized(repaired) == set(CHAIN)
    assert silver.exists()
    assert materialized(run_chain(lake)) == set()

    lake.coin(DAY, "c2", shade=40)  # a new upload
    assert "gold_images" in materialized(run_chain(lake))
    assert ("c2", "front") in lake.gold()

    with duckdb.connect(str(lake.db_path)) as conn:  # a verdict from the review queue changes a label
        conn.execute("INSERT INTO review_labels VALUES ('c0', 1955, 'rita', now(), 'review')")
    assert "gold_images" in materialized(run_chain(lake))
    assert lake.gold()[("c0", "front")]["label_year"] == 1955

    with duckdb.connect(str(lake.db_path)) as conn:  # a row removed by hand
        conn.execute("DELETE FROM silver_images WHERE sha256 = (SELECT min(sha256) FROM silver_images)")
    assert "silver_images" in materialized(run_chain(lake))
    assert materialized(run_chain(lake)) == set()


def test_a_chain_that_did_not_run_whole_is_not_recorded_as_done(lake):
    lake.coin(DAY, "c0")
    run_chain(lake)
    (next((lake.root / "gold" / DAY).glob("*.jpg"))).unlink()
    # bronze alone: it starts the chain (clearing the record), the rest does not follow in this run
    assert materialized(run_chain(lake, selection=["bronze_images"])) == {"bronze_images"}
    assert "gold_images" in materialized(run_chain(lake))  # so the next run does everything, and repairs


def test_uploads_that_settle_during_a_run_are_not_recorded_as_ingested(lake):
    """The uploads part of the fingerprint is the listing bronze ingested, not a later one."""
    lake.coin(DAY, "c0")
    with duckdb.connect(str(lake.db_path)) as conn:
        md.ensure_schema(conn)
        listed_at = datetime.now(timezone.utc)
        late = lake.upload(DAY, "c1", "front", settled=False)  # written just now: not settled at listing
        check = ingest_state.check_day(lake.store, conn, DAY, settle_seconds=60, now=listed_at)
        assert not check.up_to_date and all(f.key != f"uploads/{DAY}/{late.name}" for f in check.files)
        ingest_state.start_chain(conn, DAY, "run-1", check)
        ingest_state.gold_written(conn, DAY, "run-1")
        assert ingest_state.complete_chain(lake.store, conn, DAY, "run-1")
        age(late)  # it settles
        assert not ingest_state.check_day(lake.store, conn, DAY, settle_seconds=60,
                                          now=listed_at + timedelta(minutes=5)).up_to_date


def test_another_runs_record_is_never_completed(lake):
    lake.coin(DAY, "c0")
    with duckdb.connect(str(lake.db_path)) as conn:
        md.ensure_schema(conn)
        check = ingest_state.check_day(lake.store, conn, DAY)
        ingest_state.start_chain(conn, DAY, "run-1", check)
        ingest_state.gold_written(conn, DAY, "run-2")  # another run's gold: not this chain's
        assert not ingest_state.complete_chain(lake.store, conn, DAY, "run-1")
        assert not ingest_state.complete_chain(lake.store, conn, DAY, "run-2")


def test_a_run_stopped_after_bronzes_rows_and_before_its_sidecars_loses_no_label(lake, monkeypatch):
    """A kill can land after bronze recorded a batch of uploads (sidecars included, so they look unchanged
    to the next run) and before it put the sidecars' fields on their coins' rows."""
    from coin_assets.core import ingest

    for i in range(3):
        lake.coin(DAY, f"c{i}", year=1950 + i, shade=10 * i)

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt("killed between the rows and the sidecars")

    with duckdb.connect(str(lake.db_path)) as conn:
        md.ensure_schema(conn)
        check = ingest_state.check_day(lake.store, conn, DAY)
        ingest_state.start_chain(conn, DAY, "run-1", check)
        with monkeypatch.context() as patch:
            patch.setattr(md, "apply_sidecars", stopped)
            try:
                ingest.ingest_bronze(lake.store, conn, DAY, files=check.files)
            except KeyboardInterrupt:
                pass
        labels = conn.execute("SELECT count(label_year) FROM uploads WHERE kind = 'image'").fetchone()[0]
        assert labels == 0  # the rows are there, the labels are not
        again = ingest_state.check_day(lake.store, conn, DAY)
        assert not again.up_to_date and again.last_chain_incomplete and "did not complete" in again.reason

    assert materialized(run_chain(lake)) == set(CHAIN)
    gold = lake.gold()
    assert {coin: row["label_year"] for (coin, side), row in gold.items() if side == "front"} == \
        {"c0": 1950, "c1": 1951, "c2": 1952}
    assert materialized(run_chain(lake)) == set()  # complete now: nothing re-read
