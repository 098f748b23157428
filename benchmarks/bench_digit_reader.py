"""The digit reader alone, on fronts turned upright by the generator's true rotation: does it learn to read,
and how fast? (The diagnosis behind the oriented reader: it separates reading from finding the orientation.)

    python benchmarks/bench_digit_reader.py [--corpus 12000] [--val 1000] [--size 64] [--seconds 600]
                                            [--easy-fraction 0.25] [--batch-size 64] [--threads 1]

Prints the learning curve (steps, pairs seen, validation exact share overall / printed digits / relief digits,
MAE) every ``--seconds / 6``, against the mean baseline's MAE on the same validation coins.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from coin_assets.ml.model import YEAR_MAX, YEAR_MIN, DigitReader, digit_targets
from coin_assets.ml.pretrain import to_input
from coin_assets.ml.train import ANGLE_JITTER_DEG
from coin_assets.synth.varied import corpus_styles, make_corpus


def fronts(n: int, size: int, seed: int, workers: int | None):
    x, y = make_corpus(n, size, seed=seed, workers=workers)
    styles = corpus_styles(n, seed)
    return (to_input(x[:, :1])[:, 0], torch.as_tensor(y.astype(np.int64)),
            torch.tensor([s.rotation for s in styles]), np.array([s.relief.startswith("printed") for s in styles]))


def decode(logits: torch.Tensor) -> torch.Tensor:
    years = torch.arange(YEAR_MIN, YEAR_MAX + 1)
    digits = torch.stack([(years // 10 ** (3 - i)) % 10 for i in range(4)], 1)
    logp = F.log_softmax(logits, -1).gather(2, digits.T.unsqueeze(0).expand(len(logits), -1, -1)).sum(1)
    return years[logp.argmax(1)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=int, default=12000)
    p.add_argument("--val", type=int, default=1000)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seconds", type=float, default=600)
    p.add_argument("--easy-fraction", type=float, default=0.25)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    tx, ty, tr, t_printed = fronts(args.corpus, args.size, 0, args.workers)
    vx, vy, vr, v_printed = fronts(args.val, args.size, 1_000_003, args.workers)
    print(f"corpus {args.corpus} + {args.val} fronts at {args.size} px in {time.perf_counter() - t0:.0f} s")
    baseline = float((vy.float() - ty.float().mean()).abs().mean())
    reader = DigitReader(32, args.size // 2, args.size)
    opt = torch.optim.AdamW(reader.parameters(), lr=args.lr, weight_decay=1e-4)
    easy = torch.as_tensor(np.flatnonzero(t_printed))
    gen = torch.Generator().manual_seed(0)

    def evaluate() -> str:
        reader.eval()
        with torch.no_grad():
            got = torch.cat([decode(reader(vx[i:i + 250], vr[i:i + 250])) for i in range(0, len(vx), 250)])
        reader.train()
        ok = (got == vy).numpy()
        mae = float((got - vy).abs().float().mean())
        return (f"exact {ok.mean():.1%} (printed {ok[v_printed].mean():.1%}, relief {ok[~v_printed].mean():.1%}), "
                f"MAE {mae:.2f} (mean baseline {baseline:.2f}, ratio {baseline / max(mae, 1e-9):.1f}x)")

    start, step, last = time.perf_counter(), 0, 0.0
    while True:
        elapsed = time.perf_counter() - start
        pool = easy if elapsed < args.easy_fraction * args.seconds and len(easy) else None
        idx = (pool[torch.randint(0, len(pool), (args.batch_size,), generator=gen)] if pool is not None
               else torch.randint(0, len(tx), (args.batch_size,), generator=gen))
        lr = args.lr * min(1.0, (step + 1) / 50) * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, elapsed / args.seconds))))
        for group in opt.param_groups:
            group["lr"] = lr
        angles = tr[idx] + (torch.rand(len(idx), generator=gen) * 2 - 1) * ANGLE_JITTER_DEG
        loss = F.cross_entropy(reader(tx[idx], angles).reshape(-1, 10), digit_targets(ty[idx].float()).reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if elapsed - last >= args.seconds / 6 or elapsed >= args.seconds:
            last = elapsed
            print(f"t={elapsed:.0f}s step={step} pairs={step * args.batch_size} loss={float(loss):.3f}  {evaluate()}",
                  flush=True)
            if elapsed >= args.seconds:
                break


if __name__ == "__main__":
    main()
