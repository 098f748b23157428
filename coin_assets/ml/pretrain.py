"""Synthetic pre-training: a large corpus from the varied generator, trained on from memory.

The corpus is kept as uint8 tensors [N, 2, S, S, 3] (20 000 pairs at 64 px: 490 MB); a batch is gathered,
turned into normalised floats and rotated by a random multiple of 90° per side (the rendered coins
already lie at any angle) on the fly, so the data path costs almost nothing next to the model step.
After training, two things are chosen on the validation corpus: the unreadable threshold (the posterior peak
above which ≥ 90 % of readings are exactly right, never below 0.35) and then the 90 % interval (split
conformal).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from coin_assets.ml.calibration import Z_90, calibrate_model, calibrate_unreadable
from coin_assets.ml.config import PretrainConfig
from coin_assets.ml.data import IMAGENET_MEAN, IMAGENET_STD
from coin_assets.ml.model import CoinYearRegressor
from coin_assets.ml.train import (
    flush_denormals,
    make_optimizer,
    regression_metrics,
    resolve_device,
    seed_everything,
    train_step,
)

_MEAN = torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1)


@dataclass
class PretrainResult:
    model: CoinYearRegressor
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0  # training only
    corpus_seconds: float = 0.0
    pairs_per_second: float = 0.0
    steps: int = 0
    val_metrics: dict = field(default_factory=dict)  # after calibration
    interval_scale: float = 1.0
    min_confidence: float = math.nan  # the unreadable threshold chosen on the validation coins


def to_input(pairs_u8: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [B, 2, S, S, 3] → float32 [B, 2, 3, S, S] normalised with ImageNet mean/std."""
    x = torch.as_tensor(pairs_u8).permute(0, 1, 4, 2, 3).float().div_(255.0)
    return (x - _MEAN) / _STD


def rotate_quarters(x: torch.Tensor, generator: torch.Generator, return_turns: bool = False):
    """Each image of [B, 2, 3, S, S] turned by its own random multiple of 90° (counter-clockwise as drawn).
    With ``return_turns`` also the turns [B, 2] (a coin's rotation grows by 90° per turn)."""
    k = torch.randint(0, 4, x.shape[:2], generator=generator)
    out = x.clone()
    for turns in (1, 2, 3):
        sel = k == turns
        if sel.any():
            out[sel] = torch.rot90(x[sel], turns, dims=(-2, -1))
    return (out, k) if return_turns else out


@torch.inference_mode()
def read_arrays(model: CoinYearRegressor, pairs_u8: np.ndarray, batch_size: int = 128) -> dict[str, np.ndarray]:
    """The model's reading (year, sigma, confidence, unreadable) of uint8 pairs, in eval mode."""
    was_training = model.training
    model.eval()
    flush_denormals()
    parts: dict[str, list] = {"year": [], "sigma": [], "confidence": [], "unreadable": []}
    try:
        for start in range(0, len(pairs_u8), batch_size):
            out = model.read(to_input(pairs_u8[start:start + batch_size]))
            for key in parts:
                parts[key].append(out[key].float().numpy() if key != "unreadable" else out[key].numpy())
    finally:
        model.train(was_training)
    if not len(pairs_u8):
        return {k: np.empty(0) for k in parts}
    return {k: np.concatenate(v) for k, v in parts.items()}


def reading_metrics(model: CoinYearRegressor, pairs_u8: np.ndarray, years) -> dict:
    """regression_metrics on these pairs plus the share flagged unreadable."""
    out = read_arrays(model, pairs_u8)
    metrics = regression_metrics(np.asarray(years, float), out["year"], out["sigma"])
    metrics["unreadable"] = float(np.mean(out["unreadable"])) if len(out["unreadable"]) else math.nan
    metrics["flagged_or_wide"] = float(np.mean(out["unreadable"] | (2 * Z_90 * out["sigma"] > 20))) \
        if len(out["unreadable"]) else math.nan
    return metrics


def build_corpus(config: PretrainConfig) -> tuple:
    """(train pairs, train years, val pairs, val years, train fronts' rotations in degrees, train coins with
    printed glyphs, validation coins without a year); the validation coins come from another seed.

    ``config.no_year_share`` of the training corpus are coins without a year (:func:`make_no_year`: letters or
    nothing in the year's place), at the end, year NaN; their rotation is known where letters are drawn (NaN for
    a blank). The validation year coins carry no negatives: the unreadable threshold and the interval are
    chosen on coins that have a year (keeping readable coins readable); the validation negatives (the same
    share, another seed) only measure how many of them are flagged."""
    from coin_assets.synth.varied import corpus_styles, make_corpus, make_no_year, no_year_styles

    if not 0 <= config.no_year_share < 1:
        raise ValueError(f"no_year_share must be within [0, 1), got {config.no_year_share}")
    n_none = int(round(config.no_year_share * config.corpus_size))
    n_years = config.corpus_size - n_none
    val_seed = config.corpus_seed + 1_000_003
    year_x, year_y = make_corpus(n_years, config.image_size, seed=config.corpus_seed, workers=config.corpus_workers)
    none_x, none_text = make_no_year(n_none, config.image_size, seed=config.corpus_seed,
                                     workers=config.corpus_workers)
    val_x, val_y = make_corpus(config.val_size, config.image_size, seed=val_seed, workers=config.corpus_workers)
    val_none_x, _ = make_no_year(int(round(config.no_year_share * config.val_size)), config.image_size,
                                 seed=val_seed, workers=config.corpus_workers)
    train_x = np.concatenate([year_x, none_x]) if n_none else year_x
    del year_x, none_x
    train_y = np.concatenate([year_y.astype(np.float32), np.full(n_none, np.nan, np.float32)])
    styles = corpus_styles(n_years, config.corpus_seed) + no_year_styles(n_none, config.corpus_seed)
    rotations = np.array([s.rotation for s in styles], np.float32)
    rotations[n_years:][[text == "" for text in none_text]] = np.nan  # a blank has no upright
    printed = np.array([s.relief.startswith("printed") for s in styles])
    return train_x, train_y, val_x, val_y, rotations, printed, val_none_x


def pretrain(config: PretrainConfig, corpus=None, on_epoch_end: Callable[[dict], None] | None = None) -> PretrainResult:
    """Train a CoinYearRegressor on a synthetic corpus (built here unless given: (train pairs, train years,
    val pairs, val years[, train rotations[, train printed[, validation coins without a year]]]), see
    :func:`build_corpus`), then calibrate its interval on the validation corpus. Stops after ``config.epochs`` or
    ``config.max_seconds`` of training. Without the rotations an oriented reader's orientation head is not
    supervised. A training year NaN is a coin known to carry no year: its digits are trained toward a uniform
    reading (:func:`coin_assets.ml.train.train_step`'s ``no_year``)."""
    started = time.perf_counter()
    corpus = corpus if corpus is not None else build_corpus(config)
    train_x, train_y, val_x, val_y = corpus[:4]
    train_angles = np.asarray(corpus[4], np.float32) if len(corpus) > 4 else np.full(len(train_x), np.nan, np.float32)
    easy = np.flatnonzero(corpus[5]) if len(corpus) > 5 and config.easy_fraction > 0 else np.empty(0, int)
    val_none_x = corpus[6] if len(corpus) > 6 else None
    corpus_seconds = time.perf_counter() - started if corpus is None else 0.0
    if len(train_x) < 2 or len(val_x) < 10:
        raise ValueError(f"corpus too small: {len(train_x)} training and {len(val_x)} validation pairs")
    device = resolve_device(config.device)
    flush_denormals()
    previous_threads = torch.get_num_threads()
    if config.num_threads:
        torch.set_num_threads(int(config.num_threads))
    try:
        seed_everything(config.seed)
        years = train_y.astype(float)
        years = years[np.isfinite(years)]
        model = CoinYearRegressor(config.backbone, config.mode, config.projection_dim,
                                  year_center=float(years.mean()), year_scale=max(1.0, float(years.std())),
                                  reader=config.reader, reader_resolution=config.image_size).to(device)
        oriented = model.reader == "oriented"
        steps_per_epoch = max(1, len(train_x) // config.batch_size)
        total = steps_per_epoch * config.epochs
        if config.max_steps is not None:
            total = min(total, int(config.max_steps))
        total = max(1, total)
        optimizer, scheduler = make_optimizer(model, _as_train_config(config), total)
        gen = torch.Generator().manual_seed(config.seed)
        history, step, seen, train_seconds = [], 0, 0, 0.0
        budget_total = total
        last_mark = [time.perf_counter(), 0]
        for epoch in range(1, config.epochs + 1):
            model.train()
            t0 = time.perf_counter()
            order = torch.randperm(len(train_x), generator=gen).numpy()
            loss_sum, abs_sum, n, n_years = 0.0, 0.0, 0, 0
            for b in range(steps_per_epoch):
                idx = np.sort(order[b * config.batch_size:(b + 1) * config.batch_size])
                if len(easy) >= config.batch_size and _in_easy_phase(config, step, budget_total, train_seconds
                                                                     + time.perf_counter() - t0):
                    idx = np.sort(easy[torch.randint(0, len(easy), (config.batch_size,), generator=gen).numpy()])
                x, turns = rotate_quarters(to_input(train_x[idx]), gen, return_turns=True)
                y = torch.as_tensor(train_y[idx], dtype=torch.float32, device=device)
                angles = (torch.as_tensor(train_angles[idx]) + 90.0 * turns[:, 0]) % 360.0 if oriented else None
                no_year = torch.isnan(y)
                loss, pred = train_step(model, optimizer, scheduler, x.to(device), y,
                                        angles=None if angles is None else angles.to(device),
                                        no_year=no_year if bool(no_year.any()) else None)
                step += 1
                loss_sum += float(loss) * len(idx)
                abs_sum += float((pred[:, 0] - y)[~no_year].abs().sum())
                n += len(idx)
                n_years += int((~no_year).sum())
                elapsed = train_seconds + time.perf_counter() - t0
                if config.max_seconds and step % 25 == 0:
                    # fit the LR schedule to what the time budget still allows at the recent speed (the speed
                    # of a shared machine changes: an early estimate alone cut a run to a quarter of its budget)
                    now = time.perf_counter()
                    recent = (now - last_mark[0]) / max(1, step - last_mark[1])
                    last_mark[:] = [now, step]
                    left = max(0.0, config.max_seconds - elapsed)
                    budget_total = min(total, max(step + 1, step + int(left / max(recent, 1e-6))))
                    scheduler.lr_lambdas[0] = _rescaled(budget_total)
                if step >= budget_total or (config.max_seconds and elapsed >= config.max_seconds):
                    break
            epoch_seconds = time.perf_counter() - t0
            train_seconds += epoch_seconds
            seen += n
            val = reading_metrics(model, val_x, val_y)
            row = {"epoch": epoch, "steps": step, "train_loss": loss_sum / max(1, n), "train_mae": abs_sum / max(1, n_years),
                   "val_mae": val["mae"], "val_exact": val["exact"], "seconds": epoch_seconds,
                   "pairs_per_second": n / epoch_seconds if epoch_seconds > 0 else math.nan}
            history.append(row)
            if on_epoch_end is not None:
                on_epoch_end(dict(row))
            if step >= budget_total or (config.max_seconds and train_seconds >= config.max_seconds):
                break
        model = model.cpu().eval()
        scale, val_metrics = calibrate_reader(model, val_x, val_y, val_none_x)
    finally:
        torch.set_num_threads(previous_threads)
    return PretrainResult(model=model, history=history, seconds=train_seconds, corpus_seconds=corpus_seconds,
                          pairs_per_second=seen / train_seconds if train_seconds > 0 else math.nan, steps=step,
                          val_metrics=val_metrics, interval_scale=scale, min_confidence=float(model.min_confidence))


def calibrate_reader(model: CoinYearRegressor, val_x: np.ndarray, val_y, val_none_x: np.ndarray | None = None
                     ) -> tuple[float, dict]:
    """Choose the unreadable threshold and then the conformal 90 % interval on validation coins, both through the
    model's own read path (:meth:`CoinYearRegressor.read_heads`); any earlier calibration is replaced. Returns
    (interval scale, validation metrics after calibration, with ``no_year_flagged`` when ``val_none_x`` is given)."""
    model.interval_scale.fill_(1.0)
    out = read_arrays(model, val_x)
    if model.has_digit_heads:
        calibrate_unreadable(model, out["confidence"], out["year"] == np.asarray(val_y, float))
        out = read_arrays(model, val_x)
    scale = calibrate_model(model, np.asarray(val_y, float), out["year"], out["sigma"])
    val_metrics = reading_metrics(model, val_x, val_y)
    if val_none_x is not None and len(val_none_x):
        none_out = read_arrays(model, val_none_x)
        val_metrics["no_year_flagged"] = float(np.mean(none_out["unreadable"] | (2 * Z_90 * none_out["sigma"] > 20)))
    return scale, val_metrics


def _in_easy_phase(config: PretrainConfig, step: int, total_steps: int, elapsed: float) -> bool:
    """The curriculum's first phase: the first ``easy_fraction`` of the time budget (of the steps without one)."""
    if config.max_seconds:
        return elapsed < config.easy_fraction * config.max_seconds
    return step < config.easy_fraction * total_steps


def _rescaled(total_steps: int):
    from coin_assets.ml.train import warmup_cosine

    return warmup_cosine(total_steps)


def _as_train_config(config: PretrainConfig):
    from coin_assets.ml.config import TrainConfig

    return TrainConfig(backbone=config.backbone, mode=config.mode, projection_dim=config.projection_dim, reader=config.reader,
                       image_size=config.image_size, epochs=config.epochs, batch_size=config.batch_size,
                       learning_rate=config.learning_rate, weight_decay=config.weight_decay, seed=config.seed)
