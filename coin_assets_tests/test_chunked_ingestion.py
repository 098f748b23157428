"""A big day's decoding and coin finding split into chunks, each a step of its own: the same tables and
files as one chunk, also when the process dies in the middle of a chunk."""

import multiprocessing
import os
import shutil

import pytest
from dagster import DagsterInstance, materialize

from coin_assets.core import staging
from coin_assets.core.crops import crop_staging_prefix
from coin_assets.defs.resources import CoinStorage
from coin_assets.synth import generate_uploads
from coin_assets_tests.conftest import (
    ASSETS,
    INGESTION_ASSETS,
    INGESTION_CHECKS,
    IngestionLake,
    materialization_metadata,
)

COINS = 6  # 12 photos


@pytest.fixture(scope="module")
def uploads(tmp_path_factory):
    folder = tmp_path_factory.mktemp("generated")
    generate_uploads(folder, coins=COINS, days=1, seed=11, max_side=200, generator="varied")
    (day,) = [p.name for p in folder.iterdir() if p.is_dir()]
    return folder, day


def lake_with(base, uploads) -> IngestionLake:
    lake = IngestionLake(base)
    shutil.copytree(uploads, lake.root / "uploads", dirs_exist_ok=True)
    return lake


def ingest(lake: IngestionLake, day: str, chunk_photos: int, instance: DagsterInstance | None = None):
    lake.resources["storage"] = CoinStorage(root=str(lake.root), settle_seconds=0, chunk_photos=chunk_photos)
    return materialize([*INGESTION_ASSETS, ASSETS["coin_crops"], *INGESTION_CHECKS], partition_key=day,
                       resources=lake.resources, instance=instance or lake.instance)


def outcome(lake: IngestionLake) -> dict:
    """Everything a chunking must not change: the rows (without timestamps) and the files."""
    return {
        "silver": lake.df("SELECT sha256, clean_path, clean_size, clean_width, clean_height FROM silver_images "
                          "ORDER BY ALL").to_dict("records"),
        "gold": lake.df("SELECT coin_id, side, sha256, gold_path, label_year FROM gold_images ORDER BY ALL"
                        ).to_dict("records"),
        "crops": lake.df("SELECT coin_id, side, gold_sha256, found, centre_x, centre_y, radius, crop_path, reason "
                         "FROM coin_crops ORDER BY coin_id, side").to_dict("records"),
        "quarantine": lake.df("SELECT upload_key, stage, reason FROM quarantine ORDER BY ALL").to_dict("records"),
        "files": lake.files("bronze", "silver", "gold", "crops"),
    }


def chunk_steps(result, name: str) -> list[str]:
    return sorted({e.step_key for e in result.all_events if e.step_key and e.step_key.startswith(f"{name}.{name}_chunk[")})


def test_a_day_in_chunks_gives_the_tables_and_files_of_one_chunk(tmp_path, uploads):
    folder, day = uploads
    whole, chunked = lake_with(tmp_path / "whole", folder), lake_with(tmp_path / "chunked", folder)
    one = ingest(whole, day, chunk_photos=2000)
    five = ingest(chunked, day, chunk_photos=5)
    assert one.success and five.success
    assert len(chunk_steps(one, "decoded_images")) == 1 and len(chunk_steps(one, "found_coins")) == 1
    assert chunk_steps(five, "decoded_images") == [f"decoded_images.decoded_images_chunk[chunk_{k}]" for k in range(3)]
    assert len(chunk_steps(five, "found_coins")) == 3
    decoded = materialization_metadata(five, "decoded_images")
    assert decoded["chunks"] == 3 and decoded["processed"] == 2 * COINS
    crops = materialization_metadata(five, "coin_crops")
    assert crops["staged_by_found_coins"] == 2 * COINS and crops["searched_here"] == 0, crops
    reference = outcome(whole)
    assert len(reference["gold"]) == 2 * COINS and any(r["found"] for r in reference["crops"])
    assert outcome(chunked) == reference
    assert not list((chunked.root / "staging").rglob("*.json")), "the writer steps empty the staging folders"
    whole.close()
    chunked.close()


def _ingest_and_die_in_a_chunk(base: str, day: str, crops_before_the_kill: int) -> None:
    """In a child process: ingest with chunks of 5 photos, and die (SIGKILL-like, no clean-up) while the
    second coin-finding chunk writes its crops."""
    from coin_assets.core import storage

    write_bytes = storage.LocalStore.write_bytes
    written = []

    def write_then_maybe_die(self, key, data):
        write_bytes(self, key, data)
        if key.startswith("crops/"):
            written.append(key)
            if len(written) == crops_before_the_kill:
                os._exit(9)

    storage.LocalStore.write_bytes = write_then_maybe_die
    lake = IngestionLake(base)
    ingest(lake, day, chunk_photos=5, instance=DagsterInstance.ephemeral())
    os._exit(0)


def test_a_process_killed_in_the_middle_of_a_chunk_leaves_nothing_that_changes_the_rerun(tmp_path, uploads):
    folder, day = uploads
    reference = lake_with(tmp_path / "reference", folder)
    ingest(reference, day, chunk_photos=2000)
    expected = outcome(reference)
    found = sum(r["found"] for r in expected["crops"])
    first_chunk = sum(r["found"] for r in expected["crops"][:4])  # 12 photos in chunks of 4, 4, 4
    assert found > first_chunk + 1

    killed = lake_with(tmp_path / "killed", folder)
    child = multiprocessing.get_context("spawn").Process(
        target=_ingest_and_die_in_a_chunk, args=(str(tmp_path / "killed"), day, first_chunk + 1))
    child.start()
    child.join(300)
    assert child.exitcode == 9, "the child must die inside the second chunk"
    staged = [o.key for o in killed.store.list(crop_staging_prefix(day))]
    assert f"{crop_staging_prefix(day)}/found-00000-of-00003.json" in staged  # the first chunk had finished
    assert not any("found-00001" in key for key in staged)  # the second never staged its rows
    assert killed.scalar("SELECT count(*) FROM coin_crops") == 0

    rerun = ingest(killed, day, chunk_photos=5)
    assert rerun.success
    found_coins = materialization_metadata(rerun, "found_coins")
    assert found_coins["skipped_unchanged"] == 4, "the first chunk's staged rows are reused"
    assert outcome(killed) == expected
    reference.close()
    killed.close()


def test_chunks_cover_every_item_once():
    items = list(range(23))
    for chunks in (1, 2, 5, 23):
        parts = [staging.chunk_of(items, k, chunks) for k in range(chunks)]
        assert sum(parts, []) == items and max(map(len, parts)) - min(map(len, parts)) <= 1
    assert staging.chunk_count(0, 5) == 1 and staging.chunk_count(10, 5) == 2 and staging.chunk_count(11, 5) == 3
    with pytest.raises(ValueError, match="at least 1"):
        staging.chunk_count(3, 0)
