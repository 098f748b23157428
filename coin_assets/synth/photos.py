"""Deterministic synthetic coin photos (front and back) written in the upload-zone layout.

We have no real coin photos, so demos, tests and benchmarks use these. They are made to be
*learnable*: the mint year is stamped in large dark digits across the lower middle of the front,
and the coin carries era cues that real coins also have:

* the alloy colour moves smoothly with the year: copper-red (1950) -> bronze -> brass-yellow
  (~1985) -> pale nickel-brass -> silver-grey (2025), and older coins are more toned (patina);
* the front emblem is redesigned every decade (``FRONT_EMBLEMS``: 1950s head facing left with a
  laurel, 1960s pine tree, 1970s head facing right, 1980s sailing ship, 1990s shield, 2000s bird,
  2010s star in a ring, 2020s sun);
* the back shows ``decade index + 1`` stars along its upper rim (1950s: 1 star ... 2020s: 8) and
  a polygon frame with ``decade index + 3`` sides around the denomination.

Every photo is composed at a small working resolution (long side ``WORK_LONG`` px), then resized
to its target photo size, given sensor noise and saved; that keeps a 4000x3000 photo cheap.

Upload layout written by :func:`generate_uploads` (the contract of ``core/uploads.py``)::

    <upload_root>/<YYYY-MM-DD>/<coin_id>__front.<ext>
    <upload_root>/<YYYY-MM-DD>/<coin_id>__back.<ext>
    <upload_root>/<YYYY-MM-DD>/<coin_id>.json      {"user_id", "coin_id", "uploaded_at", "year"?}

Coin ``i`` (0-based) of ``coins`` goes to day ``i * days // coins`` counted from the first of the
``days`` consecutive days that end at ``end_date``: contiguous, evenly sized blocks, oldest day
first. Coin ids are ``coin-s<seed>-<i:06d>``. Everything derives from ``seed`` (coin ``i`` from
its own ``random.Random(f"synth:{seed}:{i}")``, so a coin looks the same whatever ``coins`` is);
the same arguments give byte-identical files. Files are written as ``<name>.part`` and renamed,
so an upload sensor never sees half-written photos. File modification times are left alone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import io
import json
import math
import os
import pathlib
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

from coin_assets.core.clock import utcnow

YEAR_MIN: int = 1950
YEAR_MAX: int = 2025

WORK_LONG = 640  # long side (px) of the canvas a photo is composed on before the final resize
DENOMINATIONS = ("1", "2", "5", "10", "20", "50")
EXIF_ORIENTATION = 0x0112
_THREADS = 4  # upper bound on writer threads (see generate_uploads)
MISSING_SIDECAR_FRACTION = 0.05  # share of all coins uploaded without any sidecar (all unlabelled)

# format key -> (Pillow format, file extension); default choice weights per image
_FORMATS = {
    "jpeg": ("JPEG", ".jpg"),
    "png": ("PNG", ".png"),
    "webp": ("WEBP", ".webp"),
    "tiff": ("TIFF", ".tif"),
    "bmp": ("BMP", ".bmp"),
    "gif": ("GIF", ".gif"),
}
_FORMAT_ALIASES = {"jpg": "jpeg", "tif": "tiff"}
_DEFAULT_FORMAT_WEIGHTS = {"jpeg": 0.70, "png": 0.08, "webp": 0.08, "tiff": 0.05, "bmp": 0.04, "gif": 0.05}
EXIF_ORIENTED_JPEG_FRACTION = 0.10
# stored pixels = displayed.transpose(T) so that exif_transpose(stored) gives back `displayed`
_STORE_TRANSPOSE = {
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,
    8: Image.Transpose.ROTATE_270,
}

# alloy colour keyframes (year, linear RGB 0..1)
_ALLOY = (
    (1950, (0.74, 0.40, 0.24)),  # copper
    (1968, (0.76, 0.50, 0.28)),  # bronze
    (1985, (0.82, 0.68, 0.34)),  # brass
    (2004, (0.78, 0.74, 0.54)),  # nickel-brass
    (2025, (0.72, 0.74, 0.77)),  # cupro-nickel / steel grey
)


@dataclass(frozen=True)
class SynthCoin:
    """What :func:`generate_uploads` wrote for one coin."""

    coin_id: str
    year: int  # true year (always known to the generator)
    labelled: bool  # whether the sidecar carries the year
    day: dt.date
    front_path: pathlib.Path
    back_path: pathlib.Path
    sidecar_path: pathlib.Path | None


# ----------------------------------------------------------------------------------- era cues


def alloy_colour(year: int) -> tuple[float, float, float]:
    """Metal colour (RGB, 0..1) of a coin minted in ``year``, interpolated between keyframes."""
    if year <= _ALLOY[0][0]:
        return _ALLOY[0][1]
    for (y0, c0), (y1, c1) in zip(_ALLOY, _ALLOY[1:], strict=False):
        if year <= y1:
            t = (year - y0) / (y1 - y0)
            return tuple(a + (b - a) * t for a, b in zip(c0, c1, strict=True))  # type: ignore[return-value]
    return _ALLOY[-1][1]


def decade_index(year: int) -> int:
    """0 for the 1950s ... 7 for the 2020s (clamped to the supported range)."""
    return max(0, min((YEAR_MAX - YEAR_MIN) // 10, (year - YEAR_MIN) // 10))


# ------------------------------------------------------------------------------------ drawing


@functools.lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


@functools.lru_cache(maxsize=512)
def _text_master(text: str) -> Image.Image:
    """``text`` drawn bold, white on black, cropped to its ink (rendered once, at 160 px)."""
    font = _font(160)
    stroke = 4
    left, top, right, bottom = font.getbbox(text, stroke_width=stroke)
    img = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(img).text((-left, -top), text, font=font, fill=255, stroke_width=stroke, stroke_fill=255)
    return img


def _text_mask(text: str, height: int, char_width: float) -> Image.Image:
    """Bold ``text`` resized to ``height`` px and ``char_width * height`` px per character."""
    master = _text_master(text)
    width = max(1, round(char_width * height * len(text)))
    return master.resize((width, max(1, height)), Image.Resampling.BILINEAR, reducing_gap=2.0)


def _star(cx: float, cy: float, r: float, rot: float = -math.pi / 2) -> list[tuple[float, float]]:
    pts = []
    for k in range(10):
        rad = r if k % 2 == 0 else r * 0.42
        a = rot + k * math.pi / 5
        pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
    return pts


FRONT_EMBLEMS = ("head-left-laurel", "pine-tree", "head-right-bun", "sailing-ship", "shield", "bird",
                 "star-in-ring", "sun")  # one front design per decade, 1950s ... 2020s


def _draw_front_design(draw: ImageDraw.ImageDraw, c: float, R: float, year: int, rng: random.Random) -> None:
    """The decade's emblem in the upper middle, a beaded arc along the upper rim, a mint mark."""
    def P(x: float, y: float) -> tuple[float, float]:
        return (c + x * R, c + y * R)

    def E(x: float, y: float, rx: float, ry: float) -> list[tuple[float, float]]:
        return [P(x - rx, y - ry), P(x + rx, y + ry)]

    def W(f: float) -> int:
        return max(1, round(f * R))

    emblem = FRONT_EMBLEMS[decade_index(year)]
    bead_r = 0.022
    for k in range(23):
        a = math.radians(-165 + k * 150 / 22)
        x, y = 0.79 * math.cos(a), 0.79 * math.sin(a)
        draw.ellipse(E(x, y, bead_r, bead_r), fill=200)
    if emblem.startswith("head"):
        s = -1.0 if emblem == "head-left-laurel" else 1.0  # facing left / right
        draw.polygon([P(-0.42, 0.14), P(0.42, 0.14), P(0.3 * s, -0.02), P(-0.05 * s, -0.06),
                      P(-0.28 * s, 0.0)], fill=185)  # bust
        draw.polygon([P(-0.1 * s, -0.22), P(0.13 * s, -0.2), P(0.16 * s, -0.02), P(-0.09 * s, -0.04)],
                     fill=195)  # neck
        draw.ellipse(E(0.02 * s, -0.4, 0.22, 0.25), fill=205)  # head
        draw.polygon([P(0.2 * s, -0.43), P(0.29 * s, -0.34), P(0.2 * s, -0.31)], fill=205)  # nose
        draw.ellipse(E(0.1 * s, -0.45, 0.03, 0.02), fill=150)  # eye
        if s < 0:  # laurel wreath along the back of the head
            for k in range(6):
                a = math.radians(-20 - k * 28)
                x, y = 0.02 * s + 0.23 * math.cos(a), -0.4 + 0.25 * math.sin(a)
                draw.ellipse(E(x, y, 0.045, 0.028), fill=235)
        else:  # hair bun
            draw.ellipse(E(-0.17 * s, -0.5, 0.09, 0.09), fill=225)
            draw.arc(E(0.0, -0.42, 0.2, 0.22), 180, 270, fill=120, width=W(0.02))
    elif emblem == "pine-tree":
        draw.rectangle([P(-0.05, -0.12), P(0.05, 0.1)], fill=180)
        for k, (top, half) in enumerate(((-0.7, 0.18), (-0.52, 0.26), (-0.34, 0.34))):
            draw.polygon([P(0.0, top), P(half, top + 0.28), P(-half, top + 0.28)], fill=195 + 10 * k)
    elif emblem == "sailing-ship":
        draw.polygon([P(-0.42, -0.1), P(0.42, -0.1), P(0.3, 0.06), P(-0.3, 0.06)], fill=200)  # hull
        draw.line([P(0.0, -0.1), P(0.0, -0.7)], fill=215, width=W(0.035))  # mast
        draw.polygon([P(0.04, -0.66), P(0.04, -0.16), P(0.34, -0.16)], fill=190)  # main sail
        draw.polygon([P(-0.04, -0.6), P(-0.04, -0.16), P(-0.3, -0.16)], fill=180)  # jib
        for k in range(4):  # waves
            draw.arc(E(-0.3 + 0.2 * k, 0.1, 0.1, 0.05), 0, 180, fill=160, width=W(0.02))
    elif emblem == "shield":
        shield = [P(-0.3, -0.68), P(0.3, -0.68), P(0.3, -0.22), P(0.0, 0.06), P(-0.3, -0.22)]
        draw.polygon(shield, fill=190)
        draw.line([P(0.0, -0.64), P(0.0, 0.0)], fill=120, width=W(0.05))
        draw.line([P(-0.27, -0.42), P(0.27, -0.42)], fill=120, width=W(0.05))
        draw.line(shield + [shield[0]], fill=235, width=W(0.03), joint="curve")
    elif emblem == "bird":
        draw.polygon([P(-0.05, -0.35), P(-0.48, -0.68), P(-0.36, -0.3), P(-0.05, -0.2)], fill=200)  # wings
        draw.polygon([P(0.05, -0.35), P(0.48, -0.68), P(0.36, -0.3), P(0.05, -0.2)], fill=200)
        draw.ellipse(E(0.0, -0.25, 0.1, 0.2), fill=215)  # body
        draw.ellipse(E(0.0, -0.52, 0.07, 0.07), fill=220)  # head
        draw.polygon([P(-0.1, -0.05), P(0.1, -0.05), P(0.0, 0.1)], fill=185)  # tail
    elif emblem == "star-in-ring":
        draw.ellipse(E(0.0, -0.33, 0.36, 0.36), outline=215, width=W(0.045))
        draw.polygon(_star(c, c - 0.33 * R, 0.3 * R), fill=200)
    else:  # sun with rays
        for k in range(16):
            a = 2 * math.pi * k / 16
            r0, r1 = 0.2, (0.4 if k % 2 == 0 else 0.32)
            draw.line([P(r0 * math.cos(a), -0.33 + r0 * math.sin(a)), P(r1 * math.cos(a), -0.33 + r1 * math.sin(a))],
                      fill=205, width=W(0.04))
        draw.ellipse(E(0.0, -0.33, 0.17, 0.17), fill=220)
    # mint mark dot on one side of the emblem
    mx = rng.uniform(-0.55, -0.45) if rng.random() < 0.5 else rng.uniform(0.45, 0.55)
    draw.ellipse(E(mx, 0.1, 0.025, 0.025), fill=190)


def _draw_back_design(draw: ImageDraw.ImageDraw, c: float, R: float, year: int, rng: random.Random) -> None:
    """Decade stars on the upper arc, decade polygon frame, leaf wreath at the bottom."""
    def P(x: float, y: float) -> tuple[float, float]:
        return (c + x * R, c + y * R)

    d = decade_index(year)
    stars = d + 1
    for k in range(stars):
        a = math.radians(-90 + (k - (stars - 1) / 2) * 19)
        draw.polygon(_star(c + 0.7 * R * math.cos(a), c + 0.7 * R * math.sin(a), 0.085 * R), fill=225)
    sides = d + 3
    cy = 0.05
    poly = [P(0.47 * math.cos(-math.pi / 2 + 2 * math.pi * k / sides),
              cy + 0.47 * math.sin(-math.pi / 2 + 2 * math.pi * k / sides)) for k in range(sides)]
    draw.line(poly + [poly[0]], fill=205, width=max(1, round(0.045 * R)), joint="curve")
    for side in (-1, 1):  # wreath
        for k in range(7):
            a = math.radians(90 + side * (35 + k * 12))
            x, y = 0.66 * math.cos(a), 0.66 * math.sin(a)
            draw.ellipse([P(x - 0.05, y - 0.03), P(x + 0.05, y + 0.03)], fill=195)


def _paste_max(dst: np.ndarray, mask: Image.Image, x: int, y: int, value: float) -> None:
    """dst = max(dst, value * mask) over the box of ``mask`` placed at (x, y), clipped."""
    m = np.asarray(mask, dtype=np.float32) * (value / 255.0)
    h, w = m.shape
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(dst.shape[1], x + w), min(dst.shape[0], y + h)
    if x1 <= x0 or y1 <= y0:
        return
    region = dst[y0:y1, x0:x1]
    np.maximum(region, m[y0 - y: y1 - y, x0 - x: x1 - x], out=region)


@functools.lru_cache(maxsize=64)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in units of the coin radius (canvas ``size`` = diameter + 4)."""
    R = (size - 4) / 2.0
    c = size / 2.0
    coords = (np.arange(size, dtype=np.float32) + 0.5 - c) / R
    x = coords[None, :]
    y = coords[:, None]
    r = np.sqrt(x * x + y * y)
    return x, y, r


def render_coin_face(year: int, side: str, diameter: int, rng: random.Random,
                     light_angle: float | None = None) -> Image.Image:
    """One face of the coin, upright, as an RGBA image of ``diameter + 4`` px square."""
    D = max(16, int(diameter))
    size = D + 4
    R = D / 2.0
    c = size / 2.0
    x, y, r = _grid(size)

    # relief mask (0..255): design elements; the rim is analytic
    design = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(design)
    text = np.zeros((size, size), dtype=np.float32)
    if side == "front":
        _draw_front_design(draw, c, R, year, rng)
        digit_h = round(0.21 * D)
        mask = _text_mask(str(year), digit_h, 0.64)
        _paste_max(text, mask, round(c - mask.width / 2), round(c + 0.40 * R - digit_h / 2), 255.0)
    else:
        _draw_back_design(draw, c, R, year, rng)
        denom = rng.choice(DENOMINATIONS)
        digit_h = round(0.27 * D)
        mask = _text_mask(denom, digit_h, 0.62)
        _paste_max(text, mask, round(c - mask.width / 2), round(c + 0.05 * R - digit_h / 2), 255.0)
        small_h = max(3, round(0.055 * D))
        word = _text_mask("CENTS" if denom in ("1", "2", "5") or rng.random() < 0.5 else "CENTIMOS", small_h, 0.55)
        _paste_max(text, word, round(c - word.width / 2), round(c + 0.36 * R), 200.0)
    # scratches (light hairlines), more on older coins
    age = (YEAR_MAX - year) / (YEAR_MAX - YEAR_MIN)
    scratches = Image.new("L", (size, size), 0)
    sdraw = ImageDraw.Draw(scratches)
    for _ in range(rng.randint(0, 2 + round(6 * age))):
        a = rng.uniform(0, math.pi)
        px, py = c + rng.uniform(-0.6, 0.6) * R, c + rng.uniform(-0.6, 0.6) * R
        ln = rng.uniform(0.1, 0.5) * R
        sdraw.line([(px - ln * math.cos(a), py - ln * math.sin(a)), (px + ln * math.cos(a), py + ln * math.sin(a))],
                   fill=rng.randint(60, 140), width=1)

    soft = max(0.6, D / 300.0)
    design_soft = np.asarray(design.filter(ImageFilter.GaussianBlur(soft)), dtype=np.float32) / 255.0
    design_sharp = np.asarray(design, dtype=np.float32) / 255.0
    text /= 255.0
    text_soft = np.asarray(Image.fromarray((text * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(soft)),
                           dtype=np.float32) / 255.0
    rim_w = 0.11
    rim = np.clip((r - (1.0 - rim_w)) * R / 1.5, 0.0, 1.0)  # 0 in the field, 1 on the rim
    rim_bevel = np.clip((1.0 - r) * R / (0.05 * R + 1.0), 0.0, 1.0)  # falls off at the very edge

    height = 0.55 * rim * rim_bevel + 0.35 * design_soft + 0.28 * text_soft - 0.12 * r * r
    gy, gx = np.gradient(height)
    if light_angle is None:
        light_angle = rng.uniform(0, 2 * math.pi)
    lx, ly = math.cos(light_angle), math.sin(light_angle)
    emboss = np.clip(1.0 - (gx * lx + gy * ly) * (D * 0.55), 0.35, 1.9)
    # albedo: frosted (darker) relief, very dark incuse-toned digits, polished field
    albedo = 1.0 - 0.3 * design_sharp - 0.68 * text - 0.05 * rim
    sheen = 1.0 + 0.22 * (x * -lx + y * -ly) - 0.12 * r ** 4
    spec_x, spec_y = -0.45 * lx, -0.45 * ly
    spec = np.exp(-((x - spec_x) ** 2 + (y - spec_y) ** 2) / 0.12) * (1.0 - text) * rng.uniform(0.05, 0.25)

    base = np.array(alloy_colour(year), dtype=np.float32)
    base = np.clip(base * np.array([rng.uniform(0.98, 1.02) for _ in range(3)], dtype=np.float32), 0, 1)
    # toning/patina: low-frequency blotches, stronger with age
    tone_small = np.array([[rng.random() for _ in range(6)] for _ in range(6)], dtype=np.float32)
    tone = np.asarray(Image.fromarray((tone_small * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC),
                      dtype=np.float32) / 255.0
    toning = (0.10 + 0.35 * age) * tone
    shade = (albedo * emboss * sheen * (1.0 - toning))[..., None]
    rgb = base[None, None, :] * shade * 1.05
    rgb = rgb * (1.0 - 0.25 * toning[..., None] * np.array([0.0, 0.4, 0.9], dtype=np.float32))  # brownish toning
    rgb = rgb + spec[..., None] + (np.asarray(scratches, dtype=np.float32) / 255.0 * 0.25)[..., None]
    alpha = np.clip((1.0 - r) * R + 0.5, 0.0, 1.0)
    out = np.empty((size, size, 4), dtype=np.uint8)
    out[..., :3] = np.clip(rgb * 255.0, 0, 255).astype(np.uint8)
    out[..., 3] = (alpha * 255.0).astype(np.uint8)
    return Image.fromarray(out, "RGBA")


# ------------------------------------------------------------------------------- backgrounds


_SURFACES = (  # typical things a coin is photographed on (RGB 0..1)
    (0.93, 0.93, 0.91), (0.85, 0.82, 0.75), (0.55, 0.55, 0.56), (0.25, 0.26, 0.28), (0.08, 0.08, 0.09),
    (0.12, 0.20, 0.38), (0.10, 0.32, 0.18), (0.45, 0.12, 0.12), (0.62, 0.52, 0.40), (0.30, 0.36, 0.44),
)


def _background(w: int, h: int, rng: random.Random, nrng: np.random.Generator) -> np.ndarray:
    """A float32 (h, w, 3) background in 0..1: plain, gradient, wood grain, cloth or paper."""
    kind = rng.choices(["plain", "gradient", "wood", "cloth", "paper"], weights=[2, 2, 3, 2, 1])[0]
    xs = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
    ys = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]

    def colour() -> np.ndarray:
        base = np.array(rng.choice(_SURFACES), dtype=np.float32)
        return np.clip(base * np.array([rng.uniform(0.85, 1.15) for _ in range(3)], dtype=np.float32), 0, 1)

    if kind == "plain":
        img = np.broadcast_to(colour(), (h, w, 3)).astype(np.float32)
    elif kind == "gradient":
        a = rng.uniform(0, 2 * math.pi)
        t = np.clip((xs - 0.5) * math.cos(a) + (ys - 0.5) * math.sin(a) + 0.5, 0, 1)[..., None]
        c0 = colour()
        c1 = np.clip(c0 * rng.uniform(0.4, 0.8) if rng.random() < 0.6 else colour(), 0, 1)
        img = c0 * (1 - t) + c1 * t
    elif kind == "wood":
        base = np.array([rng.uniform(0.38, 0.62), rng.uniform(0.22, 0.38), rng.uniform(0.08, 0.2)], dtype=np.float32)
        base *= rng.uniform(0.6, 1.15)
        across, along = (ys, xs) if rng.random() < 0.5 else (xs, ys)
        n = 1024
        profile = np.convolve(nrng.normal(0.0, 1.0, n + 8), np.ones(9) / 9.0, mode="valid")[:n]
        profile = (profile - profile.min()) / (np.ptp(profile) + 1e-6)
        planks = rng.random() < 0.5
        warp = (0.008 * np.sin(along * rng.uniform(4, 10) + rng.uniform(0, 6.3))
                + 0.002 * np.sin(along * rng.uniform(17, 31) + rng.uniform(0, 6.3)))
        u = across * rng.uniform(0.5, 1.0) + warp
        idx = (np.mod(u, 1.0) * (n - 1)).astype(np.int32)
        grain = profile[idx] ** 1.5
        shade = 0.72 + 0.45 * grain
        if planks:  # plank joints
            joint = np.mod(across * rng.randint(2, 4), 1.0)
            shade = shade * np.where(joint < 0.006, 0.45, 1.0)
        img = base * shade[..., None]
    elif kind == "cloth":
        base = colour()
        period = rng.uniform(3.0, 6.0)
        weave = (np.sin(np.arange(w, dtype=np.float32) * 2 * math.pi / period)[None, :]
                 * np.sin(np.arange(h, dtype=np.float32) * 2 * math.pi / period)[:, None])
        fib = nrng.normal(0.0, 0.04, size=(h, w)).astype(np.float32)
        img = base * (0.92 + 0.06 * weave + fib)[..., None]
    else:  # paper
        base = np.array([rng.uniform(0.82, 0.97)] * 3, dtype=np.float32) * np.array(
            [rng.uniform(0.97, 1.0) for _ in range(3)], dtype=np.float32)
        fib = nrng.normal(0.0, 0.015, size=(h, w)).astype(np.float32)
        img = base * (1.0 + fib)[..., None]
    # uneven illumination of the table
    a = rng.uniform(0, 2 * math.pi)
    ramp = 1.0 + rng.uniform(0.0, 0.3) * ((xs - 0.5) * math.cos(a) + (ys - 0.5) * math.sin(a))
    return np.array(np.broadcast_to(img * ramp[..., None], (h, w, 3)), dtype=np.float32)


# --------------------------------------------------------------------------------- the photo


def _work_size(photo_size: tuple[int, int]) -> tuple[int, int]:
    w, h = photo_size
    long_side = max(w, h)
    work_long = min(WORK_LONG, max(long_side, 128))
    s = work_long / long_side
    return max(8, round(w * s)), max(8, round(h * s))


def _render_photo(year: int, side: str, photo_size: tuple[int, int], rng: random.Random,
                  max_rotation: float, scene: dict) -> Image.Image:
    ww, wh = _work_size(photo_size)
    nrng = np.random.default_rng(rng.getrandbits(64))
    bg = _background(ww, wh, random.Random(scene["bg_seed"]), nrng)  # same table for both sides
    short = min(ww, wh)
    fill = min(0.9, max(0.55, scene["fill"] + rng.uniform(-0.03, 0.03)))
    D = max(16, round(fill * short))
    light = scene["light"] + rng.uniform(-0.3, 0.3)
    coin = render_coin_face(year, side, D, rng, light_angle=light)
    # rotation of the coin in the picture, then a slight perspective squash
    angle = rng.uniform(-max_rotation, max_rotation) if max_rotation > 0 else 0.0
    if angle:
        coin = coin.rotate(angle, resample=Image.Resampling.BICUBIC)
    squash = rng.uniform(0.93, 1.0)
    if squash < 0.995:
        if rng.random() < 0.5:
            coin = coin.resize((coin.width, max(8, round(coin.height * squash))), Image.Resampling.BICUBIC)
        else:
            coin = coin.resize((max(8, round(coin.width * squash)), coin.height), Image.Resampling.BICUBIC)
    carr = np.asarray(coin, dtype=np.float32) / 255.0
    ch, cw = carr.shape[:2]
    slack_x, slack_y = max(0, ww - cw), max(0, wh - ch)
    ox = round(slack_x / 2 + rng.uniform(-0.4, 0.4) * slack_x)
    oy = round(slack_y / 2 + rng.uniform(-0.4, 0.4) * slack_y)
    ox, oy = min(max(ox, 0), slack_x), min(max(oy, 0), slack_y)

    # soft contact shadow, thrown away from the light
    alpha_img = coin.getchannel("A")
    shadow = np.asarray(alpha_img.filter(ImageFilter.BoxBlur(max(1, round(D * 0.03)))), dtype=np.float32) / 255.0
    sdx = round(-math.cos(light) * D * 0.035)
    sdy = round(-math.sin(light) * D * 0.035)
    strength = rng.uniform(0.3, 0.55)
    sx0, sy0 = ox + sdx, oy + sdy
    x0, y0 = max(0, sx0), max(0, sy0)
    x1, y1 = min(ww, sx0 + cw), min(wh, sy0 + ch)
    if x1 > x0 and y1 > y0:
        bg[y0:y1, x0:x1] *= (1.0 - strength * shadow[y0 - sy0: y1 - sy0, x0 - sx0: x1 - sx0])[..., None]
    a = carr[..., 3:4]
    region = bg[oy: oy + ch, ox: ox + cw]
    region[:] = region * (1.0 - a[: region.shape[0], : region.shape[1]]) + (
        carr[: region.shape[0], : region.shape[1], :3] * a[: region.shape[0], : region.shape[1]])

    # camera: exposure, contrast, white balance, vignette
    img = bg
    img = (img - 0.5) * rng.uniform(0.88, 1.12) + 0.5
    img = img * rng.uniform(0.85, 1.15)
    wb = np.array([rng.uniform(0.97, 1.03), 1.0, rng.uniform(0.97, 1.03)], dtype=np.float32)
    img = img * wb
    vig = rng.uniform(0.0, 0.3)
    if vig > 0.02:
        xs = np.linspace(-1, 1, ww, dtype=np.float32)[None, :]
        ys = np.linspace(-1, 1, wh, dtype=np.float32)[:, None]
        img = img * (1.0 - vig * 0.5 * (xs * xs + ys * ys))[..., None]
    out = Image.fromarray(np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8), "RGB")
    if rng.random() < 0.3:
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0) * ww / WORK_LONG))
    if out.size != tuple(photo_size):
        big = photo_size[0] > ww
        out = out.resize(tuple(photo_size), Image.Resampling.BILINEAR if big else Image.Resampling.LANCZOS)
    return _add_sensor_noise(out, rng.uniform(1.0, 5.0), nrng)


def _add_sensor_noise(img: Image.Image, sigma: float, nrng: np.random.Generator) -> Image.Image:
    """Gaussian sensor noise; large photos repeat one 256-px noise tile (invisible, and cheap)."""
    w, h = img.size
    tw, th = min(w, 256), min(h, 256)
    noise = nrng.standard_normal(size=(th, tw, 3), dtype=np.float32) * np.float32(sigma) + np.float32(128.5)
    tile = Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8), "RGB")
    if (tw, th) == (w, h):
        noise = tile
    else:
        noise = Image.new("RGB", (w, h))
        for y in range(0, h, th):
            for x in range(0, w, tw):
                noise.paste(tile, (x, y))
    return ImageChops.add(img, noise, scale=1.0, offset=-128)


def render_coin_pair(year: int, rng: random.Random, photo_size: tuple[int, int] = (640, 480),
                     max_rotation: float = 15.0) -> tuple[Image.Image, Image.Image]:
    """Front and back photos (RGB, exactly ``photo_size``) of one coin of that year.

    Both photos share the table (background), the lighting direction and roughly the coin scale,
    as a user photographing both sides would; rotation, position and camera jitter differ.
    """
    scene = {"bg_seed": rng.getrandbits(64), "fill": rng.uniform(0.58, 0.87),
             "light": rng.uniform(0, 2 * math.pi)}
    size = (int(photo_size[0]), int(photo_size[1]))
    front = _render_photo(year, "front", size, rng, max_rotation, scene)
    back = _render_photo(year, "back", size, rng, max_rotation, scene)
    return front, back


# ------------------------------------------------------------------------------ file writing


def _normalise_formats(formats: Sequence[str] | None) -> tuple[list[str], list[float]]:
    if formats is None:
        return list(_DEFAULT_FORMAT_WEIGHTS), list(_DEFAULT_FORMAT_WEIGHTS.values())
    keys = []
    for f in formats:
        key = _FORMAT_ALIASES.get(f.lower().lstrip("."), f.lower().lstrip("."))
        if key not in _FORMATS:
            raise ValueError(f"unknown image format {f!r}; choose from {sorted(_FORMATS)}")
        if key not in keys:
            keys.append(key)
    if not keys:
        raise ValueError("formats must name at least one format")
    return keys, [1.0] * len(keys)


def photo_size_for(rng: random.Random, max_side: int | None = None) -> tuple[int, int]:
    """A camera photo size: ~5% exactly 4000x3000, else long side 800..2000 at 4:3, 3:2 or 1:1."""
    if rng.random() < 0.05:
        w, h = 4000, 3000
    else:
        long_side = rng.randint(800, 2000)
        ratio = rng.choice((4 / 3, 4 / 3, 3 / 2, 1.0))
        w, h = long_side, round(long_side / ratio)
        if rng.random() < 0.35:
            w, h = h, w
    if max_side is not None and max(w, h) > max_side:
        s = max_side / max(w, h)
        w, h = max(1, round(w * s)), max(1, round(h * s))
    return w, h


def encode_photo(img: Image.Image, fmt: str, rng: random.Random, orientation: int = 1) -> bytes:
    """Encode ``img`` (as displayed) in format key ``fmt``; for JPEG an EXIF ``orientation`` of
    3, 6 or 8 stores the pixels rotated so that ``ImageOps.exif_transpose`` shows ``img``."""
    pil_format = _FORMATS[fmt][0]
    buf = io.BytesIO()
    if pil_format == "JPEG":
        kwargs = {"quality": rng.randint(78, 95), "optimize": False}
        if orientation != 1:
            exif = Image.Exif()
            exif[EXIF_ORIENTATION] = orientation
            img = img.transpose(_STORE_TRANSPOSE[orientation])
            kwargs["exif"] = exif.tobytes()
        img.save(buf, "JPEG", **kwargs)
    elif pil_format == "PNG":
        img.save(buf, "PNG", compress_level=1)
    elif pil_format == "WEBP":
        img.save(buf, "WEBP", quality=rng.randint(75, 92), method=2)
    elif pil_format == "TIFF":
        img.save(buf, "TIFF")
    elif pil_format == "BMP":
        img.save(buf, "BMP")
    else:  # GIF: 256 colours (fast octree; median cut costs 10+ ms even on a thumbnail)
        img.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(buf, "GIF")
    return buf.getvalue()


def _write_atomic(path: pathlib.Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def generate_uploads(upload_root, coins: int, days: int = 1, seed: int = 0, end_date: dt.date | None = None,
                     max_side: int | None = None, label_fraction: float = 0.85, max_rotation: float = 15.0,
                     formats: Sequence[str] | None = None, generator: str = "era") -> list[SynthCoin]:
    """Write ``coins`` coin uploads into the upload zone and return what was written.

    ``generator``: ``"era"`` draws this module's coins (the year also shows in the alloy and the design's
    decade cues); ``"varied"`` draws :mod:`coin_assets.synth.varied` coins, whose digits are the only cue,
    struck at every placement (what the demo uploads, so that its model has to read).

    Exactly ``round(label_fraction * coins)`` coins carry their year in the sidecar; of the
    others, up to ``round(0.05 * coins)`` have no sidecar at all. ``formats`` (e.g. ``["jpg",
    "png"]``) restricts the file formats, chosen uniformly among them; by default ~70% JPEG
    (10% of those with an EXIF orientation of 3, 6 or 8) and the rest PNG, WebP, TIFF, BMP, GIF.
    """
    if coins < 0:
        raise ValueError("coins must be >= 0")
    if days < 1:
        raise ValueError("days must be >= 1")
    if not 0.0 <= label_fraction <= 1.0:
        raise ValueError("label_fraction must be within 0..1")
    if max_side is not None and max_side < 16:
        raise ValueError("max_side must be at least 16")
    if generator not in ("era", "varied"):
        raise ValueError(f"unknown generator {generator!r}: expected 'era' or 'varied'")
    root = pathlib.Path(upload_root)
    end = end_date or utcnow().date()
    first_day = end - dt.timedelta(days=days - 1)
    fmt_keys, fmt_weights = _normalise_formats(formats)

    plan = random.Random(f"synth:{seed}:plan")
    labelled_ids = set(plan.sample(range(coins), round(label_fraction * coins)))
    unlabelled = [i for i in range(coins) if i not in labelled_ids]
    missing = set(plan.sample(unlabelled, min(len(unlabelled), round(MISSING_SIDECAR_FRACTION * coins))))
    users = max(3, min(200, coins // 8 + 1))

    def make(i: int) -> SynthCoin:
        rng = random.Random(f"synth:{seed}:{i}")
        coin_id = f"coin-s{seed}-{i:06d}"
        day = first_day + dt.timedelta(days=i * days // coins)
        folder = root / day.isoformat()
        folder.mkdir(parents=True, exist_ok=True)
        year = rng.randint(YEAR_MIN, YEAR_MAX)
        user_id = f"user-{rng.randint(1, users):03d}"
        second = rng.randrange(86400)
        size = photo_size_for(rng, max_side)
        if generator == "varied":
            from coin_assets.synth import varied

            year = varied.sample_year(rng)
            front_side, back_side = varied.render_photo_pair(year, varied.sample_style(rng), rng, photo_size=size)
            front, back = front_side.image, back_side.image
        else:
            front, back = render_coin_pair(year, rng, size, max_rotation=max_rotation)
        paths = []
        for side, img in (("front", front), ("back", back)):
            fmt = rng.choices(fmt_keys, weights=fmt_weights)[0]
            orientation = 1
            if fmt == "jpeg" and rng.random() < EXIF_ORIENTED_JPEG_FRACTION:
                orientation = rng.choice((3, 6, 8))
            data = encode_photo(img, fmt, rng, orientation)
            path = folder / f"{coin_id}__{side}{_FORMATS[fmt][1]}"
            for stale in folder.glob(f"{coin_id}__{side}.*"):  # an earlier run may have used another format
                if stale != path:
                    stale.unlink(missing_ok=True)
            _write_atomic(path, data)
            paths.append(path)
        sidecar_path: pathlib.Path | None = folder / f"{coin_id}.json"
        if i in missing:
            sidecar_path.unlink(missing_ok=True)
            sidecar_path = None
        else:
            uploaded = dt.datetime.combine(day, dt.time(), dt.timezone.utc) + dt.timedelta(seconds=second)
            doc = {"user_id": user_id, "coin_id": coin_id, "uploaded_at": uploaded.strftime("%Y-%m-%dT%H:%M:%SZ")}
            if i in labelled_ids:
                doc["year"] = year
            _write_atomic(sidecar_path, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())
        return SynthCoin(coin_id=coin_id, year=year, labelled=i in labelled_ids, day=day,
                         front_path=paths[0], back_path=paths[1], sidecar_path=sidecar_path)

    # Pillow and numpy release the GIL in the heavy parts (resize, filters, encoders, array maths),
    # so a couple of threads use the cores; every coin has its own RNG, so output does not change.
    workers = min(_THREADS, os.cpu_count() or 1, max(1, coins // 4))
    if workers <= 1:
        return [make(i) for i in range(coins)]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="synth") as pool:
        return list(pool.map(make, range(coins)))


# ------------------------------------------------------------------------------------------ CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coin_assets.synth",
                                     description="Write synthetic coin photo uploads (front/back + sidecar).")
    parser.add_argument("--coins", type=int, default=200)
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.environ.get("COIN_ASSETS_UPLOAD_DIR", "data/uploads"),
                        help="upload root (default: $COIN_ASSETS_UPLOAD_DIR or data/uploads)")
    parser.add_argument("--end-date", type=dt.date.fromisoformat, default=None,
                        help="last upload day YYYY-MM-DD (default: today, UTC)")
    parser.add_argument("--max-side", type=int, default=None)
    parser.add_argument("--label-fraction", type=float, default=0.85)
    parser.add_argument("--max-rotation", type=float, default=15.0)
    parser.add_argument("--formats", default=None, help="comma-separated, e.g. jpg,png (default: mixed)")
    parser.add_argument("--generator", choices=("era", "varied"), default="varied",
                        help="varied: digits are the only cue to the year, at every placement (default); "
                             "era: coins whose alloy and design also hint at the decade")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        written = generate_uploads(
            args.out, args.coins, days=args.days, seed=args.seed, end_date=args.end_date,
            max_side=args.max_side, label_fraction=args.label_fraction, max_rotation=args.max_rotation,
            formats=args.formats.split(",") if args.formats else None, generator=args.generator,
        )
    except ValueError as err:
        parser.error(str(err))
    seconds = time.perf_counter() - started
    day_list = sorted({c.day for c in written})
    span = f"{day_list[0]}..{day_list[-1]}" if day_list else "-"
    print(f"synth: {len(written)} coins, {2 * len(written)} images, {sum(c.labelled for c in written)} labelled, "
          f"{len(day_list)} days ({span}) -> {args.out} in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
