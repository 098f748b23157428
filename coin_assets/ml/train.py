"""Training loop, batch prediction and regression metrics for CoinYearRegressor (plain PyTorch)."""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from coin_assets.ml.calibration import Z_90
from coin_assets.ml.config import TrainConfig
from coin_assets.ml.data import CoinPairDataset, CoinRecord, make_loader
from coin_assets.ml.model import CoinYearRegressor, reader_loss

WARMUP_FRACTION = 0.1
FINAL_LR_FRACTION = 0.02
GRAD_CLIP_NORM = 5.0


@dataclass
class TrainResult:
    model: CoinYearRegressor
    history: list[dict] = field(default_factory=list)  # one row per epoch
    seconds: float = 0.0
    pairs_per_second: float = 0.0  # training throughput of the real loop (data loading included)


def resolve_device(name: str) -> torch.device:
    """'auto' → cuda when available, else cpu; anything else is passed to torch.device."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_num_threads(config: TrainConfig, device: torch.device) -> int:
    """Intra-op threads for training. An explicit ``config.num_threads`` wins. Otherwise, on the CPU, the
    cores left once the loader workers have one each (at least 1); on a GPU, torch's default.

    Why not torch's default (one thread per core) on the CPU: OpenMP threads busy-wait for each other, so
    when anything else wants a core (our own loader workers, other Dagster steps) every step stalls.
    Measured on the 2-core dev machine while other processes were running, resnet18 at 128 px, batch 32,
    real loop with 2 workers: 2 threads 6.5 pairs/s, 1 thread 21.4 pairs/s (tensors in memory: 9.0 vs 25.6)."""
    if config.num_threads:
        return int(config.num_threads)
    if device.type != "cpu":
        return torch.get_num_threads()
    return max(1, available_cores() - max(0, int(config.num_workers)))


def flush_denormals() -> None:
    """Process-wide: treat denormal floats as zero on the CPU. Freshly initialised or barely trained
    MobileNets in eval mode produce denormal activations, which made a CPU forward pass up to ~100x
    slower (measured 1.7 s instead of 0.01 s for 3 pairs at 32 px); the numeric effect is nil."""
    torch.set_flush_denormal(True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def warmup_cosine(total_steps: int, warmup_fraction: float = WARMUP_FRACTION, final: float = FINAL_LR_FRACTION):
    """LR multiplier: linear warm-up then cosine decay to ``final``. Well defined for any total ≥ 1
    (OneCycleLR misbehaves for the 3-step smoke runs)."""
    warmup = max(1, int(round(total_steps * warmup_fraction)))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases, norm layers and the year buffers' neighbours (1-D parameters)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _labelled_years(records: Sequence[CoinRecord], what: str) -> np.ndarray:
    years = np.array([np.nan if r.year is None else float(r.year) for r in records], dtype=float)
    if np.isnan(years).any():
        raise ValueError(f"{int(np.isnan(years).sum())} {what} records have no year")
    return years


def make_optimizer(model: nn.Module, config: TrainConfig, total_steps: int):
    """AdamW (no decay on 1-D parameters) with a per-step warm-up + cosine schedule over total_steps."""
    optimizer = torch.optim.AdamW(_param_groups(model, config.weight_decay), lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(max(1, total_steps)))
    return optimizer, scheduler


ANGLE_JITTER_DEG = 10.0  # the reader is trained on fronts turned back by the true angle ± this: the head's error
# An oriented reader also reads the backs of a quarter of each batch (no year there) at a random angle, against
# a uniform target: a coin without digits should give a flat posterior (unreadable), not a hallucinated year.
# Measured before this term (reader alone, 61 % exact): 96 % of no-year coins under the 0.35 confidence threshold.
BLANK_WEIGHT = 0.5
BLANK_SHARE = 0.25
# Coins known to carry no year (the pre-training corpus's fronts with letters or nothing in the year's place)
# are read against a uniform target, each weighing what a year coin's digits weigh (the term is summed over them
# and divided by the batch size): without them the reader read letter tokens as digits, confidently (3 % of
# no-year coins, all tokens, neither flagged nor sent to review). Measured (bench_reader.py --minutes 25): the
# mean over the batch's no-year coins instead (each weighing ~12 year coins at an 8 % share) flagged them all
# but cost the year coins 79.8 → 63.0 % exact.
NO_YEAR_WEIGHT = 1.0


def train_step(model: CoinYearRegressor, optimizer, scheduler, pairs: torch.Tensor, years: torch.Tensor,
               angles: torch.Tensor | None = None, no_year: torch.Tensor | None = None):
    """One optimiser step on a batch already on the model's device; returns (loss, predictions [B, 2]), detached.
    ``angles``: the fronts' true rotation in degrees (NaN where unknown), for an oriented reader: it supervises
    the orientation head, and the digit reader reads the front turned back by it (± ANGLE_JITTER_DEG).
    ``no_year`` [B] bool: coins known to carry no year (their ``years`` NaN): their digit heads are trained toward
    a uniform reading (NO_YEAR_WEIGHT per coin), so that they come out unreadable."""
    reader_angles = None
    if angles is not None:
        angles = angles.to(pairs.device)
        reader_angles = angles + (torch.rand_like(angles) * 2 - 1) * ANGLE_JITTER_DEG
    heads = model.forward_heads(pairs, reader_angles=reader_angles)
    loss = reader_loss(model, heads, years, angles=angles)
    if getattr(model, "reader", "pooled") == "oriented" and BLANK_WEIGHT:
        backs = pairs[: max(1, int(len(pairs) * BLANK_SHARE)), 1]
        blank = model.digit_reader(backs, torch.rand(len(backs), device=pairs.device) * 360.0)
        loss = loss - BLANK_WEIGHT * torch.log_softmax(blank.float(), -1).mean()
    if no_year is not None and NO_YEAR_WEIGHT and "digit_logits" in heads:
        no_year = no_year.to(pairs.device)
        if bool(no_year.any()):
            flat = torch.log_softmax(heads["digit_logits"][no_year].float(), -1).mean((1, 2))
            loss = loss - NO_YEAR_WEIGHT * flat.sum() / len(pairs)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP_NORM)
    optimizer.step()
    scheduler.step()
    with torch.no_grad():
        out = model.read_heads({k: v.detach() for k, v in heads.items()})
    return loss.detach(), torch.stack([out["year"], out["sigma"]], 1)


def build_model(config: TrainConfig, year_center: float, year_scale: float) -> CoinYearRegressor:
    return CoinYearRegressor(backbone=config.backbone, mode=config.mode, projection_dim=config.projection_dim,
                             year_center=year_center, year_scale=year_scale, weights_path=config.weights_path,
                             digit_heads=config.digit_heads, reader=config.reader,
                             reader_resolution=config.image_size)


@torch.inference_mode()
def _evaluate(model: CoinYearRegressor, loader, device: torch.device) -> tuple[float, float]:
    """(mean loss, MAE in years) over a loader of labelled pairs."""
    model.eval()
    loss_sum, abs_sum, n = 0.0, 0.0, 0
    for pairs, years in loader:
        pairs = pairs.to(device, non_blocking=True)
        years = years.to(device, non_blocking=True)
        heads = model.forward_heads(pairs)
        pred = model.read_heads(heads)["year"][:, None]
        loss_sum += float(reader_loss(model, heads, years)) * len(years)
        abs_sum += float((pred[:, 0] - years).abs().sum())
        n += len(years)
    if n == 0:
        return math.nan, math.nan
    return loss_sum / n, abs_sum / n


def train_model(
    train_records: Sequence[CoinRecord],
    val_records: Sequence[CoinRecord],
    config: TrainConfig,
    on_epoch_end: Callable[[dict], None] | None = None,
    read_bytes: Callable[[str], bytes] | None = None,
) -> TrainResult:
    """Train a CoinYearRegressor on labelled pairs; validate at the end of every epoch.

    History rows: epoch, train_loss, train_mae, val_loss, val_mae, seconds (epoch wall time incl. validation),
    pairs_per_second (training pairs / time in the training part of the epoch, data loading included).
    The returned model is on the CPU in eval mode."""
    if not train_records:
        raise ValueError("no training records")
    train_years = _labelled_years(train_records, "training")
    _labelled_years(val_records, "validation")
    device = resolve_device(config.device)
    flush_denormals()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(resolve_num_threads(config, device))
    try:
        return _train(train_records, val_records, config, train_years, device, on_epoch_end, read_bytes)
    finally:
        torch.set_num_threads(previous_threads)


def _train(train_records, val_records, config: TrainConfig, train_years: np.ndarray, device: torch.device,
           on_epoch_end, read_bytes) -> TrainResult:
    seed_everything(config.seed)

    year_center = float(np.mean(train_years))
    year_scale = max(1.0, float(np.std(train_years)))
    model = build_model(config, year_center, year_scale).to(device)

    pin = device.type == "cuda"
    train_ds = CoinPairDataset(train_records, config.image_size, augment=config.augment, read_bytes=read_bytes,
                               rotation_deg=config.rotation_deg)
    # drop the ragged last batch (a 1-pair batch breaks BatchNorm on 1x1 feature maps) unless it is the only one
    train_loader = make_loader(train_ds, config.batch_size, shuffle=True, num_workers=config.num_workers,
                               seed=config.seed, drop_last=len(train_ds) > config.batch_size, pin_memory=pin)
    val_loader = None
    if val_records:
        val_ds = CoinPairDataset(val_records, config.image_size, augment=False, read_bytes=read_bytes)
        val_loader = make_loader(val_ds, max(config.batch_size, 64), shuffle=False,
                                 num_workers=min(config.num_workers, math.ceil(len(val_ds) / 64)),
                                 seed=config.seed, pin_memory=pin)

    steps_per_epoch = len(train_loader)
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total_steps = min(total_steps, int(config.max_steps))
    total_steps = max(1, total_steps)
    optimizer, scheduler = make_optimizer(model, config, total_steps)

    history: list[dict] = []
    step = 0
    train_pairs, train_seconds = 0, 0.0
    started = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        loss_sum = torch.zeros((), device=device)
        abs_sum = torch.zeros((), device=device)
        n = 0
        for pairs, years in train_loader:
            pairs = pairs.to(device, non_blocking=True)
            years = years.to(device, non_blocking=True)
            loss, pred = train_step(model, optimizer, scheduler, pairs, years)
            step += 1
            loss_sum += loss * len(years)
            abs_sum += (pred[:, 0] - years).abs().sum()
            n += len(years)
            if step >= total_steps:
                break
        epoch_train_seconds = time.perf_counter() - epoch_start
        train_pairs += n
        train_seconds += epoch_train_seconds
        val_loss, val_mae = _evaluate(model, val_loader, device) if val_loader is not None else (math.nan, math.nan)
        row = {
            "epoch": epoch,
            "train_loss": float(loss_sum) / max(1, n),
            "train_mae": float(abs_sum) / max(1, n),
            "val_loss": val_loss,
            "val_mae": val_mae,
            "seconds": time.perf_counter() - epoch_start,
            "pairs_per_second": n / epoch_train_seconds if epoch_train_seconds > 0 else math.nan,
        }
        history.append(row)
        if on_epoch_end is not None:
            on_epoch_end(dict(row))
        if step >= total_steps:
            break
    seconds = time.perf_counter() - started
    model = model.cpu().eval()
    return TrainResult(model=model, history=history, seconds=seconds,
                       pairs_per_second=train_pairs / train_seconds if train_seconds > 0 else math.nan)


@torch.inference_mode()
def predict(
    model: CoinYearRegressor,
    records: Sequence[CoinRecord],
    image_size: int,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str = "auto",
    read_bytes: Callable[[str], bytes] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(years, sigmas) as float64 arrays in record order. The model is run in eval mode on ``device``
    and put back on its original device and train/eval mode afterwards."""
    if not records:
        return np.empty(0), np.empty(0)
    dev = resolve_device(device)
    flush_denormals()
    was_training = model.training
    try:
        original = next(model.parameters()).device
    except StopIteration:
        original = dev
    model.to(dev).eval()
    ds = CoinPairDataset(records, image_size, augment=False, read_bytes=read_bytes)
    loader = make_loader(ds, batch_size, shuffle=False, num_workers=min(num_workers, math.ceil(len(ds) / batch_size)),
                         pin_memory=dev.type == "cuda")
    out = []
    try:
        for pairs, _ in loader:
            out.append(model(pairs.to(dev, non_blocking=True)).float().cpu())
    finally:
        model.to(original).train(was_training)
    pred = torch.cat(out).double().numpy()
    return pred[:, 0].copy(), pred[:, 1].copy()


def regression_metrics(y_true, y_pred, sigma) -> dict:
    """mae, rmse, median_ae (years); exact: share with round(pred) == year; within_2: |round(pred) - year| <= 2;
    coverage_90: share of true years within mu ± 1.6449·sigma; n. Rows with an unknown (NaN) year are skipped.
    round() is Python's / NumPy's round-half-to-even."""
    y_true = np.asarray(y_true, dtype=float).ravel()
    y_pred = np.asarray(y_pred, dtype=float).ravel()
    sigma = np.asarray(sigma, dtype=float).ravel()
    if not (len(y_true) == len(y_pred) == len(sigma)):
        raise ValueError(f"length mismatch: {len(y_true)}, {len(y_pred)}, {len(sigma)}")
    keep = np.isfinite(y_true)
    y_true, y_pred, sigma = y_true[keep], y_pred[keep], sigma[keep]
    n = int(len(y_true))
    if n == 0:
        return {k: math.nan for k in ("mae", "rmse", "median_ae", "exact", "within_2", "coverage_90")} | {"n": 0}
    err = y_pred - y_true
    rounded_err = np.abs(np.rint(y_pred) - y_true)
    return {
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "median_ae": float(np.median(np.abs(err))),
        "exact": float(np.mean(rounded_err < 0.5)),
        "within_2": float(np.mean(rounded_err <= 2 + 1e-9)),
        "coverage_90": float(np.mean(np.abs(err) <= Z_90 * sigma)),
        "n": n,
    }
