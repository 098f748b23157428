"""A line of text as the year reader's recogniser takes it: a grey crop fitted into a fixed strip.

Shared by the recogniser (:mod:`coin_assets.ml.text_recognizer`), the reader that cuts lines out of photos, and
the generator that draws training strips (:mod:`coin_assets.synth.text_strips`).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

STRIP_HEIGHT, STRIP_WIDTH = 32, 128


def fit_strip(grey: np.ndarray, height: int = STRIP_HEIGHT, width: int = STRIP_WIDTH) -> np.ndarray:
    """A grey crop of any size → uint8 [height, width]: resized to ``height`` keeping its aspect (squeezed when
    longer than ``width``), left-aligned, the rest filled with the crop's median (the recogniser's input)."""
    img = Image.fromarray(np.asarray(grey, np.uint8), "L")
    w = max(1, min(width, round(img.width * height / max(1, img.height))))
    img = img.resize((w, height), Image.Resampling.BILINEAR)
    out = np.full((height, width), int(np.median(np.asarray(img))), np.uint8)
    out[:, :w] = np.asarray(img)
    return out
