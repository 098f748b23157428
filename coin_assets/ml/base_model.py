"""The base version: what an instance serves before it has trained anything.

It is the committed year reader (:mod:`coin_assets.ml.year_reading`) with :class:`PriorYear` as its whole-coin
estimate: a coin whose year is read gets it; a coin whose year is not read gets the middle of the year range
with an interval over all of it, flagged unreadable. The first trained version replaces it when it reads at
least as well (:func:`coin_assets.ml.registry.decide_promotion`), and it stays in the registry to roll back to.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from coin_assets.ml.model import UNREADABLE_SIGMA, YEAR_MAX, YEAR_MIN

BASE_VERSION_TAG = "base_version"  # model version tag, "true" on the base version


class PriorYear(nn.Module):
    """A whole-coin 'estimate' that has seen no coin: ``[B, 2, 3, S, S] → [B, 2]`` (year, sigma), the same for
    every coin: the middle of ``year_range`` with ``sigma`` wide enough to cover it."""

    def __init__(self, year_range: tuple[int, int] = (YEAR_MIN, YEAR_MAX), sigma: float = UNREADABLE_SIGMA):
        super().__init__()
        self.register_buffer("answer", torch.tensor([(year_range[0] + year_range[1]) / 2.0, float(sigma)]))

    def forward(self, pairs: Tensor) -> Tensor:
        return self.answer.to(pairs.dtype).expand(pairs.shape[0], 2)
