"""Find the coin in a photo (a circle Hough transform on the edge directions) and cut a coin-centred crop.

The model's input is a square crop centred on the found coin at a fixed scale: the coin's radius is
``CROP_RADIUS_FRACTION`` of the crop side, whatever the photo's size or where the coin lies in it. The
training generator (:mod:`coin_assets.synth.varied`) draws its low-resolution coins at the same scale.

Finding: the photo is reduced to ``work_side`` px, every strong edge pixel votes for the centres at each
plausible radius along its gradient direction (both signs: a coin may be darker or lighter than the
table), votes are normalised by the circle's length, and the winner is checked: a real coin has an edge on
most of its circumference. A photo without such a circle gives a :class:`CoinFinding` with ``circle=None``
and the reason, never a made-up crop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

CROP_RADIUS_FRACTION = 0.45
WORK_SIDE = 256
MIN_RADIUS_FRACTION = 0.15  # of the short side
MAX_RADIUS_FRACTION = 0.52
MIN_SUPPORT = 0.3
MIN_SUPPORT_CONTRAST = 0.05  # support x ring contrast: measured <= 0.04 for circles in bare wood grain, >= 0.06 for coins
EDGE_PERCENTILE = 85.0
CANDIDATES = 12
MAX_GAP = 0.3  # longest arc of the circle without an edge
BLUR = 2.0  # px at the working size: smooths cloth weave and wood grain, keeps the coin outline


@dataclass(frozen=True)
class CoinCircle:
    cx: float  # px in the photo
    cy: float
    radius: float
    support: float  # share of the circumference on an edge, 0..1


@dataclass(frozen=True)
class CoinFinding:
    circle: CoinCircle | None
    reason: str | None = None  # why no coin was found

    @property
    def found(self) -> bool:
        return self.circle is not None


def _edges(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sobel gradients (gx, gy, magnitude) of a float image."""
    p = np.pad(grey, 1, mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    return gx, gy, np.hypot(gx, gy)


def _support(mag_ok: np.ndarray, gx: np.ndarray, gy: np.ndarray, cx: float, cy: float, r: float) -> tuple[float, float]:
    """(share of 90 points of the circle that sit on, or next to, a strong edge whose gradient is radial;
    the longest arc without such an edge, as a share of the circle)."""
    h, w = mag_ok.shape
    angles = np.linspace(0, 2 * np.pi, 90, endpoint=False)
    hits = np.zeros(len(angles), dtype=bool)
    for dr in (-1.0, 0.0, 1.0):
        xs = np.rint(cx + (r + dr) * np.cos(angles)).astype(int)
        ys = np.rint(cy + (r + dr) * np.sin(angles)).astype(int)
        inside = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
        xs, ys = np.clip(xs, 0, w - 1), np.clip(ys, 0, h - 1)
        g = np.hypot(gx[ys, xs], gy[ys, xs]) + 1e-9
        radial = np.abs(gx[ys, xs] * np.cos(angles) + gy[ys, xs] * np.sin(angles)) / g
        hits |= inside & mag_ok[ys, xs] & (radial > 0.6)
    return float(hits.mean()), _longest_gap(hits)


def _longest_gap(hits: np.ndarray) -> float:
    """The longest run of misses around the circle, as a share of it (the run may wrap around)."""
    if hits.all():
        return 0.0
    if not hits.any():
        return 1.0
    rolled = np.roll(hits, -int(np.argmax(hits)))  # start on a hit, so no run wraps
    longest = run = 0
    for h in rolled:
        run = 0 if h else run + 1
        longest = max(longest, run)
    return longest / len(hits)


def _edge_pixels(mag_ok: np.ndarray, gx: np.ndarray, gy: np.ndarray):
    """(xs, ys, gx, gy, |g|) of the strong edge pixels, as float64 arrays, computed once per photo."""
    ys, xs = np.nonzero(mag_ok)
    ex, ey = gx[ys, xs].astype(np.float64), gy[ys, xs].astype(np.float64)
    return xs.astype(np.float64), ys.astype(np.float64), ex, ey, np.hypot(ex, ey) + 1e-9


def _refine(edge_pixels, cx: float, cy: float, r: float):
    """Least-squares circle (Kasa fit) through the radial edge pixels near the voted circle, in a
    narrowing band: the vote is only as fine as the accumulator's pixels."""
    xs, ys, ex, ey, g = edge_pixels
    for band in (0.08, 0.05, 0.03):
        dx, dy = xs - cx, ys - cy
        d = np.hypot(dx, dy) + 1e-9
        radial = np.abs(ex * dx + ey * dy) / (g * d)
        sel = (np.abs(d - r) < band * r) & (radial > 0.7)
        if sel.sum() < 20:
            break
        x, y = xs[sel], ys[sel]
        a = np.stack([x, y, np.ones_like(x)], axis=1)
        sol, *_ = np.linalg.lstsq(a, x * x + y * y, rcond=None)
        ncx, ncy = sol[0] / 2, sol[1] / 2
        nr2 = sol[2] + ncx * ncx + ncy * ncy
        if nr2 <= 0 or abs(math.sqrt(nr2) - r) > 0.15 * r:
            break
        cx, cy, r = float(ncx), float(ncy), float(math.sqrt(nr2))
    return cx, cy, r


def _ring_contrast(rgb: np.ndarray, cx: float, cy: float, r: float) -> float:
    """How much the band just inside the circle differs from the band just outside (colour means over the
    pooled spread): a coin is a disc of metal on a table, a circle drawn on wood grain is wood on both sides."""
    h, w = rgb.shape[:2]
    x0, x1 = max(0, int(cx - 1.3 * r) - 1), min(w, int(cx + 1.3 * r) + 2)  # only the ring's bounding box
    y0, y1 = max(0, int(cy - 1.3 * r) - 1), min(h, int(cy + 1.3 * r) + 2)
    box = rgb[y0:y1, x0:x1]
    yy, xx = np.ogrid[y0:y1, x0:x1]
    d = np.hypot(xx + 0.5 - cx, yy + 0.5 - cy) / max(r, 1.0)
    inner, outer = box[(d > 0.7) & (d < 0.92)], box[(d > 1.08) & (d < 1.3)]
    if len(inner) < 8 or len(outer) < 8:
        return 0.0
    spread = float(np.sqrt((inner.var(0) + outer.var(0)).mean() / 2)) + 0.02
    return float(np.abs(inner.mean(0) - outer.mean(0)).max() / spread)


def find_coin(img: Image.Image, work_side: int = WORK_SIDE, min_support: float = MIN_SUPPORT) -> CoinFinding:
    """The most circle-like round edge in the photo, in photo pixels, or the reason there is none."""
    w, h = img.size
    if min(w, h) < 16:
        return CoinFinding(None, f"image too small ({w}x{h})")
    scale = work_side / max(w, h)
    small = img.convert("L")
    if scale < 1:
        small.draft("L", (max(1, math.ceil(w * scale)), max(1, math.ceil(h * scale))))
        small = small.resize((max(8, round(w * scale)), max(8, round(h * scale))), Image.Resampling.BILINEAR)
    else:
        scale = 1.0
    sw, sh = small.size
    scale = sw / w
    grey = np.asarray(small.filter(ImageFilter.GaussianBlur(BLUR)), dtype=np.float32) / 255.0
    gx, gy, mag = _edges(grey)
    if float(mag.max()) < 0.15:
        return CoinFinding(None, "no edges: the image is blank or uniform")
    threshold = max(float(np.percentile(mag, EDGE_PERCENTILE)), 0.08 * float(mag.max()), 0.1)
    mag_ok = mag > threshold
    ys, xs = np.nonzero(mag_ok)
    if len(xs) > 6000:  # enough votes; keep the strongest edges
        keep = np.argsort(mag[ys, xs])[-6000:]
        ys, xs = ys[keep], xs[keep]
    ux, uy = gx[ys, xs] / mag[ys, xs], gy[ys, xs] / mag[ys, xs]  # float32, like the votes below
    xs_f, ys_f = xs.astype(np.float32), ys.astype(np.float32)
    short = min(sw, sh)
    radii = np.arange(max(4, int(MIN_RADIUS_FRACTION * short)), int(MAX_RADIUS_FRACTION * short) + 1)
    if len(radii) == 0:
        return CoinFinding(None, f"image too small ({w}x{h})")
    # votes go into a zero-bordered [radius, y, x] accumulator (the border takes the 3x3 box sum below)
    radii_f = radii.astype(np.float32)
    plane_h, plane_w = sh + 2, sw + 2
    plane = plane_h * plane_w
    flats = []
    for sign in (-1.0, 1.0):
        cx = np.rint(xs_f[None, :] + sign * radii_f[:, None] * ux[None, :]).astype(np.int32)
        cy = np.rint(ys_f[None, :] + sign * radii_f[:, None] * uy[None, :]).astype(np.int32)
        ok = (cx >= 0) & (cx < sw) & (cy >= 0) & (cy < sh)
        ridx = np.broadcast_to(np.arange(len(radii), dtype=np.int64)[:, None], cx.shape)
        flats.append(ridx[ok] * plane + (cy[ok] + 1).astype(np.int64) * plane_w + cx[ok] + 1)
    acc_p = np.bincount(np.concatenate(flats), minlength=len(radii) * plane).astype(np.float32)
    acc_p = acc_p.reshape(len(radii), plane_h, plane_w)
    # a 3x3 box sum per radius (separable): votes of a slightly squashed or noisy circle spread over neighbours
    rows = acc_p[:, :, :-2] + acc_p[:, :, 1:-1] + acc_p[:, :, 2:]
    acc = rows[:, :-2, :] + rows[:, 1:-1, :] + rows[:, 2:, :]
    acc /= (2 * np.pi * radii)[:, None, None].astype(np.float32)
    per_radius = acc.reshape(len(radii), -1)
    best_flat = per_radius.argmax(axis=1)
    best_val = per_radius[np.arange(len(radii)), best_flat]
    # the strongest few radii are checked: a coin is a circle with an edge all round AND metal inside that
    # differs from the table outside (an engraved inner rim or a ring in wood grain has one, not both)
    rgb = np.asarray(small.convert("RGB"), dtype=np.float32) / 255.0
    checked = []
    picked: list[int] = []
    for k in np.argsort(best_val)[::-1]:  # the best radii, at least 3 px apart
        if all(abs(int(k) - j) >= 3 for j in picked):
            picked.append(int(k))
        if len(picked) == CANDIDATES:
            break
    edge_pixels = _edge_pixels(mag_ok, gx, gy)
    for k in picked:
        ky, kx = divmod(int(best_flat[k]), sw)
        cx_k, cy_k, r_k = _refine(edge_pixels, float(kx), float(ky), float(radii[k]))
        if min(cx_k, cy_k, sw - cx_k, sh - cy_k) < 0.7 * r_k or r_k < 0.9 * radii[0]:  # a coin lies (nearly) all in the frame
            continue
        sup, gap = _support(mag_ok, gx, gy, cx_k, cy_k, r_k)
        if gap > MAX_GAP:  # the edge must go round: corners and arcs of other shapes leave long gaps
            continue
        checked.append((sup * sup * _ring_contrast(rgb, cx_k, cy_k, r_k), sup, cx_k, cy_k, r_k))
    if not checked:
        return CoinFinding(None, "no round coin: no circle with an edge all round lies within the photo")
    top = max(checked)
    # a coin holds smaller circles (a disc in its design, the inner rim, a highlight): the coin is the
    # largest good circle that contains the best one
    around = [c for c in checked if c[0] >= 0.4 * top[0] and c[4] >= top[4]
              and math.hypot(c[2] - top[2], c[3] - top[3]) + top[4] <= 1.05 * c[4]]
    score, support, cx_s, cy_s, r_s = max(around, key=lambda c: c[4])
    contrast = score / max(support * support, 1e-9)
    if support < min_support or support * contrast < MIN_SUPPORT_CONTRAST:
        return CoinFinding(None, f"no round coin: best circle has {support:.0%} of its edge and inside/outside "
                                 f"contrast {contrast:.2f} (needs >= {min_support:.0%} and a product >= {MIN_SUPPORT_CONTRAST})")
    return CoinFinding(CoinCircle(cx=(cx_s + 0.5) / scale, cy=(cy_s + 0.5) / scale, radius=r_s / scale,
                                  support=support))


def crop_coin(img: Image.Image, circle: CoinCircle, size: int,
              radius_fraction: float = CROP_RADIUS_FRACTION) -> Image.Image:
    """An RGB ``size``×``size`` crop centred on the coin with its radius at ``radius_fraction`` of the side;
    parts outside the photo are filled with the photo's mean colour."""
    half = circle.radius / radius_fraction / 2
    box = (circle.cx - half, circle.cy - half, circle.cx + half, circle.cy + half)
    rgb = img.convert("RGB")
    factor = int(2 * half / size / 2)
    if factor >= 2:  # shrink first: a 4000 px photo is not resampled at full size for a 128 px crop
        rgb = rgb.reduce(factor)
        box = tuple(b / factor for b in box)
    fill = tuple(int(v) for v in np.asarray(rgb.resize((8, 8)), dtype=np.float32).reshape(-1, 3).mean(0))
    return rgb.transform((size, size), Image.Transform.EXTENT, box, Image.Resampling.BILINEAR, fillcolor=fill)


def coin_centred(img: Image.Image, size: int) -> tuple[Image.Image | None, CoinFinding]:
    """(the coin-centred ``size`` px crop or None, the finding): the one entry point that the gold crops,
    the pyfunc and the serving path share."""
    finding = find_coin(img)
    if not finding.found:
        return None, finding
    return crop_coin(img, finding.circle, size), finding
