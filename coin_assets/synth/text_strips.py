"""Text-line crops of struck coins, for the year reader's recogniser.

What the recogniser sees in the product is a crop around one line of text that the text detector found on a
coin (or on the unwrapped rim): a year, a denomination, a legend word, a mint mark beside a year, a founding
date. This module draws such crops directly, with the coin generator's look (:mod:`coin_assets.synth.varied`:
its typefaces, metals, relief or print, light, wear, patina, blur, noise, JPEG) and what a detector's box adds:
loose or tight margins, a few degrees of slant, a slight curve (rim text), clutter from the neighbouring design,
and the low resolution of a small coin read back at the recogniser's height.

Deterministic per (seed, i); the held-out typefaces (:data:`~coin_assets.synth.varied.HOLDOUT_FONTS`) are
never drawn here.
"""

from __future__ import annotations

import io
import math
import random

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from coin_assets.core.text_lines import STRIP_HEIGHT, STRIP_WIDTH, fit_strip
from coin_assets.synth import varied as v

YEAR_RANGE = (1850, 2039)  # years drawn on strips: wider than the answer's range, so the range is a rule, not a prior
MINT_MARKS = ("D", "S", "P", "M", "A", "B", "F", "G", "J", "W")
WORDS = v.LEGEND_WORDS + ("LIBERTY", "CENTS", "EURO", "PENNY", "DOLLAR", "KOPEK", "GROSZY", "FRANC", "DIME",
                          "QUARTER", "ONE", "TWO", "FIVE", "TEN", "CENT", "PESOS", "LIRE", "RAND", "STATE")


def sample_text(rng: random.Random) -> str:
    """The label of one strip: mostly years, and the numbers and words that share a coin with them."""
    u = rng.random()
    year = str(rng.randint(*YEAR_RANGE))
    if u < 0.06:  # no text: bare metal and design, what a window between words sees
        return ""
    if u < 0.50:
        return year
    if u < 0.60:  # a mint mark or a small letter beside the year
        mark = rng.choice(MINT_MARKS)
        return f"{year} {mark}" if rng.random() < 0.6 else f"{mark} {year}"
    if u < 0.72:  # a denomination or another number
        return rng.choice(v.DENOMINATIONS + ("1/2", "1/4", "250", "500", "200", "2½".replace("½", "")))
    if u < 0.78:  # a founding date or a second date: 3-4 digits, or a range
        a = rng.randint(1600, 1990)
        return f"{a}" if rng.random() < 0.6 else f"{a}-{a + rng.randint(1, 60)}"
    if u < 0.94:
        return rng.choice(WORDS)
    return "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(rng.randint(2, 5)))


def label_of(text: str) -> str:
    """What the recogniser is asked to output for ``text``: no spaces (a gap is not a character)."""
    return text.replace(" ", "")


def _shade(height: np.ndarray, ink: np.ndarray, metal: str, relief: str, rng: random.Random,
           nrng: np.random.Generator) -> np.ndarray:
    """RGB float [h, w, 3]: a height map lit like the coin generator's faces (one light, metal colour, patina,
    specular sheen), with printed ink where ``ink`` is set."""
    h, w = height.shape
    wear = rng.random() ** 1.5
    blurred = Image.fromarray(np.clip(height * 100 + 100, 0, 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(0.4 + 1.2 * wear * h / 48))
    height = np.asarray(blurred, dtype=np.float32) / 100.0
    gy, gx = np.gradient(height)
    light = rng.uniform(0, 2 * math.pi)
    gain = (1.0 - 0.5 * wear) * rng.uniform(2.5, 6.0)
    shade = 0.8 - gain * (gx * math.cos(light) + gy * math.sin(light))
    base = np.array(v.METALS[metal], dtype=np.float32)
    patina = (rng.random() ** 2) * v._low_freq(max(h, w), nrng)[:h, :w]
    colour = base * (1 - 0.5 * patina[..., None]) + np.array([0.15, 0.35, 0.25], np.float32) * 0.4 * patina[..., None]
    img = colour * shade[..., None]
    xs = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    img = img + (rng.uniform(0, 0.5) * np.exp(-((xs - rng.uniform(-1, 1)) ** 2) / 0.3))[..., None]
    if relief.startswith("printed"):
        ink_colour = np.array((0.08, 0.07, 0.06) if relief == "printed_dark" else (0.95, 0.93, 0.88), np.float32)
        img = img * (1 - ink[..., None]) + ink_colour * ink[..., None]
    return np.clip(img, 0, 1)


def _clutter(draw: ImageDraw.ImageDraw, w: int, h: int, box: tuple[int, int, int, int], rng: random.Random) -> None:
    """Neighbouring design outside the text's box: a rim arc, a bar, a dot, part of a letter."""
    x0, y0, x1, y1 = box
    for _ in range(rng.randint(0, 3)):
        kind = rng.random()
        if kind < 0.35:  # a rim or beading line above or below the text
            y = rng.choice((rng.randint(0, max(0, y0 - 2)), rng.randint(min(h - 1, y1 + 2), h - 1)))
            draw.line([(0, y), (w, y + rng.randint(-3, 3))], fill=255, width=rng.randint(1, 3))
        elif kind < 0.7:  # a dot or star between words
            x = rng.choice((rng.randint(0, max(0, x0 - 1)), rng.randint(min(w - 1, x1 + 1), w - 1)))
            r = rng.randint(1, max(2, h // 10))
            y = rng.randint(0, h - 1)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=255)
        else:  # a stroke of the emblem
            x = rng.randint(0, w - 1)
            draw.line([(x, 0), (x + rng.randint(-10, 10), rng.randint(0, max(1, y0)))], fill=255, width=rng.randint(1, 3))


def render_strip(text: str, rng: random.Random, fonts=v.TRAIN_FONTS) -> np.ndarray:
    """uint8 [STRIP_HEIGHT, STRIP_WIDTH]: ``text`` struck in a coin's metal, cropped as a detector would,
    grey, left-aligned and padded with its own edge colour to the recogniser's width."""
    nrng = np.random.default_rng(rng.getrandbits(64))
    font = rng.choice(fonts)
    text_h = rng.randint(18, 40)  # drawn at a comfortable size; small coins are made by the down-up resample below
    mask = v._text_mask(text.replace(" ", "  "), font, text_h) if text else Image.new("L", (text_h * rng.randint(2, 5), text_h), 0)
    if " " in text:  # the mint mark may be smaller than the digits
        mask = _with_small_mark(text, font, text_h, rng)
    margin_x = round(text_h * rng.uniform(0.05, 0.8))
    margin_top, margin_bottom = (round(text_h * rng.uniform(0.03, 0.45)) for _ in range(2))
    pad = text_h  # room for slant and clutter, cut away below
    w, h = mask.width + 2 * (margin_x + pad), mask.height + margin_top + margin_bottom + 2 * pad
    canvas = Image.new("L", (w, h), 0)
    canvas.paste(mask, (margin_x + pad, margin_top + pad))
    design = Image.new("L", (w, h), 0)
    _clutter(ImageDraw.Draw(design), w, h, (margin_x + pad, margin_top + pad, margin_x + pad + mask.width,
                                            margin_top + pad + mask.height), rng)
    bend = rng.uniform(-0.25, 0.25) * text_h if rng.random() < 0.3 else 0.0  # rim text, not quite unwrapped
    relief = rng.choice(v.RELIEFS)
    text_a = _bend(np.asarray(canvas, np.float32) / 255.0, bend)
    design_a = np.asarray(design, np.float32) / 255.0
    sign = -0.8 if relief == "incuse" else (0.3 if relief.startswith("printed") else 0.8)
    height = 0.6 * design_a + sign * text_a
    img = _shade(height, text_a if relief.startswith("printed") else np.zeros_like(text_a),
                 rng.choice(tuple(v.METALS)), relief, rng, nrng)
    grey = Image.fromarray((img.mean(2) * 255 + 0.5).astype(np.uint8), "L")
    angle = rng.uniform(-6, 6)
    grey = grey.rotate(angle, resample=Image.Resampling.BILINEAR, center=(w / 2, h / 2))
    grey = grey.crop((pad, pad, w - pad, h - pad))
    if rng.random() < 0.2:  # squash or stretch: perspective, condensed box
        grey = grey.resize((max(4, round(grey.width * rng.uniform(0.75, 1.25))), grey.height))
    # the text's height in the photo: 6 .. 40 px (a 268 px coin's year is about 8 px)
    small_h = rng.randint(9, 34) if rng.random() < 0.85 else rng.randint(6, 9)
    scale = small_h / grey.height
    grey = grey.resize((max(4, round(grey.width * scale)), small_h), Image.Resampling.BILINEAR, reducing_gap=2.0)
    grey = _camera(grey, rng, nrng)
    return fit_strip(np.asarray(grey))


def _with_small_mark(text: str, font, text_h: int, rng: random.Random) -> Image.Image:
    left, right = text.split(" ", 1)
    small = rng.random() < 0.5
    parts = [v._text_mask(p, font, round(text_h * (0.7 if small and len(p) == 1 else 1.0))) for p in (left, right)]
    gap = round(text_h * rng.uniform(0.2, 0.7))
    out = Image.new("L", (parts[0].width + gap + parts[1].width, text_h), 0)
    out.paste(parts[0], (0, text_h - parts[0].height))
    out.paste(parts[1], (parts[0].width + gap, text_h - parts[1].height))
    return out


def _bend(a: np.ndarray, amount: float) -> np.ndarray:
    """Shift each column vertically along a parabola (``amount`` px at the ends): text along a circle."""
    if abs(amount) < 0.5:
        return a
    h, w = a.shape
    xs = np.linspace(-1, 1, w)
    out = np.zeros_like(a)
    for x in range(w):
        out[:, x] = np.roll(a[:, x], int(round(amount * xs[x] ** 2)))
    return out


def _camera(grey: Image.Image, rng: random.Random, nrng: np.random.Generator) -> Image.Image:
    if rng.random() < 0.4:
        grey = grey.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    arr = np.asarray(grey, np.float32)
    arr = (arr - arr.mean()) * rng.uniform(0.8, 1.4) + arr.mean() + rng.uniform(-30, 30)
    arr = arr + nrng.normal(0, rng.uniform(0.5, 8.0), arr.shape)
    out = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=rng.randint(30, 95))
    return Image.open(io.BytesIO(buf.getvalue())).convert("L")


def strip_item(seed: int, i: int, size: int = STRIP_HEIGHT) -> tuple[np.ndarray, str]:
    """Strip i of ``seed``: (uint8 [STRIP_HEIGHT, STRIP_WIDTH], its label). ``size`` is the recogniser's height."""
    rng = random.Random(f"strip:{seed}:{i}")
    text = sample_text(rng)
    return render_strip(text, rng), label_of(text)


def make_strips(n: int, seed: int = 0, workers: int = 2, start: int = 0) -> tuple[np.ndarray, list[str]]:
    """Strips ``start .. start + n`` of ``seed``: (uint8 [n, H, W], labels). Strip i is the same whatever n
    and workers are."""
    return v._render_many(strip_item, n, STRIP_HEIGHT, seed, workers, start,
                          item_shape=(STRIP_HEIGHT, STRIP_WIDTH), min_parallel=256)
