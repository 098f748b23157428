"""Ingestion defects, each reproduced: half-written uploads, crash leftovers in bronze, duplicates
across kinds, silent pairing losses, symlinks inside the data root, WARN checks in the headless
command."""

from __future__ import annotations

import os

import duckdb
from dagster import AssetCheckSeverity

from coin_assets import cli
from coin_assets_tests.conftest import CHECKS, DAY, age, encode, metadata_values, sha256_of_file, tiny_photo

gold_lineage_is_intact = CHECKS["gold_lineage_is_intact"]


def _bronze_files(lake) -> set[str]:
    return {p.relative_to(lake.root).as_posix() for p in (lake.root / "bronze").rglob("*") if p.is_file()}


# ------------------------------------------------------------------ 3. half-written uploads


def test_a_file_still_being_written_is_not_taken_by_the_run(lake):
    lake.settle(10)
    lake.coin(DAY, "c1")
    whole = encode(tiny_photo((300, 200)), "jpg")
    writing = lake.upload(DAY, "c2", "front", data=whole[: len(whole) // 2], settled=False)
    lake.materialize(DAY)
    assert lake.scalar("SELECT count(*) FROM uploads WHERE raw_name = 'c2__front.jpg'") == 0
    assert lake.quarantine(DAY) == {}
    assert len(_bronze_files(lake)) == 3  # c1's front, back and sidecar only
    writing.write_bytes(whole)
    age(writing)
    lake.materialize(DAY)
    assert ("c2", "front") in lake.gold(DAY)
    assert lake.quarantine(DAY) == {}


def test_a_partial_upload_taken_after_a_long_pause_is_replaced_cleanly_by_the_complete_one(lake):
    whole = encode(tiny_photo((300, 200)), "jpg")
    path = lake.upload(DAY, "c1", "front", data=whole[: len(whole) // 3])  # settled, but cut short
    lake.materialize(DAY)
    assert "truncated" in lake.quarantine(DAY)[("c1__front.jpg", "silver")]
    partial = _bronze_files(lake)
    path.write_bytes(whole)
    age(path, 60)
    lake.materialize(DAY)
    assert lake.quarantine(DAY) == {}
    assert ("c1", "front") in lake.gold(DAY)
    assert _bronze_files(lake) == {f"bronze/{DAY}/{sha256_of_file(path)}.jpg"}
    assert not partial & _bronze_files(lake)  # the partial bytes are gone


# ------------------------------------------------------------------ 4. crash leftovers in bronze


def test_temp_files_and_orphans_in_bronze_fail_the_lineage_check_and_the_next_run_removes_them(lake):
    lake.coin(DAY, "c1")
    lake.materialize(DAY)
    leftover, orphan = f"bronze/{DAY}/.tmp-abc123", f"bronze/{DAY}/{'0' * 64}.jpg"
    lake.store.write_bytes(orphan, b"bytes no ledger row points to")
    (lake.root / leftover).write_bytes(b"half a copy")
    evaluation = lake.run_checks(DAY, [gold_lineage_is_intact])["gold_lineage_is_intact"]
    assert not evaluation.passed and evaluation.severity == AssetCheckSeverity.ERROR
    problems = metadata_values(evaluation)["problems"]
    assert f"leftover temporary file {leftover}" in problems and f"orphan file {orphan}" in problems
    result = lake.materialize(DAY)
    assert result.success
    assert not (lake.root / leftover).exists() and not lake.store.exists(orphan)
    assert lake.run_checks(DAY, [gold_lineage_is_intact])["gold_lineage_is_intact"].passed


# ------------------------------------------------------------------ 5. duplicates


def test_an_empty_image_next_to_an_empty_sidecar_is_quarantined_not_a_duplicate_of_it(lake):
    lake.upload(DAY, "c1", "front", data=b"")
    lake.sidecar(DAY, "c1", raw=b"")
    lake.materialize(DAY)
    assert lake.upload_row("c1__front.jpg")["duplicate_of"] is None
    assert lake.quarantine(DAY)[("c1__front.jpg", "silver")] == "empty file (0 bytes)"
    assert "not valid JSON" in lake.quarantine(DAY)[("c1.json", "sidecar")]


def test_a_second_copy_of_a_broken_image_is_quarantined_naming_the_first(lake):
    whole = encode(tiny_photo((300, 200)), "jpg")
    broken = whole[: len(whole) // 2]
    lake.upload(DAY, "a", "front", data=broken)
    lake.upload(DAY, "b", "front", data=broken)
    lake.materialize(DAY)
    quarantine = lake.quarantine(DAY)
    assert "truncated" in quarantine[("a__front.jpg", "silver")]
    reason = quarantine[("b__front.jpg", "silver")]
    assert reason.startswith(f"same bytes as uploads/{DAY}/a__front.jpg, which is quarantined: truncated")


# ------------------------------------------------------------------ 6. pairing losses


def test_front_and_obverse_of_one_coin_keep_one_and_record_the_other(lake):
    lake.upload(DAY, "c1", "front", color=(10, 20, 30))
    lake.upload(DAY, "c1", "obverse", color=(30, 20, 10))
    lake.upload(DAY, "c1", "back")
    lake.materialize(DAY)
    gold = lake.gold(DAY)
    assert set(gold) == {("c1", "front"), ("c1", "back")}
    kept = gold[("c1", "front")]["raw_name"]
    lost = ({"c1__front.jpg", "c1__obverse.jpg"} - {kept}).pop()
    assert lake.quarantine(DAY) == {
        (lost, "pairing"): f"another upload of coin 'c1' side front was taken: uploads/{DAY}/{kept}"}
    lake.materialize(DAY)  # idempotent: the same single record
    assert len(lake.quarantine(DAY)) == 1 and set(lake.gold(DAY)) == set(gold)


def test_a_sidecar_naming_another_coin_is_recorded_and_not_applied(lake):
    lake.upload(DAY, "c1", "front")
    lake.sidecar(DAY, "c1", raw='{"coin_id": "c9", "user_id": "u1", "year": 1990}')
    lake.materialize(DAY)
    reason = lake.quarantine(DAY)[("c1.json", "sidecar")]
    assert "sidecar coin_id 'c9' disagrees with its file name 'c1.json'" in reason
    assert lake.scalar("SELECT label_year FROM gold_images WHERE coin_id = 'c1'") is None


# ------------------------------------------------------------------ 7. symlinks


def test_a_link_to_the_live_database_inside_the_data_root_is_quarantined_never_read(lake):
    lake.upload(DAY, "good")
    db_inside = lake.root / "coin_assets.duckdb"
    with duckdb.connect(str(db_inside)) as conn:
        conn.execute("CREATE TABLE secret AS SELECT 42 AS x")
    link = lake.upload_dir(DAY) / "evil__front.jpg"
    os.symlink("../../coin_assets.duckdb", link)
    os.utime(link, (1e9, 1e9), follow_symlinks=False)  # long settled
    lake.materialize(DAY)
    assert "not a regular file" in lake.quarantine(DAY)[("evil__front.jpg", "bronze")]
    db_sha = sha256_of_file(db_inside)
    assert all(sha256_of_file(p) != db_sha for p in (lake.root / "bronze").rglob("*") if p.is_file())
    assert lake.scalar("SELECT count(*) FROM uploads WHERE raw_name = 'evil__front.jpg'") == 0


def test_a_file_name_that_is_not_utf8_is_quarantined_and_the_day_still_goes_through(lake):
    """Linux names are bytes: one that is not UTF-8 reached DuckDB as a lone surrogate, failed bronze
    on every retry and stopped the whole day."""
    lake.upload(DAY, "good")
    lake.upload(DAY, "good", "back", color=(90, 90, 90))
    bad = os.path.join(os.fsencode(lake.upload_dir(DAY)), b"caf\xe9__front.jpg")
    with open(bad, "wb") as fh:
        fh.write(encode(tiny_photo(), "jpg"))
    os.utime(bad, (1e9, 1e9))
    lake.materialize(DAY)
    assert "not valid UTF-8" in lake.quarantine(DAY)[("caf\\xe9__front.jpg", "bronze")]
    assert set(lake.gold(DAY)) == {("good", "front"), ("good", "back")}
    assert os.path.exists(bad)  # left in the upload zone, never read: nothing is lost
    lake.materialize(DAY)  # and the next run is not stopped by it either


def test_a_photo_over_the_size_limit_is_refused_unread_and_its_bytes_stay_in_bronze(lake, monkeypatch):
    from coin_assets.core import images

    big = lake.upload(DAY, "big")
    lake.upload(DAY, "big", "back", color=(90, 90, 90))
    monkeypatch.setattr(images, "MAX_FILE_BYTES", big.stat().st_size - 1)  # the back stays under it
    lake.materialize(DAY)
    reason = lake.quarantine(DAY)[("big__front.jpg", "silver")]
    assert reason.startswith("file too large for a photo") and str(big.stat().st_size) in reason
    assert set(lake.gold(DAY)) == {("big", "back")}
    assert sha256_of_file(big) in {p.stem for p in (lake.root / "bronze" / DAY).iterdir()}


def test_a_sidecar_over_the_size_limit_is_recorded_not_parsed(lake):
    lake.upload(DAY, "c1")
    lake.upload(DAY, "c1", "back", color=(90, 90, 90))
    sidecar = lake.upload_dir(DAY) / "c1.json"
    sidecar.write_bytes(b'{"year": 1990, "note": "' + b"x" * 70_000 + b'"}')
    os.utime(sidecar, (1e9, 1e9))
    lake.materialize(DAY)
    assert lake.quarantine(DAY)[("c1.json", "sidecar")].startswith("sidecar too large")
    assert {row["label_year"] for row in lake.gold(DAY).values()} == {None}


# ------------------------------------------------------------------ 9. headless exit code


def test_headless_reports_a_quarantined_file_as_a_warning_and_exits_0(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COIN_ASSETS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("COIN_ASSETS_SETTLE_SECONDS", "0")
    for name in ("DAGSTER_HOME", "COIN_ASSETS_DUCKDB", "COIN_ASSETS_S3_BUCKET"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "uploads" / DAY
    folder.mkdir(parents=True)
    (folder / "c1__front.jpg").write_bytes(encode(tiny_photo(), "jpg"))
    (folder / "c1__back.jpg").write_bytes(b"not an image")
    assert cli.main(["headless", "--skip-training", "--days", DAY]) == 0
    out = capsys.readouterr().out
    assert "1 warning(s), 0 failed" in out and "quarantine_is_empty" in out


def test_a_file_with_a_name_that_is_not_utf8_planted_in_bronze_is_removed_not_fatal(lake):
    from dagster import materialize

    from coin_assets_tests.conftest import ASSETS, INGESTION_ASSETS

    def whole_chain():  # with coin_crops, so the day's fingerprint is recorded and compared next time
        return materialize([*INGESTION_ASSETS, ASSETS["coin_crops"]], partition_key=DAY, resources=lake.resources,
                           instance=lake.instance)

    lake.upload(DAY, "c1")
    whole_chain()
    planted = os.path.join(os.fsencode(lake.root / "bronze" / DAY), b"\xff.bin")
    with open(planted, "wb") as fh:
        fh.write(b"x")
    assert whole_chain().success  # hashing the day's file names failed on that one, on every retry
    assert not os.path.exists(planted)
