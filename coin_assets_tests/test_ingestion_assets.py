"""Partitions materialized end to end through Dagster: counts, files, gold columns, the coins
view, idempotent re-runs, backfills of two days, modified uploads; and the Definitions."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest
from dagster import AssetKey, Definitions
from PIL import Image

from coin_assets.core import audit
from coin_assets.core.metadata import GOLD_REQUIRED_COLUMNS
from coin_assets_tests.conftest import (
    ASSETS,
    DAY,
    DAY2,
    INGESTION_ASSETS,
    INGESTION_CHECKS,
    JOBS,
    IngestionLake,
    age_tree,
    check_evaluations,
    decode,
    materialization_metadata,
)

try:
    from coin_assets.synth import generate_uploads
except ImportError as err:  # being written in parallel
    generate_uploads = None
    SYNTH_MISSING = f"coin_assets.synth.generate_uploads is not importable: {err}"
else:
    SYNTH_MISSING = ""

needs_synth = pytest.mark.skipif(generate_uploads is None, reason=SYNTH_MISSING or "synth available")
TABLES = ("uploads", "silver_images", "quarantine", "gold_images", "review_labels", "predictions")


def lake_conn(lake: IngestionLake):
    return duckdb.connect(str(lake.db_path))


def snapshot(lake: IngestionLake) -> dict:
    """Everything a re-run must leave unchanged."""
    return {
        "counts": {t: lake.scalar(f"SELECT count(*) FROM {t}") for t in TABLES},
        "files": lake.files("bronze", "silver", "gold"),
        "uploads": lake.query("SELECT upload_key, sha256, bronze_path, duplicate_of, ingested_at, uploaded_at, "
                              "user_id, label_year FROM uploads ORDER BY upload_key"),
        "silver": lake.query("SELECT sha256, clean_path, clean_size, processed_at FROM silver_images ORDER BY sha256"),
        "gold": lake.query("SELECT * FROM gold_images ORDER BY coin_id, side"),
        "quarantine": lake.query("SELECT upload_key, stage, reason FROM quarantine ORDER BY upload_key, stage"),
    }


# ------------------------------------------------------------------ a handful of generated coins


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Six synthetic coins over two days (varied formats, some EXIF-rotated, one without label),
    materialized day by day, then materialized again; snapshots taken after each pass."""
    if generate_uploads is None:
        pytest.skip(SYNTH_MISSING)
    lake = IngestionLake(tmp_path_factory.mktemp("generated"))
    coins = generate_uploads(lake.root / "uploads", 6, days=2, seed=0, end_date=dt.date.fromisoformat(DAY2),
                             max_side=160)
    age_tree(lake.root / "uploads")
    first = {day: lake.materialize(day) for day in (DAY, DAY2)}
    before = snapshot(lake)
    second = {day: lake.materialize(day) for day in (DAY, DAY2)}
    after = snapshot(lake)
    yield lake, coins, first, second, before, after
    lake.close()


@needs_synth
def test_generated_coins_reach_every_layer(generated):
    lake, coins, *_ = generated
    upload_files = [p for p in (lake.root / "uploads").rglob("*") if p.is_file()]
    images = 2 * len(coins)
    assert lake.scalar("SELECT count(*) FROM uploads") == len(upload_files)
    assert lake.scalar("SELECT count(*) FROM uploads WHERE kind = 'image'") == images
    assert lake.scalar("SELECT count(*) FROM silver_images") == images
    assert lake.scalar("SELECT count(*) FROM gold_images") == images
    assert lake.scalar("SELECT count(*) FROM quarantine") == 0
    assert len(lake.files("silver")) == len(lake.files("gold")) == images
    assert len(lake.files("bronze")) == len(upload_files)


@needs_synth
def test_generated_coins_land_in_their_upload_day(generated):
    lake, coins, *_ = generated
    for coin in coins:
        rows = lake.query("SELECT side, partition_date, gold_path FROM gold_images WHERE coin_id = ?", coin.coin_id)
        assert sorted(r[0] for r in rows) == ["back", "front"]
        for side, partition, gold_path in rows:
            assert partition == coin.day
            assert gold_path == f"gold/{coin.day.isoformat()}/{coin.coin_id}__{side}.jpg"


@needs_synth
def test_generated_gold_files_exist_and_are_the_silver_images(generated):
    lake, *_ = generated
    for gold_path, clean_path, width, height in lake.query(
            "SELECT gold_path, clean_path, clean_width, clean_height FROM gold_images"):
        data = lake.store.read_bytes(gold_path)
        assert data == lake.store.read_bytes(clean_path)
        img = decode(data)
        assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (width, height))
        assert max(img.size) <= 160


@needs_synth
def test_generated_gold_rows_have_every_required_column(generated):
    lake, *_ = generated
    frame = lake.df("SELECT * FROM gold_images")
    assert set(GOLD_REQUIRED_COLUMNS) <= set(frame.columns)
    assert frame[list(GOLD_REQUIRED_COLUMNS)].notna().all().all()
    assert frame.sha256.is_unique


@needs_synth
def test_generated_coins_view_pairs_front_and_back(generated):
    lake, coins, *_ = generated
    rows = lake.query("SELECT coin_id, paired, front_path, back_path FROM coins ORDER BY coin_id")
    assert [r[0] for r in rows] == sorted(c.coin_id for c in coins)
    for coin_id, paired, front, back in rows:
        assert paired
        assert front.endswith(f"/{coin_id}__front.jpg") and back.endswith(f"/{coin_id}__back.jpg")


@needs_synth
def test_generated_labels_and_uploaders_come_from_the_sidecars(generated):
    lake, coins, *_ = generated
    labels = dict(lake.query("SELECT coin_id, label_year FROM coins"))
    for coin in coins:
        assert labels[coin.coin_id] == (coin.year if coin.labelled else None)
    labelled = lake.query("SELECT DISTINCT label_source FROM gold_images WHERE label_year IS NOT NULL")
    assert labelled == [("sidecar",)]


@needs_synth
def test_generated_partitions_pass_every_check(generated):
    _, _, first, second, *_ = generated
    for result in (*first.values(), *second.values()):
        evaluations = check_evaluations(result)
        assert set(evaluations) == {c.check_key.name for c in INGESTION_CHECKS}
        assert all(e.passed for e in evaluations.values()), {n: e.passed for n, e in evaluations.items()}


@needs_synth
def test_generated_rematerialization_changes_no_row_and_no_file(generated):
    *_, before, after = generated
    assert after == before


@needs_synth
def test_generated_rematerialization_writes_nothing(generated):
    _, _, _, second, *_ = generated
    for result in second.values():
        for asset in ("bronze_images", "silver_images", "gold_images"):
            meta = materialization_metadata(result, asset)
            assert meta["processed"] == 0 and meta["bytes_written"] == 0, (asset, meta)
            assert meta["skipped_unchanged"] > 0


# ------------------------------------------------------------------------- hand-made coins


def test_layer_metadata_reports_the_work_done(lake):
    lake.coin(DAY, "c1", shade=0)
    lake.coin(DAY, "c2", shade=20)
    lake.upload(DAY, "solo", color=(9, 9, 9))
    result = lake.materialize(DAY)
    bronze = materialization_metadata(result, "bronze_images")
    assert (bronze["files"], bronze["sidecars"], bronze["processed"], bronze["quarantined"]) == (7, 2, 7, 0)
    gold = materialization_metadata(result, "gold_images")
    assert (gold["rows"], gold["coins"], gold["paired_coins"], gold["unpaired_coins"], gold["labelled_images"]) == (
        5, 3, 2, 1, 4)
    assert {(row["coin_id"], row["side"]) for row in gold["preview"]} >= {("c1", "front"), ("c1", "back")}


def test_rematerialization_is_idempotent(lake):
    lake.coin(DAY, "c1", shade=0)
    lake.coin(DAY, "c2", shade=20, year=None)
    lake.upload(DAY, "bad", data=b"not an image")
    lake.materialize(DAY)
    before = snapshot(lake)
    assert before["counts"]["gold_images"] == 4 and before["counts"]["quarantine"] == 1
    lake.materialize(DAY)
    assert snapshot(lake) == before


def test_two_day_backfill_puts_each_days_rows_in_its_partition(lake):
    lake.coin(DAY, "d1a", shade=0)
    lake.coin(DAY, "d1b", shade=10)
    lake.coin(DAY2, "d2a", shade=20)
    for day in (DAY, DAY2):
        assert lake.materialize(day).success
    for table in ("uploads", "silver_images", "gold_images"):
        by_day = dict(lake.query(f"SELECT strftime(partition_date, '%Y-%m-%d'), count(*) FROM {table} GROUP BY 1"))
        expected = {"uploads": (6, 3), "silver_images": (4, 2), "gold_images": (4, 2)}[table]
        assert by_day == dict(zip((DAY, DAY2), expected, strict=True)), table
    assert set(lake.gold(DAY)) == {("d1a", "front"), ("d1a", "back"), ("d1b", "front"), ("d1b", "back")}
    assert set(lake.gold(DAY2)) == {("d2a", "front"), ("d2a", "back")}
    files = lake.files()
    for day, (bronze, clean) in ((DAY, (6, 4)), (DAY2, (3, 2))):
        assert len([k for k in files if k.startswith(f"bronze/{day}/")]) == bronze
        assert len([k for k in files if k.startswith(f"silver/{day}/")]) == clean
        assert len([k for k in files if k.startswith(f"gold/{day}/")]) == clean
        rows = lake.gold(day).values()
        assert all(r["gold_path"].startswith(f"gold/{day}/") and r["clean_path"].startswith(f"silver/{day}/")
                   and r["raw_path"].startswith(f"bronze/{day}/") for r in rows)


def test_second_day_does_not_touch_the_first(lake):
    lake.coin(DAY, "d1", shade=0)
    lake.materialize(DAY)
    first_day = {k: v for k, v in snapshot(lake)["files"].items() if f"/{DAY}/" in k}
    first_rows = lake.query("SELECT * FROM gold_images ORDER BY side")
    lake.coin(DAY2, "d2", shade=30)
    lake.materialize(DAY2)
    assert {k: v for k, v in snapshot(lake)["files"].items() if f"/{DAY}/" in k} == first_day
    assert lake.query("SELECT * FROM gold_images WHERE partition_date = ? ORDER BY side", DAY) == first_rows


def test_modified_upload_is_reprocessed_and_leaves_no_orphan(lake):
    front, _ = lake.coin(DAY, "c1", shade=0)
    lake.materialize(DAY)
    old_sha = lake.gold()[("c1", "front")]["sha256"]
    ingested_at = lake.upload_row("c1__front.jpg")["ingested_at"]
    lake.upload(DAY, "c1", "front", size=(160, 100), color=(20, 200, 20))
    result = lake.materialize(DAY)
    row = lake.gold()[("c1", "front")]
    assert row["sha256"] != old_sha
    assert row["sha256"] == lake.upload_row("c1__front.jpg")["sha256"]
    assert (row["raw_width"], row["raw_height"]) == (160, 100)
    assert lake.upload_row("c1__front.jpg")["ingested_at"] == ingested_at
    assert materialization_metadata(result, "silver_images")["processed"] == 1
    # every silver and gold file of the day is referenced by a metadata row
    silver_rows = {p for (p,) in lake.query("SELECT clean_path FROM silver_images")}
    assert set(lake.files("silver")) <= silver_rows
    assert set(lake.files("gold")) == {r["gold_path"] for r in lake.gold().values()}
    with lake_conn(lake) as conn:
        assert audit.lineage_problems(lake.store, conn, DAY) == ([], [])
    assert all(e.passed for e in check_evaluations(result).values())


def test_modified_upload_updates_the_gold_file_even_when_the_clean_size_is_unchanged(lake):
    # Two flat images that differ by one level of red encode to JPEGs of the same size.
    lake.upload(DAY, "c1", "front", "png", image=Image.new("RGB", (120, 90), (100, 50, 50)))
    lake.materialize(DAY)
    old_size = lake.gold()[("c1", "front")]["clean_size"]
    lake.upload(DAY, "c1", "front", "png", image=Image.new("RGB", (120, 90), (101, 50, 50)))
    lake.materialize(DAY)
    row = lake.gold()[("c1", "front")]
    assert row["clean_size"] == old_size, "precondition: same clean size"
    assert lake.store.read_bytes(row["gold_path"]) == lake.store.read_bytes(row["clean_path"])


def test_coin_side_uploaded_again_on_a_later_day_moves_there_without_leaving_an_orphan(lake):
    lake.upload(DAY, "c1", "front", color=(10, 10, 10))
    lake.upload(DAY, "c1", "back", color=(10, 10, 90))
    lake.upload(DAY2, "c1", "front", color=(200, 200, 200))
    lake.materialize(DAY)
    lake.materialize(DAY2)
    assert set(lake.gold(DAY)) == {("c1", "back")}
    assert set(lake.gold(DAY2)) == {("c1", "front")}
    assert set(lake.files("gold")) == {f"gold/{DAY}/c1__back.jpg", f"gold/{DAY2}/c1__front.jpg"}
    assert lake.run_checks(DAY)["gold_lineage_is_intact"].passed


def test_uploaded_at_comes_from_the_sidecar_else_the_file_time(lake):
    lake.coin(DAY, "c1")
    lake.upload(DAY, "c2", color=(1, 100, 1))
    lake.materialize(DAY)
    gold = lake.gold()
    assert gold[("c1", "front")]["uploaded_at"].isoformat().startswith(f"{DAY}T10:00:00")
    mtime = (lake.root / "uploads" / DAY / "c2__front.jpg").stat().st_mtime
    assert abs(gold[("c2", "front")]["uploaded_at"].timestamp() - mtime) < 1e-3


def test_ingestion_job_runs_the_three_layers_and_their_checks(lake):
    lake.coin(DAY, "c1")
    defs = Definitions(assets=[*INGESTION_ASSETS, ASSETS["coin_crops"]], asset_checks=INGESTION_CHECKS,
                       jobs=[JOBS["ingestion_job"]], resources=lake.resources)
    result = defs.resolve_job_def("ingestion_job").execute_in_process(partition_key=DAY, instance=lake.instance)
    assert result.success
    assert {e.asset_key for e in result.get_asset_materialization_events()} == {
        AssetKey("bronze_images"), AssetKey("decoded_images"), AssetKey("silver_images"), AssetKey("gold_images"),
        AssetKey("found_coins"), AssetKey("coin_crops")}
    assert {e.check_name for e in result.get_asset_check_evaluations()} == {c.check_key.name for c in INGESTION_CHECKS}
    assert len(lake.gold()) == 2


# ------------------------------------------------------------------------------ definitions


@pytest.fixture
def project_defs(tmp_path, monkeypatch):
    """The definitions as Dagster loads them (`coin_assets.definitions.defs`), from this test's environment."""
    monkeypatch.setenv("COIN_ASSETS_DATA_DIR", str(tmp_path / "data"))
    from coin_assets.definitions import defs

    return defs()


def test_definitions_load_and_resolve_the_ingestion_job(project_defs):
    job = project_defs.resolve_job_def("ingestion_job")
    assert job.partitions_def is not None
    selected = {k.path[-1] for k in job.asset_layer.executable_asset_keys}
    assert selected == {"bronze_images", "decoded_images", "silver_images", "gold_images", "found_coins", "coin_crops"}


def test_only_the_steps_that_write_duckdb_hold_the_writer_pool(project_defs):
    """Decoding, coin finding (every chunk step) and the read-only checks run outside pool `duckdb_writer`."""
    from coin_assets.defs.pools import DUCKDB_WRITER_POOL

    job = project_defs.resolve_job_def("ingestion_job")
    pools = {op_def.name: op_def.pool for op_def in job.graph.iterate_op_defs()}
    assert {name for name, pool in pools.items() if pool == DUCKDB_WRITER_POOL} == {
        "bronze_images", "silver_images", "gold_images", "coin_crops"}
    assert {"decoded_images_chunk", "found_coins_chunk"} <= {name for name, pool in pools.items() if pool is None}
    assert all(c.op.pool is None for c in INGESTION_CHECKS)


def test_the_decode_step_does_the_decoding_and_silver_only_moves_and_records(lake):
    lake.coin(DAY, "c1")
    lake.upload(DAY, "broken", "front", data=b"not an image")
    result = lake.materialize(DAY)
    decoded = materialization_metadata(result, "decoded_images")
    silver = materialization_metadata(result, "silver_images")
    assert (decoded["processed"], decoded["quarantined"]) == (2, 1)
    assert (silver["processed"], silver["decoded_here"], silver["quarantined"]) == (2, 0, 1)
    assert not list((lake.root / "staging").rglob("*.jpg")), "the writer empties the staging folder"
    assert len(lake.gold(DAY)) == 2 and ("broken__front.jpg", "silver") in lake.quarantine(DAY)


def test_every_asset_and_check_has_a_description(project_defs):
    graph = project_defs.resolve_asset_graph()
    missing = [key.to_user_string() for key in graph.get_all_asset_keys()
               if not (graph.get(key).description or "").strip()]
    assert missing == []
    assert graph.asset_check_keys
    for key in graph.asset_check_keys:
        assert (graph.get_check_spec(key).description or "").strip(), key


def test_ingestion_checks_are_defined_on_the_project(project_defs):
    keys = project_defs.resolve_asset_graph().asset_check_keys
    assert {c.check_key for c in INGESTION_CHECKS} <= keys



def test_table_previews_are_typed_dagster_tables_with_nulls_for_missing_values():
    import pandas as pd

    from coin_assets.defs.metadata import table_preview

    frame = pd.DataFrame({"coin_id": ["a", "b", "c"], "year": [1990, 1991, 1992], "mae": [0.5, float("nan"), 1.0],
                          "found": [True, False, True], "at": pd.to_datetime(["2026-11-20"] * 3, utc=True)})
    table = table_preview(frame, limit=2)
    assert [(c.name, c.type) for c in table.schema.columns] == [
        ("coin_id", "string"), ("year", "int"), ("mae", "float"), ("found", "bool"), ("at", "string")]
    assert [r.data for r in table.records] == [
        {"coin_id": "a", "year": 1990, "mae": 0.5, "found": True, "at": "2026-11-20 00:00:00+00:00"},
        {"coin_id": "b", "year": 1991, "mae": None, "found": False, "at": "2026-11-20 00:00:00+00:00"}]
    assert table_preview(pd.DataFrame()).records == []
