"""Photographs of struck coins: a relief (height map) lit by one or more lights, in metal.

:mod:`coin_assets.synth.varied` draws flat pictures of coins; this module models what a camera sees of a
real, circulated coin. Each face is a **height map** (raised rim and beading, an emblem or a portrait-like
profile with a domed relief, the legend along the rim, the year and a denomination, raised or incuse, with
bevelled edges), **worn** (the high points flattened), **scratched** and **dented**, then **shaded** from
its normals with one to three lights (Lambert plus a Blinn-Phong metal highlight, per-pixel view vector) in
a metal (copper, brass, nickel, silver, gold, or a bimetal centre and ring). The digits therefore exist only
as light and shadow on the coin's own metal, as on a real coin, never as ink; their contrast varies with
the relief depth, the wear and the light. Sizes and reliefs follow real circulated coins (field years
6.8..11.5 % of the diameter, rim years 0.7 of that, clearly visible relief; the high points rubbed bright),
with a hard tail of small, faint or worn years (:data:`HARD_SHARE`). Tarnish and patina (low-frequency colour,
darker in the recesses) and dirt in the recesses colour the metal.

The face is rotated over the full circle before shading (the light stays in the world frame), tilted by up
to 20 degrees (the coin becomes an ellipse and its edge shows), sized as people photograph coins
(:func:`sample_diameter`), laid on a background (wood, cloth, paper, a
palm, busy prints; held out: granite, velvet, tiles, leather) with a soft shadow, and photographed:
defocus, motion blur, white balance, exposure, vignetting, sensor noise. The caller JPEG-encodes.

The year sits at one of :data:`STRUCK_PLACEMENTS` (varied's placements plus ``split``: "19" left of the
emblem and "48" right of it). Fronts also carry numbers that are not the year: a founding date, a
denomination, a mint mark next to the year (:func:`face_numbers` says which number is which).

Everything is drawn from the ``random.Random`` passed in: the same seed gives the same bytes. The style
(:func:`sample_struck_style`) never sees the year. ``holdout=True`` draws a look that training never sees:
varied's held-out fonts, other backgrounds, other light setups.

``python -m coin_assets.synth.struck --out DIR --n 20 --seed 7 [--holdout]`` writes JPEG fronts and backs
and a ``truth.csv``; ``--write-golden DIR`` rewrites the test goldens.
"""

from __future__ import annotations

import argparse
import csv
import math
import pathlib
import random
import sys
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

from coin_assets.synth import varied as v

YEAR_MIN, YEAR_MAX = 1900, 2039
STRUCK_PLACEMENTS = v.PLACEMENTS + ("split",)
MATERIALS = ("copper", "brass", "nickel", "silver", "gold", "bimetal")
TRAIN_LIGHTS = ("key", "key_fill", "overhead")
HOLDOUT_LIGHTS = ("grazing", "warm_cold", "flash")
LIGHTS = TRAIN_LIGHTS + HOLDOUT_LIGHTS
TRAIN_BACKGROUNDS = ("wood", "cloth", "paper", "palm", "busy")
HOLDOUT_BACKGROUNDS = ("granite", "velvet", "tiles", "leather")
EMBLEMS = ("portrait", "portrait", "star", "shield", "wreath", "rings", "cross")
FOUNDING_DATES = ("1291", "1776", "1788", "1815", "1830", "1848", "1867", "1871", "1889")
DENOMINATIONS = ("1", "2", "5", "10", "20", "25", "50", "100", "1/2", "1/4")
MINT_MARKS = "ADFGJMPS"
MAX_TILT = 20.0  # degrees
RIM_PLACEMENTS = ("rim_inward", "rim_outward")
RIM_SCALE = 0.7  # a year along the rim is this much smaller than one in the field
HARD_SHARE = 0.15  # coins whose year is hard to read: small, faint or worn

# metal -> (albedo, specular colour, tarnish colour), sRGB 0..1
_METALS = {
    "copper": ((0.78, 0.46, 0.32), (1.00, 0.72, 0.55), (0.30, 0.17, 0.11)),
    "brass": ((0.80, 0.66, 0.38), (1.00, 0.90, 0.62), (0.42, 0.32, 0.18)),
    "nickel": ((0.68, 0.68, 0.66), (0.95, 0.95, 0.94), (0.36, 0.35, 0.33)),
    "silver": ((0.80, 0.80, 0.81), (1.00, 1.00, 1.00), (0.33, 0.30, 0.29)),
    "gold": ((0.88, 0.70, 0.34), (1.00, 0.86, 0.52), (0.55, 0.40, 0.18)),
}
_VERDIGRIS = (0.36, 0.50, 0.40)
_DIRT = (0.20, 0.16, 0.12)
_BIMETALS = (("nickel", "brass"), ("brass", "nickel"), ("copper", "nickel"), ("nickel", "gold"))


@dataclass(frozen=True)
class StruckStyle:
    """Everything about one coin's look (both faces) and its photographs, except the year."""

    material: str  # one of MATERIALS
    metals: tuple[str, str]  # (centre, ring): equal unless bimetal
    font: tuple[str, float]  # (ttf file, horizontal squeeze), from varied's font lists
    legend: str
    back_legend: str
    emblem: str
    placement: str  # one of STRUCK_PLACEMENTS
    digit_height: float  # of the year, fraction of the diameter (field 0.068..0.115, rim 0.7 of that; small tail)
    relief: str  # "raised" or "incuse" (the year and the front's lettering)
    relief_depth: float  # lettering height, fraction of the digit height
    design_depth: float  # emblem height, fraction of the radius
    bevel: float  # slope width of the lettering's edges, fraction of the digit height
    beading: int  # beads along the rim (0: none)
    rotation: float  # degrees, 0..360, the front
    back_rotation: float
    tilt: float  # degrees, 0..MAX_TILT
    tilt_axis: float  # degrees
    light: str  # one of LIGHTS
    lights: tuple[tuple[float, float, float, float, float, float], ...]  # (azimuth, elevation rad, I, r, g, b)
    ambient: float
    shininess: float
    specular: float
    wear: float  # 0..1
    tarnish: float  # 0..1
    verdigris: float  # 0..1 (copper and brass)
    dirt: float  # 0..1
    scratches: int
    dents: int
    grain: float  # px, the metal's fine roughness
    founding: str | None  # a founding date on the front, a distractor
    denomination: str | None  # a denomination on the front, a distractor
    mint_mark: str | None  # a letter next to the year
    back_denomination: str
    background: str
    diameter: float  # fraction of the photo's short side
    position: tuple[float, float]  # 0..1 over the free range of the centre
    cut: float  # how far (fraction of the diameter) the coin may leave the frame
    defocus: float  # px at 640 px width
    motion: tuple[float, float]  # (length px at 640 px width, angle rad)
    noise: float  # sigma, 0..255 levels
    white_balance: tuple[float, float, float]
    exposure: float
    vignette: float
    holdout: bool = False


def _lights(kind: str, rng: random.Random) -> tuple[tuple[float, float, float, float, float, float], ...]:
    az = rng.uniform(0, 2 * math.pi)

    def warm(k: float) -> tuple[float, float, float]:  # -1 cold .. +1 warm
        return (1.0 + 0.12 * k, 1.0, 1.0 - 0.15 * k)

    if kind == "key":
        return ((az, math.radians(rng.uniform(25, 60)), 1.0, *warm(rng.uniform(-0.5, 0.8))),)
    if kind == "key_fill":
        return ((az, math.radians(rng.uniform(25, 55)), 1.0, *warm(rng.uniform(-0.3, 0.8))),
                (az + math.pi + rng.uniform(-0.8, 0.8), math.radians(rng.uniform(30, 70)), rng.uniform(0.25, 0.5),
                 *warm(rng.uniform(-0.8, 0.3))))
    if kind == "overhead":
        tone = warm(rng.uniform(-0.4, 0.6))
        return tuple((az + k * 2 * math.pi / 3 + rng.uniform(-0.4, 0.4), math.radians(rng.uniform(38, 65)), rng.uniform(0.3, 0.55), *tone)
                     for k in range(3))
    if kind == "grazing":
        return ((az, math.radians(rng.uniform(8, 18)), 1.2, *warm(rng.uniform(-0.3, 0.5))),)
    if kind == "warm_cold":
        return ((az, math.radians(rng.uniform(25, 50)), 0.8, *warm(1.0)),
                (az + math.pi + rng.uniform(-0.5, 0.5), math.radians(rng.uniform(25, 50)), 0.7, *warm(-1.0)))
    if kind == "flash":
        return ((az, math.radians(rng.uniform(76, 88)), 1.1, 1.0, 1.0, 1.02),)
    raise ValueError(f"unknown light {kind!r}: expected one of {LIGHTS}")


def _white_balance(temperature: float, tint: float) -> tuple[float, float, float]:
    """Channel gains of a camera's white balance error: warm (+) or cold (-), green (+) or magenta (-)."""
    return (1.0 + 0.1 * temperature, 1.0 + 0.03 * tint, 1.0 - 0.12 * temperature)


def sample_diameter(rng: random.Random) -> float:
    """A coin's diameter in a photo, fraction of the short side, as people photograph coins: mostly
    0.62..0.97 (300..466 px in 640×480), an eighth small (0.5..0.62, 240..300 px), an eighth filling the
    frame (0.97..1.08: the rim touches or leaves the short sides)."""
    u = rng.random()
    if u < 0.125:
        return rng.uniform(0.5, 0.625)
    if u < 0.875:
        return rng.uniform(0.625, 0.97)
    return rng.uniform(0.97, 1.08)


def _year_scale(placement: str) -> float:
    return RIM_SCALE if placement in RIM_PLACEMENTS else 1.0


def with_placement(style: StruckStyle, placement: str) -> StruckStyle:
    """``style`` with the year moved to ``placement``: the digit height follows (a rim year is smaller)."""
    if placement not in STRUCK_PLACEMENTS:
        raise ValueError(f"unknown placement {placement!r}: expected one of {STRUCK_PLACEMENTS}")
    dh = style.digit_height * _year_scale(placement) / _year_scale(style.placement)
    return replace(style, placement=placement, digit_height=dh)


def sample_struck_style(rng: random.Random, holdout: bool = False) -> StruckStyle:
    """A look drawn without the year. ``holdout`` gives fonts, backgrounds and lights training never sees.

    Legibility follows real circulated coins: a year in the field is 6.8..11.5 % of the diameter tall, one
    along the rim 0.7 of that (4.8..8 %); the lettering stands 14..30 % of its height; wear is mostly light.
    A hard tail (:data:`HARD_SHARE`) has small digits (4.5..6.5 %), a faint relief (6..11 %) or a worn face."""
    material = rng.choice(MATERIALS)
    metals = rng.choice(_BIMETALS) if material == "bimetal" else (material, material)
    light = rng.choice(HOLDOUT_LIGHTS if holdout else TRAIN_LIGHTS)
    words = rng.sample(v.LEGEND_WORDS, 3)
    cut = rng.uniform(0.02, 0.08) if rng.random() < 0.25 else 0.0
    placement = rng.choice(STRUCK_PLACEMENTS)
    hard = rng.choice(("small", "faint", "worn")) if rng.random() < HARD_SHARE else ""
    digit_height = rng.uniform(0.045, 0.065) if hard == "small" else rng.uniform(0.068, 0.115)
    relief_depth = rng.uniform(0.06, 0.11) if hard == "faint" else rng.uniform(0.14, 0.3)
    wear = rng.uniform(0.8, 1.0) if hard == "worn" else 0.7 * rng.random() ** 1.5
    return StruckStyle(
        material=material, metals=metals, font=rng.choice(v.HOLDOUT_FONTS if holdout else v.TRAIN_FONTS),
        legend=f"{words[0]} {words[1]}", back_legend=words[2], emblem=rng.choice(EMBLEMS),
        placement=placement, digit_height=digit_height * _year_scale(placement),
        relief="incuse" if rng.random() < 0.2 else "raised", relief_depth=relief_depth,
        design_depth=rng.uniform(0.015, 0.045), bevel=rng.uniform(0.035, 0.09),
        beading=rng.choice((0, rng.randint(50, 110))), rotation=rng.uniform(0, 360), back_rotation=rng.uniform(0, 360),
        tilt=MAX_TILT * rng.random() ** 1.5, tilt_axis=rng.uniform(0, 180), light=light, lights=_lights(light, rng),
        ambient=rng.uniform(0.12, 0.3), shininess=rng.uniform(6, 40), specular=rng.uniform(0.25, 0.8),
        wear=wear, tarnish=rng.random() ** 1.2, verdigris=rng.random() ** 3 if material in ("copper", "brass") else 0.0,
        dirt=rng.random() ** 2, scratches=rng.randint(0, 14), dents=rng.randint(0, 8),
        grain=rng.uniform(0.05, 0.3),
        founding=rng.choice(FOUNDING_DATES) if rng.random() < 0.3 else None,
        denomination=rng.choice(DENOMINATIONS) if rng.random() < 0.45 else None,
        mint_mark=rng.choice(MINT_MARKS) if rng.random() < 0.3 else None,
        back_denomination=rng.choice(DENOMINATIONS),
        background=rng.choice(HOLDOUT_BACKGROUNDS if holdout else TRAIN_BACKGROUNDS),
        diameter=sample_diameter(rng), position=(rng.random(), rng.random()), cut=cut,
        defocus=rng.uniform(0.0, 1.8) if rng.random() < 0.5 else rng.uniform(0.0, 0.5),
        motion=(rng.uniform(1, 6) if rng.random() < 0.25 else 0.0, rng.uniform(0, math.pi)),
        noise=rng.uniform(1.0, 7.0),
        white_balance=_white_balance(rng.uniform(-1, 1), rng.uniform(-1, 1)),
        exposure=rng.uniform(0.8, 1.2), vignette=rng.uniform(0.0, 0.35), holdout=holdout,
    )


def sample_struck_year(rng: random.Random) -> int:
    return rng.randint(YEAR_MIN, YEAR_MAX)


def struck_rngs(seed: int, i: int, holdout: bool = False) -> tuple[random.Random, random.Random]:
    """(year RNG, look RNG) of coin i of a seed: independent streams."""
    tag = "struck-holdout" if holdout else "struck"
    return random.Random(f"{tag}:{seed}:{i}:year"), random.Random(f"{tag}:{seed}:{i}:look")


def face_numbers(year: int | None, style: StruckStyle) -> tuple[tuple[str, str], ...]:
    """The numbers and marks on the front and what each is: ("1948", "year"), ("1867", "founding"),
    ("10", "denomination"), ("D", "mint")."""
    out = [(str(year), "year")] if year is not None else []
    for text, role in ((style.founding, "founding"), (style.denomination, "denomination"), (style.mint_mark, "mint")):
        if text:
            out.append((text, role))
    return tuple(out)


# ---------------------------------------------------------------------------------------- float helpers


def _gauss1d(a: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    r = max(1, int(math.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2).astype(np.float32)
    k /= k.sum()
    pad = [(0, 0)] * a.ndim
    pad[axis] = (r, r)
    p = np.pad(a, pad, mode="edge")
    n = a.shape[axis]
    out = np.zeros_like(a)
    for i, w in enumerate(k):
        out += w * (p[i:i + n] if axis == 0 else p[:, i:i + n])
    return out


def _box1d(a: np.ndarray, r: int, axis: int) -> np.ndarray:
    pad = [(0, 0)] * a.ndim
    pad[axis] = (r + 1, r)
    c = np.cumsum(np.pad(a, pad, mode="edge"), axis=axis, dtype=np.float32)
    n = a.shape[axis]
    if axis == 0:
        return (c[2 * r + 1:2 * r + 1 + n] - c[:n]) / (2 * r + 1)
    return (c[:, 2 * r + 1:2 * r + 1 + n] - c[:, :n]) / (2 * r + 1)


def blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a float array [h, w] or [h, w, c] over its first two axes (numpy only): an exact
    kernel up to sigma 2.5, three box blurs (cumulative sums) above."""
    a = np.asarray(a, dtype=np.float32)
    if sigma < 0.25:
        return a
    if sigma <= 2.5:
        return _gauss1d(_gauss1d(a, sigma, 0), sigma, 1)
    r = max(1, round((math.sqrt(4 * sigma * sigma + 1) - 1) / 2))  # 3 boxes of width 2r+1 ~ sigma
    for _ in range(3):
        a = _box1d(_box1d(a, r, 0), r, 1)
    return a


def _noise(w: int, h: int, cells: tuple[int, int], nrng: np.random.Generator) -> np.ndarray:
    """Smooth noise in 0..1, float32 [h, w], from a (cells_y, cells_x) grid upsampled bicubically."""
    small = Image.fromarray(nrng.random((max(2, cells[0]), max(2, cells[1])), dtype=np.float32), "F")
    return np.clip(np.asarray(small.resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32), 0, 1)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _mask(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float32) / 255.0


# ------------------------------------------------------------------------------------------- the face


def _arc(mask: Image.Image, text: str, font, height: int, c: float, radius: float, centre_deg: float,
         bottom: bool, track: float = 1.08) -> float:
    """``text`` along a circle about (c, c) centred on ``centre_deg`` (0 = right, 90 = down), upright for a
    reader outside the bottom arc (bottom) or inside the top arc; letters advance by their own width.
    Returns the angular half-width (degrees)."""
    masks = [v._text_mask(ch, font, height) if ch.strip() else None for ch in text]
    widths = [m.width if m is not None else 0.5 * height for m in masks]
    steps = [math.degrees(track * wd / max(1.0, radius)) for wd in widths]
    total = sum(steps)
    a = centre_deg + total / 2 if bottom else centre_deg - total / 2
    for m, st in zip(masks, steps, strict=True):
        mid = a - st / 2 if bottom else a + st / 2
        if m is not None:
            t = m.rotate((90 - mid) if bottom else (-90 - mid), expand=True, resample=Image.Resampling.BILINEAR)
            x, y = c + radius * math.cos(math.radians(mid)), c + radius * math.sin(math.radians(mid))
            mask.paste(255, (round(x - t.width / 2), round(y - t.height / 2)), t)
        a = a - st if bottom else a + st
    return total / 2


def _field(mask: Image.Image, text: str, font, height: int, cx: float, cy: float, angle: float = 0.0) -> None:
    t = v._text_mask(text, font, height)
    if angle:
        t = t.rotate(angle, expand=True, resample=Image.Resampling.BILINEAR)
    mask.paste(255, (round(cx - t.width / 2), round(cy - t.height / 2)), t)


_PROFILE = (  # a bust facing right, unit coordinates (x right, y down), clockwise from the crown
    (-0.05, -0.56), (0.12, -0.52), (0.22, -0.42), (0.26, -0.3), (0.25, -0.24), (0.34, -0.13), (0.27, -0.1),
    (0.29, -0.05), (0.26, -0.02), (0.28, 0.02), (0.25, 0.09), (0.18, 0.14), (0.14, 0.2), (0.16, 0.36),
    (0.32, 0.48), (0.34, 0.52), (-0.38, 0.52), (-0.3, 0.4), (-0.16, 0.3), (-0.2, 0.12), (-0.3, -0.08),
    (-0.31, -0.3), (-0.22, -0.47),
)


def _portrait(draw: ImageDraw.ImageDraw, hair: ImageDraw.ImageDraw, c: float, R: float, s: float,
              ox: float, oy: float, facing: int) -> None:
    """A bust in profile (forehead, nose, lips, chin, neck, truncated shoulders), ``s`` its scale, facing
    -1 left or +1 right; the hair as grooves over the back of the head, and an ear."""
    f = facing

    def P(x: float, y: float) -> tuple[float, float]:
        return (c + (ox + f * x * s) * R, c + (oy + y * s) * R)

    draw.polygon([P(x, y) for x, y in _PROFILE], fill=255)
    w = max(1, round(0.012 * R * s))
    for k in range(8):  # hair: arcs over the crown and the back of the head
        rr = 0.12 + 0.035 * k
        box = [P(-0.05 - rr, -0.2 - rr), P(-0.05 + rr, -0.2 + rr)]
        box = [(min(box[0][0], box[1][0]), box[0][1]), (max(box[0][0], box[1][0]), box[1][1])]
        a0, a1 = (160, 300) if f > 0 else (240, 380)
        hair.arc(box, a0, a1, fill=255, width=w)
    ex, ey = P(-0.02, -0.12)
    er = 0.05 * R * s
    hair.ellipse([ex - er * 0.7, ey - er, ex + er * 0.7, ey + er], outline=255, width=w)


def _shield(draw: ImageDraw.ImageDraw, c: float, R: float, ox: float, oy: float, s: float) -> None:
    def P(x: float, y: float) -> tuple[float, float]:
        return (c + (ox + x * s) * R, c + (oy + y * s) * R)

    outline = [P(-0.3, -0.32), P(0.3, -0.32), P(0.3, 0.02), P(0.0, 0.36), P(-0.3, 0.02)]
    draw.line(outline + [outline[0]], fill=255, width=max(1, round(0.035 * R * s)), joint="curve")
    for k in range(3):
        x = -0.15 + 0.15 * k
        draw.line([P(x, -0.25), P(x, 0.1 - abs(x) * 0.6)], fill=255, width=max(1, round(0.03 * R * s)))


def _wreath(draw: ImageDraw.ImageDraw, c: float, R: float, ox: float, oy: float, s: float) -> None:
    for side in (-1, 1):
        for k in range(8):
            a = math.radians(105 + 19 * k) if side < 0 else math.radians(75 - 19 * k)
            for dr in (-0.05, 0.05):  # leaves in pairs either side of the stem
                x, y = ox + (0.36 + dr) * math.cos(a) * s, oy + (0.36 + dr) * math.sin(a) * s
                rr = 0.032 * R * s
                draw.ellipse([c + x * R - rr, c + y * R - rr, c + x * R + rr, c + y * R + rr], fill=255)
        draw.arc([c + (ox - 0.36 * s) * R, c + (oy - 0.36 * s) * R, c + (ox + 0.36 * s) * R, c + (oy + 0.36 * s) * R], -70, 250,
                 fill=255, width=max(1, round(0.015 * R * s)))


def _design(kind: str, draw: ImageDraw.ImageDraw, hair: ImageDraw.ImageDraw, c: float, R: float,
            ox: float, oy: float, s: float, rng: random.Random) -> None:
    if kind == "portrait":
        _portrait(draw, hair, c, R, 0.78 * s, ox, oy, rng.choice((-1, 1)))
    elif kind == "shield":
        _shield(draw, c, R, ox, oy, s)
    elif kind == "wreath":
        _wreath(draw, c, R, ox, oy, s)
        v._emblem(draw, "star", c, R * 0.6 * s, rng, centre=(ox / (0.6 * s), oy / (0.6 * s)))
    else:
        v._emblem(draw, kind, c, R * s, rng, centre=(ox / s, oy / s))


# unit positions (x, y) per placement: the emblem's centre and scale, the year, the free spots for a
# denomination or founding date, and where the legend goes (top or bottom arc)
_LAYOUT = {
    "below": dict(emblem=(0.0, -0.14, 1.0), year=(0.0, 0.5), spots=((-0.55, 0.12), (0.55, 0.12)), legend="top"),
    "above": dict(emblem=(0.0, 0.14, 1.0), year=(0.0, -0.5), spots=((-0.55, -0.1), (0.55, -0.1)), legend="bottom"),
    "side": dict(emblem=(-0.3, -0.02, 0.9), year=(0.5, 0.0), spots=((0.0, 0.58), (0.45, 0.35)), legend="top"),
    "rim_inward": dict(emblem=(0.0, -0.08, 0.95), year=None, spots=((-0.55, 0.3), (0.55, 0.3)), legend="top"),
    "rim_outward": dict(emblem=(0.0, 0.08, 0.95), year=None, spots=((-0.55, -0.3), (0.55, -0.3)), legend="bottom"),
    "split": dict(emblem=(0.0, -0.04, 0.85), year=(0.55, 0.1), spots=((0.0, 0.6), (-0.45, 0.45)), legend="top"),
}


def _front_masks(year_text: str, style: StruckStyle, n: int, c: float, R: float, rng: random.Random):
    """(year, lettering, design, hair) masks of the unrotated front. ``rng`` only picks design details,
    identically whatever ``year_text`` is."""
    year_m, text_m, design_m, hair_m = (Image.new("L", (n, n), 0) for _ in range(4))
    draw, hair = ImageDraw.Draw(design_m), ImageDraw.Draw(hair_m)
    lay = _LAYOUT[style.placement]
    dh = max(5, round(style.digit_height * n))
    lh = max(5, round(rng.uniform(0.05, 0.075) * n))  # legend letters
    font = style.font
    ex, ey, es = lay["emblem"]
    _design(style.emblem, draw, hair, c, R, ex, ey, es, rng)
    # the legend along the rim, opposite the year's rim
    legend_r = 0.86 * R - lh / 2 - (0.04 * R if style.beading else 0.0)
    bottom_legend = lay["legend"] == "bottom"
    _arc(text_m, style.legend, font, lh, c, legend_r, 90 if bottom_legend else -90, bottom=bottom_legend)
    digit_w = 0.6 * dh * font[1]  # nominal width of one digit: fixes where the mint mark goes, whatever the text
    mint_h = max(4, round(0.75 * dh))
    year_r = 0.86 * R - dh / 2 - (0.04 * R if style.beading else 0.0)
    if style.placement in ("rim_inward", "rim_outward"):
        bottom = style.placement == "rim_inward"
        _arc(year_m, year_text, font, dh, c, year_r, 90 if bottom else -90, bottom=bottom)
        if style.mint_mark:
            half = math.degrees(1.08 * 2 * digit_w / year_r) + math.degrees(1.2 * digit_w / year_r)
            _arc(text_m, style.mint_mark, font, mint_h, c, year_r, (90 - half) if bottom else (-90 + half), bottom=bottom)
    elif style.placement == "split":
        x, y = lay["year"]
        halves = (year_text[:len(year_text) // 2], year_text[len(year_text) // 2:])
        for sx, part in zip((-1, 1), halves, strict=True):
            if part:
                _field(year_m, part, font, dh, c + sx * x * R, c + y * R)
        if style.mint_mark:
            _field(text_m, style.mint_mark, font, mint_h, c + x * R, c + y * R + 1.2 * dh)
    else:
        x, y = lay["year"]
        angle = rng.uniform(-30, 30) if style.placement == "side" and rng.random() < 0.5 else 0.0
        if year_text:
            _field(year_m, year_text, font, dh, c + x * R, c + y * R, angle)
        if style.mint_mark:
            if style.placement == "side":  # under the year: beside it, it would run into the rim
                dx, dy = 1.25 * dh * math.sin(math.radians(angle)), 1.25 * dh * math.cos(math.radians(angle))
            else:
                dx = (2 * digit_w + 0.9 * digit_w) * math.cos(math.radians(angle))
                dy = -(2 * digit_w + 0.9 * digit_w) * math.sin(math.radians(angle))
            _field(text_m, style.mint_mark, font, mint_h, c + x * R + dx, c + y * R + dy)
    spots = list(lay["spots"])
    rng.shuffle(spots)
    if style.denomination:
        sx, sy = spots.pop()
        _field(text_m, style.denomination, font, max(5, round(min(rng.uniform(1.0, 1.5) * dh, 0.13 * n))), c + sx * R, c + sy * R)
    if style.founding:
        fh = max(4, round(rng.uniform(0.7, 1.0) * dh))
        if spots and rng.random() < 0.6:
            sx, sy = spots.pop()
            _field(text_m, style.founding, font, fh, c + sx * R, c + sy * R)
        else:  # small, along the rim beside the legend
            side = -1 if rng.random() < 0.5 else 1
            base = 90 if bottom_legend else -90
            _arc(text_m, style.founding, font, fh, c, 0.86 * R - fh / 2 - (0.04 * R if style.beading else 0.0),
                 base + side * 75, bottom=bottom_legend)
    return year_m, text_m, design_m, hair_m


def _back_masks(style: StruckStyle, n: int, c: float, R: float, rng: random.Random):
    year_m, text_m, design_m, hair_m = (Image.new("L", (n, n), 0) for _ in range(4))
    draw, hair = ImageDraw.Draw(design_m), ImageDraw.Draw(hair_m)
    lh = max(5, round(rng.uniform(0.05, 0.075) * n))
    kind = rng.choice(("star", "wreath", "shield", "rings", "cross"))
    _design(kind, draw, hair, c, R, 0.0, -0.2, 0.75, rng)
    _field(text_m, style.back_denomination, style.font, max(6, round(rng.uniform(0.14, 0.24) * n)), c, c + 0.3 * R)
    _arc(text_m, style.back_legend, style.font, lh, c, 0.86 * R - lh / 2 - (0.04 * R if style.beading else 0.0),
         -90, bottom=False)
    return year_m, text_m, design_m, hair_m


def _rotate(masks, angle: float) -> list[np.ndarray]:
    """Rotate the four L masks together (two RGB images, one rotation each)."""
    out = []
    for a, b, cc in ((masks[0], masks[1], masks[2]), (masks[3], masks[3], masks[3])):
        img = Image.merge("RGB", (a, b, cc))
        if angle:
            img = img.rotate(angle, resample=Image.Resampling.BILINEAR)
        out.append(np.asarray(img, dtype=np.float32) / 255.0)
    return [out[0][..., 0], out[0][..., 1], out[0][..., 2], out[1][..., 0]]


def _light_dirs(style: StruckStyle):
    for az, el, inten, r, g, b in style.lights:
        yield (math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)), inten, np.array(
            (r, g, b), np.float32)


def render_struck_face(year: int | None, side: str, diameter_px: int, style: StruckStyle, rng: random.Random,
                       year_text: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One face, ``diameter_px`` square: (RGB float32 [n, n, 3] in 0..1, alpha float32 [n, n]), lit but not
    tilted. The front carries ``year`` (or ``year_text`` in its place: letters, or '' for nothing); the back
    never carries a year. The random draws do not depend on the year or the text."""
    n = int(diameter_px)
    c, R = n / 2.0, n / 2.0 - 0.5
    seed = rng.getrandbits(64)
    drng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    text = (str(year) if year is not None else "") if year_text is None else year_text
    front = side == "front"
    masks = _front_masks(text, style, n, c, R, drng) if front else _back_masks(style, n, c, R, drng)
    year_a, text_a, design_a, hair_a = _rotate(masks, style.rotation if front else style.back_rotation)

    coords = (np.arange(n, dtype=np.float32) + 0.5 - c) / R
    x, y = coords[None, :], coords[:, None]
    r = np.sqrt(x * x + y * y)
    dh = max(5.0, style.digit_height * n)
    # ---- the height map, in px
    bev = max(0.6, style.bevel * dh)
    letter_h = style.relief_depth * dh * (1.0 - 0.75 * style.wear ** 4)  # a worn face has lost much of its lettering
    sign = 1.0 if (style.relief == "raised" or not front) else -1.0
    rim_h = 0.035 * R
    height = rim_h * _smoothstep((r - 0.905) / 0.035) + 0.004 * R * (r ** 2) * drng.uniform(-1, 1)
    if style.beading:
        beads = Image.new("L", (n, n), 0)
        bd = ImageDraw.Draw(beads)
        br = max(0.8, 0.011 * R)
        off = drng.uniform(0, 2 * math.pi)
        for k in range(style.beading):
            a = off + 2 * math.pi * k / style.beading
            px, py = c + 0.875 * R * math.cos(a), c + 0.875 * R * math.sin(a)
            bd.ellipse([px - br, py - br, px + br, py + br], fill=255)
        height += 0.45 * rim_h * blur(_mask(beads), 0.5 * br)
    design_b = blur(design_a, bev)
    dome = blur(design_a, 0.06 * R)
    height += style.design_depth * R * _smoothstep(design_b * 1.6 - 0.3) * (0.35 + 0.65 * dome)
    height -= 0.25 * letter_h * blur(hair_a, 0.5)
    height += sign * letter_h * _smoothstep(blur(text_a, bev) * 1.4 - 0.2)
    height += sign * letter_h * _smoothstep(blur(year_a, bev) * 1.4 - 0.2)
    if style.metals[0] != style.metals[1]:  # the seam between centre and ring
        height -= 0.01 * R * np.exp(-(((r - 0.62) * R) ** 2) / 2.0)
    # ---- wear: the high points flattened, the relief softened
    top = np.percentile(height[r < 0.86], 99.5)
    level = top * (1.0 - 0.75 * style.wear)
    height = height - style.wear * 0.92 * np.maximum(height - level, 0.0)
    height = blur(height, 0.4 + 0.8 * style.wear + 0.05 * style.wear ** 4 * dh)
    # ---- scratches and dents (newer than the wear)
    marks = Image.new("L", (n, n), 0)
    md = ImageDraw.Draw(marks)
    for _ in range(style.scratches + drng.randint(0, 30)):
        a = drng.uniform(0, math.pi)
        px, py = c + drng.uniform(-0.8, 0.8) * R, c + drng.uniform(-0.8, 0.8) * R
        ln = drng.uniform(0.03, 0.5) * R
        md.line([(px - ln * math.cos(a), py - ln * math.sin(a)), (px + ln * math.cos(a), py + ln * math.sin(a))],
                fill=drng.randint(30, 255), width=1)
    for _ in range(style.dents):
        px, py, rr = c + drng.uniform(-0.8, 0.8) * R, c + drng.uniform(-0.8, 0.8) * R, drng.uniform(0.01, 0.03) * R
        md.ellipse([px - rr, py - rr, px + rr, py + rr], fill=drng.randint(120, 255))
    height -= 0.6 * blur(_mask(marks), 0.5)
    height += style.grain * (nrng.random((n, n), dtype=np.float32) - 0.5)
    height += 0.006 * R * _noise(n, n, (6, 6), nrng)  # an uneven field
    # ---- normals and light
    gy, gx = np.gradient(height)
    inv = 1.0 / np.sqrt(gx * gx + gy * gy + 1.0)
    nx, ny, nz = -gx * inv, -gy * inv, inv
    dist = 3.0  # camera distance in radii: a per-pixel view vector
    vx, vy, vz = -x, -y, np.full_like(r, dist)
    vn = 1.0 / np.sqrt(vx * vx + vy * vy + vz * vz)
    vx, vy, vz = vx * vn, vy * vn, vz * vn
    local = blur(height, 0.05 * R)
    recess = np.clip((local - height) / max(0.5, 0.6 * letter_h + 0.3), 0.0, 1.0)
    ao = 1.0 - 0.45 * recess
    diffuse = np.zeros((n, n, 3), np.float32)
    spec = np.zeros((n, n, 3), np.float32)
    for (lx, ly, lz), inten, colour in _light_dirs(style):
        ndl = np.maximum(nx * lx + ny * ly + nz * lz, 0.0)
        hx, hy, hz = lx + vx, ly + vy, lz + vz
        hn = 1.0 / np.sqrt(hx * hx + hy * hy + hz * hz)
        ndh = np.maximum((nx * hx + ny * hy + nz * hz) * hn, 0.0)
        diffuse += (inten * ndl)[..., None] * colour
        spec += (inten * ndh ** style.shininess)[..., None] * colour
    # ---- metal, tarnish, patina, dirt
    alb = np.empty((n, n, 3), np.float32)
    spc = np.empty((n, n, 3), np.float32)
    tar = np.empty((n, n, 3), np.float32)
    inner = (r < 0.62)[..., None]
    for arr, k in ((alb, 0), (spc, 1), (tar, 2)):
        arr[:] = np.where(inner, np.array(_METALS[style.metals[0]][k], np.float32),
                          np.array(_METALS[style.metals[1]][k], np.float32))
    lowf = _noise(n, n, (4, 4), nrng)
    # circulation rubs the high points (lettering, the design's crown) back to bright metal; the field keeps
    # its toning and the recesses darken: on a real coin that, more than the shading, makes a date legible
    raised = np.clip((height - local) / max(0.5, 0.6 * letter_h + 0.3), 0.0, 1.0)
    rubbed = 0.35 + 0.45 * min(style.wear, 0.6)  # a worn-out face is rubbed all over, field included
    tarn = np.clip(style.tarnish * (1.0 - 0.6 * max(0.0, style.wear - 0.6)) * (0.25 + 0.55 * lowf + 0.6 * recess)
                   * (1.0 - rubbed * raised), 0, 0.92)
    colour = alb * (1 - tarn[..., None]) + tar * tarn[..., None]
    if style.verdigris:
        g = np.clip(style.verdigris * recess * (_noise(n, n, (7, 7), nrng) * 1.6 - 0.2), 0, 0.8)[..., None]
        colour = colour * (1 - g) + np.array(_VERDIGRIS, np.float32) * g
    if style.dirt:
        d = np.clip(style.dirt * recess * (0.5 + _noise(n, n, (9, 9), nrng)), 0, 0.9)[..., None]
        colour = colour * (1 - d) + np.array(_DIRT, np.float32) * d
        tarn = np.maximum(tarn, d[..., 0])
    lin = colour ** 2.2
    spec_k = style.specular * (1.0 - 0.75 * tarn)[..., None]
    out = lin * (style.ambient * ao[..., None] + 0.75 * diffuse * ao[..., None]) + spec_k * spc ** 2.2 * spec
    rgb = np.clip(out, 0, 1) ** (1 / 2.2)
    alpha = np.clip((1.0 - r) * R + 0.5, 0.0, 1.0)
    return rgb.astype(np.float32), alpha.astype(np.float32)


# -------------------------------------------------------------------------------------- backgrounds


def _colour(rgb) -> np.ndarray:
    return np.array(rgb, np.float32)


def background(kind: str, w: int, h: int, nrng: np.random.Generator) -> np.ndarray:
    """A surface a coin is photographed on, float32 [h, w, 3] in 0..1."""
    xs = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    ys = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    if kind == "wood":
        base = _colour((0.55, 0.36, 0.2)) * nrng.uniform(0.45, 1.3)
        warp = _noise(w, h, (3, 4), nrng) * nrng.uniform(2, 6)
        streak = _noise(w, h, (int(nrng.integers(40, 90)), 4), nrng)
        grain = np.sin((ys * nrng.uniform(15, 45) + warp) * 2 * np.pi) * 0.5 + 0.5
        tex = 0.75 + 0.18 * grain ** 3 + 0.15 * streak
        if nrng.random() < 0.5:  # planks
            k = nrng.uniform(0.2, 0.45)
            tex = tex * np.where(np.abs(((ys / k) % 1) - 0.5) > 0.49, 0.45, 1.0)
        img = base * tex[..., None]
        if nrng.random() < 0.5:
            img = np.ascontiguousarray(np.transpose(background_resize(img, h, w), (1, 0, 2)))
    elif kind == "cloth":
        base = nrng.uniform(0.1, 0.85, 3).astype(np.float32)
        f = nrng.uniform(0.8, 1.6) * w / 6
        weave = 0.5 + 0.25 * np.sin(xs * f * np.pi) * np.sin(ys * f * np.pi * h / w) + 0.25 * np.sin((xs + ys) * f)
        folds = _noise(w, h, (3, 4), nrng)
        img = base * (0.75 + 0.15 * weave + 0.3 * folds)[..., None]
        img = img + 0.04 * nrng.random((h, w, 1), dtype=np.float32)
    elif kind == "paper":
        base = _colour((0.92, 0.9, 0.85)) * nrng.uniform(0.75, 1.02)
        fib = _noise(w, h, (int(h / 3), int(w / 3)), nrng)
        img = base * (0.94 + 0.06 * fib + 0.05 * _noise(w, h, (2, 3), nrng))[..., None]
        if nrng.random() < 0.4:  # ruled lines
            step = nrng.uniform(0.05, 0.09)
            img = img * np.where((((ys / step) % 1) < 0.003)[..., None], _colour((0.75, 0.8, 0.95)), 1.0)
    elif kind == "palm":
        skin = _colour(((0.93, 0.72, 0.6), (0.8, 0.57, 0.42), (0.55, 0.37, 0.26), (0.36, 0.24, 0.17))[nrng.integers(4)])
        skin = skin * nrng.uniform(0.85, 1.1)
        blotch = _noise(w, h, (5, 6), nrng)
        img = skin * (0.82 + 0.25 * blotch)[..., None]
        crease = Image.new("L", (w, h), 0)
        cd = ImageDraw.Draw(crease)
        for _ in range(int(nrng.integers(2, 5))):
            x0, y0 = nrng.uniform(0, w), nrng.uniform(0, h)
            pts = [(x0 + t * nrng.uniform(-1, 1) * w / 3, y0 + t * nrng.uniform(-0.4, 0.4) * h) for t in np.linspace(0, 1, 5)]
            cd.line(pts, fill=255, width=max(2, w // 200), joint="curve")
        cm = blur(_mask(crease), w / 400)
        img = img * (1 - 0.25 * cm[..., None])
        # the hand's outline: beyond a large ellipse, the room behind
        cx, cy = nrng.uniform(0.3, 0.7), nrng.uniform(0.3, 0.7)
        e = ((xs - cx) / nrng.uniform(0.55, 0.9)) ** 2 + ((ys - cy) / nrng.uniform(0.6, 1.0)) ** 2
        hand = np.clip((1.0 - e) * 8, 0, 1)[..., None]
        room = nrng.uniform(0.05, 0.6, 3).astype(np.float32) * (0.7 + 0.3 * _noise(w, h, (2, 2), nrng))[..., None]
        img = img * hand + room * (1 - hand)
    elif kind == "busy":
        canvas = Image.new("RGB", (w, h), tuple(int(x) for x in nrng.integers(0, 255, 3)))
        d = ImageDraw.Draw(canvas)
        for _ in range(int(nrng.integers(30, 90))):
            col = tuple(int(x) for x in nrng.integers(0, 255, 3))
            x0, y0 = nrng.uniform(-0.1, 1) * w, nrng.uniform(-0.1, 1) * h
            sw, sh = nrng.uniform(0.02, 0.3) * w, nrng.uniform(0.02, 0.3) * h
            k = nrng.integers(3)
            if k == 0:
                d.rectangle([x0, y0, x0 + sw, y0 + sh], fill=col)
            elif k == 1:
                d.ellipse([x0, y0, x0 + sw, y0 + sh], fill=col)
            else:
                d.line([(x0, y0), (x0 + sw, y0 + sh)], fill=col, width=int(nrng.integers(1, 8)))
        img = blur(np.asarray(canvas, dtype=np.float32) / 255.0, nrng.uniform(0.5, 3.0))
    elif kind == "granite":
        base = nrng.uniform(0.2, 0.7) * _colour((1.0, 0.97, 0.93))
        speck = nrng.random((h, w), dtype=np.float32)
        img = base * (0.8 + 0.35 * _noise(w, h, (h // 2, w // 2), nrng))[..., None]
        img = np.where((speck > 0.93)[..., None], _colour((0.08, 0.07, 0.07)), img)
        img = np.where((speck < 0.03)[..., None], _colour((0.85, 0.8, 0.75)), img)
        img = blur(img, 0.7)
    elif kind == "velvet":
        base = _colour(((0.35, 0.05, 0.08), (0.05, 0.1, 0.3), (0.05, 0.2, 0.08), (0.08, 0.08, 0.08))[nrng.integers(4)])
        sheen = _noise(w, h, (3, 3), nrng)
        img = base * (0.6 + 0.9 * sheen ** 2)[..., None] + 0.03 * nrng.random((h, w, 1), dtype=np.float32)
    elif kind == "tiles":
        tile = nrng.uniform(0.4, 0.95, 3).astype(np.float32)
        k = nrng.uniform(0.15, 0.35) * h
        gx, gy = (np.arange(w)[None, :] % k) < 0.04 * k, (np.arange(h)[:, None] % k) < 0.04 * k
        img = tile * (0.9 + 0.1 * _noise(w, h, (4, 5), nrng))[..., None]
        img = np.where((gx | gy)[..., None], _colour((0.45, 0.43, 0.4)), img)
        img = blur(img, 0.8)
    elif kind == "leather":
        base = _colour(((0.35, 0.2, 0.1), (0.1, 0.08, 0.07), (0.5, 0.3, 0.15))[nrng.integers(3)])
        pores = _noise(w, h, (h // 4, w // 4), nrng)
        img = base * (0.7 + 0.5 * pores ** 2 + 0.2 * _noise(w, h, (3, 3), nrng))[..., None]
    else:
        raise ValueError(f"unknown background {kind!r}")
    a = nrng.uniform(0, 2 * np.pi)
    ramp = 1.0 + nrng.uniform(0.0, 0.35) * ((xs - 0.5) * np.cos(a) + (ys - 0.5) * np.sin(a))
    return np.clip(img * ramp[..., None], 0, 1).astype(np.float32)


def background_resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """Resize a float [H, W, 3] picture to [h, w, 3] (bilinear, per channel)."""
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(img[..., k], dtype=np.float32), "F").resize((w, h), Image.Resampling.BILINEAR))
             for k in range(3)]
    return np.stack(chans, axis=-1)


# ------------------------------------------------------------------------------------------ the photo


def _tilt_matrix(style: StruckStyle) -> np.ndarray:
    """2×2 map from the face plane to the image plane: squeezed by cos(tilt) across the tilt axis."""
    a = math.radians(style.tilt_axis)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return rot @ np.diag([1.0, math.cos(math.radians(style.tilt))]) @ rot.T


def _tilted(face: np.ndarray, alpha: np.ndarray, style: StruckStyle) -> tuple[np.ndarray, np.ndarray]:
    """The face seen at ``style.tilt``: an ellipse in the same n×n square (affine, bilinear)."""
    if style.tilt < 0.2:
        return face, alpha
    n = face.shape[0]
    c = n / 2.0
    inv = np.linalg.inv(_tilt_matrix(style))
    # output (x, y) -> input: inv @ (x - c, y - c) + c
    coeffs = (inv[0, 0], inv[0, 1], c - inv[0, 0] * c - inv[0, 1] * c, inv[1, 0], inv[1, 1], c - inv[1, 0] * c - inv[1, 1] * c)
    rgba = np.dstack([face * alpha[..., None], alpha])  # premultiplied, so the edge does not go dark
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(rgba[..., k], dtype=np.float32), "F").transform(
        (n, n), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR)) for k in range(4)]
    a = chans[3]
    rgb = np.stack(chans[:3], axis=-1) / np.maximum(a, 1e-4)[..., None]
    return np.clip(rgb, 0, 1).astype(np.float32), np.clip(a, 0, 1).astype(np.float32)


def _paste(dst: np.ndarray, src: np.ndarray, alpha: np.ndarray, x0: int, y0: int) -> None:
    """Alpha-blend ``src`` (float [n, n, 3] or a colour) onto ``dst`` at (x0, y0), clipped to the frame."""
    h, w = dst.shape[:2]
    n = alpha.shape[0]
    bx0, by0, bx1, by1 = max(0, x0), max(0, y0), min(w, x0 + n), min(h, y0 + n)
    if bx1 <= bx0 or by1 <= by0:
        return
    a = alpha[by0 - y0:by1 - y0, bx0 - x0:bx1 - x0, None]
    s = src[by0 - y0:by1 - y0, bx0 - x0:bx1 - x0] if src.ndim == 3 else src
    region = dst[by0:by1, bx0:bx1]
    region[:] = region * (1 - a) + s * a


def _place_coin(img: np.ndarray, face: np.ndarray, alpha: np.ndarray, style: StruckStyle, cx: float, cy: float,
                rng: random.Random) -> np.ndarray:
    """The tilted coin with its edge and soft shadow, centred at (cx, cy) on ``img`` (in place). Returns the
    coin's alpha in photo coordinates (float32 [h, w])."""
    n = face.shape[0]
    face_t, alpha_t = _tilted(face, alpha, style)
    x0, y0 = round(cx - n / 2), round(cy - n / 2)
    h, w = img.shape[:2]
    # shadow: away from the brightest light, longer for a low light
    az, el = max(style.lights, key=lambda L: L[2])[:2]
    off = n * 0.025 / max(0.25, math.tan(el))
    sx, sy = round(-math.cos(az) * off), round(-math.sin(az) * off)
    pad = max(2, n // 10)
    sh = np.zeros((n + 2 * pad, n + 2 * pad), np.float32)
    sh[pad:pad + n, pad:pad + n] = alpha_t
    sh = blur(sh, 0.02 * n + 1.0)
    _paste(img, np.zeros(3, np.float32), rng.uniform(0.3, 0.6) * sh, x0 + sx - pad, y0 + sy - pad)
    # the edge: the coin's thickness seen from the side, toward the viewer along the tilt
    if style.tilt > 1.0:
        t = 0.07 * n * math.sin(math.radians(style.tilt))
        a = math.radians(style.tilt_axis) + math.pi / 2
        sgn = rng.choice((-1, 1))
        ex, ey = sgn * t * math.cos(a), sgn * t * math.sin(a)
        edge_col = np.array(_METALS[style.metals[1]][0], np.float32) * 0.55
        for k in range(1, max(2, round(t)) + 1):
            f = k / max(1, round(t))
            _paste(img, edge_col * (0.8 + 0.4 * f), alpha_t, x0 + round(ex * f), y0 + round(ey * f))
    _paste(img, face_t, alpha_t, x0, y0)
    full = np.zeros((h, w), np.float32)
    bx0, by0, bx1, by1 = max(0, x0), max(0, y0), min(w, x0 + n), min(h, y0 + n)
    if bx1 > bx0 and by1 > by0:
        full[by0:by1, bx0:bx1] = alpha_t[by0 - y0:by1 - y0, bx0 - x0:bx1 - x0]
    return full


def _camera(img: np.ndarray, style: StruckStyle, nrng: np.random.Generator) -> Image.Image:
    h, w = img.shape[:2]
    s = w / 640.0
    img = blur(img, (style.defocus + 0.35) * s)  # defocus, and the softness every lens has
    length, ang = style.motion
    if length * s >= 1.0:
        steps = max(2, round(length * s))
        acc = np.zeros_like(img)
        for k in range(steps):
            t = k / (steps - 1) - 0.5
            dx, dy = round(t * length * s * math.cos(ang)), round(t * length * s * math.sin(ang))
            acc += np.roll(img, (dy, dx), axis=(0, 1))
        img = acc / steps
    xs = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    ys = np.linspace(-1, 1, h, dtype=np.float32)[:, None] * h / w
    vig = 1.0 - style.vignette * (xs * xs + ys * ys) / 1.5
    img = img * (np.array(style.white_balance, np.float32) * style.exposure) * vig[..., None]
    knee = 0.75  # highlights roll off instead of clipping flat
    img = np.where(img > knee, knee + (1 - knee) * np.tanh((img - knee) / (1 - knee)), img)
    img = np.clip(img, 0, 1) * 255.0
    sigma = style.noise * np.sqrt(0.3 + img / 255.0)
    img = img + sigma * nrng.standard_normal((h, w, 3), dtype=np.float32) + style.noise * 0.5 * nrng.standard_normal(
        (h, w, 1), dtype=np.float32)
    return Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8), "RGB")


def _coin_centre(style: StruckStyle, d: int, w: int, h: int) -> tuple[float, float]:
    cut = style.cut * d
    lo_x, hi_x = d / 2 - cut, w - d / 2 + cut
    lo_y, hi_y = d / 2 - cut, h - d / 2 + cut
    if hi_x < lo_x:
        lo_x = hi_x = w / 2
    if hi_y < lo_y:
        lo_y = hi_y = h / 2
    return lo_x + style.position[0] * (hi_x - lo_x), lo_y + style.position[1] * (hi_y - lo_y)


def render_struck_side(year: int | None, side: str, style: StruckStyle, rng: random.Random,
                       photo_size: tuple[int, int] = (640, 480), year_text: str | None = None) -> v.PhotoSide:
    """A photograph of one face: (image, true centre, true radius = the coin's radius, the ellipse's
    semi-major axis when tilted)."""
    return _photo_side(year, side, style, rng, photo_size, year_text)[0]


def _photo_side(year: int | None, side: str, style: StruckStyle, rng: random.Random,
                photo_size: tuple[int, int], year_text: str | None) -> tuple[v.PhotoSide, np.ndarray]:
    """The photo and the coin's alpha in it (float32 [h, w]), for the tests."""
    w, h = photo_size
    d = max(16, round(style.diameter * min(w, h)))
    face, alpha = render_struck_face(year, side, d, style, rng, year_text=year_text)
    nrng = np.random.default_rng(rng.getrandbits(64))
    img = background(style.background, w, h, nrng)
    cx, cy = _coin_centre(style, d, w, h)
    x0, y0 = round(cx - d / 2), round(cy - d / 2)
    coin = _place_coin(img, face, alpha, style, cx, cy, rng)
    return v.PhotoSide(_camera(img, style, nrng), (x0 + d / 2, y0 + d / 2), d / 2 - 0.5), coin


def render_struck_photo_pair(year: int | None, rng: random.Random, placement: str | None = None,
                             holdout: bool = False, photo_size: tuple[int, int] = (640, 480),
                             year_text: str | None = None) -> tuple[v.PhotoSide, v.PhotoSide, StruckStyle]:
    """(front, back, style): photos of both faces of one coin. ``year`` None draws a coin without a year
    (``year_text`` in its place, or letters or nothing drawn from ``rng``)."""
    style = sample_struck_style(rng, holdout=holdout)
    if placement:
        style = with_placement(style, placement)
    if year is None and year_text is None:
        year_text = v.sample_no_year_text(rng)
    front = render_struck_side(year, "front", style, rng, photo_size, year_text=year_text)
    back_style = replace(style, position=(rng.random(), rng.random()), diameter=sample_diameter(rng),
                         tilt_axis=rng.uniform(0, 180), tilt=MAX_TILT * rng.random() ** 1.5)
    back = render_struck_side(None, "back", back_style, rng, photo_size)
    return front, back, style


def two_faces_photo(year: int | None, rng: random.Random, photo_size: tuple[int, int] = (960, 480),
                    holdout: bool = False) -> tuple[Image.Image, list[tuple[float, float, float]]]:
    """Front (left) and back (right) of one coin side by side in one photo, as scans of both faces are:
    (image, [(cx, cy, r) of the front, (cx, cy, r) of the back]). The circles never overlap."""
    w, h = photo_size
    style = sample_struck_style(rng, holdout=holdout)
    style = replace(style, tilt=min(style.tilt, 8.0), cut=0.0)
    d = max(16, round(min(w / 2 - 8, h - 8) * rng.uniform(0.7, 0.95)))
    gap = w / 2 - d
    c1 = (w / 4 + rng.uniform(-0.4, 0.4) * gap / 2, h / 2 + rng.uniform(-0.5, 0.5) * (h - d) / 2)
    c2 = (3 * w / 4 + rng.uniform(-0.4, 0.4) * gap / 2, h / 2 + rng.uniform(-0.5, 0.5) * (h - d) / 2)
    nrng = np.random.default_rng(rng.getrandbits(64))
    img = background(style.background, w, h, nrng)
    circles = []
    for side, (cx, cy) in (("front", c1), ("back", c2)):
        face, alpha = render_struck_face(year if side == "front" else None, side, d, style, rng,
                                         year_text=None if year is not None or side == "back" else "")
        _place_coin(img, face, alpha, style, cx, cy, rng)
        x0, y0 = round(cx - d / 2), round(cy - d / 2)
        circles.append((x0 + d / 2, y0 + d / 2, d / 2 - 0.5))
    return _camera(img, style, nrng), circles


# ------------------------------------------------------------------------------------ goldens and CLI

GOLDEN_SIZE = 64


def golden_style(material: str, light: str) -> StruckStyle:
    """A fixed look for the golden images: only the material and the light change."""
    rng = random.Random("struck-golden")
    base = sample_struck_style(rng)
    metals = ("nickel", "brass") if material == "bimetal" else (material, material)
    return replace(base, material=material, metals=metals, light=light, lights=_lights(light, random.Random(f"golden:{light}")),
                   font=v.TRAIN_FONTS[0], placement="below", emblem="portrait", digit_height=0.08, relief="raised",
                   relief_depth=0.2, wear=0.2, tarnish=0.3, verdigris=0.0, dirt=0.2, scratches=3, dents=1, grain=0.0,
                   founding=None, denomination="10", mint_mark=None, rotation=20.0, tilt=0.0, beading=60)


def golden_image(material: str, light: str) -> Image.Image:
    """The face (1948) on mid grey, GOLDEN_SIZE px, no camera: what the golden tests compare."""
    face, alpha = render_struck_face(1948, "front", GOLDEN_SIZE, golden_style(material, light), random.Random(7))
    img = face * alpha[..., None] + 0.5 * (1 - alpha[..., None])
    return Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), "RGB")


def write_golden(folder) -> list[pathlib.Path]:
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for material in MATERIALS:
        for light in LIGHTS:
            p = folder / f"{material}_{light}.png"
            golden_image(material, light).save(p, optimize=True)
            paths.append(p)
    return paths


def write_samples(out, n: int, seed: int = 7, holdout: bool = False, photo_size=(640, 480),
                  quality: int = 88) -> pathlib.Path:
    """``n`` coins as ``front_XXX.jpg`` / ``back_XXX.jpg`` and ``truth.csv`` (file, side, year, placement,
    material, light, background, cx, cy, r, tilt, numbers). A fifth of the coins carry no year."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        year_rng, rng = struck_rngs(seed, i, holdout)
        year = sample_struck_year(year_rng) if year_rng.random() >= 0.2 else None
        front, back, style = render_struck_photo_pair(year, rng, holdout=holdout, photo_size=photo_size)
        numbers = ";".join(f"{t}:{role}" for t, role in face_numbers(year, style))
        for side, photo in (("front", front), ("back", back)):
            name = f"{side}_{i:03d}.jpg"
            photo.image.save(out / name, "JPEG", quality=quality)
            rows.append({"file": name, "side": side, "year": year if side == "front" and year is not None else "",
                         "placement": style.placement, "material": style.material, "light": style.light,
                         "background": style.background, "cx": f"{photo.centre[0]:.1f}",
                         "cy": f"{photo.centre[1]:.1f}", "r": f"{photo.radius:.1f}", "tilt": f"{style.tilt:.1f}",
                         "numbers": numbers if side == "front" else ""})
    path = out / "truth.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["file"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m coin_assets.synth.struck", description=__doc__.split("\n")[0])
    p.add_argument("--out", help="folder for JPEG fronts/backs and truth.csv")
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--holdout", action="store_true", help="the held-out look (fonts, backgrounds, lights)")
    p.add_argument("--size", default="640x480", help="photo size WxH")
    p.add_argument("--write-golden", metavar="DIR", help="rewrite the golden images of the tests")
    args = p.parse_args(argv)
    if args.write_golden:
        for path in write_golden(args.write_golden):
            print(path)
    if args.out:
        w, h = (int(x) for x in args.size.lower().split("x"))
        print(write_samples(args.out, args.n, args.seed, args.holdout, (w, h)))
    if not (args.out or args.write_golden):
        p.print_usage()
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
