"""The photographic generator of struck coins (coin_assets/synth/struck.py): determinism, goldens per
material and light, the year drawn only as relief, the truth of the coin's circle, two faces in one photo."""

from __future__ import annotations

import ast
import csv
import math
import pathlib
import random
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from coin_assets.synth import struck
from coin_assets.synth import varied as v

GOLDEN = pathlib.Path(__file__).parent / "golden" / "struck"
SMALL = (200, 150)


def test_same_seed_same_bytes_other_seed_other_bytes():
    f1, b1, s1 = struck.render_struck_photo_pair(1948, random.Random(3), photo_size=SMALL)
    f2, b2, s2 = struck.render_struck_photo_pair(1948, random.Random(3), photo_size=SMALL)
    assert f1.image.size == b1.image.size == SMALL and f1.image.mode == "RGB"
    assert f1.image.tobytes() == f2.image.tobytes() and b1.image.tobytes() == b2.image.tobytes()
    assert s1 == s2 and (f1.centre, f1.radius) == (f2.centre, f2.radius)
    f3, _, _ = struck.render_struck_photo_pair(1948, random.Random(4), photo_size=SMALL)
    assert f3.image.tobytes() != f1.image.tobytes() and f1.image.tobytes() != b1.image.tobytes()


@pytest.mark.parametrize("material", struck.MATERIALS)
def test_golden_per_material_and_light(material):
    """Regenerate with ``python -m coin_assets.synth.struck --write-golden coin_assets_tests/golden/struck``."""
    for light in struck.LIGHTS:
        path = GOLDEN / f"{material}_{light}.png"
        golden = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
        now = np.asarray(struck.golden_image(material, light), dtype=np.float32)
        assert now.shape == golden.shape == (struck.GOLDEN_SIZE, struck.GOLDEN_SIZE, 3)
        assert np.abs(now - golden).mean() <= 2.0, f"{path.name} changed"
        assert path.stat().st_size < 12_000


def test_goldens_differ_by_material_and_light():
    a = np.asarray(struck.golden_image("copper", "key"), dtype=np.float32)
    assert np.abs(a - np.asarray(struck.golden_image("nickel", "key"), dtype=np.float32)).mean() > 5
    assert np.abs(a - np.asarray(struck.golden_image("copper", "grazing"), dtype=np.float32)).mean() > 3


def _chroma(rgb: np.ndarray) -> np.ndarray:
    return rgb / max(1e-6, float(rgb.sum()))


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_year_is_relief_in_the_coins_metal_not_ink(seed):
    """With and without the year (same RNG state), the pixels that differ have the coin's colour: light and
    shadow on the same metal, never dark (or bright) ink."""
    style = struck.sample_struck_style(random.Random(seed))
    style = replace(style, placement=struck.STRUCK_PLACEMENTS[seed % len(struck.STRUCK_PLACEMENTS)], mint_mark=None,
                    digit_height=0.08, relief_depth=max(style.relief_depth, 0.12), wear=min(style.wear, 0.5))
    with_year, alpha = struck.render_struck_face(1987, "front", 220, style, random.Random(100 + seed))
    without, alpha2 = struck.render_struck_face(None, "front", 220, style, random.Random(100 + seed), year_text="")
    assert np.array_equal(alpha, alpha2)
    inside = alpha > 0.999
    diff = (np.abs(with_year - without).max(axis=-1) > 0.04) & inside
    assert diff.sum() > 60, "the year left no trace"
    coin = without[inside].mean(axis=0)
    digits = with_year[diff].mean(axis=0)
    assert np.abs(_chroma(digits) - _chroma(coin)).max() < 0.035, (digits, coin)
    luma = np.array([0.299, 0.587, 0.114], np.float32)
    assert 0.6 < float(digits @ luma) / float(coin @ luma) < 1.4, (digits, coin)


def _moments(mask: np.ndarray) -> tuple[float, float, float, float]:
    """(cx, cy, semi-major, semi-minor) of a filled ellipse's weight mask."""
    ys, xs = np.mgrid[0:mask.shape[0], 0:mask.shape[1]]
    m = mask.sum()
    cx, cy = (xs * mask).sum() / m, (ys * mask).sum() / m
    cov = np.array([[((xs - cx) ** 2 * mask).sum(), ((xs - cx) * (ys - cy) * mask).sum()],
                    [((xs - cx) * (ys - cy) * mask).sum(), ((ys - cy) ** 2 * mask).sum()]]) / m
    ev = np.linalg.eigvalsh(cov)
    return float(cx), float(cy), float(2 * math.sqrt(ev[1])), float(2 * math.sqrt(ev[0]))


@pytest.mark.parametrize("tilt", [0.0, 20.0])
def test_truth_circle_matches_the_drawn_coin_and_tilt_makes_an_ellipse(tilt):
    style = replace(struck.sample_struck_style(random.Random(9)), tilt=tilt, tilt_axis=30.0, cut=0.0,
                    diameter=0.6, position=(0.3, 0.6))
    photo, coin = struck._photo_side(1950, "front", style, random.Random(1), (320, 240), None)
    cx, cy, major, minor = _moments(coin)
    assert abs(cx - photo.centre[0]) < 1.5 and abs(cy - photo.centre[1]) < 1.5
    assert abs(major - photo.radius) < 0.03 * photo.radius
    assert minor / major == pytest.approx(math.cos(math.radians(tilt)), abs=0.015)


def test_diameters_follow_real_photos_and_cut_coins_stay_mostly_in_the_frame():
    """Mostly 300..466 px in 640×480, some small (240..300 px), some filling the frame (the short sides cut)."""
    w, h = 640, 480
    ds = []
    for i in range(400):
        style = struck.sample_struck_style(random.Random(i))
        d = round(style.diameter * min(w, h))
        ds.append(d)
        cx, cy = struck._coin_centre(style, d, w, h)
        assert 240 <= d <= 1.08 * h
        slack = style.cut * d + max(0.0, (d - h) / 2) + 1
        assert d / 2 - slack <= cx <= w - d / 2 + slack and d / 2 - slack <= cy <= h - d / 2 + slack
    ds = np.array(ds)
    assert 0.65 < np.mean((ds >= 300) & (ds <= 480)) < 0.85
    assert 0.06 < np.mean(ds < 300) < 0.2 and 0.06 < np.mean(ds >= 0.97 * h) < 0.2


def test_digit_heights_and_relief_like_real_coins_with_a_hard_tail():
    """Field years 6.8..11.5 % of the diameter, rim years 0.7 of that; lettering 14..30 % of the digit height
    tall; a hard tail (small, faint or worn) of about 15 %. An explicit placement rescales the year."""
    styles = [struck.sample_struck_style(random.Random(f"dh:{i}")) for i in range(600)]
    field = np.array([s.digit_height for s in styles if s.placement not in struck.RIM_PLACEMENTS])
    rim = np.array([s.digit_height for s in styles if s.placement in struck.RIM_PLACEMENTS])
    assert np.mean((field >= 0.068) & (field <= 0.115)) > 0.85 and field.min() >= 0.045
    assert np.mean((rim >= 0.047) & (rim <= 0.081)) > 0.85 and rim.min() >= 0.7 * 0.045 - 1e-9
    hard = np.array([s.digit_height / struck._year_scale(s.placement) < 0.066 or s.relief_depth < 0.12 or s.wear > 0.75
                     for s in styles])
    assert 0.1 < hard.mean() < 0.2
    assert np.mean([0.14 <= s.relief_depth <= 0.3 for s in styles]) > 0.85
    for s in styles[:40]:
        for p in struck.STRUCK_PLACEMENTS:
            moved = struck.with_placement(s, p)
            assert moved.placement == p
            assert moved.digit_height / struck._year_scale(p) == pytest.approx(s.digit_height / struck._year_scale(s.placement))
    _, _, style = struck.render_struck_photo_pair(1950, random.Random(5), placement="rim_inward", photo_size=(160, 120))
    assert 0.7 * 0.045 - 1e-9 <= style.digit_height <= 0.7 * 0.115 + 1e-9


def test_two_faces_photo_circles_do_not_overlap():
    for seed in range(3):
        img, circles = struck.two_faces_photo(1961, random.Random(seed), photo_size=(320, 160))
        assert img.size == (320, 160) and len(circles) == 2
        (x1, y1, r1), (x2, y2, r2) = circles
        assert math.hypot(x2 - x1, y2 - y1) >= r1 + r2
        for x, y, r in circles:
            assert 0 <= x - r and x + r <= 320 and 0 <= y - r and y + r <= 160


def test_placements_no_year_and_distractors():
    for p in struck.STRUCK_PLACEMENTS:
        front, back, style = struck.render_struck_photo_pair(2039, random.Random(p), placement=p, photo_size=(160, 120))
        assert style.placement == p and front.image.size == (160, 120)
    with pytest.raises(ValueError):
        struck.render_struck_photo_pair(1950, random.Random(0), placement="diagonal")
    front, _, style = struck.render_struck_photo_pair(None, random.Random(0), photo_size=(160, 120))
    assert all(role != "year" for _, role in struck.face_numbers(None, style))
    style = replace(style, founding="1867", denomination="1/2", mint_mark="D")
    roles = dict((role, text) for text, role in struck.face_numbers(1905, style))
    assert roles == {"year": "1905", "founding": "1867", "denomination": "1/2", "mint": "D"}
    years = [struck.sample_struck_year(random.Random(i)) for i in range(400)]
    assert min(years) < 1910 and max(years) > 2030 and all(1900 <= y <= 2039 for y in years)


def test_holdout_look_is_disjoint_from_training():
    train = [struck.sample_struck_style(random.Random(i)) for i in range(60)]
    held = [struck.sample_struck_style(random.Random(i), holdout=True) for i in range(60)]
    for attr in ("font", "background", "light"):
        assert not {getattr(s, attr) for s in train} & {getattr(s, attr) for s in held}, attr
    assert {s.font for s in held} <= set(v.HOLDOUT_FONTS)


def test_cli_writes_photos_and_truth(tmp_path):
    assert struck.main(["--out", str(tmp_path), "--n", "3", "--seed", "7", "--size", "160x120"]) == 0
    rows = list(csv.DictReader((tmp_path / "truth.csv").open()))
    assert len(rows) == 6 and {r["side"] for r in rows} == {"front", "back"}
    assert {"file", "year", "placement", "material", "cx", "cy", "r"} <= set(rows[0])
    for r in rows:
        assert Image.open(tmp_path / r["file"]).size == (160, 120)


def test_layering_synth_imports_only_core_and_synth():
    tree = ast.parse(pathlib.Path(struck.__file__).read_text())
    mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    mods |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    ours = {m for m in mods if m.startswith("coin_assets")}
    assert all(m.startswith(("coin_assets.core", "coin_assets.synth")) for m in ours), ours
    assert "scipy" not in {m.split(".")[0] for m in mods}
