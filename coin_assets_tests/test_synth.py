"""The synthetic coin photo generator: determinism, the upload contract, formats, EXIF orientation."""

from __future__ import annotations

import datetime as dt
import io
import json
import random
import re
from collections import Counter

import numpy as np
import pytest
from PIL import Image, ImageOps

from coin_assets.core.images import clean_image
from coin_assets.core.storage import LocalStore
from coin_assets.core.uploads import list_uploads, parse_sidecar
from coin_assets.synth import photos as synth

END = dt.date(2026, 11, 24)
MAX_SIDE = 160


def _tree(root) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """60 tiny coins over 3 days with the default format mix."""
    data_root = tmp_path_factory.mktemp("synth")
    upload_root = data_root / "uploads"
    coins = synth.generate_uploads(upload_root, 60, days=3, seed=11, end_date=END, max_side=MAX_SIDE)
    return data_root, upload_root, coins


def test_same_arguments_give_byte_identical_files(tmp_path):
    kwargs = dict(coins=12, days=2, seed=5, end_date=END, max_side=MAX_SIDE)
    a = synth.generate_uploads(tmp_path / "a", **kwargs)
    b = synth.generate_uploads(tmp_path / "b", **kwargs)
    tree_a, tree_b = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert tree_a and tree_a == tree_b
    assert [(c.coin_id, c.year, c.labelled, c.day) for c in a] == [(c.coin_id, c.year, c.labelled, c.day) for c in b]
    # a different seed gives different coins
    synth.generate_uploads(tmp_path / "c", **{**kwargs, "seed": 6})
    assert set(_tree(tmp_path / "c").values()).isdisjoint(tree_a.values())
    # rerunning into the same folder rewrites the same bytes (no leftovers, no .part files)
    synth.generate_uploads(tmp_path / "a", **kwargs)
    assert _tree(tmp_path / "a") == tree_a


def test_render_coin_pair_is_deterministic_and_sized():
    f1, b1 = synth.render_coin_pair(1977, random.Random(3), (200, 150))
    f2, b2 = synth.render_coin_pair(1977, random.Random(3), (200, 150))
    assert f1.mode == b1.mode == "RGB" and f1.size == b1.size == (200, 150)
    assert f1.tobytes() == f2.tobytes() and b1.tobytes() == b2.tobytes()
    assert f1.tobytes() != b1.tobytes()
    front, _ = synth.render_coin_pair(2001, random.Random(4), (90, 120), max_rotation=0.0)
    assert front.size == (90, 120)


def test_layout_and_sidecar_contract(batch):
    data_root, upload_root, coins = batch
    days = [END - dt.timedelta(days=k) for k in (2, 1, 0)]
    assert sorted(p.name for p in upload_root.iterdir()) == [d.isoformat() for d in days]
    assert len({c.coin_id for c in coins}) == 60
    assert all(re.fullmatch(r"coin-s11-\d{6}", c.coin_id) for c in coins)
    # contiguous, even day blocks
    assert Counter(c.day for c in coins) == {d: 20 for d in days}
    assert [c.day for c in coins] == sorted(c.day for c in coins)
    assert sum(c.labelled for c in coins) == round(0.85 * 60)
    assert sum(c.sidecar_path is None for c in coins) == 3

    ext = r"\.(jpg|png|webp|tif|bmp|gif)"
    for c in coins:
        folder = upload_root / c.day.isoformat()
        assert c.front_path.parent == folder and c.back_path.parent == folder
        assert re.fullmatch(re.escape(c.coin_id) + "__front" + ext, c.front_path.name)
        assert re.fullmatch(re.escape(c.coin_id) + "__back" + ext, c.back_path.name)
        if c.sidecar_path is None:
            assert not c.labelled and not (folder / f"{c.coin_id}.json").exists()
            continue
        assert c.sidecar_path == folder / f"{c.coin_id}.json"
        doc = json.loads(c.sidecar_path.read_text())
        assert set(doc) == ({"user_id", "coin_id", "uploaded_at", "year"} if c.labelled else
                            {"user_id", "coin_id", "uploaded_at"})
        assert doc["coin_id"] == c.coin_id and re.fullmatch(r"user-\d{3}", doc["user_id"])
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", doc["uploaded_at"])
        uploaded = dt.datetime.fromisoformat(doc["uploaded_at"].replace("Z", "+00:00"))
        assert uploaded.tzinfo is not None and uploaded.date() == c.day
        if c.labelled:
            assert doc["year"] == c.year and isinstance(doc["year"], int)
    files = list(upload_root.rglob("*"))
    assert not [p for p in files if p.name.endswith(".part")]
    assert len([p for p in files if p.is_file()]) == 2 * 60 + 57


def test_the_ingestion_contract_reads_what_synth_writes(batch):
    data_root, _, coins = batch
    files = list_uploads(LocalStore(data_root))
    assert not [f for f in files if f.problem or f.kind == "other"]
    by_coin = {c.coin_id: c for c in coins}
    images = [f for f in files if f.kind == "image"]
    assert len(images) == 120
    assert Counter((f.coin_id, f.side) for f in images) == {(c, s): 1 for c in by_coin for s in ("front", "back")}
    for f in images:
        assert f.partition == by_coin[f.coin_id].day.isoformat()
    for f in (f for f in files if f.kind == "sidecar"):
        side = parse_sidecar((data_root / f.key).read_bytes(), max_year=synth.YEAR_MAX)
        assert not side.problems and side.label_note is None
        assert side.coin_id == f.coin_id and side.year == (by_coin[f.coin_id].year if by_coin[f.coin_id].labelled else None)
    for f in images:
        clean = clean_image((data_root / f.key).read_bytes())
        assert clean.width <= MAX_SIDE and clean.height <= MAX_SIDE


def test_every_image_opens_and_respects_max_side(batch):
    _, _, coins = batch
    formats = Counter()
    for c in coins:
        sizes = []
        for path in (c.front_path, c.back_path):
            with Image.open(path) as img:
                img.load()
                formats[img.format] += 1
                shown = ImageOps.exif_transpose(img)
                assert max(img.size) <= MAX_SIDE
                sizes.append(shown.size)
        assert sizes[0] == sizes[1]  # both photos of a coin come from the same camera, shown upright
    assert formats["JPEG"] >= 60 and len(formats) >= 4, formats


@pytest.mark.parametrize("fmt", ["jpg", "png", "webp", "tif", "bmp", "gif"])
def test_each_format_can_be_forced(tmp_path, fmt):
    coins = synth.generate_uploads(tmp_path, 2, seed=1, end_date=END, max_side=64, formats=[fmt])
    expected = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP", "tif": "TIFF", "bmp": "BMP", "gif": "GIF"}[fmt]
    for c in coins:
        for path in (c.front_path, c.back_path):
            assert path.suffix == "." + fmt
            with Image.open(path) as img:
                assert img.format == expected
                assert max(img.convert("RGB").size) <= 64


def test_unknown_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown image format"):
        synth.generate_uploads(tmp_path, 1, formats=["heic"])


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_round_trip(orientation):
    # an asymmetric picture: a bright block in the top-left corner of a 120x80 landscape image
    arr = np.full((80, 120, 3), 40, dtype=np.uint8)
    arr[:30, :50] = 230
    img = Image.fromarray(arr, "RGB")
    data = synth.encode_photo(img, "jpeg", random.Random(0), orientation)
    with Image.open(io.BytesIO(data)) as stored:
        assert stored.getexif().get(0x0112) == orientation
        assert stored.size == ((80, 120) if orientation in (6, 8) else (120, 80))
        shown = np.asarray(ImageOps.exif_transpose(stored).convert("RGB"), dtype=np.int16)
    assert shown.shape == arr.shape
    assert np.abs(shown - arr).mean() < 4.0


def test_some_generated_jpegs_carry_exif_orientation(tmp_path):
    coins = synth.generate_uploads(tmp_path, 40, seed=2, end_date=END, max_side=48, formats=["jpg"])
    oriented = 0
    for c in coins:
        shown_sizes = []
        for path in (c.front_path, c.back_path):
            with Image.open(path) as img:
                o = img.getexif().get(0x0112, 1)
                assert o in (1, 3, 6, 8)
                oriented += o != 1
                shown_sizes.append(ImageOps.exif_transpose(img).size)
        assert shown_sizes[0] == shown_sizes[1]
    assert 2 <= oriented <= 20


def test_years_and_era_cues(batch):
    _, _, coins = batch
    years = [c.year for c in coins]
    assert all(synth.YEAR_MIN <= y <= synth.YEAR_MAX for y in years)
    assert min(years) < 1965 and max(years) > 2010
    assert (synth.YEAR_MIN, synth.YEAR_MAX) == (1950, 2025)
    # copper-red in 1950 turning silver-grey by 2025
    red_minus_blue = [synth.alloy_colour(y)[0] - synth.alloy_colour(y)[2] for y in range(1950, 2026)]
    assert all(b <= a + 1e-9 for a, b in zip(red_minus_blue, red_minus_blue[1:], strict=False))
    assert red_minus_blue[0] > 0.4 and abs(red_minus_blue[-1]) < 0.1
    assert synth.decade_index(1950) == 0 and synth.decade_index(2025) == 7


def test_photo_sizes_follow_the_camera_mix():
    rng = random.Random(0)
    sizes = [synth.photo_size_for(rng) for _ in range(2000)]
    assert 0.03 < sizes.count((4000, 3000)) / len(sizes) < 0.07
    others = [s for s in sizes if s != (4000, 3000)]
    assert all(800 <= max(s) <= 2000 for s in others)
    assert any(w < h for w, h in others) and any(w == h for w, h in others)
    assert max(max(synth.photo_size_for(rng, max_side=160)) for _ in range(200)) <= 160


def test_cli_writes_and_summarises(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COIN_ASSETS_UPLOAD_DIR", str(tmp_path / "env_uploads"))
    assert synth.main(["--coins", "4", "--days", "2", "--seed", "9", "--end-date", "2026-01-02",
                       "--max-side", "64", "--label-fraction", "0.5", "--max-rotation", "5"]) == 0
    out = capsys.readouterr().out
    assert "4 coins" in out and "8 images" in out and "2 labelled" in out and "2 days" in out
    assert sorted(p.name for p in (tmp_path / "env_uploads").iterdir()) == ["2026-01-01", "2026-01-02"]
