"""Training throughput: the real loop (JPEG files → workers → model) against the same steps on tensors
already in memory, in one process; plus batch prediction throughput.

    python benchmarks/bench_training.py [--backbone resnet18] [--image-size 128] [--batch-size 32]
                                        [--steps 8] [--num-workers 2] [--threads N]

(a) ``train_model`` over a CoinPairDataset reading gold-like JPEGs (long side 512) from disk with
    worker processes (augmentation on, as in training);
(b) the same model and optimiser stepped on the same number of batches, decoded beforehand;
a/b near 1 means the model is the bottleneck, well below 1 means loading is.
Photos come from ``coin_assets.synth`` when it is importable, random JPEGs (512x384) otherwise.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from coin_assets.ml.data import CoinPairDataset, CoinRecord
from coin_assets.ml.train import (
    TrainConfig,
    build_model,
    flush_denormals,
    make_optimizer,
    predict,
    resolve_num_threads,
    seed_everything,
    train_model,
    train_step,
)


def make_records(root: Path, n: int, seed: int = 0) -> tuple[list[CoinRecord], str]:
    try:
        from coin_assets.synth import generate_uploads

        coins = generate_uploads(root, n, days=1, seed=seed, max_side=512, formats=["jpg"], label_fraction=1.0)
        return [CoinRecord(c.coin_id, str(c.front_path), str(c.back_path), float(c.year)) for c in coins], "synth"
    except Exception as exc:  # the generator is optional here (and may be mid-change)
        print(f"(coin_assets.synth not usable: {exc!r}; random JPEGs instead)")
    rng = random.Random(seed)
    records = []
    for i in range(n):
        paths = []
        for side in ("front", "back"):
            img = Image.effect_noise((512, 384), 40 + rng.random() * 30).convert("RGB")
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=90)
            path = root / f"coin-{i:06d}__{side}.jpg"
            path.write_bytes(buf.getvalue())
            paths.append(str(path))
        records.append(CoinRecord(f"coin-{i:06d}", paths[0], paths[1], float(rng.randint(1950, 2025))))
    return records, "random JPEGs"


def in_memory_pairs_per_second(records: list[CoinRecord], config: TrainConfig, steps: int) -> float:
    """Same model, optimiser and step function as train_model, on batches decoded beforehand."""
    ds = CoinPairDataset(records, config.image_size, augment=config.augment)
    seed_everything(config.seed)
    batches = []
    for b in range(steps):
        items = [ds[i] for i in range(b * config.batch_size, (b + 1) * config.batch_size)]
        batches.append((torch.stack([p for p, _ in items]), torch.stack([y for _, y in items])))
    years = np.array([r.year for r in records])
    model = build_model(config, float(years.mean()), max(1.0, float(years.std()))).train()
    optimizer, scheduler = make_optimizer(model, config, steps)
    started = time.perf_counter()
    for pairs, target in batches:
        train_step(model, optimizer, scheduler, pairs, target)
    return steps * config.batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--mode", default="shared")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: train.resolve_num_threads, cores - workers)")
    args = parser.parse_args()
    flush_denormals()
    n = args.steps * args.batch_size
    config = TrainConfig(backbone=args.backbone, mode=args.mode, image_size=args.image_size, epochs=1,
                         batch_size=args.batch_size, num_workers=args.num_workers, max_steps=args.steps,
                         augment=True, device="cpu", num_threads=args.threads)
    torch.set_num_threads(resolve_num_threads(config, torch.device("cpu")))  # (b) and prediction use the same
    with tempfile.TemporaryDirectory(prefix="bench_training_") as tmp:
        t = time.perf_counter()
        records, source = make_records(Path(tmp), n)
        gen_s = time.perf_counter() - t
        mib = sum(os.path.getsize(p) for r in records for p in (r.front_path, r.back_path)) / 2**20
        print(f"{n} coin pairs ({source}, {mib:.1f} MiB of JPEG, written in {gen_s:.1f} s); "
              f"{args.backbone}/{args.mode} at {args.image_size} px, batch {args.batch_size}, {args.steps} steps")
        print(f"cpu cores {os.cpu_count()}, torch threads {torch.get_num_threads()}, "
              f"loader workers {args.num_workers}, torch {torch.__version__}")

        result = train_model(records, [], config)
        real = result.pairs_per_second
        memory = in_memory_pairs_per_second(records, config, args.steps)
        print(f"(a) real loop, JPEG files + {args.num_workers} workers : {real:8.1f} pairs/s")
        print(f"(b) same steps, tensors in memory         : {memory:8.1f} pairs/s")
        print(f"ratio a/b: {real / memory:.2f}")

        started = time.perf_counter()
        years, _ = predict(result.model, records, image_size=args.image_size, batch_size=64,
                           num_workers=args.num_workers, device="cpu")
        pred_s = time.perf_counter() - started
        print(f"batch prediction (batch 64, {args.num_workers} workers): {len(years) / pred_s:8.1f} pairs/s")
        # decoding alone, one process: what one loader worker can feed
        ds = CoinPairDataset(records, args.image_size, augment=True)
        k = min(len(ds), 128)
        started = time.perf_counter()
        for i in range(k):
            ds[i]
        decode = k / (time.perf_counter() - started)
        print(f"decode + augment alone, 1 process      : {decode:8.1f} pairs/s")
        feed = decode * max(1, args.num_workers)
        if feed < 1.5 * memory:
            verdict = "loading is the bottleneck: more workers or smaller/pre-resized images"
        elif real / memory < 0.8:
            verdict = ("loading could feed the model many times over: the gap is CPU contention "
                       "(workers or other processes preempting compute threads), not decoding")
        else:
            verdict = "the model is the bottleneck, loading keeps up"
        print(f"verdict: {verdict}")


if __name__ == "__main__":
    main()
