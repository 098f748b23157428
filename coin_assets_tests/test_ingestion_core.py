"""The plain-Python ingestion core: keys and stores, the upload contract, sidecars, image cleaning,
DuckDB metadata and the bronze/silver/gold functions, without Dagster."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from datetime import datetime, timedelta, timezone

import duckdb
import numpy as np
import pytest

from coin_assets.core import ingest
from coin_assets.core import metadata as md
from coin_assets.core.images import ImageRejected, aspect_kept, clean_image, oriented_size, target_size
from coin_assets.core.storage import (
    LocalStore,
    StoredObject,
    UnsafeKeyError,
    copy_with_sha256,
    safe_key,
    sha256_of,
)
from coin_assets.core.uploads import (
    classify,
    fingerprints_by_partition,
    list_uploads,
    parse_sidecar,
    path_safe_id,
)
from coin_assets_tests.conftest import DAY, age, decode, encode, jpeg_with_orientation, tiny_photo

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


def obj(key: str, size: int = 10, modified: datetime = NOW) -> StoredObject:
    return StoredObject(key=key, size=size, modified=modified)


# ------------------------------------------------------------------------------------- keys


@pytest.mark.parametrize("parts, expected", [
    (("bronze", "2026-11-20", "abc.jpg"), "bronze/2026-11-20/abc.jpg"),
    (("bronze/", "/x.jpg"), "bronze/x.jpg"),
    (("uploads/2026-11-20/a b__front.jpg",), "uploads/2026-11-20/a b__front.jpg"),
    (("uploads/2026-11-20/münze__back.png",), "uploads/2026-11-20/münze__back.png"),
])
def test_safe_key_joins_relative_parts(parts, expected):
    assert safe_key(*parts) == expected


@pytest.mark.parametrize("key", ["../x", "a/../../x", "a/..", "..", "a\\..\\b", "a\x00b", "", "/"])
def test_safe_key_refuses_keys_that_could_leave_the_root(key):
    with pytest.raises(UnsafeKeyError):
        safe_key(key)


@pytest.mark.parametrize("key", ["/abs", "/etc/passwd"])
def test_safe_key_refuses_absolute_keys(key):
    # The module says absolute paths are refused; a leading "/" must not be silently dropped.
    with pytest.raises(UnsafeKeyError):
        safe_key(key)


@pytest.mark.parametrize("key", ["../x", "a/../../x", "..", "a\\b", "/abs"])
def test_local_store_refuses_unsafe_keys_and_writes_nothing(tmp_path, key):
    root = tmp_path / "root"
    store = LocalStore(root)
    with pytest.raises(UnsafeKeyError):
        store.write_bytes(key, b"evil")
    with pytest.raises(UnsafeKeyError):
        store.read_bytes(key)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_local_store_refuses_a_symlink_that_leads_outside_its_root(tmp_path):
    root = tmp_path / "root"
    (root / "uploads").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(tmp_path, root / "uploads" / "escape")
    store = LocalStore(root)
    with pytest.raises(UnsafeKeyError, match="outside"):
        store.read_bytes("uploads/escape/secret.txt")
    with pytest.raises(UnsafeKeyError, match="outside"):
        store.write_bytes("uploads/escape/new.txt", b"x")
    assert not (tmp_path / "new.txt").exists()


def test_local_store_refuses_a_file_link_out_of_a_folder_it_already_knows(tmp_path):
    root = tmp_path / "root"
    (root / "uploads" / "day").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("secret")
    store = LocalStore(root)
    store.write_bytes("uploads/day/a.txt", b"a")  # the folder's real path is now remembered
    os.symlink(tmp_path / "secret.txt", root / "uploads" / "day" / "b.txt")
    with pytest.raises(UnsafeKeyError, match="outside"):
        store.read_bytes("uploads/day/b.txt")
    os.symlink(root / "uploads" / "day" / "a.txt", root / "uploads" / "day" / "inside.txt")
    assert store.read_bytes("uploads/day/inside.txt") == b"a"  # a link that stays inside is followed


def test_a_write_onto_a_link_replaces_the_link_and_a_copy_never_reads_one(tmp_path):
    # Writes do not look at a key's last part (target_path): the rename replaces a link there, never
    # writing through it; bronze's copy opens with O_NOFOLLOW, so a link in place of an upload is refused.
    from coin_assets.core.storage import stage_copy

    root = tmp_path / "root"
    (root / "bronze" / "day").mkdir(parents=True)
    (tmp_path / "outside.txt").write_text("outside")
    store = LocalStore(root)
    os.symlink(tmp_path / "outside.txt", root / "bronze" / "day" / "x.bin")
    store.write_bytes("bronze/day/x.bin", b"new")
    assert (tmp_path / "outside.txt").read_text() == "outside"
    assert not (root / "bronze" / "day" / "x.bin").is_symlink() and store.read_bytes("bronze/day/x.bin") == b"new"
    os.symlink(root / "bronze" / "day" / "x.bin", root / "bronze" / "day" / "upload.jpg")
    with pytest.raises(OSError):
        stage_copy(store, "bronze/day/upload.jpg", "bronze/day")
    assert sorted(p.name for p in (root / "bronze" / "day").iterdir()) == ["upload.jpg", "x.bin"]


def test_a_staged_copy_of_a_small_file_reads_the_bytes_it_copied(tmp_path):
    from coin_assets.core.storage import SMALL_FILE_BYTES, stage_copy

    store = LocalStore(tmp_path)
    store.write_bytes("uploads/small.json", b'{"year": 1987}')
    store.write_bytes("uploads/big.bin", b"x" * (SMALL_FILE_BYTES + 1))
    for key, data in (("uploads/small.json", b'{"year": 1987}'), ("uploads/big.bin", b"x" * (SMALL_FILE_BYTES + 1))):
        with stage_copy(store, key, "bronze/day") as copy:
            assert copy.read() == data and copy.size == len(data)
            assert copy.sha256 == hashlib.sha256(data).hexdigest()
    assert list((tmp_path / "bronze" / "day").iterdir()) == []  # discarded on exit


def test_local_store_write_is_atomic_and_leaves_no_temp_file(tmp_path):
    store = LocalStore(tmp_path)
    store.write_bytes("a/b/c.bin", b"one")
    store.write_stream("a/b/c.bin", io.BytesIO(b"two"))
    assert store.read_bytes("a/b/c.bin") == b"two"
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["c.bin"]


def test_local_store_lists_sorted_relative_keys_and_deletes(tmp_path):
    store = LocalStore(tmp_path)
    for key in ("p/b.txt", "p/a.txt", "p/sub/c.txt", "q/d.txt"):
        store.write_bytes(key, key.encode())
    assert [o.key for o in store.list("p")] == ["p/a.txt", "p/b.txt", "p/sub/c.txt"]
    assert [o.size for o in store.list("p")] == [7, 7, 11]
    assert list(store.list("missing")) == []
    store.delete("p/a.txt")
    store.delete("p/a.txt")  # missing is fine
    assert not store.exists("p/a.txt")


def test_local_store_copy_gives_same_bytes(tmp_path):
    store = LocalStore(tmp_path)
    store.write_bytes("s/x.jpg", b"pixels")
    store.write_bytes("g/x.jpg", b"old")
    store.copy("s/x.jpg", "g/x.jpg")
    assert store.read_bytes("g/x.jpg") == b"pixels"


def test_copy_with_sha256_hashes_while_copying(tmp_path):
    store = LocalStore(tmp_path)
    data = os.urandom(3 << 20)  # more than one chunk
    store.write_bytes("u/big.bin", data)
    sha, size, spool = copy_with_sha256(store, "u/big.bin")
    with spool:
        assert spool.read() == data
    assert sha == hashlib.sha256(data).hexdigest() == sha256_of(store, "u/big.bin")
    assert size == len(data)


# ------------------------------------------------------------------------------ upload contract


@pytest.mark.parametrize("name, coin, side", [
    ("c1__front.jpg", "c1", "front"),
    ("c1__back.PNG", "c1", "back"),
    ("c1__obverse.webp", "c1", "front"),
    ("c1__Reverse.tif", "c1", "back"),
    ("a b__front.jpg", "a b", "front"),
    ("münze__back.png", "münze", "back"),
    ("x__y__front.jpeg", "x__y", "front"),
])
def test_classify_reads_coin_and_side_from_the_name(name, coin, side):
    item = classify(obj(f"uploads/{DAY}/{name}"))
    assert (item.kind, item.coin_id, item.side, item.partition, item.problem) == ("image", coin, side, DAY, None)


def test_classify_sidecar():
    item = classify(obj(f"uploads/{DAY}/c1.json"))
    assert (item.kind, item.coin_id) == ("sidecar", "c1")


@pytest.mark.parametrize("name, problem", [
    ("x__front.heic", "unsupported file type '.heic'"),
    ("notes.txt", "unsupported file type '.txt'"),
    ("README", "unsupported file type '(no extension)'"),
    ("c1__side.jpg", "file name does not follow <coin_id>__front|back.<ext>"),
    ("c1.jpg", "file name does not follow <coin_id>__front|back.<ext>"),
])
def test_classify_marks_unusable_files_with_their_problem(name, problem):
    item = classify(obj(f"uploads/{DAY}/{name}"))
    assert (item.kind, item.problem) == ("other", problem)


@pytest.mark.parametrize("key", [
    f"uploads/{DAY}/c1__front.jpg.part",
    f"uploads/{DAY}/c1__front.jpg.tmp",
    f"uploads/{DAY}/c1__front.jpg.crdownload",
    f"uploads/{DAY}/c1__front.JPG.PARTIAL",
    f"uploads/{DAY}/.c1__front.jpg",
    f"uploads/{DAY}/..__front.jpg",
    f"uploads/{DAY}/.DS_Store",
    "uploads/reviews/batch.csv",
    f"uploads/{DAY}/nested/c1__front.jpg",
    "uploads/not-a-day/c1__front.jpg",
    "uploads/2026-02-30/c1__front.jpg",
    "uploads/2026-1-5/c1__front.jpg",
])
def test_classify_ignores_in_progress_and_out_of_contract_files(key):
    assert classify(obj(key)) is None


def test_a_file_directly_in_uploads_belongs_to_the_utc_day_of_its_mtime():
    late = datetime(2026, 11, 20, 23, 30, tzinfo=timezone(timedelta(hours=-5)))  # 04:30 UTC on the 21st
    assert classify(obj("uploads/c1__front.jpg", modified=late)).partition == "2026-11-21"


def test_list_uploads_filters_by_day_and_skips_unsettled_files(tmp_path):
    store = LocalStore(tmp_path)
    for key in (f"uploads/{DAY}/old__front.jpg", f"uploads/{DAY}/new__front.jpg", "uploads/2026-11-21/o__back.jpg"):
        store.write_bytes(key, b"x")
    age(tmp_path / f"uploads/{DAY}/old__front.jpg", 120)
    age(tmp_path / "uploads/2026-11-21/o__back.jpg", 120)
    assert {f.name for f in list_uploads(store)} == {"old__front.jpg", "new__front.jpg", "o__back.jpg"}
    assert {f.name for f in list_uploads(store, DAY)} == {"old__front.jpg", "new__front.jpg"}
    assert {f.name for f in list_uploads(store, DAY, settle_seconds=60)} == {"old__front.jpg"}


def test_fingerprints_change_with_size_or_mtime_of_any_file_of_the_day():
    files = [classify(obj(f"uploads/{DAY}/a__front.jpg")), classify(obj("uploads/2026-11-21/b__front.jpg"))]
    base = fingerprints_by_partition(files)
    assert set(base) == {DAY, "2026-11-21"}
    assert fingerprints_by_partition(list(reversed(files))) == base
    resized = [classify(obj(f"uploads/{DAY}/a__front.jpg", size=11)), files[1]]
    touched = [classify(obj(f"uploads/{DAY}/a__front.jpg", modified=NOW + timedelta(seconds=1))), files[1]]
    for changed in (resized, touched):
        new = fingerprints_by_partition(changed)
        assert new[DAY] != base[DAY] and new["2026-11-21"] == base["2026-11-21"]


# ------------------------------------------------------------------------------------ sidecars


def test_parse_sidecar_reads_all_fields():
    car = parse_sidecar(b'{"user_id": "u7", "coin_id": "c1", "uploaded_at": "2026-11-20T10:00:00Z", "year": "1987"}',
                        max_year=2026)
    assert (car.user_id, car.coin_id, car.year, car.problems, car.label_note) == ("u7", "c1", 1987, [], None)
    assert car.uploaded_at == datetime(2026, 11, 20, 10, tzinfo=timezone.utc)


def test_parse_sidecar_naive_time_is_utc():
    assert parse_sidecar(b'{"uploaded_at": "2026-11-20T10:00:00"}').uploaded_at.tzinfo == timezone.utc


@pytest.mark.parametrize("raw, problem", [
    (b"{nope", "sidecar is not valid JSON"),
    (b"\xff\xfe", "sidecar is not valid JSON"),
    (b"[1, 2]", "sidecar must be a JSON object, got list"),
])
def test_parse_sidecar_records_unreadable_documents(raw, problem):
    car = parse_sidecar(raw)
    assert len(car.problems) == 1 and car.problems[0].startswith(problem)
    assert car.year is None and car.user_id is None


@pytest.mark.parametrize("year, note", [
    (3000, "year 3000 outside plausible range 1500-2026; label dropped"),
    (1499, "year 1499 outside plausible range 1500-2026; label dropped"),
    ("MCMXC", "year 'MCMXC' is not an integer; label dropped"),
    (True, "year True is not an integer; label dropped"),
    (1990.5, "year 1990.5 is not an integer; label dropped"),
    (1990.0, "year 1990.0 is not an integer; label dropped"),
    ("1990.0", "year '1990.0' is not an integer; label dropped"),
    ("", "year '' is not an integer; label dropped"),
])
def test_parse_sidecar_drops_bad_years_with_a_note(year, note):
    import json

    car = parse_sidecar(json.dumps({"year": year}).encode(), max_year=2026)
    assert car.year is None
    assert car.label_note == note
    assert car.problems == []  # a bad label is not a broken sidecar


def test_parse_sidecar_bad_fields_are_recorded_not_fatal():
    car = parse_sidecar(b'{"user_id": "", "uploaded_at": "yesterday", "year": 1990}', max_year=2026)
    assert car.year == 1990
    assert car.problems == ["user_id must be a non-empty string", "uploaded_at 'yesterday' is not ISO 8601"]


# ---------------------------------------------------------------------------------- safe ids


@pytest.mark.parametrize("coin_id", ["c1", "coin-s0-000001", "A.b_c-9"])
def test_path_safe_id_keeps_safe_ids(coin_id):
    assert path_safe_id(coin_id) == coin_id


@pytest.mark.parametrize("coin_id", ["..", "a b", "münze", "../../etc/passwd", "a/b", ".hidden", "x" * 200 + "é"])
def test_path_safe_id_makes_unsafe_ids_safe(coin_id):
    safe = path_safe_id(coin_id)
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", safe)
    assert ".." not in safe and len(safe) <= 69
    safe_key("gold", DAY, f"{safe}__front.jpg")


def test_path_safe_id_does_not_collide():
    ids = ["a b", "a_b", "a/b", "a\\b", "münze", "m_nze", "..", "coin"]
    assert len({path_safe_id(i) for i in ids}) == len(ids)


# ------------------------------------------------------------------------------------- images


@pytest.mark.parametrize("size, max_side, expected", [
    ((1024, 768), 512, (512, 384)),
    ((768, 1024), 512, (384, 512)),
    ((100, 50), 512, (100, 50)),  # never upscaled
    ((5000, 3), 512, (512, 1)),  # never 0
])
def test_target_size_keeps_aspect_and_never_upscales(size, max_side, expected):
    assert target_size(*size, max_side) == expected


def test_oriented_size_swaps_for_rotations_only():
    assert [oriented_size(4, 3, o) for o in range(1, 9)] == [(4, 3)] * 4 + [(3, 4)] * 4


def test_aspect_kept_within_a_pixel():
    assert aspect_kept(1000, 750, 512, 384)
    assert aspect_kept(1001, 750, 512, 384)
    assert not aspect_kept(1000, 750, 512, 300)


def test_clean_image_shrinks_to_rgb_jpeg_with_recorded_raw_facts():
    clean = clean_image(encode(tiny_photo((200, 150)), "png"), max_side=64)
    img = decode(clean.data)
    assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (64, 48))
    assert (clean.raw_format, clean.raw_mode, clean.raw_width, clean.raw_height) == ("PNG", "RGB", 200, 150)
    assert (clean.width, clean.height, clean.frames, clean.exif_orientation, clean.notes) == (64, 48, 1, 1, ())


@pytest.mark.parametrize("mode, orientation", [("RGB", 1), ("RGB", 6), ("RGB", 3), ("L", 8), ("CMYK", 1)])
def test_the_scaled_jpeg_decoder_gives_what_pillows_draft_gives(mode, orientation):
    """libjpeg-turbo's M/8 scales (simplejpeg) and Pillow's draft: the same silver image within a grey level or two
    on average, the same size, orientation and recorded facts, whatever the photo's mode (CMYK: Pillow's)."""
    from PIL import Image

    photo = Image.linear_gradient("L").resize((1700, 1100)).convert("RGB")
    photo.paste((230, 40, 40), (100, 100, 700, 500))
    photo = photo.convert(mode)
    data = jpeg_with_orientation(photo, orientation, quality=92) if mode != "CMYK" else encode(photo, "jpg", quality=92)
    scaled, drafted = clean_image(data, jpeg_decoder="simplejpeg"), clean_image(data, jpeg_decoder="pillow")
    facts = ("raw_mode", "raw_width", "raw_height", "exif_orientation", "width", "height", "notes")
    assert [getattr(scaled, f) for f in facts] == [getattr(drafted, f) for f in facts]
    a = np.asarray(decode(scaled.data).convert("RGB"), np.float32)
    b = np.asarray(decode(drafted.data).convert("RGB"), np.float32)
    assert np.abs(a - b).mean() < 1.0 and np.percentile(np.abs(a - b), 99) <= 4
    # truncated: both say so, in the same words
    for decoder in ("simplejpeg", "pillow"):
        with pytest.raises(ImageRejected, match="truncated or corrupt image data"):
            clean_image(data[: len(data) // 2], jpeg_decoder=decoder)


def test_clean_image_is_deterministic():
    data = encode(tiny_photo((150, 100)), "jpg")
    assert clean_image(data, max_side=64).data == clean_image(data, max_side=64).data


# ------------------------------------------------------------------------------------ metadata


@pytest.fixture
def conn(tmp_path):
    with duckdb.connect(str(tmp_path / "m.duckdb")) as conn:
        md.ensure_schema(conn)
        yield conn


def _upload_row(**kw):
    row = dict(upload_key=f"uploads/{DAY}/c1__front.jpg", partition_date=DAY, kind="image", coin_id="c1",
               side="front", raw_name="c1__front.jpg", raw_size=3, sha256="a" * 64, bronze_path="bronze/x.jpg",
               duplicate_of=None, user_id=None, uploaded_at=NOW, ingested_at=NOW, label_year=None, label_note=None)
    return row | kw


def test_ensure_schema_is_idempotent(conn):
    md.ensure_schema(conn)
    tables = {r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert {"uploads", "silver_images", "quarantine", "gold_images", "coins"} <= tables


def test_upsert_upload_keeps_the_first_ingestion_time(conn):
    md.upsert_upload(conn, _upload_row())
    md.upsert_upload(conn, _upload_row(ingested_at=NOW + timedelta(hours=1), sha256="b" * 64, raw_size=4))
    rows = conn.execute("SELECT sha256, raw_size, ingested_at FROM uploads").fetchall()
    assert rows == [("b" * 64, 4, NOW)]


def test_upsert_uploads_inserts_new_keys_and_refreshes_known_ones_in_one_batch(conn):
    md.upsert_uploads(conn, [_upload_row()])
    md.upsert_uploads(conn, [
        _upload_row(ingested_at=NOW + timedelta(hours=1), sha256="b" * 64, raw_size=4),
        _upload_row(upload_key=f"uploads/{DAY}/c2__front.jpg", coin_id="c2", raw_name="c2__front.jpg",
                    ingested_at=NOW + timedelta(hours=1)),
    ])
    rows = conn.execute("SELECT coin_id, sha256, raw_size, ingested_at FROM uploads ORDER BY coin_id").fetchall()
    assert rows == [("c1", "b" * 64, 4, NOW), ("c2", "a" * 64, 3, NOW + timedelta(hours=1))]


def _silver_row(sha, **kw):
    row = dict(sha256=sha, partition_date=DAY, bronze_path=f"bronze/{DAY}/{sha}.jpg", clean_name=f"{sha}.jpg",
               clean_path=f"silver/{DAY}/{sha}.jpg", clean_size=10, clean_width=64, clean_height=48,
               raw_format="JPEG", raw_mode="RGB", raw_width=640, raw_height=480, exif_orientation=1, notes=None,
               processed_at=NOW)
    return row | kw


def test_insert_silver_rows_inserts_new_checksums_and_replaces_known_ones_in_one_batch(conn):
    md.ensure_schema(conn)
    md.insert_silver_rows(conn, [_silver_row("a" * 64)])
    md.insert_silver_rows(conn, [_silver_row("a" * 64, clean_width=32), _silver_row("b" * 64)])
    assert conn.execute("SELECT sha256, clean_width FROM silver_images ORDER BY sha256").fetchall() == [
        ("a" * 64, 32), ("b" * 64, 64)]


def test_first_upload_with_sha_ignores_itself_and_duplicates(conn):
    md.upsert_upload(conn, _upload_row())
    md.upsert_upload(conn, _upload_row(upload_key="k2", raw_name="k2", duplicate_of=f"uploads/{DAY}/c1__front.jpg"))
    assert md.first_upload_with_sha(conn, "a" * 64, "k3") == f"uploads/{DAY}/c1__front.jpg"
    assert md.first_upload_with_sha(conn, "a" * 64, f"uploads/{DAY}/c1__front.jpg") is None
    assert md.first_upload_with_sha(conn, "c" * 64, "k3") is None


def test_clear_quarantine_keeps_other_stages_days_and_kept_keys(conn):
    for key, stage, day in [("a", "silver", DAY), ("b", "silver", DAY), ("c", "bronze", DAY), ("d", "silver", "2026-11-21")]:
        md.record_quarantine(conn, key, stage, day, "why")
    md.clear_quarantine(conn, DAY, "silver", keep_keys=["b"])
    assert sorted(r[0] for r in conn.execute("SELECT upload_key FROM quarantine").fetchall()) == ["b", "c", "d"]
    md.clear_quarantine(conn, DAY, "silver")
    assert sorted(r[0] for r in conn.execute("SELECT upload_key FROM quarantine").fetchall()) == ["c", "d"]


def test_record_quarantine_updates_the_reason_of_the_same_key_and_stage(conn):
    md.record_quarantine(conn, "a", "silver", DAY, "first")
    md.record_quarantine(conn, "a", "silver", DAY, "second")
    assert conn.execute("SELECT reason FROM quarantine").fetchall() == [("second",)]


def test_table_counts(conn):
    md.upsert_upload(conn, _upload_row())
    assert md.table_counts(conn) == {"uploads": 1, "silver_images": 0, "quarantine": 0, "gold_images": 0}
    assert md.table_counts(conn, "2026-11-21")["uploads"] == 0


# ------------------------------------------------------------------------ bronze/silver/gold


@pytest.fixture
def lake_core(lake):
    """The core functions over the lake's store and a DuckDB connection (no Dagster)."""
    with duckdb.connect(str(lake.db_path)) as conn:
        yield lake, conn


def _run_all(store, conn, day=DAY):
    bronze = ingest.ingest_bronze(store, conn, day)
    silver = ingest.build_silver(store, conn, day, max_side=64)
    gold, frame = ingest.build_gold(store, conn, day)
    return bronze, silver, gold, frame


def test_core_layers_report_work_then_skip_it_on_a_second_run(lake_core):
    lake, conn = lake_core
    lake.coin(DAY, "c1", shade=0)
    lake.coin(DAY, "c2", shade=10)
    bronze, silver, gold, frame = _run_all(lake.store, conn)
    assert (bronze.processed, bronze.extra) == (6, {"files": 6, "sidecars": 2, "leftovers_removed": 0})
    assert (silver.processed, silver.skipped, silver.quarantined) == (4, 0, 0)
    assert (gold.processed, gold.extra["coins"], gold.extra["paired_coins"], gold.extra["labelled_images"]) == (4, 2, 2, 4)
    assert len(frame) == 4
    bronze, silver, gold, _ = _run_all(lake.store, conn)
    assert (bronze.processed, bronze.skipped) == (0, 6)
    assert (silver.processed, silver.skipped) == (0, 4)
    assert (gold.processed, gold.skipped) == (0, 4)


def test_core_silver_respects_max_side(lake_core):
    lake, conn = lake_core
    lake.upload(DAY, "c1", "front", "png", size=(200, 100))
    _run_all(lake.store, conn)
    assert conn.execute("SELECT clean_width, clean_height FROM silver_images").fetchall() == [(64, 32)]
    assert decode(lake.store.read_bytes(f"gold/{DAY}/c1__front.jpg")).size == (64, 32)


def test_core_bronze_keeps_bytes_under_their_checksum(lake_core):
    lake, conn = lake_core
    path = lake.upload(DAY, "c1", "front", "jpg")
    ingest.ingest_bronze(lake.store, conn, DAY)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert lake.store.read_bytes(f"bronze/{DAY}/{sha}.jpg") == path.read_bytes()


def test_core_a_latest_upload_of_the_same_coin_side_wins(lake_core):
    lake, conn = lake_core
    lake.upload(DAY, "c1", "front", "jpg", color=(200, 200, 200))
    lake.upload(DAY, "c1", "front", "png", color=(10, 10, 10))  # by key and mtime this one is later
    md.ensure_schema(conn)
    ingest.ingest_bronze(lake.store, conn, DAY)
    conn.execute("UPDATE uploads SET uploaded_at = uploaded_at + INTERVAL 1 HOUR WHERE raw_name = 'c1__front.jpg'")
    ingest.build_silver(lake.store, conn, DAY)
    _, frame = ingest.build_gold(lake.store, conn, DAY)
    assert list(frame.raw_name) == ["c1__front.jpg"]


def test_lookups_into_history_by_index_equal_those_by_join(lake_core, monkeypatch):
    lake, conn = lake_core
    lake.coin(DAY, "c1", shade=0)
    lake.coin(DAY, "c2", shade=10)
    lake.upload(DAY, "c2", "front", "png", color=(10, 10, 10))  # c2's front twice: one is superseded
    lake.coin("2026-11-21", "c3", shade=20)  # another day's silver rows are not the day's
    _run_all(lake.store, conn, "2026-11-21")
    ingest.ingest_bronze(lake.store, conn, DAY)
    ingest.build_silver(lake.store, conn, DAY, max_side=64)
    bronze_files = [obj.key for obj in lake.store.list(f"bronze/{DAY}")] + [f"bronze/{DAY}/{'f' * 64}.jpg"]

    def lookups():
        return (md.gold_candidates(conn, DAY), md.superseded_uploads(conn, DAY),
                md.silver_paths_for_partition(conn, DAY), md.bronze_paths_of_files(conn, bronze_files))

    looked_up = lookups()
    monkeypatch.setattr(md, "INDEX_LOOKUP_MAX", 0)
    joined = lookups()
    assert len(looked_up[0]) == 4 and len(looked_up[1]) == 1
    assert len(looked_up[2]) == 5 and len(looked_up[3]) == len(bronze_files) - 1  # the made-up file is no one's
    assert looked_up[0].equals(joined[0]) and looked_up[1:] == joined[1:]


def test_core_an_upload_changed_in_place_leaves_no_silver_row_or_bronze_file_of_its_old_bytes(lake_core):
    lake, conn = lake_core
    lake.upload(DAY, "c1", "front", "jpg", color=(200, 200, 200))
    _run_all(lake.store, conn)
    old = conn.execute("SELECT sha256 FROM silver_images").fetchall()
    lake.upload(DAY, "c1", "front", "jpg", color=(10, 10, 10))  # same key, new bytes
    _run_all(lake.store, conn)
    new = conn.execute("SELECT sha256 FROM silver_images").fetchall()
    assert len(old) == len(new) == 1 and old != new
    assert [obj.key for obj in lake.store.list(f"bronze/{DAY}")] == [f"bronze/{DAY}/{new[0][0]}.jpg"]


def test_core_empty_partition_gives_empty_gold(lake_core):
    lake, conn = lake_core
    _, _, gold, frame = _run_all(lake.store, conn)
    assert len(frame) == 0 and gold.extra["coins"] == 0
    assert conn.execute("SELECT count(*) FROM gold_images").fetchall() == [(0,)]


@pytest.mark.parametrize("year", ["1987", " 1987 ", 1987])
def test_parse_sidecar_accepts_a_year_written_as_a_string_of_digits(year):
    # Web forms send numbers as strings; a string of digits is the integer.
    car = parse_sidecar(json.dumps({"year": year}).encode())
    assert (car.year, car.label_note) == (1987, None)


def test_clean_many_on_a_process_pool_gives_what_one_process_gives(tmp_path):
    from coin_assets.core.decode_pool import POOL_MIN_IMAGES, WrittenImage, clean_many
    from coin_assets.core.images import ImageRejected

    store = LocalStore(tmp_path)
    keys = []
    for i in range(POOL_MIN_IMAGES + 2):
        key = f"bronze/{i:03d}.png"
        data = encode(tiny_photo((90 + i, 60), (i * 7 % 255, 80, 120)), "png")
        store.write_bytes(key, data if i != 5 else b"broken")
        keys.append((i, key))
    pooled = dict(clean_many(store, keys, max_side=64, workers=2))  # as they finish
    single = dict(clean_many(store, keys, max_side=64, workers=1))
    assert sorted(pooled) == sorted(single) == list(range(len(keys)))
    assert isinstance(pooled[5], ImageRejected) and isinstance(single[5], ImageRejected)
    assert {i: c.data for i, c in pooled.items() if not isinstance(c, ImageRejected)} == \
        {i: c.data for i, c in single.items() if not isinstance(c, ImageRejected)}
    # told where, the workers write the clean JPEGs themselves: the same bytes, none sent back
    written = dict(clean_many(store, keys, max_side=64, workers=2, stage_key=lambda i: f"staging/{i:03d}.jpg"))
    assert isinstance(written[5], ImageRejected)
    for i, result in written.items():
        if i != 5:
            assert isinstance(result, WrittenImage) and result.key == f"staging/{i:03d}.jpg"
            assert result.image.data == b"" and result.size == len(single[i].data)
            assert store.read_bytes(result.key) == single[i].data
            assert (result.image.width, result.image.height) == (single[i].width, single[i].height)


def test_the_one_gold_column_list_matches_the_table():
    with duckdb.connect() as conn:
        md.ensure_schema(conn)
        rows = conn.execute("SELECT column_name, is_nullable FROM information_schema.columns "
                            "WHERE table_name = 'gold_images' ORDER BY ordinal_position").fetchall()
    assert tuple(name for name, _ in rows) == md.GOLD_COLUMNS
    assert tuple(name for name, nullable in rows if nullable == "NO") == md.GOLD_REQUIRED_COLUMNS


def test_printable_key_writes_each_byte_of_a_name_that_is_not_utf8_as_an_escape():
    from coin_assets.core.storage import is_utf8_key, printable_key

    undecodable = os.fsdecode(b"uploads/2026-11-20/caf\xe9__front.jpg")
    assert not is_utf8_key(undecodable)
    assert printable_key(undecodable) == "uploads/2026-11-20/caf\\xe9__front.jpg"
    assert printable_key("uploads/2026-11-20/café__front.jpg") == "uploads/2026-11-20/café__front.jpg"
    assert printable_key("a\ud800b") == "a\\ud800b"  # a surrogate that stands for no byte
