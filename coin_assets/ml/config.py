"""Training choices as plain dataclasses (no torch import). They are the one source of the fields,
defaults and descriptions: the Dagster run configs of coin_year_model and synthetic_pretraining
(coin_assets/defs/assets/model.py) are built from them, so a field added here shows up in the
launchpad with its default and its description (``metadata["description"]``)."""

from __future__ import annotations

from dataclasses import dataclass, field


def _described(default, description: str):
    """A dataclass field with a default and the description the Dagster run config shows for it."""
    return field(default=default, metadata={"description": description})


@dataclass
class TrainConfig:
    # the demo default: what 2 CPU cores can train in minutes, and what synthetic_pretraining pre-trains
    backbone: str = _described("mobilenet_v3_small", "resnet18 | mobilenet_v3_small | mobilenet_v3_large")
    mode: str = _described("shared", "shared: one backbone for both sides; dual: one per side")
    projection_dim: int | None = 128
    image_size: int = 64
    epochs: int = 12
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    augment: bool = True
    seed: int = 0
    device: str = _described("auto", "auto uses a GPU when one is present (cuda if available, else cpu)")
    num_workers: int = 2
    weights_path: str | None = _described(None, "optional local state_dict to initialise the backbone")
    max_steps: int | None = _described(None, "stop after this many optimiser steps (tests, smoke runs)")
    num_threads: int | None = _described(None, "torch threads while training (default: the loop decides)")
    digit_heads: bool = _described(True, "four digit classifiers beside the Gaussian head")
    # "oriented": an orientation head turns the front upright for a small digit CNN (it learns to read: see the
    # README's "Reading the year"); "pooled": digit heads on the pooled backbone features (measured: it does not)
    reader: str = _described("oriented", "pooled: digit heads on the pooled features; oriented: an orientation "
                             "head turns the front upright for a small digit CNN")
    rotation_deg: float = _described(180.0, "augmentation rotation range, ± degrees (180: the full circle)")
    use_crops: bool = _described(True, "train on the gold coin crops where found (both sides have one)")


@dataclass
class PretrainConfig:
    """Synthetic pre-training: a corpus from coin_assets.synth.varied held in memory as uint8 tensors."""

    corpus_size: int = 20000
    val_size: int = 1000
    corpus_seed: int = 0
    image_size: int = 64
    backbone: str = "mobilenet_v3_small"
    mode: str = "shared"
    projection_dim: int | None = 128
    epochs: int = _described(30, "an upper bound: the time budget (max_seconds) decides")
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = _described("auto", "auto uses a GPU when one is present")
    num_threads: int | None = _described(None, "torch threads while training (default: the loop decides)")
    reader: str = _described("oriented", "pooled | oriented (see coin_year_model)")
    # curriculum: the first easy_fraction of the budget trains on printed (high-contrast) digits only. Measured
    # (the digit reader alone on fronts turned upright by the true angle, 12 000 coins, batch 64, 1 thread):
    # printed-first then all, 61 % exact after 676 steps; all reliefs from the start (RGB input), still at
    # chance after 350 steps
    easy_fraction: float = _described(0.25, "curriculum: share of the budget trained on printed digits first")
    # share of the training corpus that carries no year (letters or nothing in the year's place, year NaN),
    # trained toward a uniform digit reading so that such coins come out unreadable (see build_corpus)
    no_year_share: float = _described(0.08, "share of the corpus with no year (letters or nothing in its place), "
                                      "trained to read as unreadable")
    max_seconds: float | None = _described(540.0, "training time budget (s; the demo's ≤ 10 minutes); "
                                           "None: all epochs")
    max_steps: int | None = _described(None, "stop after this many optimiser steps (tests, smoke runs)")
    corpus_workers: int | None = _described(None, "processes that generate the corpus (default: up to 4, "
                                            "one a CPU core)")
