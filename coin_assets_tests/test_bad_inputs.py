"""Every bad input ends quarantined with a clear reason, or is handled as the contract states,
and never fails the run.

First ``clean_image`` on each kind of bad bytes, then one partition holding all of them together,
materialized through Dagster once for the module (plus a second day for a cross-day duplicate).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import struct
import zlib
from datetime import datetime, timezone

import numpy as np
import pytest
from dagster import AssetCheckSeverity
from PIL import Image

from coin_assets.core.images import ImageRejected, clean_image
from coin_assets.core.storage import safe_key
from coin_assets_tests.conftest import (
    DAY,
    DAY2,
    IngestionLake,
    check_evaluations,
    decode,
    encode,
    jpeg_with_orientation,
    materialization_metadata,
    metadata_values,
    tiny_photo,
)

# --------------------------------------------------------------------------- bad bytes


def noisy_jpeg(size=(200, 150), seed=0) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3)).astype(np.uint8)
    return encode(Image.fromarray(arr), "jpg")


def truncated_jpeg() -> bytes:
    data = noisy_jpeg()
    return data[: len(data) // 2]


def truncated_png() -> bytes:
    arr = np.random.default_rng(3).integers(0, 255, (100, 100, 3)).astype(np.uint8)
    data = encode(Image.fromarray(arr), "png")
    return data[: len(data) // 2]


def png_header_claiming(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR for a huge RGB image, and no pixel data at all."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def large_bilevel_png(size=(8000, 7000)) -> bytes:
    """A real 56-megapixel image that compresses to a few KB (1 bit per pixel, all black)."""
    return encode(Image.new("1", size), "png")


def cmyk_jpeg(cmyk=(255, 0, 0, 0)) -> bytes:  # pure cyan
    return encode(Image.new("CMYK", (60, 40), cmyk), "jpg")


def grey16_png(value: int) -> bytes:
    img = Image.fromarray(np.full((40, 60), value, dtype=np.uint16))
    assert img.mode == "I;16"
    return encode(img, "png")


def palette_png_with_transparency() -> bytes:
    """Left half palette index 0 (fully transparent), right half index 1 (opaque green)."""
    img = Image.new("P", (60, 40), 0)
    img.putpalette([255, 0, 0, 0, 200, 0] + [0, 0, 0] * 254)
    img.paste(1, (30, 0, 60, 40))
    return encode(img, "png", transparency=0)


def animated_gif(colors=((200, 0, 0), (0, 200, 0), (0, 0, 200))) -> bytes:
    frames = [Image.new("RGB", (60, 40), c) for c in colors]
    return encode(frames[0], "gif", save_all=True, append_images=frames[1:], duration=100, loop=0)


def mean_rgb(data: bytes) -> tuple[float, ...]:
    return tuple(np.asarray(decode(data).convert("RGB"), dtype=float).reshape(-1, 3).mean(axis=0))


# ------------------------------------------------------------------------------ clean_image


@pytest.mark.parametrize("data, reason", [
    (b"", "empty file (0 bytes)"),
    (b"this is a text file, not a photo\n", "not a recognised image (Pillow cannot identify the file)"),
    (truncated_jpeg(), "truncated or corrupt image data: image file is truncated"),
    (truncated_png(), "truncated or corrupt image data"),
    (png_header_claiming(100_000, 100_000), "image over the pixel limit (decompression bomb)"),
    (large_bilevel_png(), "image over the pixel limit (decompression bomb): 8000x7000 = 56000000 pixels > 50000000"),
], ids=["empty", "text", "truncated-jpeg", "truncated-png", "png-header-bomb", "8000x7000-png"])
def test_clean_image_rejects_with_a_reason(data, reason):
    with pytest.raises(ImageRejected) as err:
        clean_image(data)
    assert str(err.value).startswith(reason)


@pytest.mark.parametrize("fmt", ["PPM", "ICO"])
def test_clean_image_rejects_formats_that_are_not_photos(fmt):
    buf = io.BytesIO()
    Image.new("RGB", (20, 20)).save(buf, fmt)
    with pytest.raises(ImageRejected, match=f"unsupported image format {fmt}"):
        clean_image(buf.getvalue())


def test_clean_image_pixel_limit_is_checked_on_the_header():
    data = encode(tiny_photo((100, 80)), "png")
    with pytest.raises(ImageRejected, match=r"over the pixel limit .*100x80 = 8000 pixels > 7999"):
        clean_image(data, max_pixels=7999)
    assert clean_image(data, max_pixels=8000).width == 100


def test_cmyk_jpeg_becomes_rgb_with_its_colour():
    clean = clean_image(cmyk_jpeg())
    assert (clean.raw_mode, decode(clean.data).mode) == ("CMYK", "RGB")
    r, g, b = mean_rgb(clean.data)
    assert r < 20 and g > 235 and b > 235  # cyan
    assert "CMYK converted to RGB" in clean.notes


@pytest.mark.parametrize("value, expected", [(0, 0), (32768, 128), (65535, 255), (200, 1)])
def test_16_bit_png_is_scaled_to_8_bits_not_clipped(value, expected):
    clean = clean_image(grey16_png(value))
    assert clean.raw_mode == "I;16" and decode(clean.data).mode == "RGB"
    assert all(abs(c - expected) <= 1.5 for c in mean_rgb(clean.data))
    assert "I;16 scaled to 8 bits" in clean.notes


def test_palette_png_transparency_is_flattened_on_white():
    clean = clean_image(palette_png_with_transparency())
    img = decode(clean.data)
    assert clean.raw_mode == "P" and img.mode == "RGB"
    left, right = img.getpixel((8, 20)), img.getpixel((52, 20))
    assert all(c > 245 for c in left), left  # transparent → white, not the red behind index 0
    assert right[0] < 20 and 180 < right[1] < 220 and right[2] < 20, right
    assert "transparency flattened on white" in clean.notes


def test_animated_gif_keeps_the_first_frame_and_says_so():
    clean = clean_image(animated_gif())
    assert clean.frames == 3
    assert "3 frames, first kept" in clean.notes
    r, g, b = mean_rgb(clean.data)
    assert r > 180 and g < 20 and b < 20


def test_exif_orientation_6_rotates_the_pixels_and_swaps_the_size():
    clean = clean_image(jpeg_with_orientation(tiny_photo((120, 80)), 6))
    img = decode(clean.data)
    assert (clean.raw_width, clean.raw_height, clean.exif_orientation) == (120, 80, 6)
    assert (clean.width, clean.height) == img.size == (80, 120)
    # The light block of the stored top-left corner is at the top-right once rotated 90° clockwise.
    assert min(img.getpixel((75, 5))) > 200 and min(img.getpixel((5, 5))) < 120
    assert "EXIF orientation 6 applied" in clean.notes


def test_exif_rotated_large_jpeg_is_shrunk_in_the_displayed_orientation():
    clean = clean_image(jpeg_with_orientation(tiny_photo((800, 600)), 8), max_side=100)
    assert (clean.width, clean.height) == decode(clean.data).size == (75, 100)


# ----------------------------------------------------------------- one partition of bad inputs

OUTSIDE_SECRET = b"bytes that live outside the data root"
SAME_DAY_TWIN = noisy_jpeg(seed=1)
CROSS_DAY_TWIN = noisy_jpeg(seed=2)


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """A day with every bad input next to a few good coins, and a second day that re-uploads one
    file of the first; both materialized (with checks) in date order."""
    lake = IngestionLake(tmp_path_factory.mktemp("bad_inputs"))
    shade = iter(range(0, 250, 7))

    def photo(coin_id, side="front", fmt="jpg", size=(120, 90), day=DAY):
        return lake.upload(day, coin_id, side, fmt, size=size, color=(90, next(shade), 160))

    photo("good", "front")
    photo("good", "back", "png")
    lake.sidecar(DAY, "good", year=1990)
    lake.upload(DAY, "empty", data=b"")
    lake.upload(DAY, "trunc", data=truncated_jpeg())
    lake.upload(DAY, "text", data=b"this is a text file, not a photo\n")
    lake.upload(DAY, "huge", fmt="png", data=large_bilevel_png())
    lake.upload(DAY, "bomb", "back", "png", data=png_header_claiming(100_000, 100_000))
    lake.upload(DAY, "cmyk", data=cmyk_jpeg())
    lake.upload(DAY, "grey16", fmt="png", data=grey16_png(32768))
    lake.upload(DAY, "pal", fmt="png", data=palette_png_with_transparency())
    lake.upload(DAY, "anim", fmt="gif", data=animated_gif())
    lake.upload(DAY, "rot", data=jpeg_with_orientation(tiny_photo((120, 80), (30, 60, 90)), 6))
    photo("a b", "front")
    photo("münze", "back", "png")
    lake.upload(DAY, name="..__front.jpg", data=encode(tiny_photo(color=(1, 2, 3))))
    photo("lonely", "front")
    lake.sidecar(DAY, "lonely", year=1955)
    photo("badcar", "front")
    photo("badcar", "back")
    lake.sidecar(DAY, "badcar", raw="{nope, not json")
    photo("future", "front")
    photo("future", "back")
    lake.sidecar(DAY, "future", year=3000)
    lake.upload(DAY, "twin1", data=SAME_DAY_TWIN)
    lake.upload(DAY, "twin2", data=SAME_DAY_TWIN)
    lake.upload(DAY, "twice", data=CROSS_DAY_TWIN)
    lake.upload(DAY, "x", fmt="heic", data=b"\x00\x00\x00\x18ftypheic" + os.urandom(64))
    lake.upload(DAY, name="notes.txt", data=b"remember to photograph the edge\n")
    photo("again", "front", day=DAY2)
    lake.upload(DAY2, "twice2", data=CROSS_DAY_TWIN)
    siblings_before = sorted(lake.base.parent.iterdir())
    results = {DAY: lake.materialize(DAY, raise_on_error=False), DAY2: lake.materialize(DAY2, raise_on_error=False)}
    lake.siblings = (siblings_before, sorted(lake.base.parent.iterdir()))
    yield lake, results
    lake.close()


@pytest.fixture(scope="module")
def quarantined(bad):
    lake, _ = bad
    return lake.quarantine(DAY)


@pytest.fixture(scope="module")
def gold(bad):
    lake, _ = bad
    return lake.gold(DAY)


def silver_of(lake, name: str) -> dict:
    sha = lake.upload_row(name)["sha256"]
    frame = lake.df("SELECT * FROM silver_images WHERE sha256 = ?", sha)
    assert len(frame) == 1, f"{name} has no silver row"
    return frame.to_dict("records")[0]


def gold_bytes(lake, gold, coin_id, side="front") -> bytes:
    return lake.store.read_bytes(gold[(coin_id, side)]["gold_path"])


def test_runs_with_bad_inputs_succeed(bad):
    _, results = bad
    for result in results.values():
        assert result.success
        assert {e.asset_key.path[-1] for e in result.get_asset_materialization_events()} == {
            "bronze_images", "decoded_images", "silver_images", "gold_images"}


@pytest.mark.parametrize("name, stage, reason", [
    ("empty__front.jpg", "silver", "empty file (0 bytes)"),
    ("trunc__front.jpg", "silver", "truncated or corrupt image data: image file is truncated"),
    ("text__front.jpg", "silver", "not a recognised image (Pillow cannot identify the file)"),
    ("huge__front.png", "silver", "image over the pixel limit (decompression bomb): 8000x7000 = 56000000 pixels"),
    ("bomb__back.png", "silver", "image over the pixel limit (decompression bomb)"),
    ("x__front.heic", "bronze", "unsupported file type '.heic'"),
    ("notes.txt", "bronze", "unsupported file type '.txt'"),
    ("badcar.json", "sidecar", "sidecar is not valid JSON"),
])
def test_bad_file_is_quarantined_with_its_reason(quarantined, name, stage, reason):
    assert (name, stage) in quarantined, sorted(quarantined)
    assert quarantined[(name, stage)].startswith(reason)


def test_quarantine_holds_exactly_the_bad_files(quarantined):
    assert sorted(name for name, _ in quarantined) == sorted([
        "empty__front.jpg", "trunc__front.jpg", "text__front.jpg", "huge__front.png", "bomb__back.png",
        "x__front.heic", "notes.txt", "badcar.json",
    ])


def test_quarantined_images_are_not_in_gold(gold):
    assert {coin for coin, _ in gold}.isdisjoint({"empty", "trunc", "text", "huge", "bomb", "x"})


def test_quarantine_check_warns_and_lists_every_bad_file(bad, quarantined):
    _, results = bad
    evaluation = check_evaluations(results[DAY])["quarantine_is_empty"]
    assert evaluation.passed is False
    assert evaluation.severity == AssetCheckSeverity.WARN
    meta = metadata_values(evaluation)
    assert meta["quarantined"] == len(quarantined) == 8
    assert meta["reasons"]["empty file (0 bytes)"] == 1
    assert meta["reasons"]["image over the pixel limit (decompression bomb)"] == 2


def test_blocking_and_completeness_checks_pass_despite_bad_inputs(bad):
    _, results = bad
    for day in (DAY, DAY2):
        evaluations = check_evaluations(results[day])
        for name in ("silver_images_are_clean", "gold_lineage_is_intact", "gold_metadata_is_complete"):
            assert evaluations[name].passed, (day, name, metadata_values(evaluations[name]))


def test_silver_metadata_counts_the_quarantine(bad):
    _, results = bad
    meta = materialization_metadata(results[DAY], "silver_images")
    assert meta["quarantined"] == 5  # the undecodable images of this run
    assert meta["quarantined_in_partition"] == 8  # plus bronze and sidecar problems
    assert "empty file (0 bytes)" in {row["reason"] for row in meta["quarantine_preview"]}


def test_unsupported_file_keeps_its_bytes_in_bronze(bad):
    lake, _ = bad
    for name in ("x__front.heic", "notes.txt"):
        row = lake.upload_row(name)
        raw = (lake.root / "uploads" / DAY / name).read_bytes()
        assert row["kind"] == "other"
        assert row["bronze_path"] == f"bronze/{DAY}/{hashlib.sha256(raw).hexdigest()}.bin"
        assert lake.store.read_bytes(row["bronze_path"]) == raw


def test_cmyk_jpeg_reaches_gold_as_rgb(bad, gold):
    lake, _ = bad
    assert silver_of(lake, "cmyk__front.jpg")["raw_mode"] == "CMYK"
    img = decode(gold_bytes(lake, gold, "cmyk"))
    assert img.mode == "RGB"
    r, g, b = mean_rgb(gold_bytes(lake, gold, "cmyk"))
    assert r < 20 and g > 235 and b > 235


def test_16_bit_png_reaches_gold_as_mid_grey_rgb(bad, gold):
    lake, _ = bad
    silver = silver_of(lake, "grey16__front.png")
    assert silver["raw_mode"] == "I;16" and "scaled to 8 bits" in silver["notes"]
    assert decode(gold_bytes(lake, gold, "grey16")).mode == "RGB"
    assert all(abs(c - 128) <= 2 for c in mean_rgb(gold_bytes(lake, gold, "grey16")))


def test_palette_png_reaches_gold_flattened_on_white(bad, gold):
    lake, _ = bad
    assert "transparency flattened on white" in silver_of(lake, "pal__front.png")["notes"]
    img = decode(gold_bytes(lake, gold, "pal"))
    assert all(c > 245 for c in img.getpixel((8, 20)))


def test_animated_gif_reaches_gold_as_its_first_frame(bad, gold):
    lake, _ = bad
    assert "3 frames, first kept" in silver_of(lake, "anim__front.gif")["notes"]
    r, g, b = mean_rgb(gold_bytes(lake, gold, "anim"))
    assert r > 180 and g < 20 and b < 20


def test_exif_rotated_jpeg_is_upright_in_silver_and_gold(bad, gold):
    lake, _ = bad
    silver = silver_of(lake, "rot__front.jpg")
    assert (silver["raw_width"], silver["raw_height"], silver["exif_orientation"]) == (120, 80, 6)
    assert (silver["clean_width"], silver["clean_height"]) == (80, 120)
    assert (gold[("rot", "front")]["clean_width"], gold[("rot", "front")]["clean_height"]) == (80, 120)
    assert decode(gold_bytes(lake, gold, "rot")).size == (80, 120)


def test_names_with_spaces_and_unicode_are_ingested_under_safe_gold_paths(gold):
    for coin_id, side in (("a b", "front"), ("münze", "back")):
        path = gold[(coin_id, side)]["gold_path"]
        folder, name = path.rsplit("/", 1)
        assert folder == f"gold/{DAY}"
        assert re.fullmatch(rf"[A-Za-z0-9][A-Za-z0-9._-]*__{side}\.jpg", name), path
        assert safe_key(path) == path


def test_every_gold_path_is_a_safe_key_inside_the_data_root(bad):
    lake, _ = bad
    for (path,) in lake.query("SELECT gold_path FROM gold_images"):
        assert safe_key(path) == path
        assert lake.store.path(path).is_relative_to(lake.root.resolve())


def test_dot_dot_name_is_never_picked_up(bad):
    lake, _ = bad
    assert lake.query("SELECT count(*) FROM uploads WHERE raw_name LIKE '..%'") == [(0,)]


def test_nothing_is_written_outside_the_data_root(bad):
    lake, _ = bad
    stray = [p for p in lake.base.rglob("*") if p.is_file()
             and not p.is_relative_to(lake.root) and not p.is_relative_to(lake.db_path.parent)]
    assert stray == []
    before, after = lake.siblings
    assert after == before  # nothing appeared next to the lake's folder either
    top = {p.name for p in lake.root.iterdir()}
    assert top == {"uploads", "bronze", "silver", "gold", "staging", "audit"}


def test_front_without_back_is_in_gold_and_listed_unpaired_by_a_passing_lineage_check(bad, gold):
    lake, results = bad
    assert ("lonely", "front") in gold and ("lonely", "back") not in gold
    assert gold[("lonely", "front")]["label_year"] == 1955
    assert lake.query("SELECT paired, back_path FROM coins WHERE coin_id = 'lonely'") == [(False, None)]
    evaluation = check_evaluations(results[DAY])["gold_lineage_is_intact"]
    assert evaluation.passed
    meta = metadata_values(evaluation)
    assert "- lonely" in meta["unpaired"].splitlines()
    assert "- good" not in meta["unpaired"].splitlines()
    unpaired = {c for (c,) in lake.query("SELECT coin_id FROM coins WHERE partition_date = ? AND NOT paired", DAY)}
    assert meta["unpaired_coins"] == len(unpaired)


def test_sidecar_that_is_not_json_leaves_images_ingested_without_label(gold):
    for side in ("front", "back"):
        row = gold[("badcar", side)]
        assert row["label_year"] is None or np.isnan(row["label_year"])
        assert row["label_source"] is None
        assert row["user_id"] is None


def test_year_out_of_range_drops_the_label_with_a_note(bad, gold):
    lake, _ = bad
    this_year = datetime.now(timezone.utc).year
    row = lake.upload_row("future__front.jpg")
    assert row["label_note"] == f"year 3000 outside plausible range 1500-{this_year}; label dropped"
    assert row["user_id"] == "u1"  # the rest of the sidecar still applies
    assert gold[("future", "front")]["label_source"] is None
    assert gold[("good", "front")]["label_year"] == 1990


def test_same_file_twice_on_one_day_is_stored_once(bad, gold):
    lake, _ = bad
    first, second = lake.upload_row("twin1__front.jpg"), lake.upload_row("twin2__front.jpg")
    sha = hashlib.sha256(SAME_DAY_TWIN).hexdigest()
    assert first["sha256"] == second["sha256"] == sha
    assert first["duplicate_of"] is None
    assert second["duplicate_of"] == f"uploads/{DAY}/twin1__front.jpg"
    assert second["bronze_path"] == first["bronze_path"]
    assert [k for k in lake.files("bronze") if sha in k] == [f"bronze/{DAY}/{sha}.jpg"]
    assert ("twin1", "front") in gold and ("twin2", "front") not in gold


def test_same_file_on_two_days_is_stored_once(bad):
    lake, _ = bad
    first, second = lake.upload_row("twice__front.jpg"), lake.upload_row("twice2__front.jpg")
    sha = hashlib.sha256(CROSS_DAY_TWIN).hexdigest()
    assert str(second["partition_date"])[:10] == DAY2
    assert second["duplicate_of"] == f"uploads/{DAY}/twice__front.jpg"
    assert second["bronze_path"] == first["bronze_path"] == f"bronze/{DAY}/{sha}.jpg"
    assert [k for k in lake.files("bronze") if sha in k] == [f"bronze/{DAY}/{sha}.jpg"]
    assert lake.gold(DAY2).keys() == {("again", "front")}


# ----------------------------------------------------------- bad inputs with a lake of their own


def test_partition_where_every_file_is_bad_still_materializes_and_says_so(lake):
    lake.upload(DAY, "empty", data=b"")
    lake.upload(DAY, "text", data=b"not an image")
    lake.upload(DAY, "trunc", "back", data=truncated_jpeg())
    lake.upload(DAY, "x", fmt="heic", data=b"heic?")
    lake.sidecar(DAY, "empty", raw="[]")
    result = lake.materialize(DAY, raise_on_error=False)
    assert result.success
    meta = materialization_metadata(result, "gold_images")
    assert (meta["rows"], meta["coins"], meta["processed"]) == (0, 0, 0)
    assert lake.query("SELECT count(*) FROM gold_images") == [(0,)]
    assert len(lake.quarantine(DAY)) == 5
    evaluations = check_evaluations(result)
    assert (evaluations["quarantine_is_empty"].passed, evaluations["quarantine_is_empty"].severity) == (
        False, AssetCheckSeverity.WARN)
    assert evaluations["gold_lineage_is_intact"].passed and evaluations["gold_metadata_is_complete"].passed


def test_backslash_in_a_file_name_does_not_fail_the_run(lake):
    # A Linux file name may contain "\"; the store refuses such keys, so ingestion must not try to
    # read it as is: it is quarantined (or skipped) and the rest of the day is ingested.
    lake.upload(DAY, "good")
    lake.upload(DAY, name="a\\..\\b__front.jpg", color=(1, 2, 3))
    result = lake.materialize(DAY, raise_on_error=False)
    assert result.success
    assert ("good", "front") in lake.gold(DAY)
    assert [p.name for p in lake.base.rglob("b__front.jpg")] == []


def test_symlink_out_of_the_data_root_does_not_fail_the_run_nor_copy_the_target(lake, tmp_path):
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(OUTSIDE_SECRET)
    lake.upload(DAY, "good")
    os.symlink(secret, lake.upload_dir(DAY) / "evil__front.jpg")
    result = lake.materialize(DAY, raise_on_error=False)
    assert result.success
    assert ("good", "front") in lake.gold(DAY)
    assert not any(p.read_bytes() == OUTSIDE_SECRET for p in (lake.root / "bronze").rglob("*") if p.is_file())
