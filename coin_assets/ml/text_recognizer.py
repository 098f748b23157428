"""The year reader's recogniser: one line of text in, characters with their probabilities out.

A CRNN (convolutions that keep the line's left-to-right layout, a bidirectional GRU over the columns, a
per-column classifier) trained with CTC, as in PP-OCR's and the CRNN paper's recognisers. Input: grey crops
``[B, 1, STRIP_HEIGHT, STRIP_WIDTH]`` as uint8-valued floats (0..255); each crop is standardised inside the
module, so the relief's light-and-shadow digits and printed ones look alike. Output: log-probabilities
``[B, T, len(ALPHABET) + 1]`` over the columns (class 0 is CTC's blank).

:func:`greedy_decode` turns them into text and one probability per character, which is what the year decision
(:mod:`coin_assets.ml.year_reading`) works on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from coin_assets.core.text_lines import STRIP_HEIGHT, STRIP_WIDTH, fit_strip  # noqa: F401 (the input)

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ/-"


def _block(cin: int, cout: int, pool: tuple[int, int] | None) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(pool, pool))
    return nn.Sequential(*layers)


class TextRecognizer(nn.Module):
    """CRNN: 32 px tall crops → ``STRIP_WIDTH // 4`` columns of character log-probabilities."""

    def __init__(self, width: int = 32, hidden: int = 96, alphabet: str = ALPHABET):
        super().__init__()
        self.alphabet = alphabet
        w = width
        self.features = nn.Sequential(
            _block(1, w, (2, 2)),          # 16 x 64
            _block(w, 2 * w, (2, 2)),      # 8 x 32
            _block(2 * w, 4 * w, None),
            _block(4 * w, 4 * w, (2, 1)),  # 4 x 32
            _block(4 * w, 6 * w, None),
            _block(6 * w, 6 * w, (2, 1)),  # 2 x 32
            nn.Conv2d(6 * w, 6 * w, (2, 1), bias=False), nn.BatchNorm2d(6 * w), nn.ReLU(inplace=True),  # 1 x 32
        )
        self.rnn = nn.GRU(6 * w, hidden, batch_first=True, bidirectional=True)
        self.classifier = nn.Linear(2 * hidden, len(alphabet) + 1)

    def forward(self, strips: Tensor) -> Tensor:
        x = strips.float()
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = x.std(dim=(2, 3), keepdim=True).clamp_min(4.0)
        x = (x - mean) / std
        f = self.features(x).squeeze(2).transpose(1, 2)  # [B, T, C]
        f, _ = self.rnn(f)
        return F.log_softmax(self.classifier(f), dim=-1)


def encode_labels(labels: list[str], alphabet: str = ALPHABET) -> tuple[Tensor, Tensor]:
    """CTC targets: (concatenated class indices, lengths). Characters outside the alphabet are dropped."""
    index = {c: k + 1 for k, c in enumerate(alphabet)}
    seqs = [[index[c] for c in label if c in index] for label in labels]
    flat = torch.tensor([k for s in seqs for k in s], dtype=torch.long)
    return flat, torch.tensor([len(s) for s in seqs], dtype=torch.long)


def ctc_loss(log_probs: Tensor, labels: list[str]) -> Tensor:
    targets, lengths = encode_labels(labels)
    t = log_probs.shape[1]
    return F.ctc_loss(log_probs.transpose(0, 1), targets, torch.full((log_probs.shape[0],), t, dtype=torch.long),
                      lengths, blank=0, reduction="mean", zero_infinity=True)


@dataclass(frozen=True)
class Decoded:
    text: str
    char_probs: tuple[float, ...]  # one per character of ``text``: the peak probability of its column run

    @property
    def confidence(self) -> float:
        return float(np.prod(self.char_probs)) if self.char_probs else 0.0


def greedy_decode(log_probs: Tensor, alphabet: str = ALPHABET) -> list[Decoded]:
    """Best path: the most likely class per column, repeats merged, blanks removed; each character's
    probability is the highest of its run's columns."""
    probs, best = log_probs.exp().max(-1)
    out = []
    for p_row, k_row in zip(probs.tolist(), best.tolist(), strict=True):
        chars, char_probs, prev = [], [], 0
        for p, k in zip(p_row, k_row, strict=True):
            if k != 0 and k == prev:
                char_probs[-1] = max(char_probs[-1], p)
            elif k != 0:
                chars.append(alphabet[k - 1])
                char_probs.append(p)
            prev = k
        out.append(Decoded("".join(chars), tuple(char_probs)))
    return out


def read_strips(model: TextRecognizer, strips: np.ndarray, batch_size: int = 256) -> list[Decoded]:
    """uint8 [N, H, W] strips → decoded text, in eval mode without gradients."""
    model.eval()
    out: list[Decoded] = []
    with torch.inference_mode():
        for start in range(0, len(strips), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(strips[start:start + batch_size]))[:, None]
            out.extend(greedy_decode(model(x)))
    return out
