"""Training choices as a plain dataclass (no torch import: the Dagster run config is built from it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    # the demo default: what 2 CPU cores can train in minutes, and what synthetic_pretraining pre-trains
    backbone: str = "mobilenet_v3_small"
    mode: str = "shared"
    projection_dim: int | None = 128
    image_size: int = 64
    epochs: int = 12
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    augment: bool = True
    seed: int = 0
    device: str = "auto"  # auto → cuda if available else cpu
    num_workers: int = 2
    weights_path: str | None = None
    max_steps: int | None = None  # stop after this many optimiser steps (tests, smoke runs)
    num_threads: int | None = None  # torch intra-op threads while training; None: the loop decides
    digit_heads: bool = True  # four digit classifiers beside the Gaussian head
    # "oriented": an orientation head turns the front upright for a small digit CNN (it learns to read: see the
    # README's "Reading the year"); "pooled": digit heads on the pooled backbone features (measured: it does not)
    reader: str = "oriented"
    rotation_deg: float = 180.0  # augmentation: rotation drawn from ±rotation_deg (180: the full circle)
    use_crops: bool = True  # train on the gold coin crops where both sides have one


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
    epochs: int = 30  # an upper bound: the time budget decides
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = None
    reader: str = "oriented"  # see TrainConfig.reader
    # curriculum: the first easy_fraction of the budget trains on printed (high-contrast) digits only. Measured
    # (the digit reader alone on fronts turned upright by the true angle, 12 000 coins, batch 64, 1 thread):
    # printed-first then all, 61 % exact after 676 steps; all reliefs from the start (RGB input), still at
    # chance after 350 steps
    easy_fraction: float = 0.25
    # share of the training corpus that carries no year (letters or nothing in the year's place, year NaN),
    # trained toward a uniform digit reading so that such coins come out unreadable (see build_corpus)
    no_year_share: float = 0.08
    max_seconds: float | None = 540.0  # training time budget (the demo's ≤ 10 minutes); None: all epochs
    max_steps: int | None = None
    corpus_workers: int | None = None
