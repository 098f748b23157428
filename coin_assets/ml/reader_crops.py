"""Training crops for the year reader: the lines it cuts itself from generated photos, labelled by where the
generator drew the year.

Strips drawn directly (:mod:`coin_assets.synth.text_strips`) teach the recogniser to read; what it meets in the
product are the lines its text detector finds on a silver image: boxes that take in part of the emblem, bands
cut out of a merged box, windows along the unwrapped rim, the year turned a quarter or upside down. This module
produces those crops and their labels, so the recogniser is trained on what it will be asked to read.

Labelling needs no model:

* **where the year is**: each front is rendered twice from the same random state, once with its year and once
  with nothing in the year's place; the pixels that differ are the year (:func:`year_mask`);
* **which way up it reads**: every placement draws the year left to right in the unrotated face (the side
  placement tilted by ``side_tilt``), and the face is turned by ``style.rotation``, so the year's reading
  direction in the photo is known.

A crop that holds the whole year, not much more, read in the year's direction is labelled with the year; the
same crop turned upside down or a quarter is labelled empty (nothing upright to read). Crops that hold part of
the year are left out, as are crops away from it (the strip corpus covers legends and denominations).
Deterministic per (seed, i); the held-out typefaces are never drawn here.
"""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

from coin_assets.core.text_lines import STRIP_HEIGHT, STRIP_WIDTH, fit_strip
from coin_assets.synth import varied as v

PHOTO_SIZES = ((640, 480), (480, 640), (800, 800), (1024, 768))
MIN_COVER = 0.9  # share of the year's pixels inside a crop that is labelled with the year
MAX_AREA = 6.0  # a labelled crop's area at most this times the year's bounding box
UPRIGHT_COS = 0.75  # a crop reads the year upright when its reading direction is this close to the year's


@dataclass(frozen=True)
class MinedPhoto:
    """One generated front and what its crops were labelled: counts for the detector's recall."""

    placement: str
    year: int
    year_crops: int  # crops labelled with the year (upright)
    crops: int  # crops kept (labelled with the year or empty)


def _front_pair(seed: int, i: int, year_text: str | None) -> tuple[Image.Image, int, v.Style]:
    year_rng, style_rng = v.coin_rngs(seed, i)
    year = v.sample_year(year_rng)
    style = replace(v.sample_style(style_rng), placement=v.PLACEMENTS[i % len(v.PLACEMENTS)])
    size = PHOTO_SIZES[(i // len(v.PLACEMENTS)) % len(PHOTO_SIZES)]
    front, _ = v.render_photo_pair(year, style, style_rng, photo_size=size, year_text=year_text)
    return front.image, year, style


def _silver(img: Image.Image) -> Image.Image:
    """The photo as the product sees it: a JPEG upload cleaned to a silver image (≤ 512 px)."""
    from coin_assets.core.images import clean_image

    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return Image.open(io.BytesIO(clean_image(buf.getvalue()).data)).convert("RGB")


def year_mask(with_year: Image.Image, without_year: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """bool [h, w] at ``size``: where the two renders differ (the year's strokes, slightly blurred)."""
    a = np.asarray(with_year.convert("L").resize(size, Image.Resampling.BILINEAR), np.float32)
    b = np.asarray(without_year.convert("L").resize(size, Image.Resampling.BILINEAR), np.float32)
    diff = np.abs(a - b)
    return diff > max(10.0, 0.25 * float(diff.max()))


def reading_direction(style: v.Style) -> np.ndarray:
    """The year's left-to-right direction in photo px (y down): the face's +x turned by its rotation."""
    theta = math.radians(style.rotation + (style.extra.get("side_tilt", 0.0) if style.placement == "side" else 0.0))
    return np.array([math.cos(theta), -math.sin(theta)])


def _turn_direction(polygon: np.ndarray, turn: int) -> np.ndarray:
    """The reading direction (photo px) of a line's crop turned by ``turn`` degrees counter-clockwise: as cut,
    upside down, or (a tall line) a quarter either way. The polygon's first half is its top edge, left to
    right."""
    top = polygon[: len(polygon) // 2]
    k = len(top) // 2
    along = top[k] - top[k - 1]
    down = polygon[-1] - polygon[0]
    d = {0: along, 180: -along, 90: down, 270: -down}[turn]
    return d / max(1e-9, float(np.linalg.norm(d)))


def _polygon_mask(polygon: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    canvas = Image.new("1", size, 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in polygon], fill=1)
    return np.asarray(canvas, bool)


def mine_photo(reader, seed: int, i: int) -> tuple[list[np.ndarray], list[str], MinedPhoto]:
    """The strips (uint8 [STRIP_HEIGHT, STRIP_WIDTH]) and labels of generated front ``i`` of ``seed``, cut by
    ``reader``'s stages exactly as in the product."""
    with_year, year, style = _front_pair(seed, i, None)
    without_year, _, _ = _front_pair(seed, i, "")
    photo = _silver(with_year)
    mask = year_mask(with_year, without_year, photo.size)
    strips: list[np.ndarray] = []
    labels: list[str] = []
    year_crops = 0
    if mask.sum() < 8:
        return strips, labels, MinedPhoto(style.placement, year, 0, 0)
    ys, xs = np.nonzero(mask)
    year_box_area = float((xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1))
    direction = reading_direction(style)
    view, affine, _ = reader.coin_view(photo)
    for crops, where in reader.stages(view, affine, photo):
        start = 0
        while start < len(crops):  # the crops of one line (its turns) share its region
            region = where[start][0]
            end = start
            while end < len(crops) and where[end][0] is region:
                end += 1
            polygon = np.asarray(region, np.float64)
            inside = _polygon_mask(polygon, photo.size)
            cover = float((inside & mask).sum()) / float(mask.sum())
            if cover >= MIN_COVER and inside.sum() <= MAX_AREA * year_box_area:
                for crop, entry in zip(crops[start:end], where[start:end], strict=True):
                    upright = float(_turn_direction(polygon, entry[3]) @ direction) >= UPRIGHT_COS
                    strips.append(fit_strip(np.asarray(crop.convert("L")), STRIP_HEIGHT, STRIP_WIDTH))
                    labels.append(str(year) if upright else "")
                    year_crops += upright
            start = end
    return strips, labels, MinedPhoto(style.placement, year, year_crops, len(strips))


def _mine_chunk(args: tuple[int, int, int]) -> tuple[np.ndarray, list[str], list[MinedPhoto]]:
    from coin_assets.ml.text_recognizer import TextRecognizer
    from coin_assets.ml.year_reading import TextDetector, YearReader

    seed, start, stop = args
    # the stages only need the detector; the recogniser is never called
    reader = YearReader(TextRecognizer(), detector=TextDetector(threads=1))
    strips, labels, photos = [], [], []
    for i in range(start, stop):
        s, lab, photo = mine_photo(reader, seed, i)
        strips += s
        labels += lab
        photos.append(photo)
    array = np.stack(strips) if strips else np.empty((0, STRIP_HEIGHT, STRIP_WIDTH), np.uint8)
    return array, labels, photos


def _in_chunks(mine_chunk, seed: int, start: int, n: int, chunks: int, workers: int) -> list:
    """``mine_chunk((seed, a, b))`` over photos ``start .. start + n`` cut into ``chunks`` runs, in order, on
    ``workers`` processes."""
    from concurrent.futures import ProcessPoolExecutor

    bounds = np.linspace(start, start + n, max(1, min(n, chunks)) + 1).round().astype(int)
    jobs = [(seed, int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
    if workers <= 1:
        return [mine_chunk(j) for j in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(mine_chunk, jobs))


def mine_crops(n: int, seed: int, workers: int = 2, start: int = 0) -> tuple[np.ndarray, list[str], list[MinedPhoto]]:
    """Crops of generated fronts ``start .. start + n`` of ``seed``: (uint8 [N, H, W], labels, per photo)."""
    parts = _in_chunks(_mine_chunk, seed, start, n, chunks=workers * 8, workers=workers)
    strips = np.concatenate([p[0] for p in parts]) if parts else np.empty((0, STRIP_HEIGHT, STRIP_WIDTH), np.uint8)
    return strips, [lab for p in parts for lab in p[1]], [ph for p in parts for ph in p[2]]


# ------------------------------------------------------------------ lines for PP-OCR's recogniser (48 px tall)

LINE_PHOTO_SIZES = ((640, 480), (480, 640), (1024, 768), (1600, 1200))  # struck coins; drawn ones: PHOTO_SIZES
# small photos (a coin 150-300 px across, its year 8-20 px tall): the face view enlarges them, and digits read from
# so few pixels are what the recogniser misreads with confidence unless it has seen them
SMALL_LINE_PHOTO_SIZES = ((256, 256), (320, 240), (240, 320), (400, 300), (300, 400))
LINE_MAX_WIDTH = 400
LINE_STAGES = 3  # the face, its local contrast and the rim, the face turned: most of the lines the product reads


def _line_pair(seed: int, i: int, small: bool = False) -> tuple[str, str, int, Image.Image, Image.Image, float]:
    """(generator, placement, year, front with the year, the same front without it, the face's rotation) of
    line photo ``i``: two struck coins for one drawn one, every placement in turn; ``small``: at
    :data:`SMALL_LINE_PHOTO_SIZES`."""
    import copy
    import random

    from coin_assets.synth import struck as s

    size_rng = random.Random(f"size:{seed}:{i}")
    if i % 3:
        size = size_rng.choice(SMALL_LINE_PHOTO_SIZES if small else LINE_PHOTO_SIZES)
        placement = s.STRUCK_PLACEMENTS[(i // 3) % len(s.STRUCK_PLACEMENTS)]
        year_rng, look_rng = s.struck_rngs(seed, i)
        year = s.sample_struck_year(year_rng)
        with_year, _, style = s.render_struck_photo_pair(year, copy.deepcopy(look_rng), placement=placement, photo_size=size)
        without_year, _, _ = s.render_struck_photo_pair(None, look_rng, placement=placement, photo_size=size, year_text="")
        return "struck", placement, year, with_year.image, without_year.image, style.rotation
    placement = v.PLACEMENTS[(i // 3) % len(v.PLACEMENTS)]
    year_rng, style_rng = v.coin_rngs(seed, i)
    year = v.sample_year(year_rng)
    style = replace(v.sample_style(style_rng), placement=placement)
    size = size_rng.choice(SMALL_LINE_PHOTO_SIZES if small else PHOTO_SIZES)
    with_year, _ = v.render_photo_pair(year, style, copy.deepcopy(style_rng), photo_size=size)
    without_year, _ = v.render_photo_pair(year, style, style_rng, photo_size=size, year_text="")
    return "varied", placement, year, with_year.image, without_year.image, style.rotation


def _year_direction(mask: np.ndarray, rotation: float) -> np.ndarray:
    """The year's reading direction in photo px: its pixels' long axis (the side placement's slant, the chord of
    a rim arc), pointing the way the face's rotation turns left-to-right."""
    ys, xs = np.nonzero(mask)
    points = np.stack([xs, ys], 1).astype(np.float64)
    axis = np.linalg.svd(points - points.mean(0), full_matrices=False)[2][0]
    theta = math.radians(rotation)
    return axis if axis @ np.array([math.cos(theta), -math.sin(theta)]) >= 0 else -axis


def mine_line_photo(reader, seed: int, i: int, small: bool = False) -> tuple[list[tuple[np.ndarray, str]], tuple[str, str, int]]:
    """The lines PP-OCR's recogniser reads in the first :data:`LINE_STAGES` stages of photo ``i``, as uploaded
    (JPEG, cleaned as the product reads it), each grey, 48 px tall, with a tag: the year (the whole year inside,
    upright), ``~`` + the year (turned over or a quarter), ``?`` (no year inside; the teacher reads it). Lines
    holding part of the year are left out. Also (generator, placement, year lines)."""
    from coin_assets.ml.pyfunc import front_image

    kind, placement, year, with_year, without_year, rotation = _line_pair(seed, i, small)
    buf = io.BytesIO()
    with_year.convert("RGB").save(buf, "JPEG", quality=90)
    photo = front_image(buf.getvalue())
    mask = year_mask(with_year, without_year, photo.size)
    lines: list[tuple[np.ndarray, str]] = []
    if mask.sum() < 8:
        return lines, (kind, placement, 0)
    ys, xs = np.nonzero(mask)
    year_box_area = float((np.ptp(xs) + 1) * (np.ptp(ys) + 1))
    direction = _year_direction(mask, rotation)
    view, affine, _ = reader.coin_view(photo)
    upright_lines = 0
    for stage, (crops, where) in enumerate(reader.stages(view, affine, photo)):
        if stage >= LINE_STAGES:
            break
        regions: dict[int, tuple[float, float]] = {}
        for crop, entry in zip(crops, where, strict=True):
            if len(entry) > 2 and not entry[2]:
                continue  # PP-OCR reads whole lines only
            polygon = np.asarray(entry[0], np.float64)
            if id(entry[0]) not in regions:
                inside = _polygon_mask(polygon, photo.size)
                regions[id(entry[0])] = (float((inside & mask).sum()) / float(mask.sum()), float(inside.sum()))
            cover, area = regions[id(entry[0])]
            if cover >= MIN_COVER and area <= MAX_AREA * year_box_area:
                upright = float(_turn_direction(polygon, entry[3]) @ direction) >= UPRIGHT_COS
                tag = str(year) if upright else f"~{year}"
                upright_lines += upright
            elif cover < 0.05:
                tag = "?"
            else:
                continue
            grey = crop.convert("L")
            width = max(8, min(LINE_MAX_WIDTH, math.ceil(48 * grey.width / max(1, grey.height))))
            lines.append((np.asarray(grey.resize((width, 48), Image.Resampling.BILINEAR), np.uint8), tag))
    return lines, (kind, placement, upright_lines)


def _mine_line_chunk(args: tuple[int, int, int], small: bool = False) -> tuple[list[tuple[np.ndarray, str]], list[tuple[str, str, int]]]:
    from coin_assets.ml.text_recognizer import TextRecognizer
    from coin_assets.ml.year_reading import TextDetector, YearReader

    seed, start, stop = args
    reader = YearReader(TextRecognizer(), detector=TextDetector(threads=1))  # the stages only detect
    lines, photos = [], []
    for i in range(start, stop):
        found, photo = mine_line_photo(reader, seed, i, small)
        lines += found
        photos.append(photo)
    return lines, photos


def mine_line_crops(n: int, seed: int, workers: int = 2, small: bool = False) -> tuple[list[tuple[np.ndarray, str]], list[tuple[str, str, int]]]:
    """The tagged lines of generated photos ``0 .. n`` of ``seed`` (:func:`mine_line_photo`; ``small``: small
    photos), in photo order."""
    parts = _in_chunks(functools.partial(_mine_line_chunk, small=small), seed, 0, n, chunks=workers * 20,
                       workers=workers)
    return [line for p in parts for line in p[0]], [photo for p in parts for photo in p[1]]


def save_crops(path, strips: np.ndarray, labels: list[str], photos: list[MinedPhoto]) -> None:
    np.savez_compressed(path, strips=strips, labels=np.array(labels, dtype=object),
                        placements=np.array([p.placement for p in photos]),
                        year_crops=np.array([p.year_crops for p in photos]))


def load_crops(path) -> tuple[np.ndarray, list[str]]:
    data = np.load(path, allow_pickle=True)
    return data["strips"], [str(s) for s in data["labels"]]


def main(argv: list[str] | None = None) -> None:
    import argparse
    import json
    import time

    parser = argparse.ArgumentParser(description="Cut and label the year reader's crops of generated photos.")
    parser.add_argument("--photos", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", required=True, help=".npz file")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    strips, labels, photos = mine_crops(args.photos, args.seed, workers=args.workers)
    save_crops(args.out, strips, labels, photos)
    found = {p: float(np.mean([m.year_crops > 0 for m in photos if m.placement == p])) for p in v.PLACEMENTS}
    print(json.dumps({"photos": len(photos), "crops": len(labels), "year_crops": sum(1 for lab in labels if lab),
                      "year_cut_out_share": found, "seconds": round(time.perf_counter() - started)}))


if __name__ == "__main__":
    main()
