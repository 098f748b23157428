"""Training choices as a plain dataclass (no torch import: the Dagster run config is built from it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    backbone: str = "resnet18"
    mode: str = "shared"
    projection_dim: int | None = 128
    image_size: int = 128
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
