"""Coin pairs (front + back JPEG) → normalised tensors, with optional training augmentation.

Decoding: Pillow's JPEG draft mode asks the decoder for the smallest DCT scale (1/1, 1/2, 1/4, 1/8)
whose result still has a long side ≥ the target size, so a 512 px gold image becomes a 128 px input
after decoding a quarter of its pixels in each direction. The image is then **letterboxed**: resized
so that its long side is exactly S (aspect kept, so a round coin stays round) and centred on an S×S
canvas filled with the ImageNet mean colour, which normalises to ~0.
"""

from __future__ import annotations

import io
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PAD_RGB = tuple(round(m * 255) for m in IMAGENET_MEAN)
SIDES = ("front", "back")

# augmentation ranges (training only); never a horizontal flip: digits and legends must stay readable
ROTATION_DEG = 180.0  # the full circle: coins lie on the table at any angle
SCALE_RANGE = (0.9, 1.1)
TRANSLATE_FRACTION = 0.06
BRIGHTNESS = 0.2  # multiplicative factor in [1 - b, 1 + b]
CONTRAST = 0.2

# per-pixel work is done in NumPy: torch would spread these tiny element-wise ops over its OpenMP
# threads, which was measured 40x slower per image on a busy 2-core machine (main-process loading)
_MEAN = np.array(IMAGENET_MEAN, dtype=np.float32)
_STD = np.array(IMAGENET_STD, dtype=np.float32)


@dataclass(frozen=True)
class CoinRecord:
    coin_id: str
    front_path: str
    back_path: str
    year: float | None = None


def read_local_file(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def decode_letterboxed(data: bytes, size: int) -> Image.Image:
    """JPEG (or any Pillow image) bytes → RGB S×S letterboxed image, decoding with draft mode."""
    img = Image.open(io.BytesIO(data))
    w, h = img.size
    scale = size / max(w, h)
    # draft keeps the decoded size >= the requested one: ask for the letterboxed size, not S×S,
    # otherwise a 512x384 photo would be decoded at 256x192 instead of 128x96 for S = 128
    img.draft("RGB", (max(1, math.ceil(w * scale)), max(1, math.ceil(h * scale))))
    img = img.convert("RGB")
    w, h = img.size
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.Resampling.BILINEAR)
    if (nw, nh) == (size, size):
        return img
    canvas = Image.new("RGB", (size, size), PAD_RGB)
    canvas.paste(img, ((size - nw) // 2, (size - nh) // 2))
    return canvas


def random_affine(img: Image.Image, rand: Sequence[float], rotation_deg: float = ROTATION_DEG) -> Image.Image:
    """Rotation ±ROTATION_DEG, zoom SCALE_RANGE, translation ±TRANSLATE_FRACTION about the centre;
    ``rand`` holds 4 uniform [0, 1) numbers. One bilinear resampling pass, padding with the mean colour."""
    size = img.size[0]
    angle = math.radians((2 * float(rand[0]) - 1) * rotation_deg)
    zoom = SCALE_RANGE[0] + float(rand[1]) * (SCALE_RANGE[1] - SCALE_RANGE[0])
    tx = (2 * float(rand[2]) - 1) * TRANSLATE_FRACTION * size
    ty = (2 * float(rand[3]) - 1) * TRANSLATE_FRACTION * size
    c = size / 2
    # inverse map output → input: x_in = R(-a)/zoom (x_out - c - t) + c
    cos, sin = math.cos(angle) / zoom, math.sin(angle) / zoom
    a, b, d, e = cos, sin, -sin, cos
    ox, oy = c + tx, c + ty
    coeffs = (a, b, c - a * ox - b * oy, d, e, c - d * ox - e * oy)
    return img.transform((size, size), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR, fillcolor=PAD_RGB)


def to_normalised_array(img: Image.Image, brightness: float = 1.0, contrast: float = 1.0) -> np.ndarray:
    """RGB image → float32 [3, H, W] array normalised with ImageNet mean/std; optional brightness/contrast
    jitter first (contrast about the image's mean grey, result clipped to [0, 1] like a photo)."""
    x = np.asarray(img, dtype=np.float32) * np.float32(1 / 255)
    if brightness != 1.0 or contrast != 1.0:
        mean = np.float32(x.mean())
        x = np.clip(((x - mean) * np.float32(contrast) + mean) * np.float32(brightness), 0.0, 1.0)
    x = (x - _MEAN) / _STD
    return x.transpose(2, 0, 1)


def to_normalised_tensor(img: Image.Image) -> Tensor:
    """RGB image → float32 tensor [3, H, W] normalised with ImageNet mean/std."""
    return torch.from_numpy(np.ascontiguousarray(to_normalised_array(img)))


class CoinPairDataset(Dataset):
    """Item i → (pair [2, 3, S, S] float32 normalised with ImageNet mean/std, year float32 scalar tensor,
    NaN when unknown). Side 0 is the front, side 1 the back.

    With ``augment`` each side gets its own random affine (rotation, zoom, shift) and brightness/contrast
    jitter, drawn from torch's RNG (seeded per worker by the DataLoader, so runs are reproducible)."""

    def __init__(
        self,
        records: Sequence[CoinRecord],
        image_size: int = 128,
        augment: bool = False,
        read_bytes: Callable[[str], bytes] | None = None,
        rotation_deg: float = ROTATION_DEG,
    ):
        self.records = list(records)
        self.rotation_deg = float(rotation_deg)
        self.image_size = int(image_size)
        self.augment = augment
        self.read_bytes = read_bytes if read_bytes is not None else read_local_file

    def __len__(self) -> int:
        return len(self.records)

    def load_side(self, path: str) -> np.ndarray:
        """One photo → float32 array [3, S, S], normalised (and augmented when asked)."""
        img = decode_letterboxed(self.read_bytes(path), self.image_size)
        if not self.augment:
            return to_normalised_array(img)
        rand = torch.rand(6).tolist()
        img = random_affine(img, rand[:4], self.rotation_deg)
        return to_normalised_array(img, brightness=1 + (2 * rand[4] - 1) * BRIGHTNESS,
                                    contrast=1 + (2 * rand[5] - 1) * CONTRAST)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        rec = self.records[i]
        pair = torch.from_numpy(np.stack([self.load_side(rec.front_path), self.load_side(rec.back_path)]))
        year = torch.tensor(float("nan") if rec.year is None else float(rec.year), dtype=torch.float32)
        return pair, year


def seed_worker(worker_id: int) -> None:
    """Give Python's and NumPy's RNGs the per-worker seed torch already derived from the loader's generator."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
    pin_memory: bool = False,
) -> DataLoader:
    """A reproducible DataLoader: a seeded generator drives shuffling and the per-worker seeds;
    workers are persistent (started once, reused every epoch) when num_workers > 0."""
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        worker_init_fn=seed_worker,
        generator=generator,
        drop_last=drop_last,
        pin_memory=pin_memory,
    )
