"""Decode one uploaded photo into a clean RGB JPEG (the silver form), or say precisely why not."""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ACCEPTED_FORMATS = {"JPEG", "MPO", "PNG", "WEBP", "TIFF", "BMP", "GIF"}
MAX_SIDE = 512
# Explicit decompression-bomb limit, checked on the header before any pixel is decoded.
MAX_PIXELS = 50_000_000
# Largest file decoded as a photo: it is read whole into memory (a 50-megapixel 16-bit TIFF is ~300 MB).
MAX_FILE_BYTES = 512 * 1024 * 1024
JPEG_QUALITY = 90
EXIF_ORIENTATION = 0x0112
_TRANSPOSED_ORIENTATIONS = {5, 6, 7, 8}
# the turn or mirror that makes a photo upright, by EXIF orientation (as ImageOps.exif_transpose applies it)
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}
JPEG_DECODERS = ("simplejpeg", "pillow")


class ImageRejected(ValueError):
    """The file cannot become a silver image; the message is the recorded reason."""


@dataclass(frozen=True)
class CleanImage:
    data: bytes  # JPEG bytes
    raw_format: str
    raw_mode: str
    raw_width: int  # as stored in the file
    raw_height: int
    exif_orientation: int
    width: int  # after orientation and resizing
    height: int
    frames: int
    notes: tuple[str, ...] = ()


def oriented_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    return (height, width) if orientation in _TRANSPOSED_ORIENTATIONS else (width, height)


def target_size(width: int, height: int, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """Long side at most ``max_side``, aspect kept, never upscaled."""
    long_side = max(width, height)
    if long_side <= max_side:
        return width, height
    scale = max_side / long_side
    return max(1, round(width * scale)), max(1, round(height * scale))


def _to_rgb(img: Image.Image, notes: list[str]) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # Pillow's convert("RGB") clips 16-bit values to 255; scale to 8 bits instead.
        arr = np.asarray(img, dtype=np.uint32 if mode == "I" else np.uint16).astype(np.float64)
        top = 65535.0 if mode != "I" or arr.max() > 255 else 255.0
        arr8 = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        notes.append(f"{mode} scaled to 8 bits")
        return Image.fromarray(arr8, "L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        notes.append("transparency flattened on white")
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "CMYK":
        notes.append("CMYK converted to RGB")
    return img.convert("RGB")


def decode_jpeg_scaled(data: bytes, mode: str, size: tuple[int, int]) -> Image.Image | None:
    """A baseline or progressive JPEG (``mode`` "RGB" or "L" as Pillow reports it) decoded by libjpeg-turbo at
    the smallest of its scales, M/8, that still covers ``size`` (through simplejpeg). Pillow's draft offers only
    1/2, 1/4 and 1/8: a 1 677 px photo bound for 512 px is decoded at 839 px and resampled from there, here at
    629 px, for about a fifth less CPU in all (docs/benchmarks.md). None where simplejpeg will not decode it
    (truncated, corrupt, or a colour space it does not convert): Pillow then decodes it, or says why not."""
    import simplejpeg

    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace="GRAY" if mode == "L" else "RGB",
                                        min_width=size[0], min_height=size[1])
    except ValueError:
        return None
    return Image.fromarray(pixels.reshape(pixels.shape[:2]) if mode == "L" else pixels, mode)


def clean_image(
    data: bytes, max_side: int = MAX_SIDE, max_pixels: int = MAX_PIXELS, use_draft: bool = True,
    jpeg_decoder: str = "simplejpeg",
) -> CleanImage:
    """Decode, apply EXIF orientation, convert to RGB, shrink to ``max_side``; JPEG out.

    Raises ImageRejected with a human-readable reason for anything that is not a usable photo.
    ``use_draft=False`` decodes JPEGs at full size (the benchmark's baseline). ``jpeg_decoder``: "simplejpeg"
    decodes a JPEG at libjpeg-turbo's closest scale (:func:`decode_jpeg_scaled`); "pillow" with Pillow's draft
    (the benchmarks' plain Pillow loop).
    """
    if jpeg_decoder not in JPEG_DECODERS:
        raise ValueError(f"jpeg_decoder must be one of {JPEG_DECODERS}, not {jpeg_decoder!r}")
    if not data:
        raise ImageRejected("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageRejected("not a recognised image (Pillow cannot identify the file)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageRejected(f"image over the pixel limit (decompression bomb): {err}") from None
    except Exception as err:  # corrupt headers raise all sorts of errors
        raise ImageRejected(f"unreadable image header: {err}") from None

    with img:
        fmt = img.format or "?"
        if fmt not in ACCEPTED_FORMATS:
            raise ImageRejected(f"unsupported image format {fmt}")
        width, height = img.size
        if width * height > max_pixels:
            raise ImageRejected(
                f"image over the pixel limit (decompression bomb): {width}x{height} = "
                f"{width * height} pixels > {max_pixels}"
            )
        raw_mode = img.mode
        frames = getattr(img, "n_frames", 1)
        notes: list[str] = []
        if frames > 1:
            notes.append(f"{frames} frames, first kept")
        try:
            orientation = int(img.getexif().get(EXIF_ORIENTATION, 1) or 1)
        except Exception:
            orientation = 1
        if orientation not in range(1, 9):
            orientation = 1
        out_w, out_h = target_size(*oriented_size(width, height, orientation), max_side)
        scaled = None
        if use_draft and jpeg_decoder == "simplejpeg" and fmt == "JPEG" and raw_mode in ("RGB", "L"):
            scaled = decode_jpeg_scaled(data, raw_mode, oriented_size(out_w, out_h, orientation))
        if scaled is not None:
            rgb = scaled.transpose(_UPRIGHT[orientation]) if orientation in _UPRIGHT else scaled
            rgb = rgb.convert("RGB") if rgb.mode != "RGB" else rgb
            if rgb.size != (out_w, out_h):
                rgb = rgb.resize((out_w, out_h), Image.Resampling.LANCZOS)
            return _encoded(rgb, fmt, raw_mode, width, height, orientation, frames, notes)
        if use_draft and fmt in ("JPEG", "MPO"):
            # Decode at a reduced scale (1/2, 1/4, 1/8) that still covers the target size.
            draft_target = oriented_size(out_w, out_h, orientation)
            img.draft("RGB", draft_target)
        try:
            img.seek(0)
            img.load()
        except Exception as err:
            raise ImageRejected(f"truncated or corrupt image data: {err}") from None
        try:
            oriented = ImageOps.exif_transpose(img) or img
            rgb = _to_rgb(oriented, notes)
            if rgb.size != (out_w, out_h):
                rgb = rgb.resize((out_w, out_h), Image.Resampling.LANCZOS)
        except Exception as err:
            raise ImageRejected(f"cannot convert image ({raw_mode}): {err}") from None
        return _encoded(rgb, fmt, raw_mode, width, height, orientation, frames, notes)


def _encoded(rgb: Image.Image, fmt: str, raw_mode: str, width: int, height: int, orientation: int, frames: int,
             notes: list[str]) -> CleanImage:
    buf = io.BytesIO()
    rgb.save(buf, "JPEG", quality=JPEG_QUALITY, optimize=False)
    if orientation != 1:
        notes.append(f"EXIF orientation {orientation} applied")
    return CleanImage(
        data=buf.getvalue(),
        raw_format=fmt,
        raw_mode=raw_mode,
        raw_width=width,
        raw_height=height,
        exif_orientation=orientation,
        width=rgb.width,
        height=rgb.height,
        frames=frames,
        notes=tuple(notes),
    )


def aspect_kept(raw_w: int, raw_h: int, clean_w: int, clean_h: int, tolerance_px: float = 1.0) -> bool:
    """True when the clean size is the raw size scaled uniformly, within ``tolerance_px``."""
    scale = max(clean_w, clean_h) / max(raw_w, raw_h)
    return math.isclose(clean_w, raw_w * scale, abs_tol=tolerance_px) and math.isclose(
        clean_h, raw_h * scale, abs_tol=tolerance_px
    )
