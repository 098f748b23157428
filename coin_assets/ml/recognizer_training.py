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


def train_recognizer(config: RecognizerConfig, checkpoint: str | Path | None = None,
                     on_log: Callable[[dict], None] | None = None) -> RecognizerResult:
    from coin_assets.synth.text_strips import make_strips

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    started = time.perf_counter()
    strips, labels = make_strips(config.corpus_size, config.corpus_seed, workers=config.workers)
    digest = corpus_hash(strips, labels)
    val_x, val_y = make_strips(config.val_size, config.val_seed, workers=config.workers)
    corpus_seconds = time.perf_counter() - started
    model = TextRecognizer(width=config.width, hidden=config.hidden)
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
        idx = rng.integers(0, len(strips), config.batch_size)
        x = torch.from_numpy(strips[idx])[:, None]
        loss = ctc_loss(model(x), [labels[i] for i in idx])
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
    return RecognizerResult(model=model, steps=step, seconds=seconds, history=history,
                            val_metrics=strip_metrics(model, val_x, val_y), corpus_hash=digest,
                            corpus_seconds=corpus_seconds)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Train the year reader's recogniser on generated text strips.")
    parser.add_argument("--minutes", type=float, default=RecognizerConfig.minutes)
    parser.add_argument("--corpus-size", type=int, default=RecognizerConfig.corpus_size)
    parser.add_argument("--checkpoint", default=None, help="resume from and save to this file")
    parser.add_argument("--out", required=True, help="where the weights (.pt) and their record (.json) go")
    args = parser.parse_args(argv)
    config = RecognizerConfig(minutes=args.minutes, corpus_size=args.corpus_size)
    started = time.perf_counter()
    result = train_recognizer(config, args.checkpoint, on_log=lambda e: print(json.dumps(e), flush=True))
    print(json.dumps({"final": result.val_metrics, "steps": result.steps, "wall_s": round(time.perf_counter() - started)}))
    from coin_assets.ml.year_reading import save_reader_weights

    save_reader_weights(result, config, args.out)


if __name__ == "__main__":
    main()
