"""Training the year reader's recogniser on generated text strips (:mod:`coin_assets.synth.text_strips`).

Plain Python: ``make pretrain`` and the ``synthetic_pretraining`` asset both call :func:`train_recognizer`.
The corpus is rendered once (a few processes), held as uint8, and a fresh chunk replaces part of it every
``refresh_every`` steps, so a long run keeps seeing new strips. A checkpoint (weights, optimiser, step, the
history) is written every ``checkpoint_every`` steps; a run given the same checkpoint path resumes from it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from coin_assets.ml.text_recognizer import TextRecognizer, ctc_loss, read_strips


@dataclass
class RecognizerConfig:
    corpus_size: int = 40000
    val_size: int = 2000
    corpus_seed: int = 0
    val_seed: int = 1
    width: int = 24
    hidden: int = 96
    batch_size: int = 96
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    minutes: float = 30.0  # the time budget; training stops at the first of minutes and max_steps
    max_steps: int | None = None
    refresh_every: int = 1500  # steps between replacing a tenth of the corpus with new strips
    checkpoint_every: int = 500
    seed: int = 0
    num_threads: int | None = None
    workers: int = 2  # strip rendering processes
    # crops the reader's own detector cuts from generated photos (coin_assets.ml.reader_crops), mixed into
    # every batch at ``mined_share``; 0 photos: strips only
    mined_photos: int = 0
    mined_seed: int = 31
    mined_val_photos: int = 300
    mined_val_seed: int = 32
    mined_share: float = 0.5
    init_weights: str | None = None  # start from these weights (a .pt of load_recognizer) instead of at random


@dataclass
class RecognizerResult:
    model: TextRecognizer
    steps: int
    seconds: float
    history: list[dict] = field(default_factory=list)
    val_metrics: dict = field(default_factory=dict)
    corpus_hash: str = ""
    corpus_seconds: float = 0.0


def corpus_hash(strips: np.ndarray, labels: list[str]) -> str:
    h = hashlib.sha256(strips.tobytes())
    h.update("\n".join(labels).encode())
    return h.hexdigest()[:16]


def strip_metrics(model: TextRecognizer, strips: np.ndarray, labels: list[str]) -> dict:
    """Exact line accuracy, on all strips and on the years (4 digits) alone."""
    decoded = read_strips(model, strips)
    exact = np.array([d.text == label for d, label in zip(decoded, labels, strict=True)])
    years = np.array([len(label) == 4 and label.isdigit() for label in labels])
    return {"line_exact": float(exact.mean()) if len(exact) else math.nan,
            "year_exact": float(exact[years].mean()) if years.any() else math.nan}


def _mined(photos: int, seed: int, workers: int, cache_dir: str | Path | None) -> tuple[np.ndarray, list[str]]:
    """The reader's crops of ``photos`` generated photos, from ``cache_dir`` when mined there before."""
    from coin_assets.ml.reader_crops import load_crops, mine_crops, save_crops

    cached = Path(cache_dir) / f"mined-{seed}-{photos}.npz" if cache_dir else None
    if cached and cached.exists():
        return load_crops(cached)
    strips, labels, per_photo = mine_crops(photos, seed, workers=workers)
    if cached:
        cached.parent.mkdir(parents=True, exist_ok=True)
        save_crops(cached, strips, labels, per_photo)
    return strips, labels


def _jitter(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Contrast, brightness and noise, per crop: the mined crops are few next to the strips."""
    b = x.shape[0]
    scale = torch.empty(b, 1, 1, 1).uniform_(0.7, 1.3, generator=gen)
    shift = torch.empty(b, 1, 1, 1).uniform_(-25, 25, generator=gen)
    noise = torch.randn(x.shape, generator=gen) * torch.empty(b, 1, 1, 1).uniform_(0, 6, generator=gen)
    mean = x.mean(dim=(2, 3), keepdim=True)
    return ((x - mean) * scale + mean + shift + noise).clamp(0, 255)


def train_recognizer(config: RecognizerConfig, checkpoint: str | Path | None = None,
                     on_log: Callable[[dict], None] | None = None,
                     cache_dir: str | Path | None = None) -> RecognizerResult:
    from coin_assets.synth.text_strips import make_strips

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    started = time.perf_counter()
    strips, labels = make_strips(config.corpus_size, config.corpus_seed, workers=config.workers)
    digest = corpus_hash(strips, labels)
    val_x, val_y = make_strips(config.val_size, config.val_seed, workers=config.workers)
    mined_x, mined_y = _mined(config.mined_photos, config.mined_seed, config.workers, cache_dir) if config.mined_photos else (None, [])
    mined_val = _mined(config.mined_val_photos, config.mined_val_seed, config.workers, cache_dir) if config.mined_photos else None
    if mined_x is not None:
        digest = corpus_hash(np.concatenate([strips[:1000], mined_x]), labels[:1000] + mined_y)
    corpus_seconds = time.perf_counter() - started
    model = TextRecognizer(width=config.width, hidden=config.hidden)
    if config.init_weights:
        from coin_assets.ml.year_reading import load_recognizer

        model.load_state_dict(load_recognizer(config.init_weights).state_dict())
    jitter_gen = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    step, history, next_chunk = 0, [], config.corpus_size
    if checkpoint and Path(checkpoint).exists():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, history, next_chunk = state["step"], state["history"], state.get("next_chunk", next_chunk)
    budget = config.minutes * 60.0
    train_started = time.perf_counter()
    elapsed_before = history[-1]["seconds"] if history else 0.0
    total_estimate = config.max_steps or 10 ** 9
    losses: list[float] = []
    while True:
        elapsed = elapsed_before + time.perf_counter() - train_started
        if elapsed >= budget or step >= total_estimate:
            break
        # cosine over the time budget (the step count is unknown ahead on a shared machine)
        frac = min(1.0, max(elapsed / budget, step / total_estimate))
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac))) * min(1.0, (step + 1) / 200)
        model.train()
        n_mined = round(config.batch_size * config.mined_share) if mined_x is not None and len(mined_y) else 0
        idx = rng.integers(0, len(strips), config.batch_size - n_mined)
        x = torch.from_numpy(strips[idx])[:, None]
        batch_labels = [labels[i] for i in idx]
        if n_mined:
            m_idx = rng.integers(0, len(mined_y), n_mined)
            x = torch.cat([x.float(), _jitter(torch.from_numpy(mined_x[m_idx])[:, None].float(), jitter_gen)])
            batch_labels += [mined_y[i] for i in m_idx]
        loss = ctc_loss(model(x), batch_labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        losses.append(loss.item())
        step += 1
        if step % config.refresh_every == 0:
            n_new = config.corpus_size // 10
            new_x, new_y = make_strips(n_new, config.corpus_seed, workers=config.workers, start=next_chunk)
            slots = rng.choice(len(strips), n_new, replace=False)
            strips[slots] = new_x
            for s, label in zip(slots, new_y, strict=True):
                labels[s] = label
            next_chunk += n_new
        if step % config.checkpoint_every == 0:
            entry = {"step": step, "seconds": round(elapsed_before + time.perf_counter() - train_started, 1),
                     "loss": float(np.mean(losses[-config.checkpoint_every:])), **strip_metrics(model, val_x[:500], val_y[:500])}
            if mined_val is not None:
                entry["detected_year_exact"] = strip_metrics(model, *mined_val)["year_exact"]
            history.append(entry)
            if on_log:
                on_log(entry)
            if checkpoint:
                tmp = Path(f"{checkpoint}.tmp")
                torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                            "history": history, "next_chunk": next_chunk, "config": asdict(config)}, tmp)
                os.replace(tmp, checkpoint)
    seconds = elapsed_before + time.perf_counter() - train_started
    model.eval()
    val_metrics = strip_metrics(model, val_x, val_y)
    if mined_val is not None:
        val_metrics["detected_year_exact"] = strip_metrics(model, *mined_val)["year_exact"]
    return RecognizerResult(model=model, steps=step, seconds=seconds, history=history,
                            val_metrics=val_metrics, corpus_hash=digest,
                            corpus_seconds=corpus_seconds)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Train the year reader's recogniser on generated text strips.")
    parser.add_argument("--minutes", type=float, default=RecognizerConfig.minutes)
    parser.add_argument("--corpus-size", type=int, default=RecognizerConfig.corpus_size)
    parser.add_argument("--checkpoint", default=None, help="resume from and save to this file")
    parser.add_argument("--mined-photos", type=int, default=0,
                        help="also train on the reader's own crops of this many generated photos")
    parser.add_argument("--learning-rate", type=float, default=RecognizerConfig.learning_rate)
    parser.add_argument("--init", default=None, help="start from these weights (.pt)")
    parser.add_argument("--cache-dir", default=None, help="keep the mined crops here, to reuse them")
    parser.add_argument("--out", required=True, help="where the weights (.pt) and their record (.json) go")
    args = parser.parse_args(argv)
    config = RecognizerConfig(minutes=args.minutes, corpus_size=args.corpus_size, mined_photos=args.mined_photos,
                              init_weights=args.init, learning_rate=args.learning_rate)
    started = time.perf_counter()
    result = train_recognizer(config, args.checkpoint, on_log=lambda e: print(json.dumps(e), flush=True),
                              cache_dir=args.cache_dir)
    print(json.dumps({"final": result.val_metrics, "steps": result.steps, "wall_s": round(time.perf_counter() - started)}))
    from coin_assets.ml.year_reading import save_reader_weights

    save_reader_weights(result, config, args.out)


if __name__ == "__main__":
    main()
