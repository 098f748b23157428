"""Input rules of POST /predict: every bad photo becomes a clear 4xx, never a 500, and nothing is stored.

The bytes are sniffed and decoded by the silver code (:func:`coin_assets.core.images.clean_image`:
image signature, the explicit pixel limit checked on the header before decoding, truncation) and
turned into model input by the pyfunc's preprocessing (the training code, with the coin crop for
models trained on crops), once per photo. Names and content types
sent by the caller are never trusted, and no value from a request ever becomes a path: stored photos
are named after the server-made request id and the sniffed format.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from coin_assets.core.images import MAX_PIXELS, ImageRejected, clean_image
from coin_assets.ml.pyfunc import PhotoRejected, preprocess_photo

if TYPE_CHECKING:
    from fastapi import UploadFile

SIDES = ("front", "back")
FORM_FIELDS = {"front", "back", "user_id", "coin_id"}
MAX_TEXT_FIELD = 200
FORMAT_EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp", "TIFF": "tif", "BMP": "bmp",
                     "GIF": "gif"}
# Room for the multipart boundaries and the small text fields on top of two photos.
REQUEST_OVERHEAD = 64 * 1024


class BadInput(ValueError):
    """A request the service refuses; ``status`` and ``code`` go into the JSON error."""

    def __init__(self, message: str, status: int = 422, code: str = "bad_input"):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class PreparedPhoto:
    side: str
    data: bytes  # the bytes as sent: they go to the upload zone
    sha256: str
    extension: str  # from the sniffed format, never from the caller
    array: np.ndarray | None  # float32 [3, S, S]; None when only checked


def max_request_bytes(max_photo_bytes: int) -> int:
    """Largest body /predict reads: two photos as base64 (the larger encoding) plus overhead."""
    return 2 * (max_photo_bytes * 4 // 3 + 4) + REQUEST_OVERHEAD


READ_CHUNK = 64 * 1024  # how far past the limit an upload is read, at most, before it is refused


async def read_limited(upload: UploadFile, side: str, limit: int) -> bytes:
    """Read an uploaded file (POST /predict's parts, the async routes' files) in chunks, refusing it with a
    413 as soon as it passes ``limit`` bytes."""
    chunks, total = [], 0
    while chunk := await upload.read(READ_CHUNK):
        total += len(chunk)
        if total > limit:
            raise BadInput(f"{side}: photo over the size limit of {limit} bytes", 413, "too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def decode_base64(side: str, text: str, max_photo_bytes: int) -> bytes:
    if not isinstance(text, str):
        raise BadInput(f"{side}: must be a base64 string")
    text = text.strip()
    if text.startswith("data:") and "," in text:  # a data URL from a browser
        text = text.split(",", 1)[1]
    if len(text) > max_photo_bytes * 4 // 3 + 4:
        raise BadInput(f"{side}: photo over the size limit of {max_photo_bytes} bytes", 413, "too_large")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadInput(f"{side}: not valid base64") from None


def check_photo(side: str, data: bytes, max_photo_bytes: int, max_pixels: int | None = None,
                image_size: int | None = None, coin_crop: bool = False, whole_if_no_coin: bool = False) -> PreparedPhoto:
    """Sniff and decode one photo with the silver code (never trusting its name or content type) and,
    given ``image_size``, turn it into model input; raise :class:`BadInput` with the reason."""
    if not data:
        raise BadInput(f"{side}: empty file (0 bytes)")
    if len(data) > max_photo_bytes:
        raise BadInput(f"{side}: photo over the size limit of {max_photo_bytes} bytes", 413, "too_large")
    if image_size:  # one decode: the pyfunc's own preprocessing checks the photo as it goes
        try:
            array = preprocess_photo(data, image_size, max_pixels, coin_crop=coin_crop, whole_if_no_coin=whole_if_no_coin)
        except PhotoRejected as err:
            raise BadInput(f"{side}: {err}", 422, "bad_image") from None
        raw_format = Image.open(io.BytesIO(data)).format  # the header only: the photo decoded above
    else:
        try:
            raw_format, array = clean_image(data, max_pixels=max_pixels or MAX_PIXELS).raw_format, None
        except ImageRejected as err:
            raise BadInput(f"{side}: {err}", 422, "bad_image") from None
    return PreparedPhoto(side, data, hashlib.sha256(data).hexdigest(), FORMAT_EXTENSIONS.get(raw_format, "jpg"), array)


def prepare_photo(side: str, data: bytes, image_size: int, max_photo_bytes: int,
                  max_pixels: int | None = None, coin_crop: bool = False, whole_if_no_coin: bool = False) -> PreparedPhoto:
    """Check one photo and turn it into model input exactly as the registered pyfunc does
    (:func:`coin_assets.ml.pyfunc.preprocess_photo`); raise :class:`BadInput` with the reason."""
    return check_photo(side, data, max_photo_bytes, max_pixels, image_size=image_size, coin_crop=coin_crop,
                       whole_if_no_coin=whole_if_no_coin)


def clean_text_field(name: str, value) -> str | None:
    """Optional user_id / coin_id: short printable text, stored as data, never used as a name."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadInput(f"{name} must be text")
    value = value.strip()
    if not value:
        return None
    if len(value) > MAX_TEXT_FIELD or not value.isprintable():
        raise BadInput(f"{name} must be printable text of at most {MAX_TEXT_FIELD} characters")
    return value
