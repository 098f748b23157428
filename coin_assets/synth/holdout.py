"""A second renderer, never used for training: the generalisation check.

It differs from :mod:`coin_assets.synth.varied` where a shortcut could hide: typefaces the training
generator never uses (STIX, Computer Modern roman and typewriter), deeper relief with a second, coloured
light and a strong gamma, digits bigger and set lower, a velvet or checked tablecloth, and a warm or cold
colour cast over the whole picture. It shares the low-level face drawing (the coin geometry) with the
training generator; the styles it samples are disjoint in font and background.

Also here: coins that carry no legible year (:func:`render_no_year_pair`: blank or worn-smooth planchets,
tokens with letters only, "ancient" coins with a head and no digits), which must all be flagged.
"""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
from PIL import Image

from coin_assets.synth import varied as v

HOLDOUT_BACKGROUNDS = ("velvet", "checked")
NO_YEAR_KINDS = ("blank", "worn", "token", "ancient")


def sample_holdout_style(rng: random.Random) -> v.Style:
    base = v.sample_style(rng, fonts=v.HOLDOUT_FONTS)
    return replace(
        base, digit_height=rng.uniform(0.17, 0.24), digit_offset=rng.uniform(0.35, 0.5),
        relief=rng.choice(("raised", "incuse", "raised", "printed_dark")), wear=rng.uniform(0.0, 0.4),
        specular=rng.uniform(0.3, 0.7), background="plain",
        extra={**base.extra, "holdout_bg": rng.choice(HOLDOUT_BACKGROUNDS), "cast": rng.choice(("warm", "cold")),
               "gamma": rng.uniform(0.7, 1.4)},
    )


def _holdout_look(img: np.ndarray, style: v.Style, nrng: np.random.Generator) -> np.ndarray:
    """Second light and colour cast over the picture, and the tablecloth where the picture is background."""
    cast = np.array((1.08, 1.0, 0.88) if style.extra["cast"] == "warm" else (0.9, 1.0, 1.1), dtype=np.float32)
    x = np.clip(img, 0, 1) ** style.extra["gamma"] * cast
    return np.clip(x, 0, 1)


def _tablecloth(n: int, style: v.Style, nrng: np.random.Generator) -> np.ndarray:
    base = np.array(style.bg_colour, dtype=np.float32)
    if style.extra["holdout_bg"] == "velvet":
        tex = 0.35 + 0.1 * nrng.random((n, n)).astype(np.float32)
    else:
        k = max(2, n // 10)
        yy, xx = np.mgrid[0:n, 0:n]
        tex = np.where(((xx // k) + (yy // k)) % 2 == 0, 1.0, 0.55).astype(np.float32)
    return np.clip(base * tex[..., None], 0, 1)


def render_holdout_side(year: int | None, side: str, size: int, style: v.Style, rng: random.Random) -> np.ndarray:
    n2 = 2 * size
    d = max(8, round(2 * v.CROP_RADIUS_FRACTION * n2 * style.scale_jitter))
    face, alpha = v.render_face(year, side, d, style, rng)
    nrng = np.random.default_rng(rng.getrandbits(64))
    img = v._compose(face, alpha, _tablecloth(n2, style, nrng), round(n2 / 2 - d / 2), round(n2 / 2 - d / 2), style)
    img = _holdout_look(img, style, nrng)
    small = Image.fromarray((img * 255 + 0.5).astype(np.uint8), "RGB").resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(v._camera(np.asarray(small, dtype=np.float32) / 255.0, style, nrng, style.blur))


def render_holdout_pair(year: int, rng: random.Random, size: int = 64) -> np.ndarray:
    style = sample_holdout_style(rng)
    front = render_holdout_side(year, "front", size, style, rng)
    back = render_holdout_side(None, "back", size, replace(style, rotation=rng.uniform(0, 360), relief="raised"), rng)
    return np.stack([front, back])


def holdout_set(n: int, size: int = 64, seed: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [n, 2, size, size, 3], int16 years [n]) from the held-out renderer."""
    pairs = np.empty((n, 2, size, size, 3), np.uint8)
    years = np.empty(n, np.int16)
    for i in range(n):
        rng = random.Random(f"holdout:{seed}:{i}")
        years[i] = v.sample_year(random.Random(f"holdout:{seed}:{i}:year"))
        pairs[i] = render_holdout_pair(int(years[i]), rng, size)
    return pairs, years


def render_no_year_pair(kind: str, rng: random.Random, size: int = 64) -> np.ndarray:
    """A coin without a legible year: ``blank`` (no design), ``worn`` (a year worn smooth),
    ``token`` (letters where a year would be), ``ancient`` (holdout look, no digits)."""
    if kind not in NO_YEAR_KINDS:
        raise ValueError(f"unknown kind {kind!r}: expected one of {NO_YEAR_KINDS}")
    style = sample_holdout_style(rng) if kind == "ancient" else v.sample_style(rng)
    if kind == "blank":
        style = replace(style, emblem="none", legend="  ", relief="raised")
        front = v.render_lowres_side(None, "back", size, replace(style, denomination=" "), rng)
    elif kind == "worn":
        style = replace(style, wear=1.0, relief=rng.choice(("raised", "incuse")), specular=0.0,
                        extra={**style.extra, "wear_scale": 9.0})
        front = v.render_lowres_side(v.sample_year(rng), "front", size, style, rng)
    elif kind == "token":
        token = "".join(rng.choice("ABCDEFGHKMNPRSTXZ") for _ in range(4))
        front = v.render_lowres_side(None, "back", size, replace(style, denomination=token), rng)
    else:
        front = render_holdout_side(None, "back", size, replace(style, denomination=" ", emblem="disc"), rng)
    back = v.render_lowres_side(None, "back", size, replace(style, rotation=rng.uniform(0, 360)), rng)
    return np.stack([front, back])


def no_year_set(n: int, size: int = 64, seed: int = 2000) -> np.ndarray:
    return np.stack([render_no_year_pair(NO_YEAR_KINDS[i % len(NO_YEAR_KINDS)], random.Random(f"noyear:{seed}:{i}"),
                                         size) for i in range(n)]) if n else np.empty((0, 2, size, size, 3), np.uint8)


# ------------------------------------------------------------------------------------- full-size photos


def render_holdout_photo_side(year: int | None, side: str, style: v.Style, rng: random.Random,
                              photo_size: tuple[int, int] = (640, 480)) -> v.PhotoSide:
    """A full-size photo in the held-out look: the coin (35..75 % of the short side) anywhere on the
    velvet or checked tablecloth, the second light, the colour cast."""
    w, h = photo_size
    d = max(16, round(rng.uniform(0.35, 0.75) * min(w, h)))
    face, alpha = v.render_face(year, side, d, style, rng)
    nrng = np.random.default_rng(rng.getrandbits(64))
    cloth = _tablecloth(max(w, h), style, nrng)[:h, :w]
    x0, y0 = rng.randint(0, max(0, w - d)), rng.randint(0, max(0, h - d))
    img = _holdout_look(v._compose(face, alpha, cloth, x0, y0, style), style, nrng)
    return v.PhotoSide(v._camera(img, style, nrng, style.blur * w / 128), (x0 + d / 2, y0 + d / 2), d / 2 - 1)


def render_holdout_photo_pair(year: int, rng: random.Random, placement: str | None = None,
                              photo_size: tuple[int, int] = (640, 480)) -> tuple[v.PhotoSide, v.PhotoSide, v.Style]:
    """(front, back, style) photos of one held-out coin; ``placement`` fixes where the year is."""
    style = sample_holdout_style(rng)
    if placement:
        style = replace(style, placement=placement)
    front = render_holdout_photo_side(year, "front", style, rng, photo_size)
    back = render_holdout_photo_side(None, "back", replace(style, rotation=rng.uniform(0, 360), relief="raised"),
                                     rng, photo_size)
    return front, back, style
