"""Find the coin in a photo (a circle Hough transform on the edge directions) and cut a coin-centred crop.

The model's input is a square crop centred on the found coin at a fixed scale: the coin's radius is
``CROP_RADIUS_FRACTION`` of the crop side, whatever the photo's size or where the coin lies in it. The
training generator (:mod:`coin_assets.synth.varied`) draws its low-resolution coins at the same scale.

Finding: the photo is reduced to ``work_side`` px, every strong edge pixel votes for the centres at each
plausible radius along its gradient direction (both signs: a coin may be darker or lighter than the
table), votes are normalised by the circle's length, and the winner is checked: a real coin has an edge on
most of its circumference. A photo without such a circle gives a :class:`CoinFinding` with ``circle=None``
and the reason, never a made-up crop.

Photographs as people take them (docs/coin_finding.md): a coin that fills the frame; a coin cut by the frame
(the centre may lie on the edge, the support counts only the part of the circle inside the photo); a small
coin in a large photo (a second pass at twice the working size, only when the first finds nothing); busy
backgrounds (a circle that texture makes up touches edges in many short arcs); a tilted coin (an ellipse);
several coins (:func:`find_coins`: both faces of a coin scanned side by side); a circle made of straight
edges (a banknote's border, a finger's sides) is no coin: a point of the circle on an edge that runs on straight
beyond it, where a coin's outline has curved away, does not count as the circle's edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

CROP_RADIUS_FRACTION = 0.45
WORK_SIDE = 256
MIN_RADIUS_FRACTION = 0.05  # of the short side: the smallest coin looked for (a second pass at twice the size)
MIN_RADIUS_FRACTION_LARGE = 0.15  # the first pass, at the working size, looks for coins from here up
SMALL_MAX_FRACTION = 0.16  # the second pass looks for coins up to here
SMALL_MIN_SUPPORT = 0.5  # ... with more of its outline, and metal that differs clearly from the table: measured
SMALL_MIN_CONTRAST = 1.6  # >= 2.1 for small coins, 1.3 for a ring in the design of a large coin the first pass missed
MAX_RADIUS_FRACTION = 0.52
MAX_EDGES = 6000  # votes at the working size (the strongest edges)
MIN_SUPPORT = 0.3
MIN_SUPPORT_CONTRAST = 0.05  # support x ring contrast: measured <= 0.04 for circles in bare wood grain, >= 0.06 for coins
EDGE_PERCENTILE = 85.0
CANDIDATES = 12
MAX_GAP = 0.3  # longest arc of the circle without an edge
BLUR = 2.0  # px at the working size: smooths cloth weave and wood grain, keeps the coin outline
SUPPORT_POINTS = 90
RADIAL = 0.8  # |cos| between an edge's gradient and the circle's radius for the edge to be on the circle (0.6 before
# 2026-12-06: a finger's straight side that crosses a fingertip circle counted)
TILT_BAND = 0.025  # of the radius: how far the outline may stray from the circle (a coin tilted 20 deg: 3 %)
EDGE_MARGIN = 2  # px at the working size: circle points this near the frame are outside it
MIN_VISIBLE = 0.55  # share of the circle inside the photo (a disc 25 % outside still has 63 % of its edge in)
WHOLE_VISIBLE = 0.97  # ... where only a coin wholly in the photo is looked for
CUT_MIN_RADIUS = 0.25  # of the short side: a circle cut by the frame is a close-up coin, at least this large
# (a block in a corner, a banknote's corner or a finger against the frame make smaller round-looking arcs)
CENTRE_OUTSIDE = 0.1  # of the largest radius: how far outside the photo a centre may lie
OVERLAP = 0.9  # two coins' centres are at least this times the sum of their radii apart
NEXT_COIN_SCORE = 0.3  # a further coin scores at least this share of the best one
MIN_COHERENCE = 0.2  # support x ring contrast / sqrt(arcs): <= 0.13 measured for circles in checked cloth,
# wood grain, printed text and bare tables, >= 0.27 for coins on all but checked cloth (docs/coin_finding.md)
STRAIGHT_NEAR = 3  # points either side of a hit (of SUPPORT_POINTS) whose edge pixels may share its line
STRAIGHT_FROM, STRAIGHT_TO = 0.35, 0.6  # radii from a hit along its line where a straight edge is looked for
STRAIGHT_BAND = 1  # px either side of the line (through the hit's edge crest) that a straight edge keeps to
STRAIGHT_ALIGN = 0.95  # |cos| between an edge's gradient and the line's normal for the edge to be on the line
STRAIGHT_COVER = 0.75  # share of the pixels along one side on the line: the hit is a straight edge's
STRAIGHT_REACH = (3, 6)  # px at the working size either way along an edge pixel where a straight edge goes on ...
STRAIGHT_TOLERANCE = 4.0  # ... with its orientation within this many degrees
_DEBUG: list | None = None  # set to a list to collect the checked circles' measures

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


def _support(mag_ok: np.ndarray, gx: np.ndarray, gy: np.ndarray, cx: float, cy: float,
             r: float) -> tuple[float, float, float, int, int]:
    """(support: share of the circle's points inside the photo that sit on, or within a band of, a strong edge
    whose gradient is radial; the longest arc without such an edge as a share of the circle, the part outside
    the photo not counting as a gap; the share of the circle inside the photo;
    the number of separate arcs the edge makes: a coin's outline goes round in a few, the circles that texture
    makes up (cloth checks, wood grain, lines of print) touch its edges in many short pieces; the number of the
    circle's points left out as on a straight edge that only touches it, see :func:`_straight_arcs`)."""
    h, w = mag_ok.shape
    angles = np.linspace(0, 2 * np.pi, SUPPORT_POINTS, endpoint=False)
    ca, sa = np.cos(angles), np.sin(angles)
    x0, y0 = cx + r * ca, cy + r * sa
    inside = (x0 >= EDGE_MARGIN) & (x0 <= w - 1 - EDGE_MARGIN) & (y0 >= EDGE_MARGIN) & (y0 <= h - 1 - EDGE_MARGIN)
    visible = float(inside.mean())
    if visible == 0:
        return 0.0, 1.0, 0.0, 1, 0
    hits = np.zeros(len(angles), dtype=bool)
    hx, hy = np.zeros(len(angles)), np.zeros(len(angles))  # where each hit lies (its nearest band pixel) ...
    hgx, hgy = np.zeros(len(angles)), np.zeros(len(angles))  # ... and its gradient
    band = max(1, round(TILT_BAND * r))  # a tilted coin is an ellipse: its outline strays from the circle
    for dr in sorted(range(-band, band + 1), key=abs):
        xs = np.rint(cx + (r + dr) * ca).astype(int)
        ys = np.rint(cy + (r + dr) * sa).astype(int)
        ok = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
        xs, ys = np.clip(xs, 0, w - 1), np.clip(ys, 0, h - 1)
        ex, ey = gx[ys, xs], gy[ys, xs]
        radial = np.abs(ex * ca + ey * sa) / (np.hypot(ex, ey) + 1e-9)
        new = ok & mag_ok[ys, xs] & (radial > RADIAL) & ~hits
        hx[new], hy[new], hgx[new], hgy[new] = xs[new], ys[new], ex[new], ey[new]
        hits |= new
    hits &= inside
    straight = _straight_arcs(mag_ok, gx, gy, hits, hx, hy, hgx, hgy, r)
    n_straight = int(straight.sum())
    hits &= ~straight  # a straight edge touching the circle is no part of a round outline
    support = float(hits.sum()) / inside.sum()
    h8 = hits.astype(np.int8)
    pieces = max(1, int((np.diff(np.concatenate((h8, h8[:1]))) == 1).sum()))
    return support, _longest_gap(hits | ~inside), visible, pieces, n_straight


def _straight_arcs(mag_ok: np.ndarray, gx: np.ndarray, gy: np.ndarray, hits: np.ndarray, hx: np.ndarray,
                   hy: np.ndarray, hgx: np.ndarray, hgy: np.ndarray, r: float) -> np.ndarray:
    """The circle's hits that lie on a straight edge touching the circle (a banknote's border, a finger's side):
    a hit's line runs through its edge pixel, across its gradient (averaged over the neighbouring hits whose
    gradient agrees, the line's pixels); it is followed from ``STRAIGHT_FROM`` to ``STRAIGHT_TO`` radii on each
    side of the hit. There a coin's outline has curved away (>= 3 px and 20 deg off the line); a straight
    edge is still on the line, with the same gradient, at (almost) every pixel."""
    h, w = mag_ok.shape
    idx = np.flatnonzero(hits)
    if len(idx) == 0:
        return np.zeros(len(hits), dtype=bool)
    n_pts = len(hits)
    theta2 = np.arctan2(hgy, hgx) * 2  # orientation, sign free (a dark or a light side)
    # the neighbours within STRAIGHT_NEAR points whose orientation agrees (5 deg): the line's other pixels
    nb = (idx[:, None] + np.arange(-STRAIGHT_NEAR, STRAIGHT_NEAR + 1)[None, :]) % n_pts
    agree = hits[nb] & (np.cos(theta2[nb] - theta2[idx][:, None]) >= math.cos(math.radians(10)))
    phi = 0.5 * np.arctan2((np.sin(theta2[nb]) * agree).sum(1), (np.cos(theta2[nb]) * agree).sum(1))
    nx, ny = np.cos(phi), np.sin(phi)  # [hit]: the line's normal
    tx, ty = -ny, nx
    d = hx[idx] * nx + hy[idx] * ny  # the line goes through the hit's edge crest (within 2 px across it)
    snap = np.arange(-2, 3, dtype=np.float64)
    sx = np.clip(np.rint(hx[idx][:, None] + snap[None, :] * nx[:, None]).astype(int), 0, w - 1)
    sy = np.clip(np.rint(hy[idx][:, None] + snap[None, :] * ny[:, None]).astype(int), 0, h - 1)
    d = d + snap[np.argmax(np.hypot(gx[sy, sx], gy[sy, sx]), axis=1)]
    mt = hx[idx] * tx + hy[idx] * ty
    offsets = np.arange(-STRAIGHT_BAND, STRAIGHT_BAND + 1, dtype=np.float64)
    # from where a coin's outline has left the band (3 px off the line) on: every pixel along the line
    first = max(STRAIGHT_FROM * r, math.sqrt(max(6 * r - 9, 0.0)))
    steps = np.arange(first, max(STRAIGHT_TO * r, first + 6), 1.0)
    straight = np.zeros(len(idx), dtype=bool)
    for side in (-1.0, 1.0):
        t = mt[:, None, None] + side * steps[None, :, None]  # [hit, step, offset]
        o = d[:, None, None] + offsets[None, None, :]
        px = t * tx[:, None, None] + o * nx[:, None, None]
        py = t * ty[:, None, None] + o * ny[:, None, None]
        ix, iy = np.rint(px).astype(int), np.rint(py).astype(int)
        in_photo = ((ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)).all(axis=2)  # [hit, step]
        ix, iy = np.clip(ix, 0, w - 1), np.clip(iy, 0, h - 1)
        ex, ey = gx[iy, ix], gy[iy, ix]
        mag = np.hypot(ex, ey)
        along = np.abs(ex * nx[:, None, None] + ey * ny[:, None, None]) / (mag + 1e-9)
        # the edge's crest only (its magnitude a maximum across the line): a blurred edge is several px wide,
        # and a coin's outline must not reach the band where it has curved away
        jx, jy = np.rint(nx).astype(int)[:, None, None], np.rint(ny).astype(int)[:, None, None]
        ax, ay = np.clip(ix + jx, 0, w - 1), np.clip(iy + jy, 0, h - 1)
        bx, by = np.clip(ix - jx, 0, w - 1), np.clip(iy - jy, 0, h - 1)
        crest = (mag >= np.hypot(gx[ay, ax], gy[ay, ax])) & (mag >= np.hypot(gx[by, bx], gy[by, bx]))
        # one edge all along the line (a banknote's border, a finger's side); texture that crosses the line
        # (wood grain, checks, print) is on it only where it crosses
        on = (mag_ok[iy, ix] & (along >= STRAIGHT_ALIGN) & crest).any(axis=2) & in_photo
        n_in = in_photo.sum(1)
        cover = on.sum(1) / np.maximum(n_in, 1)
        straight |= (n_in >= len(steps) // 2) & (cover >= STRAIGHT_COVER)
    out = np.zeros(len(hits), dtype=bool)
    out[idx[straight]] = True
    return out


def _longest_gap(hits: np.ndarray) -> float:
    """The longest run of misses around the circle, as a share of it (the run may wrap around)."""
    if hits.all():
        return 0.0
    if not hits.any():
        return 1.0
    rolled = np.roll(hits, -int(np.argmax(hits)))  # start on a hit, so no run wraps
    misses = np.flatnonzero(np.diff(np.concatenate(([1], rolled.astype(np.int8), [1]))))
    return float((misses[1::2] - misses[0::2]).max()) / len(hits)


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
    pooled spread): a coin is a disc of metal on a table, a circle drawn on wood grain is wood on both sides.
    Only the parts of the bands inside the photo count."""
    h, w = rgb.shape[:2]
    x0, x1 = max(0, int(cx - 1.3 * r) - 1), min(w, int(cx + 1.3 * r) + 2)  # only the ring's bounding box
    y0, y1 = max(0, int(cy - 1.3 * r) - 1), min(h, int(cy + 1.3 * r) + 2)
    if x1 <= x0 or y1 <= y0:
        return 0.0
    box = rgb[y0:y1, x0:x1]
    yy, xx = np.ogrid[y0:y1, x0:x1]
    d = np.hypot(xx + 0.5 - cx, yy + 0.5 - cy) / max(r, 1.0)
    inner, outer = box[(d > 0.7) & (d < 0.92)], box[(d > 1.08) & (d < 1.3)]
    if len(inner) < 8 or len(outer) < 8:
        return 0.0
    spread = float(np.sqrt((inner.var(0) + outer.var(0)).mean() / 2)) + 0.02
    return float(np.abs(inner.mean(0) - outer.mean(0)).max() / spread)


@dataclass
class _Pass:
    """One search at one working size: the edges, the accumulator and the photo at that size."""

    scale: float
    sw: int
    sh: int
    rgb: np.ndarray
    gx: np.ndarray
    gy: np.ndarray
    mag_ok: np.ndarray
    radii: np.ndarray
    acc: np.ndarray  # [radius, sh + 2 pad, sw + 2 pad], normalised by the circle's length
    pad: int


def _straight_edges(mag_ok: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """The strong edge pixels that lie on a straight edge: at each of ``STRAIGHT_REACH`` px either way along it,
    one way, the edge goes on (within a pixel across) with the same orientation, sign free (``STRAIGHT_TOLERANCE``).
    A coin's outline has turned by more there: 6 px along a circle of radius 60 px at the working size turn it
    5.7 deg. The outline of a coin with a radius above about 85 px (one filling the frame) looks straight to it;
    the passes that let every edge vote find those."""
    h, w = mag_ok.shape
    ys, xs = np.nonzero(mag_ok)
    g = np.hypot(gx[ys, xs], gy[ys, xs]) + 1e-9
    ux, uy = gx[ys, xs] / g, gy[ys, xs] / g
    cos_tol = math.cos(math.radians(STRAIGHT_TOLERANCE))
    straight = np.zeros(len(xs), dtype=bool)
    for side in (-1.0, 1.0):  # one way suffices: a checked cloth's edge stops at each crossing
        goes_on = np.ones(len(xs), dtype=bool)
        for reach in STRAIGHT_REACH:
            here = np.zeros(len(xs), dtype=bool)
            for across in (-1.0, 0.0, 1.0):
                sx = np.clip(np.rint(xs - side * reach * uy + across * ux).astype(int), 0, w - 1)
                sy = np.clip(np.rint(ys + side * reach * ux + across * uy).astype(int), 0, h - 1)
                sg = np.hypot(gx[sy, sx], gy[sy, sx]) + 1e-9
                here |= mag_ok[sy, sx] & (np.abs(ux * gx[sy, sx] + uy * gy[sy, sx]) / sg >= cos_tol)
            goes_on &= here
        straight |= goes_on
    out = np.zeros_like(mag_ok)
    out[ys[straight], xs[straight]] = True
    return out


def _prepare(img: Image.Image, work_side: int, min_fraction: float, max_fraction: float,
             max_edges: int, drop_straight: bool = False) -> _Pass | str:
    """The photo at ``work_side`` px, its edges and the vote of every strong edge pixel, or why not.
    ``drop_straight``: straight edges (:func:`_straight_edges`: a checked cloth's, a tiled floor's) do not vote."""
    w, h = img.size
    scale = work_side / max(w, h)
    small = img.convert("RGB")
    if scale < 1:
        small.draft("RGB", (max(1, math.ceil(w * scale)), max(1, math.ceil(h * scale))))
        small = small.resize((max(8, round(w * scale)), max(8, round(h * scale))), Image.Resampling.BILINEAR)
    sw, sh = small.size
    scale = sw / w
    grey_small = img.convert("L")  # the edges from the grey photo reduced, as before colour was added
    if grey_small.size != small.size:
        grey_small = grey_small.resize(small.size, Image.Resampling.BILINEAR)
    grey = np.asarray(grey_small.filter(ImageFilter.GaussianBlur(BLUR)), dtype=np.float32) / 255.0
    gx, gy, mag = _edges(grey)
    if float(mag.max()) < 0.15:
        return "no edges: the image is blank or uniform"
    voting = mag
    if drop_straight:  # before the threshold: a faint coin outline must not lose its place to the cloth's edges
        voting = np.where(_straight_edges(mag > max(0.08 * float(mag.max()), 0.1), gx, gy), 0.0, mag)
    threshold = max(float(np.percentile(voting, EDGE_PERCENTILE)), 0.08 * float(mag.max()), 0.1)
    mag_ok = mag > threshold  # the checks still see every edge: a circle touching a straight one is no coin
    ys, xs = np.nonzero(voting > threshold)
    if len(xs) > max_edges:  # enough votes; keep the strongest edges
        keep = np.argpartition(mag[ys, xs], len(xs) - max_edges)[-max_edges:]
        ys, xs = ys[keep], xs[keep]
    ux, uy = gx[ys, xs] / mag[ys, xs], gy[ys, xs] / mag[ys, xs]  # float32, like the votes below
    xs_f, ys_f = xs.astype(np.float32), ys.astype(np.float32)
    short = min(sw, sh)
    radii = np.arange(max(4, int(min_fraction * short)), int(max_fraction * short) + 1)
    if len(radii) == 0:
        return f"image too small ({w}x{h})"
    # votes go into a [radius, y, x] accumulator bordered by ``pad`` px, so that the centre of a coin cut by the
    # frame may lie on or just outside the edge, and by one more zero px for the 3x3 box sum below
    pad = max(2, int(CENTRE_OUTSIDE * radii[-1]))
    radii_f = radii.astype(np.float32)
    plane_h, plane_w = sh + 2 * pad + 2, sw + 2 * pad + 2
    plane = plane_h * plane_w
    flats = []
    for sign in (-1.0, 1.0):
        cx = np.rint(xs_f[None, :] + sign * radii_f[:, None] * ux[None, :]).astype(np.int32) + (pad + 1)
        cy = np.rint(ys_f[None, :] + sign * radii_f[:, None] * uy[None, :]).astype(np.int32) + (pad + 1)
        ok = (cx >= 1) & (cx < plane_w - 1) & (cy >= 1) & (cy < plane_h - 1)
        ridx = np.broadcast_to(np.arange(len(radii), dtype=np.int64)[:, None], cx.shape)
        flats.append(ridx[ok] * plane + cy[ok].astype(np.int64) * plane_w + cx[ok])
    acc_p = np.bincount(np.concatenate(flats), minlength=len(radii) * plane).astype(np.float32)
    acc_p = acc_p.reshape(len(radii), plane_h, plane_w)
    # a 3x3 box sum per radius (separable): votes of a slightly squashed or noisy circle spread over neighbours
    rows = acc_p[:, :, :-2] + acc_p[:, :, 1:-1] + acc_p[:, :, 2:]
    acc = rows[:, :-2, :] + rows[:, 1:-1, :] + rows[:, 2:, :]
    acc /= (2 * np.pi * radii)[:, None, None].astype(np.float32)
    rgb = np.asarray(small, dtype=np.float32) / 255.0
    return _Pass(scale, sw, sh, rgb, gx, gy, mag_ok, radii, acc, pad)


def _checked_circles(p: _Pass, edge_pixels, found: list[tuple], min_visible: float = MIN_VISIBLE) -> list[tuple]:
    """The strongest few radii's best centres, refined and checked, as (score, support, cx, cy, r) at the working
    size: a coin is a circle with an edge all round AND metal inside that differs from the table outside (an
    engraved inner rim or a ring in wood grain has one, not both). Circles overlapping ``found`` are left out."""
    per_radius = p.acc.reshape(len(p.radii), -1)
    best_flat = per_radius.argmax(axis=1)
    best_val = per_radius[np.arange(len(p.radii)), best_flat]
    picked: list[int] = []
    for k in np.argsort(best_val)[::-1]:  # the best radii, at least 3 px apart
        if best_val[k] <= 0:
            break
        if all(abs(int(k) - j) >= 3 for j in picked):
            picked.append(int(k))
        if len(picked) == CANDIDATES:
            break
    checked = []
    plane_w = p.sw + 2 * p.pad
    for k in picked:
        ky, kx = divmod(int(best_flat[k]), plane_w)
        cx_k, cy_k, r_k = _refine(edge_pixels, float(kx - p.pad), float(ky - p.pad), float(p.radii[k]))
        if not 0.9 * p.radii[0] <= r_k <= 1.1 * p.radii[-1]:
            continue
        if any(math.hypot(cx_k - f[2], cy_k - f[3]) < OVERLAP * (r_k + f[4]) for f in found):
            continue
        sup, gap, visible, pieces, straight = _support(p.mag_ok, p.gx, p.gy, cx_k, cy_k, r_k)
        if visible < min_visible or gap > MAX_GAP:  # the edge must go round: corners and arcs leave long gaps
            continue
        if visible < 0.97 and r_k < CUT_MIN_RADIUS * min(p.sw, p.sh):  # the frame makes corners look round
            continue
        contrast = _ring_contrast(p.rgb, cx_k, cy_k, r_k)
        if _DEBUG is not None:
            _DEBUG.append(dict(cx=cx_k / p.scale, cy=cy_k / p.scale, r=r_k / p.scale, sup=sup, gap=gap,
                               vis=visible, con=contrast, runs=pieces, straight=straight))
        if sup * contrast / math.sqrt(pieces) < MIN_COHERENCE:  # a circle made up of texture
            continue
        checked.append((sup * sup * contrast, sup, cx_k, cy_k, r_k))
    return checked


def _search(p: _Pass, max_coins: int, min_support: float, min_contrast: float = 0.0,
            min_visible: float = MIN_VISIBLE) -> tuple[list[tuple], str | None]:
    """Up to ``max_coins`` non-overlapping coins at the working size, best first, and why the search stopped."""
    edge_pixels = _edge_pixels(p.mag_ok, p.gx, p.gy)
    found: list[tuple] = []
    reason = None
    while len(found) < max_coins:
        checked = _checked_circles(p, edge_pixels, found, min_visible)
        if not checked:
            reason = "no round coin: no circle with an edge all round lies (mostly) within the photo"
            break
        top = max(checked)
        # a coin holds smaller circles (a disc in its design, the inner rim, a highlight): the coin is the
        # largest good circle that contains the best one
        around = [c for c in checked if c[0] >= 0.4 * top[0] and c[4] >= top[4]
                  and math.hypot(c[2] - top[2], c[3] - top[3]) + top[4] <= 1.05 * c[4]]
        best = max(around, key=lambda c: c[4])
        score, support = best[0], best[1]
        contrast = score / max(support * support, 1e-9)
        if support < min_support or support * contrast < MIN_SUPPORT_CONTRAST or contrast < min_contrast:
            reason = (f"no round coin: best circle has {support:.0%} of its edge and inside/outside contrast "
                      f"{contrast:.2f} (needs >= {min_support:.0%}, a product >= {MIN_SUPPORT_CONTRAST}"
                      + (f" and a contrast >= {min_contrast})" if min_contrast else ")"))
            break
        if found and score < NEXT_COIN_SCORE * found[0][0]:
            break
        found.append(best)
        if len(found) < max_coins:  # no centre that would overlap this coin is voted for again
            hh, ww = p.acc.shape[1:]
            yy, xx = np.ogrid[0:hh, 0:ww]
            dist = np.hypot(xx - p.pad - best[2], yy - p.pad - best[3]).astype(np.float32)
            limit = (OVERLAP * (p.radii + best[4])).astype(np.float32)
            p.acc *= dist[None, :, :] >= limit[:, None, None]
    return found, reason


def _circles(img: Image.Image, max_coins: int, work_side: int, min_support: float) -> tuple[list[CoinCircle], str]:
    w, h = img.size
    if min(w, h) < 16:
        return [], f"image too small ({w}x{h})"
    reasons: dict[str, str] = {}  # why each pass found nothing, by what it looked for
    # (what it looks for, working size, radii as shares of the short side, votes, support, ring contrast, share of
    # the circle in the photo, whether straight edges vote)
    passes = [("", work_side, MIN_RADIUS_FRACTION_LARGE, MAX_RADIUS_FRACTION, MAX_EDGES, min_support, 0.0,
               MIN_VISIBLE, False)]
    if min(w, h) * MIN_RADIUS_FRACTION >= 8:  # a small coin is looked for at twice the size, where it has pixels
        passes.append(("small coins", 2 * work_side, MIN_RADIUS_FRACTION, SMALL_MAX_FRACTION, 2 * MAX_EDGES,
                       max(min_support, SMALL_MIN_SUPPORT), SMALL_MIN_CONTRAST, MIN_VISIBLE, False))
    # last, the first pass with the straight edges left out of the vote: on a checked cloth they outvote the coin.
    # Only a whole coin: a fingertip against the frame, with the straight sides of its finger not voting, is round
    passes.append(("without straight edges", work_side, MIN_RADIUS_FRACTION_LARGE, MAX_RADIUS_FRACTION, MAX_EDGES,
                   min_support, 0.0, WHOLE_VISIBLE, True))
    for looked_for, side, lo, hi, max_edges, support_needed, contrast_needed, visible_needed, drop in passes:
        p = _prepare(img, side, lo, hi, max_edges, drop)
        if isinstance(p, str):  # blank at this size (a small coin on a plain table may show only at the next)
            reasons[looked_for] = p
            continue
        found, reason = _search(p, max_coins, support_needed, contrast_needed, visible_needed)
        if found:
            return [CoinCircle(cx=(c[2] + 0.5) / p.scale, cy=(c[3] + 0.5) / p.scale, radius=c[4] / p.scale,
                               support=c[1]) for c in found], ""
        reasons[looked_for] = reason or ""
    first = reasons.pop("")
    return [], "; ".join([first] + [f"{what}: {why}" for what, why in reasons.items() if why != first])


def find_coins(img: Image.Image, max_coins: int = 4, work_side: int = WORK_SIDE,
               min_support: float = MIN_SUPPORT) -> list[CoinCircle]:
    """Every coin in the photo (up to ``max_coins``, non-overlapping, each with the support a coin needs),
    best first, in photo pixels: both faces of a coin scanned side by side give two. Empty without a coin."""
    return _circles(img, max_coins, work_side, min_support)[0]


def find_coin(img: Image.Image, work_side: int = WORK_SIDE, min_support: float = MIN_SUPPORT) -> CoinFinding:
    """The most circle-like round edge in the photo, in photo pixels, or the reason there is none."""
    circles, reason = _circles(img, 1, work_side, min_support)
    return CoinFinding(circles[0]) if circles else CoinFinding(None, reason)


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
