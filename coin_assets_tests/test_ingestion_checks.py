"""Each ingestion check passes on a clean partition and fails when its condition is broken on
purpose after materialization (the checks are then re-run alone, through Dagster)."""

from __future__ import annotations

import os
import shutil

import duckdb
import pytest
from dagster import AssetCheckSeverity
from PIL import Image

from coin_assets.core import audit
from coin_assets_tests.conftest import (
    CHECKS,
    DAY,
    DAY2,
    INGESTION_ASSETS,
    LAYERS,
    IngestionLake,
    check_evaluations,
    encode,
    metadata_values,
)

silver_images_are_clean = CHECKS["silver_images_are_clean"]
quarantine_is_empty = CHECKS["quarantine_is_empty"]
gold_lineage_is_intact = CHECKS["gold_lineage_is_intact"]
gold_metadata_is_complete = CHECKS["gold_metadata_is_complete"]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """Two paired coins and a lonely front, materialized once; tests work on copies."""
    lake = IngestionLake(tmp_path_factory.mktemp("pristine"))
    lake.coin(DAY, "c1", shade=0)
    lake.coin(DAY, "c2", shade=30)
    lake.upload(DAY, "lonely", color=(20, 20, 200))
    result = lake.materialize(DAY)
    assert all(e.passed for e in result.get_asset_check_evaluations())
    lake.close()
    return lake.base


@pytest.fixture
def lake(pristine, tmp_path):
    base = tmp_path / "lake"
    shutil.copytree(pristine, base)
    lake = IngestionLake(base)
    yield lake
    lake.close()


def one(lake, sql, *params):
    return lake.query(sql, *params)[0]


def problems_text(evaluation) -> str:
    return metadata_values(evaluation)["problems"]


def conn_of(lake):
    return duckdb.connect(str(lake.db_path))


def test_every_check_passes_on_a_clean_partition(lake):
    evaluations = lake.run_checks(DAY)
    assert lake.last_result.success
    assert {n: e.passed for n, e in evaluations.items()} == {
        "silver_images_are_clean": True, "quarantine_is_empty": True,
        "gold_lineage_is_intact": True, "gold_metadata_is_complete": True}
    assert metadata_values(evaluations["silver_images_are_clean"])["images_checked"] == 5
    assert metadata_values(evaluations["quarantine_is_empty"])["quarantined"] == 0
    assert metadata_values(evaluations["gold_lineage_is_intact"])["unpaired_coins"] == 1


def test_lineage_check_is_blocking_and_the_quarantine_check_is_not():
    assert [s.blocking for s in gold_lineage_is_intact.check_specs] == [True]
    assert [s.blocking for s in quarantine_is_empty.check_specs] == [False]


# ------------------------------------------------------------------------------------- silver


def test_silver_check_fails_on_an_image_over_512_px(lake):
    clean_path, width, height = one(lake, "SELECT clean_path, clean_width, clean_height FROM silver_images LIMIT 1")
    lake.store.write_bytes(clean_path, encode(Image.new("RGB", (600, 450), (9, 9, 9))))
    evaluation = lake.run_checks(DAY, [silver_images_are_clean])["silver_images_are_clean"]
    assert evaluation.passed is False
    assert evaluation.severity == AssetCheckSeverity.ERROR
    assert lake.last_result.success  # not blocking
    text = problems_text(evaluation)
    assert f"{clean_path}: long side 600 > 512" in text
    assert f"{clean_path}: file is 600x450, table says {width}x{height}" in text


def test_silver_check_fails_on_a_grayscale_image(lake):
    clean_path, width, height = one(lake, "SELECT clean_path, clean_width, clean_height FROM silver_images LIMIT 1")
    lake.store.write_bytes(clean_path, encode(Image.new("L", (width, height), 128)))
    evaluation = lake.run_checks(DAY, [silver_images_are_clean])["silver_images_are_clean"]
    assert evaluation.passed is False
    assert problems_text(evaluation).strip() == f"- {clean_path}: mode L, not RGB"


def test_silver_check_fails_when_the_aspect_ratio_is_not_kept(lake):
    sha, clean_path, width, height = one(
        lake, "SELECT sha256, clean_path, clean_width, clean_height FROM silver_images LIMIT 1")
    squashed = (width, height // 2)
    lake.store.write_bytes(clean_path, encode(Image.new("RGB", squashed, (9, 9, 9))))
    lake.query("UPDATE silver_images SET clean_height = ? WHERE sha256 = ?", squashed[1], sha)
    with conn_of(lake) as conn:
        problems = audit.silver_problems(lake.store, conn, DAY)
    assert len(problems) == 1 and "does not keep the aspect" in problems[0]
    assert lake.run_checks(DAY, [silver_images_are_clean])["silver_images_are_clean"].passed is False


def test_silver_check_fails_when_a_silver_file_is_missing(lake):
    clean_path = one(lake, "SELECT clean_path FROM silver_images LIMIT 1")[0]
    lake.store.delete(clean_path)
    evaluation = lake.run_checks(DAY, [silver_images_are_clean])["silver_images_are_clean"]
    assert evaluation.passed is False
    assert f"{clean_path}: file missing" in problems_text(evaluation)


# ------------------------------------------------------------------------------------ lineage


def lineage_after(lake):
    evaluation = lake.run_checks(DAY, [gold_lineage_is_intact])["gold_lineage_is_intact"]
    assert evaluation.passed is False
    assert evaluation.severity == AssetCheckSeverity.ERROR
    assert not lake.last_result.success  # blocking: a failure fails the step and the run
    return problems_text(evaluation)


def test_lineage_check_fails_when_a_gold_file_is_deleted(lake):
    gold_path = one(lake, "SELECT gold_path FROM gold_images WHERE coin_id = 'c1' AND side = 'front'")[0]
    lake.store.delete(gold_path)
    assert f"c1/front: gold file {gold_path} missing" in lineage_after(lake)


def test_lineage_check_fails_when_a_silver_file_is_deleted(lake):
    clean_path = one(lake, "SELECT clean_path FROM gold_images WHERE coin_id = 'c2' AND side = 'back'")[0]
    lake.store.delete(clean_path)
    assert f"c2/back: silver file {clean_path} missing" in lineage_after(lake)


def test_lineage_check_fails_when_a_bronze_file_is_deleted(lake):
    raw_path = one(lake, "SELECT raw_path FROM gold_images WHERE coin_id = 'c1' AND side = 'back'")[0]
    lake.store.delete(raw_path)
    assert f"c1/back: bronze file {raw_path} missing" in lineage_after(lake)


def test_lineage_check_fails_when_a_bronze_byte_is_flipped(lake):
    raw_path, sha = one(lake, "SELECT raw_path, sha256 FROM gold_images WHERE coin_id = 'c2' AND side = 'front'")
    path = lake.store.path(raw_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    text = lineage_after(lake)
    assert f"c2/front: bronze {raw_path} hashes to" in text and f"recorded {sha[:12]}" in text
    with conn_of(lake) as conn:
        problems, unpaired = audit.lineage_problems(lake.store, conn, DAY)
    assert len(problems) == 1 and unpaired == ["lonely"]


@pytest.mark.parametrize("layer", ["silver", "gold"])
def test_lineage_check_fails_on_an_orphan_file(lake, layer):
    orphan = f"{layer}/{DAY}/{'0' * 64}.jpg"
    lake.store.write_bytes(orphan, encode(Image.new("RGB", (10, 10))))
    assert f"orphan file {orphan} (no metadata row)" in lineage_after(lake)


def test_lineage_check_of_a_day_ignores_other_days(lake):
    lake.store.write_bytes(f"silver/{DAY2}/stray.jpg", b"x")
    assert lake.run_checks(DAY, [gold_lineage_is_intact])["gold_lineage_is_intact"].passed


def test_lineage_check_lists_unpaired_coins_but_passes(lake):
    evaluation = lake.run_checks(DAY, [gold_lineage_is_intact])["gold_lineage_is_intact"]
    meta = metadata_values(evaluation)
    assert evaluation.passed
    assert (meta["unpaired_coins"], meta["unpaired"].strip()) == (1, "- lonely")


# -------------------------------------------------------------------------- metadata complete


@pytest.mark.parametrize("column", ["raw_width", "clean_path", "ingested_at", "sha256"])
def test_metadata_check_fails_on_a_null_required_column(lake, column):
    lake.query("DROP INDEX gold_images_by_coin_id")  # DuckDB alters no table with an index on it
    lake.query(f"ALTER TABLE gold_images ALTER COLUMN {column} DROP NOT NULL")
    lake.query(f"UPDATE gold_images SET {column} = NULL WHERE coin_id = 'c1' AND side = 'front'")
    evaluation = lake.run_checks(DAY, [gold_metadata_is_complete])["gold_metadata_is_complete"]
    assert evaluation.passed is False
    assert evaluation.severity == AssetCheckSeverity.ERROR
    assert lake.last_result.success  # not blocking
    assert problems_text(evaluation).strip() == f"- {column}: 1 null value(s)"


def test_metadata_check_fails_on_a_duplicated_sha256(lake):
    sha = one(lake, "SELECT sha256 FROM gold_images WHERE coin_id = 'c1' AND side = 'front'")[0]
    lake.query("UPDATE gold_images SET sha256 = ? WHERE coin_id = 'c2' AND side = 'front'", sha)
    evaluation = lake.run_checks(DAY, [gold_metadata_is_complete])["gold_metadata_is_complete"]
    assert evaluation.passed is False
    text = problems_text(evaluation)
    assert f"sha256 {sha[:12]}… used 2 times" in text
    assert "c1/front" in text and "c2/front" in text
    with conn_of(lake) as conn:
        assert len(audit.metadata_problems(conn, DAY)) == 1


# ------------------------------------------------------------------------------- quarantine


def test_quarantine_check_passes_when_nothing_is_quarantined(lake):
    evaluation = lake.run_checks(DAY, [quarantine_is_empty])["quarantine_is_empty"]
    assert evaluation.passed is True
    assert metadata_values(evaluation)["quarantined"] == 0


def test_quarantine_check_warns_when_a_file_is_quarantined(lake):
    lake.upload(DAY, "broken", data=b"\xff\xd8\xff not really a jpeg")
    result = lake.materialize(DAY)
    assert result.success  # a warning never fails the run
    evaluation = check_evaluations(result)["quarantine_is_empty"]
    assert evaluation.passed is False
    assert evaluation.severity == AssetCheckSeverity.WARN
    meta = metadata_values(evaluation)
    assert meta["quarantined"] == 1
    assert [row["upload_key"] for row in meta["files"]] == [f"uploads/{DAY}/broken__front.jpg"]
    assert list(meta["reasons"]) == ["not a recognised image (Pillow cannot identify the file)"]
    assert all(e.passed for n, e in check_evaluations(result).items() if n != "quarantine_is_empty")


def test_quarantine_clears_when_the_bad_file_is_fixed(lake):
    path = lake.upload(DAY, "broken", data=b"garbage")
    lake.materialize(DAY)
    lake.upload(DAY, "broken", color=(3, 3, 3))
    assert path.exists()
    result = lake.materialize(DAY)
    assert check_evaluations(result)["quarantine_is_empty"].passed
    assert ("broken", "front") in lake.gold(DAY)


def _counting_hashes(monkeypatch) -> list[str]:
    """The bronze keys the lineage check reads in full (audit.sha256_of, still doing the hashing)."""
    read: list[str] = []
    real = audit.sha256_of

    def counting(store, key):
        read.append(key)
        return real(store, key)

    monkeypatch.setattr(audit, "sha256_of", counting)
    return read


def test_lineage_hashing_is_incremental_and_a_changed_file_is_hashed_again(lake, monkeypatch):
    read = _counting_hashes(monkeypatch)
    with conn_of(lake) as conn:
        facts = audit.lineage_facts(conn, DAY)
    lake.store.delete(f"{audit.VERIFIED_PREFIX}/{DAY}.json")  # what the run's own check verified
    assert audit.lineage_problems(lake.store, facts, DAY, sample=0)[0] == []
    assert sorted(read) == sorted(facts.gold.raw_path) and read  # nothing verified yet: every file read
    read.clear()
    assert audit.lineage_problems(lake.store, facts, DAY, sample=0)[0] == []
    assert read == []  # same size and mtime as when verified: not read again
    raw_path = facts.gold.raw_path.iloc[0]
    path = lake.store.path(raw_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))  # a new mtime
    problems, _ = audit.lineage_problems(lake.store, facts, DAY, sample=0)
    assert read == [raw_path] and len(problems) == 1


def test_bronze_bytes_are_hashed_once_bronze_seeds_the_lineage_cache(tmp_path, monkeypatch):
    from dagster import materialize

    fresh = IngestionLake(tmp_path / "fresh")
    fresh.coin(DAY, "c1")
    fresh.coin(DAY, "c2", shade=40)
    materialize(INGESTION_ASSETS, partition_key=DAY, resources=fresh.resources, instance=fresh.instance,
                selection=LAYERS)  # no checks ran
    read = _counting_hashes(monkeypatch)
    with conn_of(fresh) as conn:
        facts = audit.lineage_facts(conn, DAY)
    assert audit.lineage_problems(fresh.store, facts, DAY, sample=0)[0] == []
    assert read == []  # hashed by bronze while it wrote them
    fresh.close()


def test_lineage_sample_finds_a_change_that_kept_size_and_mtime(lake):
    with conn_of(lake) as conn:
        facts = audit.lineage_facts(conn, DAY)
    assert audit.lineage_problems(lake.store, facts, DAY)[0] == []
    raw_path = facts.gold.raw_path.iloc[0]
    path = lake.store.path(raw_path)
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as silent corruption would
    problems, _ = audit.lineage_problems(lake.store, facts, DAY, sample=len(facts.gold))
    assert len(problems) == 1 and "hashes to" in problems[0]
