"""Coin finding on photographs as people take them: a coin that fills the frame (a scanner), a small coin in a
large photo, a coin cut by the frame, busy backgrounds (checked cloth, wood grain, printed paper, a palm), a
tilted coin, both faces side by side, and photos without a coin (a table, a banknote with a date, a hand with
spread fingers; a bottle cap is a real circle).

The photos are composed here from the varied generator's faces and backgrounds (``render_face``, ``background``,
``_compose``), with the coins where the generator cannot put them, then given noise and JPEG like a camera.
The rates measured on more seeds are in docs/coin_finding.md.
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from coin_assets.core.coin_crop import CoinCircle, find_coin, find_coins
from coin_assets.synth import varied

# ----------------------------------------------------------------------------------------- photos


def _style(seed: int, **changes) -> varied.Style:
    style = varied.sample_style(varied.coin_rngs(7, seed)[1])
    return replace(style, **{"squash": 1.0, **changes})


def _camera(img: np.ndarray, seed: int, quality: int = 85) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = np.clip(img, 0, 1) * 255 + rng.normal(0, 2.5, (*img.shape[:2], 1))
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "RGB").save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _checked(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """Gingham: two colours of stripes crossing, period ``p`` px, with a weave."""
    p = rng.uniform(18, 40)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    a, b = (np.sin(xs * np.pi / p) > 0), (np.sin(ys * np.pi / p) > 0)
    c0, c1 = rng.uniform(0.6, 0.95, 3), rng.uniform(0.1, 0.5, 3)
    level = (a.astype(np.float32) + b.astype(np.float32)) / 2
    weave = 0.96 + 0.04 * np.sin(xs * 2.1) * np.sin(ys * 2.1)
    return ((c0 * (1 - level[..., None]) + c1 * level[..., None]) * weave[..., None]).astype(np.float32)


def _printed(w: int, h: int, rng: np.random.Generator, date: str | None = None) -> np.ndarray:
    """A page of printed text (lines of words, some with digits)."""
    img = Image.new("RGB", (w, h), tuple(int(v) for v in rng.uniform(215, 245, 3)))
    draw = ImageDraw.Draw(img)
    size = int(rng.uniform(0.025, 0.045) * h)
    font = varied._font("DejaVuSans.ttf", size)
    y = int(0.03 * h)
    words = varied.LEGEND_WORDS + ("1987", "the", "of", "and", "coin", "2004", "page", "Oslo")
    while y < h:
        line = " ".join(words[int(k)] for k in rng.integers(0, len(words), 12)).lower()
        draw.text((int(0.04 * w), y), line, font=font, fill=(30, 30, 35))
        y += int(size * 1.6)
    if date:
        draw.text((int(0.6 * w), int(0.8 * h)), date, font=varied._font("DejaVuSans-Bold.ttf", 2 * size), fill=(0, 0, 0))
    return np.asarray(img, dtype=np.float32) / 255.0


def _palm(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """A hand seen from above on a table: palm, four fingers and a thumb (round fingertips)."""
    bg = np.ones((h, w, 3), np.float32) * rng.uniform(0.2, 0.5, 3).astype(np.float32)
    mask = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(mask)
    s = min(w, h)
    cx, cy = w / 2, h * 0.62
    d.rounded_rectangle([cx - 0.27 * s, cy - 0.25 * s, cx + 0.27 * s, cy + 0.42 * s], radius=0.08 * s, fill=255)
    for k, length in enumerate((0.42, 0.5, 0.47, 0.36)):
        x = cx - 0.24 * s + k * 0.16 * s
        d.rounded_rectangle([x - 0.065 * s, cy - 0.2 * s - length * s, x + 0.065 * s, cy - 0.1 * s], radius=0.065 * s, fill=255)
    d.rounded_rectangle([cx + 0.22 * s, cy - 0.05 * s, cx + 0.62 * s, cy + 0.08 * s], radius=0.065 * s, fill=255)
    m = np.asarray(mask, dtype=np.float32)[..., None] / 255.0
    skin = np.array([0.85, 0.62, 0.5], np.float32) * rng.uniform(0.7, 1.05)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    shade = (0.9 + 0.1 * np.sin(xs / s * 9 + ys / s * 5))[..., None]  # the creases, as the generator's palm
    return bg * (1 - m) + skin * shade * m


def _backdrop(kind: str, w: int, h: int, style: varied.Style, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "checked":
        return _checked(w, h, rng)
    if kind == "printed":
        return _printed(w, h, rng)
    if kind == "hand":
        return _palm(w, h, rng)
    return varied.background(w, h, replace(style, background=kind), rng)


def _coin_photo(size: tuple[int, int], coins: list[tuple[float, float, float]], seed: int, backdrop: str = "plain",
                squash: float = 1.0, sides=("front", "back")) -> tuple[Image.Image, list[tuple[float, float, float]]]:
    """A photo of ``size`` with coins at (cx, cy, radius) px (any of them may be cut by the frame), and those
    circles. Faces of one style (front, then back), shadows as the generator draws them."""
    w, h = size
    style = _style(seed, squash=squash, squash_axis=37.0 * seed % 180)
    rng = random.Random(seed)
    img = _backdrop(backdrop, w, h, style, seed)
    for k, (cx, cy, r) in enumerate(coins):
        n = round(2 * r + 2)
        face, alpha = varied.render_face(1990 + seed % 30, sides[k % len(sides)], n, style, rng)
        img = varied._compose(face, alpha, img, round(cx - n / 2), round(cy - n / 2), style)
    return _camera(img, seed), list(coins)


def _hit(found: CoinCircle | None, truth: tuple[float, float, float], squash: float = 1.0) -> bool:
    if found is None:
        return False
    cx, cy, r = truth
    tol = max(4.0, 0.08 * r)  # the contact shadow (6 % of the radius off the coin) often joins the outline
    return (math.hypot(found.cx - cx, found.cy - cy) <= tol and squash * r * 0.93 <= found.radius <= r * 1.12)


# ------------------------------------------------------------------------------------------- cases


def fill_frame(seed: int) -> tuple[Image.Image, tuple]:
    rng = random.Random(seed)
    w, h = ((900, 900), (1200, 900), (900, 1200), (1000, 760))[seed % 4]
    r = rng.uniform(0.475, 0.5) * min(w, h)
    cx = w / 2 + rng.uniform(-0.3, 0.3) * (w - 2 * r)
    cy = h / 2 + rng.uniform(-0.3, 0.3) * (h - 2 * r)
    img, circles = _coin_photo((w, h), [(cx, cy, r)], seed, backdrop=("plain", "paper")[seed % 2])
    return img, circles[0]


def small_coin(seed: int) -> tuple[Image.Image, tuple]:
    rng = random.Random(seed)
    w, h = 2000, 1500
    r = rng.uniform(0.05, 0.075) * h
    cx, cy = rng.uniform(1.2 * r, w - 1.2 * r), rng.uniform(1.2 * r, h - 1.2 * r)
    img, circles = _coin_photo((w, h), [(cx, cy, r)], seed, backdrop=("plain", "wood", "paper", "cloth")[seed % 4])
    return img, circles[0]


def cut_coin(seed: int) -> tuple[Image.Image, tuple]:
    """The disc 10..25 % outside the frame, on one side or at a corner."""
    rng = random.Random(seed)
    w, h = (800, 600) if seed % 2 else (640, 640)
    r = rng.uniform(0.3, 0.4) * min(w, h)
    inside = rng.uniform(0.4, 0.6)  # centre's distance to the edge, in radii (0.4: 25 % of the disc out)
    edge = seed % 5
    cx, cy = rng.uniform(1.1 * r, w - 1.1 * r), rng.uniform(1.1 * r, h - 1.1 * r)
    if edge == 0:
        cx = inside * r
    elif edge == 1:
        cx = w - inside * r
    elif edge == 2:
        cy = inside * r
    elif edge == 3:
        cy = h - inside * r
    else:  # a corner: each edge cuts a little
        cx, cy = 0.75 * r, h - 0.75 * r
    img, circles = _coin_photo((w, h), [(cx, cy, r)], seed, backdrop=("plain", "wood", "paper", "palm")[seed % 4])
    return img, circles[0]


def busy_coin(seed: int, kind: str) -> tuple[Image.Image, tuple]:
    rng = random.Random(seed)
    w, h = 800, 600
    r = rng.uniform(0.2, 0.33) * h
    if kind == "hand":  # the coin lies on the palm
        cx, cy = w / 2 + rng.uniform(-0.1, 0.1) * h, 0.62 * h + rng.uniform(-0.05, 0.05) * h
    else:
        cx, cy = rng.uniform(1.1 * r, w - 1.1 * r), rng.uniform(1.1 * r, h - 1.1 * r)
    img, circles = _coin_photo((w, h), [(cx, cy, r)], seed, backdrop=kind)
    return img, circles[0]


def busy_alone(seed: int, kind: str) -> Image.Image:
    w, h = (800, 600) if seed % 2 else (640, 480)
    return _camera(_backdrop(kind, w, h, _style(seed), seed), seed)


def tilted_coin(seed: int, squash: float = 0.94) -> tuple[Image.Image, tuple]:
    rng = random.Random(seed)
    w, h = (800, 600)
    r = rng.uniform(0.2, 0.4) * h
    cx, cy = rng.uniform(1.1 * r, w - 1.1 * r), rng.uniform(1.1 * r, h - 1.1 * r)
    img, circles = _coin_photo((w, h), [(cx, cy, r)], seed, backdrop=("plain", "wood", "paper", "cloth")[seed % 4],
                               squash=squash)
    return img, circles[0]


def two_faces(seed: int) -> tuple[Image.Image, list]:
    """Front and back of one coin side by side, as a scan of both faces."""
    rng = random.Random(seed)
    w, h = ((1200, 600), (1000, 600), (600, 1100), (1400, 800))[seed % 4]
    vertical = h > w
    long_, short = max(w, h), min(w, h)
    r = rng.uniform(0.3, 0.45) * short
    r = min(r, 0.23 * long_)
    gap = rng.uniform(0.05, 0.4) * r
    a = long_ / 2 - r - gap / 2
    b = long_ / 2 + r + gap / 2
    off = rng.uniform(-0.05, 0.05) * short
    coins = [(short / 2 + off, a, r), (short / 2 - off, b, r)] if vertical else [(a, short / 2 + off, r), (b, short / 2 - off, r)]
    return _coin_photo((w, h), coins, seed, backdrop=("plain", "paper", "wood", "cloth")[seed % 4])


def table_top(seed: int) -> Image.Image:
    style = _style(seed, background=("wood", "plain", "cloth", "paper", "palm")[seed % 5])
    return _camera(varied.background(800, 600, style, np.random.default_rng(seed)), seed)


def banknote(seed: int) -> Image.Image:
    """A banknote-like rectangle (a border, a frame, lines of print and a big printed date) on a table."""
    rng = np.random.default_rng(seed)
    w, h = 900, 600
    img = varied.background(w, h, _style(seed, background="wood"), rng)
    nw, nh = int(0.8 * w), int(0.45 * w)
    note = _printed(nw, nh, rng, date=str(1950 + seed))
    note = note * np.array([0.85, 0.95, 0.8], np.float32)
    pil = Image.fromarray((note * 255).astype(np.uint8))
    ImageDraw.Draw(pil).rectangle([6, 6, nw - 7, nh - 7], outline=(40, 70, 40), width=5)
    x0, y0 = (w - nw) // 2, (h - nh) // 2
    img = img.copy()
    img[y0:y0 + nh, x0:x0 + nw] = np.asarray(pil, dtype=np.float32) / 255.0
    return _camera(img, seed)


def bench_banknote(seed: int) -> Image.Image:
    """The banknote of ``benchmarks/bench_reading.py``'s ``not_a_coin``: a green rectangle with a dark border,
    "BANK OF NATIO", "SERIES <year>" and a big "10" on a generator table (copied: the benchmark may change)."""
    rng = random.Random(f"bench-not-a-coin:{seed}")
    style = varied.sample_style(rng)
    img = Image.fromarray((varied.background(640, 480, style, np.random.default_rng(seed)) * 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    font = varied._font("DejaVuSans-Bold.ttf", 28)
    draw.rectangle([60, 110, 580, 370], fill=(170, 200, 160), outline=(60, 90, 60), width=6)
    draw.text((90, 130), "BANK OF NATIO", font=font, fill=(40, 60, 40))
    draw.text((470, 300), "10", font=varied._font("DejaVuSans-Bold.ttf", 48), fill=(40, 60, 40))
    draw.text((90, 310), f"SERIES {rng.randint(1950, 2020)}", font=font, fill=(40, 60, 40))
    return img


def hand_with_fingers(seed: int) -> Image.Image:
    """A hand from above, fingers spread: a palm (a rounded square, not a disc) and five fingers, each a band with
    a round tip (a half circle between two straight sides), at a random turn and place, on a table."""
    rng = np.random.default_rng(seed)
    w, h = ((800, 600), (640, 480), (1000, 750), (600, 800))[seed % 4]
    s = min(w, h)
    img = varied.background(w, h, _style(seed, background=("plain", "wood", "paper", "cloth")[seed % 4]), rng)
    mask = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(mask)
    cx, cy = w / 2 + rng.uniform(-0.1, 0.1) * s, h / 2 + rng.uniform(0.12, 0.2) * s
    turn = rng.uniform(-0.4, 0.4)  # radians, the whole hand
    half = 0.17 * s
    corners = [(-half, -half), (half, -half), (half, half), (-half, half)]
    palm = [(cx + x * math.cos(turn) - y * math.sin(turn), cy + x * math.sin(turn) + y * math.cos(turn)) for x, y in corners]
    d.polygon(palm, fill=255)
    for k, (spread, length) in enumerate(((-0.5, 0.3), (-0.18, 0.36), (0.12, 0.37), (0.42, 0.31), (1.3, 0.27))):
        width = round(s * rng.uniform(0.07, 0.09) * (1.2 if k == 4 else 1.0))
        a = turn + spread - math.pi / 2  # fingers point up, the thumb to the side
        bx, by = cx + 0.1 * s * math.cos(a), cy + 0.1 * s * math.sin(a)
        ex, ey = cx + (0.1 + length) * s * math.cos(a), cy + (0.1 + length) * s * math.sin(a)
        d.line([(bx, by), (ex, ey)], fill=255, width=width)
        d.ellipse([ex - width / 2, ey - width / 2, ex + width / 2, ey + width / 2], fill=255)  # the fingertip
    m = np.asarray(mask.filter(ImageFilter.GaussianBlur(1.0)), dtype=np.float32)[..., None] / 255.0
    skin = np.array([0.85, 0.62, 0.5], np.float32) * rng.uniform(0.7, 1.05)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    shade = (0.92 + 0.08 * np.sin(xs / s * 7 + ys / s * 4))[..., None]
    return _camera(img * (1 - m) + skin * shade * m, seed)


def bottle_cap(seed: int) -> tuple[Image.Image, tuple]:
    """A crown cap from above: a round, crimped (21 teeth) metal disc with a printed logo: a real circle."""
    rng = np.random.default_rng(seed)
    w, h = 800, 600
    img = varied.background(w, h, _style(seed, background="wood"), rng)
    pil = Image.fromarray((img * 255).astype(np.uint8))
    d = ImageDraw.Draw(pil)
    cx, cy, r = 400 + 40 * (seed % 3), 300, 90 + 10 * (seed % 4)
    pts = [(cx + (r if k % 2 else 0.93 * r) * math.cos(math.pi * k / 21),
            cy + (r if k % 2 else 0.93 * r) * math.sin(math.pi * k / 21)) for k in range(42)]
    colour = tuple(int(v) for v in rng.uniform(60, 230, 3))
    d.polygon(pts, fill=colour)
    d.ellipse([cx - 0.5 * r, cy - 0.5 * r, cx + 0.5 * r, cy + 0.5 * r], fill=(240, 240, 240))
    d.text((cx - 0.4 * r, cy - 0.15 * r), "COLA", font=varied._font("DejaVuSans-Bold.ttf", int(0.3 * r)), fill=colour)
    return _camera(np.asarray(pil, dtype=np.float32) / 255.0, seed), (cx, cy, 0.97 * r)


# ------------------------------------------------------------------------------------------- tests


def test_a_coin_that_fills_the_frame_is_found_in_square_and_rectangular_photos():
    hits = [_hit(find_coin(img).circle, truth) for img, truth in map(fill_frame, range(4))]
    assert sum(hits) >= 3, hits


def test_a_small_coin_in_a_large_photo_is_found():
    hits = [_hit(find_coin(img).circle, truth) for img, truth in map(small_coin, range(4))]
    assert sum(hits) >= 3, hits


def test_a_coin_cut_by_the_frame_is_found_with_its_centre_near_the_edge():
    hits = [_hit(find_coin(img).circle, truth) for img, truth in map(cut_coin, range(5))]
    assert sum(hits) >= 4, hits


@pytest.mark.parametrize("kind", ["checked", "wood", "printed"])
def test_busy_backgrounds_give_no_false_circle(kind):
    assert not any(find_coin(busy_alone(seed, kind)).found for seed in range(3))
    assert find_coins(busy_alone(0, kind)) == []


def test_a_hand_alone_gives_no_circle():
    """A fingertip is a half circle between two straight sides: the sides run on straight beyond the circle, so
    they are no part of a round outline (before 2026-12-06 a fingertip passed in 3 of 8 photos)."""
    assert not any(find_coin(busy_alone(seed, "hand")).found for seed in range(3))


def test_a_hand_with_spread_fingers_gives_no_coin():
    """Measured on seeds 0-15: a circle in 1 of 16 (11 of 16 before 2026-12-06)."""
    for seed in range(4):
        assert find_coins(hand_with_fingers(seed)) == [], seed


@pytest.mark.parametrize("kind", ["wood", "printed", "hand"])
def test_a_coin_on_a_busy_background_is_found(kind):
    """Measured on these 8 seeds: wood grain 4, printed paper 7, palm 7. (On this checked cloth, finer than the
    held-out renderer's below: 0 of 8; see the docs.)"""
    hits = [_hit(find_coin(img).circle, truth) for img, truth in (busy_coin(seed, kind) for seed in range(8))]
    assert sum(hits) >= {"wood": 4}.get(kind, 6), hits


def test_a_coin_on_the_held_out_renderers_checked_cloth_is_found():
    """The checks' straight edges outvote the coin's outline; a last pass leaves them out of the vote. The
    near-round coins (axis ratio >= 0.95) on checked cloth among the first 40 seeds: 6 of 6 (4 before)."""
    from coin_assets.synth import holdout

    hits = []
    for seed in (0, 1, 14, 17, 28, 33):
        front, _, style = holdout.render_holdout_photo_pair(1950, random.Random(f"checked-cloth:{seed}"),
                                                            photo_size=(640, 480))
        assert style.extra["holdout_bg"] == "checked" and style.squash >= 0.95
        hits.append(_hit(find_coin(front.image).circle, (*front.centre, front.radius), style.squash))
    assert all(hits), hits


def test_a_tilted_coin_is_found():
    hits = [_hit(find_coin(img).circle, truth, squash=0.94) for img, truth in map(tilted_coin, range(4))]
    assert sum(hits) >= 3, hits


def test_two_faces_side_by_side_give_two_circles_and_one_coin_gives_one():
    for seed in range(2):
        img, truths = two_faces(seed)
        circles = find_coins(img)
        assert len(circles) == 2, circles
        assert all(any(_hit(c, t) for c in circles) for t in truths)
        assert find_coin(img).circle in circles[:1]  # find_coin gives the best of them
    img, truth = busy_coin(1, "wood")
    circles = find_coins(img)
    assert len(circles) == 1 and _hit(circles[0], truth)
    assert find_coins(img, max_coins=1) == circles


def test_a_table_without_a_coin_gives_no_circle():
    for seed in range(5):
        img = table_top(seed)
        finding = find_coin(img)
        assert not finding.found and finding.reason
        assert find_coins(img) == []


def test_a_banknote_with_a_printed_date_gives_no_circle():
    assert not any(find_coin(banknote(seed)).found for seed in range(3))


def test_the_benchmark_banknote_gives_no_circle():
    """A circle tangent to three sides of a banknote's border (top, bottom, one end) passed the checks in 19 of
    20 of the benchmark's photos before 2026-12-06: its edge is the border's straight lines, which run on beyond
    the circle where a coin's outline has curved away."""
    for seed in (0, 1, 8, 11, 14):
        assert find_coins(bench_banknote(seed), max_coins=2) == [], seed


def test_a_bottle_cap_is_a_real_circle_and_is_found_as_one():
    """Documented behaviour: coin finding finds round discs that differ from the table; a bottle cap is one
    (found in 5 of 8). Whether it is a coin is the reader's question: it reads no year off it."""
    img, truth = bottle_cap(1)
    found = find_coin(img)
    assert found.found and _hit(found.circle, truth)
