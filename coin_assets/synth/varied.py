"""A coin generator in which the digits are the only cue for the year.

Everything else (metal, patina, design, legend, typeface, digit size and placement, relief or print,
rotation over the full circle, perspective, wear, scratches, dirt, light direction, specular highlight,
background, blur, noise, JPEG artefacts) is drawn from its own RNG stream that never sees the year:
:func:`sample_style` takes no year argument, and the year comes from a separate stream. The back never
carries the year.

Two modes share one face renderer (:func:`render_face`):

* :func:`render_lowres_pair`: a coin-centred input at model resolution, drawn directly at 2× and
  reduced (what the coin crop of a photo gives), for the ≥ 20 000-pair training corpora
  (:func:`make_corpus`, a few processes, deterministic per seed);
* :func:`render_photo_pair`: a full-size photo (coin anywhere on a table), for uploads, with the true
  centre and radius so that coin finding can be tested.

Coins without a year for training (:func:`make_no_year`): the same fronts with letters or nothing in the
year's place (the drawing only swaps the text), from RNG streams of their own, so that a seed's year coins
are unchanged; the pre-training corpus labels them year NaN (``PretrainConfig.no_year_share``).

Typefaces come from the fonts matplotlib ships (DejaVu, Computer Modern); STIX and the Computer Modern
roman/typewriter faces are kept for the held-out renderer (:mod:`coin_assets.synth.holdout`).
"""

from __future__ import annotations

import functools
import io
import math
import os
import random
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from coin_assets.core.coin_crop import CROP_RADIUS_FRACTION  # the scale of the crop the model sees

YEAR_MIN, YEAR_MAX = 1950, 2025

# (file, horizontal squeeze): squeeze < 1 gives the condensed variants
TRAIN_FONTS = (
    ("DejaVuSans-Bold.ttf", 1.0), ("DejaVuSans.ttf", 1.0), ("DejaVuSans-Bold.ttf", 0.72),
    ("DejaVuSerif-Bold.ttf", 1.0), ("DejaVuSerif.ttf", 1.0), ("DejaVuSerif.ttf", 0.75),
    ("DejaVuSansMono-Bold.ttf", 1.0), ("cmss10.ttf", 1.0), ("cmb10.ttf", 1.0),
)
HOLDOUT_FONTS = (("STIXGeneral.ttf", 1.0), ("STIXGeneralBol.ttf", 0.85), ("cmr10.ttf", 1.0), ("cmtt10.ttf", 1.0))

METALS = {  # name -> RGB 0..1
    "copper": (0.72, 0.42, 0.26), "bronze": (0.70, 0.52, 0.30), "brass": (0.82, 0.68, 0.36),
    "gold": (0.88, 0.72, 0.32), "nickel": (0.72, 0.72, 0.70), "silver": (0.80, 0.80, 0.82),
    "steel": (0.60, 0.63, 0.67), "aluminium": (0.78, 0.79, 0.80), "zinc": (0.62, 0.62, 0.60),
}
RELIEFS = ("raised", "incuse", "printed_dark", "printed_light")
# where the year is struck on the front: below or above the emblem, in the side field beside it (at an angle),
# or along the rim with the letters' tops toward the centre (rim_inward) or toward the rim (rim_outward).
# "field" is the old name of "below".
PLACEMENTS = ("below", "above", "side", "rim_inward", "rim_outward")
DISTRACTOR_SHARE = 0.5  # of fronts that also carry a number that is not the year (the denomination)
EMBLEMS = ("star", "polygon", "rings", "bars", "cross", "disc", "none")
BACKGROUNDS = ("wood", "cloth", "paper", "palm", "plain")
LEGEND_WORDS = ("REPUBLICA", "LIBERTAS", "UNITED", "KINGDOM", "ESTADO", "REGNUM", "FEDERAL", "BANK",
                "CONCORDIA", "PAX", "NATIO", "UNION", "MONETA", "POPULI")
DENOMINATIONS = ("1", "2", "5", "10", "20", "25", "50", "100")


@dataclass(frozen=True)
class Style:
    """Everything about a coin's look except its year (one instance for both sides)."""

    metal: str
    patina: float  # 0..1
    emblem: str
    legend: str
    font: tuple[str, float]
    relief: str
    placement: str
    digit_height: float  # fraction of the diameter
    digit_offset: float  # field: vertical offset of the digits' centre (fraction of the radius)
    rotation: float  # degrees, 0..360
    squash: float  # perspective: 0.8..1
    squash_axis: float  # degrees
    wear: float  # 0..1
    scratches: int
    dirt: int
    light: float  # radians
    specular: float
    background: str
    bg_colour: tuple[float, float, float]
    blur: float  # px at model resolution
    noise: float  # 0..255 sigma
    jpeg_quality: int
    scale_jitter: float  # coin radius in the crop relative to nominal
    shift: tuple[float, float]  # centre error of the crop (fraction of the radius)
    denomination: str
    extra: dict = field(default_factory=dict, compare=False)


def sample_style(rng: random.Random, fonts=TRAIN_FONTS) -> Style:
    """A look drawn without the year: the generator cannot leak the year through the style."""
    return Style(
        metal=rng.choice(tuple(METALS)), patina=rng.random() ** 2, emblem=rng.choice(EMBLEMS),
        legend=" ".join(rng.sample(LEGEND_WORDS, 2)), font=rng.choice(fonts), relief=rng.choice(RELIEFS),
        placement=rng.choice(PLACEMENTS), digit_height=rng.uniform(0.13, 0.22), digit_offset=rng.uniform(0.2, 0.5),
        rotation=rng.uniform(0, 360), squash=rng.uniform(0.82, 1.0), squash_axis=rng.uniform(0, 180),
        wear=rng.random() ** 1.5, scratches=rng.randint(0, 8), dirt=rng.randint(0, 6),
        light=rng.uniform(0, 2 * math.pi), specular=rng.uniform(0.0, 0.5), background=rng.choice(BACKGROUNDS),
        bg_colour=(rng.uniform(0.1, 0.95), rng.uniform(0.1, 0.95), rng.uniform(0.1, 0.95)),
        blur=rng.uniform(0.0, 0.8) if rng.random() < 0.5 else 0.0, noise=rng.uniform(0.5, 6.0),
        jpeg_quality=rng.randint(35, 95), scale_jitter=rng.uniform(0.9, 1.08),
        shift=(rng.uniform(-0.06, 0.06), rng.uniform(-0.06, 0.06)), denomination=rng.choice(DENOMINATIONS),
        extra={"front_denomination": rng.choice(DENOMINATIONS) if rng.random() < DISTRACTOR_SHARE else None,
               "side_tilt": rng.uniform(-35, 35) if rng.random() < 0.5 else 0.0},
    )


def coin_rngs(seed: int, i: int) -> tuple[random.Random, random.Random]:
    """(year RNG, style RNG) of coin i: two independent streams."""
    return random.Random(f"varied:{seed}:{i}:year"), random.Random(f"varied:{seed}:{i}:style")


def sample_year(rng: random.Random) -> int:
    return rng.randint(YEAR_MIN, YEAR_MAX)


# ------------------------------------------------------------------------------------------- drawing


@functools.lru_cache(maxsize=64)
def font_path(name: str) -> str:
    import matplotlib

    return os.path.join(matplotlib.get_data_path(), "fonts", "ttf", name)


@functools.lru_cache(maxsize=256)
def _font(name: str, px: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(font_path(name), size=max(4, px))


def _text_mask(text: str, font: tuple[str, float], height: int) -> Image.Image:
    """White-on-black ``text`` cropped to its ink, ``height`` px tall, squeezed horizontally by font[1]."""
    if not text.strip():
        return Image.new("L", (1, 1), 0)
    f = _font(font[0], int(height * 1.35))
    left, top, right, bottom = f.getbbox(text)
    img = Image.new("L", (max(1, right - left), max(1, bottom - top)), 0)
    ImageDraw.Draw(img).text((-left, -top), text, font=f, fill=255)
    w = max(1, round(img.width * height / max(1, img.height) * font[1]))
    return img.resize((w, max(1, height)), Image.Resampling.BILINEAR)


def _word(legend: str, k: int) -> str:
    words = legend.split()
    return words[k] if words else ""


def _paste_text_field(mask: Image.Image, text: str, font, height: int, cx: float, cy: float) -> None:
    t = _text_mask(text, font, height)
    mask.paste(255, (round(cx - t.width / 2), round(cy - t.height / 2)), t)


def _paste_text_arc(mask: Image.Image, text: str, font, height: int, c: float, radius: float,
                    centre_deg: float, spread_deg: float | None = None, bottom: bool = True) -> None:
    """Characters along a circle of ``radius`` about (c, c), centred on angle ``centre_deg`` (0 = right,
    90 = down), upright for a reader at the rim (bottom arc: read left to right)."""
    chars = [ch for ch in text]
    step = spread_deg / max(1, len(chars) - 1) if spread_deg else math.degrees(height * 0.75 / max(1.0, radius))
    start = centre_deg + (step * (len(chars) - 1) / 2 if bottom else -step * (len(chars) - 1) / 2)
    for k, ch in enumerate(chars):
        if ch == " ":
            continue
        a = start - k * step if bottom else start + k * step
        t = _text_mask(ch, font, height)
        rot = (90 - a) if bottom else (-90 - a)
        t = t.rotate(rot, expand=True, resample=Image.Resampling.BILINEAR)
        x, y = c + radius * math.cos(math.radians(a)), c + radius * math.sin(math.radians(a))
        mask.paste(255, (round(x - t.width / 2), round(y - t.height / 2)), t)


def _emblem(draw: ImageDraw.ImageDraw, kind: str, c: float, R: float, rng: random.Random,
            centre: tuple[float, float] = (0.0, -0.15)) -> None:
    ex, cy = centre

    def P(x, y):
        return (c + (x + ex) * R, c + y * R)

    if kind == "star":
        n = rng.randint(5, 8)
        pts = [P((0.32 if k % 2 == 0 else 0.14) * math.cos(math.pi * k / n - math.pi / 2),
                 cy + (0.32 if k % 2 == 0 else 0.14) * math.sin(math.pi * k / n - math.pi / 2)) for k in range(2 * n)]
        draw.polygon(pts, fill=255)
    elif kind == "polygon":
        n = rng.randint(3, 8)
        pts = [P(0.3 * math.cos(2 * math.pi * k / n), cy + 0.3 * math.sin(2 * math.pi * k / n)) for k in range(n)]
        draw.line(pts + [pts[0]], fill=255, width=max(1, round(0.05 * R)))
    elif kind == "rings":
        for rr in (0.3, 0.2):
            draw.ellipse([P(-rr, cy - rr), P(rr, cy + rr)], outline=255, width=max(1, round(0.04 * R)))
    elif kind == "bars":
        for k in range(rng.randint(2, 4)):
            y = cy - 0.25 + 0.15 * k
            draw.rectangle([P(-0.3, y), P(0.3, y + 0.07)], fill=255)
    elif kind == "cross":
        draw.rectangle([P(-0.06, cy - 0.3), P(0.06, cy + 0.3)], fill=255)
        draw.rectangle([P(-0.3, cy - 0.06), P(0.3, cy + 0.06)], fill=255)
    elif kind == "disc":
        draw.ellipse([P(-0.25, cy - 0.25), P(0.25, cy + 0.25)], fill=255)


@functools.lru_cache(maxsize=16)
def _grid(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c = n / 2.0
    R = n / 2.0 - 1
    coords = (np.arange(n, dtype=np.float32) + 0.5 - c) / R
    x, y = coords[None, :], coords[:, None]
    return x, y, np.sqrt(x * x + y * y)


def _low_freq(n: int, rng: np.random.Generator, cells: int = 5) -> np.ndarray:
    small = Image.fromarray((rng.random((cells, cells)) * 255).astype(np.uint8))
    return np.asarray(small.resize((n, n), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0


def _draw_front(design: Image.Image, digits: Image.Image, year: int | None, style: Style, n: int, c: float, R: float,
                rng: random.Random, year_text: str | None, legend_h: int) -> None:
    """The front's emblem, legend, year (at ``style.placement``) and, on some coins, a denomination that is
    not the year. The year goes on ``digits``, everything else on ``design``."""
    draw = ImageDraw.Draw(design)
    placement = "below" if style.placement == "field" else style.placement
    text = str(year) if year_text is None else year_text
    dh = max(4, round(style.digit_height * n))
    legend = _word(style.legend, 0)
    denomination = style.extra.get("front_denomination")
    if placement == "below":
        _emblem(draw, style.emblem, c, R, rng)
        _paste_text_field(digits, text, style.font, dh, c, c + style.digit_offset * R)
        _paste_text_arc(design, legend, style.font, legend_h, c, 0.80 * R, -90, bottom=False)
        spot = (c - 0.55 * R, c - 0.1 * R)
    elif placement == "above":
        _emblem(draw, style.emblem, c, R, rng, centre=(0.0, 0.2))
        _paste_text_field(digits, text, style.font, dh, c, c - min(style.digit_offset, 0.42) * R)
        _paste_text_arc(design, legend, style.font, legend_h, c, 0.80 * R, 90, bottom=True)
        spot = (c + 0.55 * R, c + 0.2 * R)
    elif placement == "side":
        dh = max(4, round(min(style.digit_height, 0.15) * n))
        _emblem(draw, style.emblem, c, R, rng, centre=(-0.3, 0.0))
        side_text = Image.new("L", (n, n), 0)
        _paste_text_field(side_text, text, style.font, dh, c + 0.42 * R, c)
        tilt = style.extra.get("side_tilt", 0.0)
        if tilt:
            side_text = side_text.rotate(tilt, center=(c + 0.42 * R, c), resample=Image.Resampling.BILINEAR)
        digits.paste(255, (0, 0), side_text)
        _paste_text_arc(design, legend, style.font, legend_h, c, 0.80 * R, -90, bottom=False)
        spot = (c - 0.1 * R, c + 0.55 * R)
    elif placement == "rim_inward":  # along the bottom rim, read from outside the coin: tops toward the centre
        _emblem(draw, style.emblem, c, R, rng)
        _paste_text_arc(digits, text, style.font, dh, c, 0.86 * R - dh / 2, 90, bottom=True)
        _paste_text_arc(design, legend, style.font, legend_h, c, 0.80 * R, -90, bottom=False)
        spot = (c, c + 0.2 * R)
    else:  # rim_outward: along the top rim like a legend, tops toward the rim
        _emblem(draw, style.emblem, c, R, rng, centre=(0.0, 0.1))
        _paste_text_arc(digits, text, style.font, dh, c, 0.86 * R - dh / 2, -90, bottom=False)
        _paste_text_arc(design, legend, style.font, legend_h, c, 0.80 * R, 90, bottom=True)
        spot = (c, c + 0.55 * R)
    if denomination:
        _paste_text_field(design, denomination, style.font, max(4, round(0.1 * n)), *spot)


def render_face(year: int | None, side: str, n: int, style: Style, rng: random.Random,
                fonts_override=None, year_text: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One face, ``n`` px square: (RGB float32 [n, n, 3] in 0..1, alpha float32 [n, n]). The coin is
    rotated by ``style.rotation``; lighting is applied after the rotation, so it stays in the world frame.
    ``year`` is drawn only on the front; the back shows the denomination. ``year_text``, where given, is drawn
    in the year's place instead (same font, size, placement and relief): a no-year front (letters, or
    nothing when empty)."""
    c = n / 2.0
    R = n / 2.0 - 1
    nrng = np.random.default_rng(rng.getrandbits(64))
    design = Image.new("L", (n, n), 0)
    digits = Image.new("L", (n, n), 0)
    draw = ImageDraw.Draw(design)
    legend_font = style.font
    legend_h = max(3, round(0.08 * n))
    if side == "front":
        _draw_front(design, digits, year, style, n, c, R, rng, year_text, legend_h)
    else:
        _emblem(draw, rng.choice(EMBLEMS), c, R, rng)
        _paste_text_field(design, style.denomination, style.font, max(4, round(0.22 * n)), c, c + 0.3 * R)
        _paste_text_arc(design, _word(style.legend, -1), legend_font, legend_h, c, 0.80 * R, -90, bottom=False)
    if style.rotation:
        design = design.rotate(style.rotation, resample=Image.Resampling.BILINEAR)
        digits = digits.rotate(style.rotation, resample=Image.Resampling.BILINEAR)
    x, y, r = _grid(n)
    design_a = np.asarray(design, dtype=np.float32) / 255.0
    digits_a = np.asarray(digits, dtype=np.float32) / 255.0
    relief = style.relief if side == "front" else "raised"
    rim = np.clip((r - 0.88) * R / 1.5, 0.0, 1.0)
    height = rim + 0.7 * design_a
    ink = np.zeros_like(r)
    if relief == "raised":
        height = height + 0.8 * digits_a
    elif relief == "incuse":
        height = height - 0.8 * digits_a
    else:
        height = height + 0.3 * digits_a
        ink = digits_a
    wear_sigma = 0.3 + style.extra.get("wear_scale", 1.5) * style.wear * n / 128
    hmap = Image.fromarray(np.clip(height * 100 + 100, 0, 255).astype(np.uint8))
    height = np.asarray(hmap.filter(ImageFilter.GaussianBlur(wear_sigma)), dtype=np.float32) / 100.0
    gy, gx = np.gradient(height)
    lx, ly = math.cos(style.light), math.sin(style.light)
    relief_gain = (1.0 - 0.6 * style.wear) * 2.5
    shade = 0.8 - relief_gain * (gx * lx + gy * ly)
    base = np.array(METALS[style.metal], dtype=np.float32)
    patina_map = style.patina * _low_freq(n, nrng)
    colour = base[None, None, :] * (1 - 0.5 * patina_map[..., None]) + np.array(
        [0.15, 0.35, 0.25], dtype=np.float32) * 0.4 * patina_map[..., None]
    img = colour * shade[..., None]
    sx, sy = -0.45 * lx, -0.45 * ly
    spec = style.specular * np.exp(-((x - sx) ** 2 + (y - sy) ** 2) / 0.12)
    img = img + spec[..., None]
    if ink.any():
        ink_colour = np.array((0.08, 0.07, 0.06) if relief == "printed_dark" else (0.95, 0.93, 0.88), dtype=np.float32)
        img = img * (1 - ink[..., None]) + ink_colour * ink[..., None]
    marks = Image.new("L", (n, n), 0)
    mdraw = ImageDraw.Draw(marks)
    for _ in range(style.scratches):
        a = rng.uniform(0, math.pi)
        px, py = c + rng.uniform(-0.6, 0.6) * R, c + rng.uniform(-0.6, 0.6) * R
        ln = rng.uniform(0.1, 0.5) * R
        mdraw.line([(px - ln * math.cos(a), py - ln * math.sin(a)), (px + ln * math.cos(a), py + ln * math.sin(a))],
                   fill=rng.randint(80, 200), width=max(1, n // 200))
    dirt = Image.new("L", (n, n), 0)
    ddraw = ImageDraw.Draw(dirt)
    for _ in range(style.dirt):
        px, py = c + rng.uniform(-0.8, 0.8) * R, c + rng.uniform(-0.8, 0.8) * R
        rr = rng.uniform(0.02, 0.07) * R
        ddraw.ellipse([px - rr, py - rr, px + rr, py + rr], fill=rng.randint(60, 160))
    img = img + 0.35 * (np.asarray(marks, dtype=np.float32) / 255.0)[..., None]
    img = img * (1 - 0.6 * (np.asarray(dirt, dtype=np.float32) / 255.0))[..., None]
    alpha = np.clip((1.0 - r) * R + 0.5, 0.0, 1.0)
    return np.clip(img, 0, 1).astype(np.float32), alpha.astype(np.float32)


def background(w: int, h: int, style: Style, nrng: np.random.Generator) -> np.ndarray:
    """A table/cloth/paper/palm background, float32 [h, w, 3]."""
    base = np.array(style.bg_colour, dtype=np.float32)
    xs = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    ys = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    kind = style.background
    if kind == "wood":
        freq = nrng.uniform(8, 30)
        tex = 0.85 + 0.15 * np.sin(freq * (xs * 0.3 + ys) * 2 * np.pi + 3 * np.sin(xs * 7))
    elif kind == "cloth":
        f = nrng.uniform(40, 120)
        tex = 0.9 + 0.05 * np.sin(f * xs * np.pi) + 0.05 * np.sin(f * ys * np.pi)
    elif kind == "paper":
        base = np.array([0.9, 0.88, 0.84], dtype=np.float32) * nrng.uniform(0.85, 1.05)
        tex = 1.0 + nrng.normal(0, 0.02, (h, w)).astype(np.float32)
    elif kind == "palm":
        base = np.array([0.85, 0.62, 0.5], dtype=np.float32) * nrng.uniform(0.6, 1.1)
        tex = 0.9 + 0.1 * np.sin(xs * 9 + ys * 5)
    else:
        tex = np.ones((1, 1), dtype=np.float32)
    a = nrng.uniform(0, 2 * np.pi)
    ramp = 1.0 + nrng.uniform(0.0, 0.4) * ((xs - 0.5) * np.cos(a) + (ys - 0.5) * np.sin(a))
    return np.clip(np.broadcast_to(base * (tex * ramp)[..., None], (h, w, 3)), 0, 1).astype(np.float32)


def _compose(face: np.ndarray, alpha: np.ndarray, bg: np.ndarray, x0: int, y0: int, style: Style) -> np.ndarray:
    """Paste a (squashed) coin onto the background with a soft shadow."""
    n = face.shape[0]
    if style.squash < 0.995:
        rgba = Image.fromarray(np.dstack([face, alpha]).__mul__(255).clip(0, 255).astype(np.uint8), "RGBA")
        rgba = rgba.rotate(style.squash_axis, resample=Image.Resampling.BILINEAR)
        rgba = rgba.resize((n, max(4, round(n * style.squash))), Image.Resampling.BILINEAR)
        canvas = Image.new("RGBA", (n, n), (0, 0, 0, 0))
        canvas.paste(rgba, (0, (n - rgba.height) // 2))
        canvas = canvas.rotate(-style.squash_axis, resample=Image.Resampling.BILINEAR)
        arr = np.asarray(canvas, dtype=np.float32) / 255.0
        face, alpha = arr[..., :3], arr[..., 3]
    h, w = bg.shape[:2]
    out = bg.copy()
    sdx, sdy = round(-math.cos(style.light) * n * 0.03), round(-math.sin(style.light) * n * 0.03)
    for (dx, dy, kind) in ((sdx, sdy, "shadow"), (0, 0, "coin")):
        ax0, ay0 = x0 + dx, y0 + dy
        bx0, by0, bx1, by1 = max(0, ax0), max(0, ay0), min(w, ax0 + n), min(h, ay0 + n)
        if bx1 <= bx0 or by1 <= by0:
            continue
        a = alpha[by0 - ay0: by1 - ay0, bx0 - ax0: bx1 - ax0, None]
        region = out[by0:by1, bx0:bx1]
        if kind == "shadow":
            region *= 1.0 - 0.4 * a
        else:
            region[:] = region * (1 - a) + face[by0 - ay0: by1 - ay0, bx0 - ax0: bx1 - ax0] * a
    return out


def _camera(img: np.ndarray, style: Style, nrng: np.random.Generator, blur_px: float) -> Image.Image:
    out = Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), "RGB")
    if blur_px > 0.05:
        out = out.filter(ImageFilter.GaussianBlur(blur_px))
    arr = np.asarray(out, dtype=np.float32) + nrng.normal(0, style.noise, (out.height, out.width, 1)).astype(np.float32)
    out = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=style.jpeg_quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


# ------------------------------------------------------------------------------------ the two modes



def render_lowres_side(year: int | None, side: str, size: int, style: Style, rng: random.Random,
                       year_text: str | None = None) -> np.ndarray:
    """A coin-centred crop (uint8 [size, size, 3]) drawn directly: the coin at 2× then reduced."""
    n2 = 2 * size
    d = max(8, round(2 * CROP_RADIUS_FRACTION * n2 * style.scale_jitter))
    face, alpha = render_face(year, side, d, style, rng, year_text=year_text)
    nrng = np.random.default_rng(rng.getrandbits(64))
    bg = background(n2, n2, style, nrng)
    x0 = round(n2 / 2 - d / 2 + style.shift[0] * d / 2)
    y0 = round(n2 / 2 - d / 2 + style.shift[1] * d / 2)
    img = _compose(face, alpha, bg, x0, y0, style)
    small = Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), "RGB").resize(
        (size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(_camera(np.asarray(small, dtype=np.float32) / 255.0, style, nrng, style.blur))


def render_lowres_pair(year: int | None, style: Style, rng: random.Random, size: int = 64,
                       year_text: str | None = None) -> np.ndarray:
    """uint8 [2, size, size, 3]: front (with the year, or ``year_text`` in its place), back (without). The back
    gets its own rotation."""
    front = render_lowres_side(year, "front", size, style, rng, year_text=year_text)
    back_style = _replace(style, rotation=rng.uniform(0, 360), relief="raised")
    back = render_lowres_side(None, "back", size, back_style, rng)
    return np.stack([front, back])


def _replace(style: Style, **changes) -> Style:
    from dataclasses import replace

    return replace(style, **changes)


@dataclass(frozen=True)
class PhotoSide:
    image: Image.Image
    centre: tuple[float, float]  # px, in the photo
    radius: float  # px


def render_photo_side(year: int | None, side: str, photo_size: tuple[int, int], style: Style,
                      rng: random.Random, year_text: str | None = None) -> PhotoSide:
    """A full-size photo (coin diameter 35..75 % of the short side, anywhere on the table)."""
    w, h = photo_size
    work = min(1.0, 720 / max(w, h))  # compose at most 720 px wide, then resize to the photo size
    ww, wh = max(16, round(w * work)), max(16, round(h * work))
    d = max(16, round(rng.uniform(0.35, 0.75) * min(ww, wh)))
    face, alpha = render_face(year, side, d, style, rng, year_text=year_text)
    nrng = np.random.default_rng(rng.getrandbits(64))
    bg = background(ww, wh, style, nrng)
    x0 = rng.randint(0, max(0, ww - d))
    y0 = rng.randint(0, max(0, wh - d))
    img = _compose(face, alpha, bg, x0, y0, style)
    out = _camera(img, style, nrng, style.blur * ww / 128)
    if (ww, wh) != (w, h):
        out = out.resize((w, h), Image.Resampling.BILINEAR)
    s = w / ww
    return PhotoSide(out, ((x0 + d / 2) * s, (y0 + d / 2) * s), (d / 2 - 1) * s)


def render_photo_pair(year: int | None, style: Style, rng: random.Random,
                      photo_size: tuple[int, int] = (640, 480), year_text: str | None = None) -> tuple[PhotoSide, PhotoSide]:
    """Front and back photos; ``year_text`` (letters, or '' for nothing) in the year's place makes a coin
    without a year."""
    front = render_photo_side(year, "front", photo_size, style, rng, year_text=year_text)
    back_style = _replace(style, rotation=rng.uniform(0, 360), relief="raised")
    return front, render_photo_side(None, "back", photo_size, back_style, rng)


# ------------------------------------------------------------------------------------------ corpus


def corpus_item(seed: int, i: int, size: int, fonts=TRAIN_FONTS) -> tuple[np.ndarray, int]:
    year_rng, style_rng = coin_rngs(seed, i)
    year = sample_year(year_rng)
    style = sample_style(style_rng, fonts)
    return render_lowres_pair(year, style, style_rng, size), year


def _chunk(args) -> tuple[np.ndarray, list]:
    seed, start, stop, size, item = args
    arrays, labels = [], []
    for i in range(start, stop):
        array, label = item(seed, i, size)
        arrays.append(array)
        labels.append(label)
    return np.stack(arrays), labels


def _render_many(item, n: int, size: int, seed: int, workers: int | None, start: int,
                 item_shape: tuple[int, ...] | None = None, min_parallel: int = 64) -> tuple[np.ndarray, list]:
    """Items ``start .. start + n`` of ``item(seed, i, size) -> (uint8 array, label)`` (a pair
    [2, size, size, 3] unless ``item_shape`` says otherwise), in a few processes."""
    if n < 0:
        raise ValueError("n must be >= 0")
    workers = workers or min(4, os.cpu_count() or 1)
    bounds = np.linspace(start, start + n, max(1, min(n, workers * 8)) + 1).round().astype(int)
    jobs = [(seed, int(a), int(b), size, item) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
    if workers <= 1 or n < min_parallel:
        parts = [_chunk(j) for j in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(_chunk, jobs))
    if not parts:
        return np.empty((0, *(item_shape or (2, size, size, 3))), np.uint8), []
    return np.concatenate([p[0] for p in parts]), [label for p in parts for label in p[1]]


def corpus_styles(n: int, seed: int = 0, start: int = 0) -> list[Style]:
    """The styles of coins ``start .. start + n`` of ``make_corpus(..., seed)`` (drawn again, not rendered:
    microseconds per coin): the generator's ground truth beyond the year, e.g. the front's rotation for an
    orientation head, or the relief for a curriculum."""
    return [sample_style(coin_rngs(seed, i)[1]) for i in range(start, start + n)]


def corpus_orientations(n: int, seed: int = 0, start: int = 0) -> np.ndarray:
    """float32 [n]: the fronts' rotation (degrees, counter-clockwise as drawn, ``Style.rotation``)."""
    return np.array([s.rotation for s in corpus_styles(n, seed, start)], np.float32)


def make_corpus(n: int, size: int = 64, seed: int = 0, workers: int | None = None,
                start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Coins ``start .. start + n`` of seed ``seed``: (uint8 [n, 2, size, size, 3], int16 years [n]).
    Coin i is the same whatever n and workers are."""
    pairs, years = _render_many(corpus_item, n, size, seed, workers, start)
    return pairs, np.array(years, dtype=np.int16)


# ------------------------------------------------------------------------------- coins without a year

# Negatives for training: fronts of this generator (its fonts, sizes, placements, reliefs, everything) whose
# year's place holds letters or nothing. Capital letters without I and O (a 1 and a 0 in several of the fonts).
# Measured (bench_reader.py --minutes 25 --no-year 1000): leaving out S, B, Z and G too (twins of 5, 8, 2, 6),
# 3 of 250 held-out letter tokens were read confidently (ZCHA, CBBZ, MADS); with them, none, and the year coins
# read as well (81.4 vs 81.8 % exact on our generator, 77.3 vs 75.3 % on the held-out renderer).
NO_YEAR_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
NO_YEAR_BLANK_SHARE = 0.25  # of the negatives: nothing in the year's place


def no_year_rngs(seed: int, i: int) -> tuple[random.Random, random.Random]:
    """(text RNG, style RNG) of negative i: streams of their own, so the year coins of a seed do not change."""
    return random.Random(f"varied:{seed}:{i}:no-year:text"), random.Random(f"varied:{seed}:{i}:no-year:style")


def sample_no_year_text(rng: random.Random) -> str:
    """What stands in the year's place: '' (a blank) or 2–5 letters of :data:`NO_YEAR_LETTERS`, never a digit."""
    if rng.random() < NO_YEAR_BLANK_SHARE:
        return ""
    return "".join(rng.choice(NO_YEAR_LETTERS) for _ in range(rng.randint(2, 5)))


def no_year_item(seed: int, i: int, size: int, fonts=TRAIN_FONTS) -> tuple[np.ndarray, str]:
    """Negative i of seed ``seed``: (uint8 [2, size, size, 3], the text in the year's place)."""
    text_rng, style_rng = no_year_rngs(seed, i)
    text = sample_no_year_text(text_rng)
    style = sample_style(style_rng, fonts)
    return render_lowres_pair(None, style, style_rng, size, year_text=text), text


def no_year_styles(n: int, seed: int = 0, start: int = 0) -> list[Style]:
    """The styles of negatives ``start .. start + n`` of ``make_no_year(..., seed)`` (drawn again, not rendered)."""
    return [sample_style(no_year_rngs(seed, i)[1]) for i in range(start, start + n)]


def make_no_year(n: int, size: int = 64, seed: int = 0, workers: int | None = None,
                 start: int = 0) -> tuple[np.ndarray, list[str]]:
    """Negatives ``start .. start + n`` of seed ``seed``: (uint8 [n, 2, size, size, 3], the text in each
    front's year place: '' or letters). Deterministic per seed, whatever n and workers are."""
    return _render_many(no_year_item, n, size, seed, workers, start)
