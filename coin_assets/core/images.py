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


def clean_image(
    data: bytes, max_side: int = MAX_SIDE, max_pixels: int = MAX_PIXELS, use_draft: bool = True
) -> CleanImage:
    """Decode, apply EXIF orientation, convert to RGB, shrink to ``max_side``; JPEG out.

    Raises ImageRejected with a human-readable reason for anything that is not a usable photo.
    ``use_draft=False`` decodes JPEGs at full size (the benchmark's baseline).
    """
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
            width=out_w,
            height=out_h,
            frames=frames,
            notes=tuple(notes),
        )


def aspect_kept(raw_w: int, raw_h: int, clean_w: int, clean_h: int, tolerance_px: float = 1.0) -> bool:
    """True when the clean size is the raw size scaled uniformly, within ``tolerance_px``."""
    scale = max(clean_w, clean_h) / max(raw_w, raw_h)
    return math.isclose(clean_w, raw_w * scale, abs_tol=tolerance_px) and math.isclose(
        clean_h, raw_h * scale, abs_tol=tolerance_px
    )
