"""The reading goals in one command: corpus speed, training within a time budget, data-path ratio, and
the model's figures on our generator's test coins, the held-out renderer and coins without a year.

    python benchmarks/bench_reader.py [--corpus 20000] [--val 1000] [--size 64] [--minutes 9]
                                      [--backbone mobilenet_v3_small] [--epochs 3] [--test 500]
                                      [--holdout 300] [--no-year 100] [--save reader.pt] [--reader oriented]
                                      [--threads 1] [--corpus-cache corpus.npz]
                                      [--load reader.pt [--recalibrate] [--reader-offsets 0,-7,7]]

Prints (a) corpus generation pairs/s; (b) training seconds, steps, pairs/s; (c) the data path
(uint8 corpus → normalised, rotated batch → step) against stepping the same model on a batch already in
memory, interleaved in the same process, and their ratio; (d) MAE / exact / 90 % coverage / unreadable
share on the generator's test split (another seed) with the mean baseline and the ratio to it, and for the oriented
reader that split read at the estimated angle only against averaged over ``reader_offsets`` (MAE, exact, pairs/s,
speed ratio; ``--recalibrate`` with ``--load`` chooses the calibration again on validation); (e) the same
on the held-out renderer (coin_assets.synth.holdout, never trained on); (f) the share of no-year coins
flagged unreadable or given an interval wider than the review threshold (COIN_ASSETS_REVIEW_MAX_INTERVAL), by
kind. Under (d) and (e), where the error sits (:func:`error_breakdown`). The training corpus holds ``--no-year-share`` coins without a year from the training generator
(coin_assets.synth.varied.make_no_year), never the no-year coins measured here.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from coin_assets.ml.calibration import Z_90
from coin_assets.ml.config import PretrainConfig
from coin_assets.ml.pretrain import (
    build_corpus,
    calibrate_reader,
    pretrain,
    read_arrays,
    rotate_quarters,
    to_input,
)
from coin_assets.ml.train import make_optimizer, regression_metrics, train_step
from coin_assets.settings import Settings
from coin_assets.synth.holdout import NO_YEAR_KINDS, holdout_set, no_year_set
from coin_assets.synth.varied import make_corpus


def data_path_ratio(model, corpus_x, corpus_y, batch_size: int, rounds: int = 6) -> tuple[float, float, float]:
    """(pairs/s through the data path, pairs/s on an in-memory batch, ratio); interleaved, on a copy."""
    import copy

    m = copy.deepcopy(model).train()
    from coin_assets.ml.pretrain import _as_train_config

    opt, sched = make_optimizer(m, _as_train_config(PretrainConfig(batch_size=batch_size)), 1000)
    gen = torch.Generator().manual_seed(0)
    ready = to_input(corpus_x[:batch_size])
    ready_y = torch.as_tensor(corpus_y[:batch_size], dtype=torch.float32)
    t_path = t_mem = 0.0
    rng = np.random.default_rng(0)
    for _ in range(rounds):
        t0 = time.perf_counter()
        idx = np.sort(rng.choice(len(corpus_x), batch_size, replace=False))
        x = rotate_quarters(to_input(corpus_x[idx]), gen)
        train_step(m, opt, sched, x, torch.as_tensor(corpus_y[idx], dtype=torch.float32))
        t1 = time.perf_counter()
        train_step(m, opt, sched, ready, ready_y)
        t2 = time.perf_counter()
        t_path += t1 - t0
        t_mem += t2 - t1
    n = rounds * batch_size
    return n / t_path, n / t_mem, t_mem / t_path


@torch.inference_mode()
def orientation_errors(model, pairs_u8, true_deg) -> np.ndarray:
    """|estimated − true| front rotation in degrees (on the circle), in eval mode."""
    model.eval()
    est = torch.cat([model.forward_heads(to_input(pairs_u8[i:i + 128]))["angle"] for i in range(0, len(pairs_u8), 128)])
    d = (est.numpy() - np.asarray(true_deg)) % 360
    return np.minimum(d, 360 - d)


def report(name: str, model, pairs, years, review_width: float, train_mean: float) -> dict:
    t0 = time.perf_counter()
    out = read_arrays(model, pairs)
    seconds = time.perf_counter() - t0
    m = regression_metrics(years.astype(float), out["year"], out["sigma"])
    baseline = float(np.mean(np.abs(years.astype(float) - train_mean)))
    flagged = out["unreadable"] | (2 * Z_90 * out["sigma"] > review_width)
    print(f"{name:>22}: n={m['n']} MAE={m['mae']:.2f} y  exact={m['exact']:.1%}  within±2={m['within_2']:.1%}  "
          f"90%-coverage={m['coverage_90']:.1%}  unreadable={np.mean(out['unreadable']):.1%}  "
          f"to-review={np.mean(flagged):.1%}  mean-baseline MAE={baseline:.2f} (ratio {baseline / max(m['mae'], 1e-9):.2f}x)"
          f"  [{len(pairs) / seconds:.0f} pairs/s inference]")
    print(f"{'':>22}  {error_breakdown(years, out['year'], out['confidence'], out['unreadable'])}")
    return m


def error_breakdown(years, predicted, confidence, unreadable) -> str:
    """Where the absolute error sits: per |error| band the coins, their share of the total |error|, their median
    posterior peak and the share flagged unreadable; the wrong digit positions; MAE of unreadable vs readable coins."""
    years, predicted = np.asarray(years, float), np.asarray(predicted, float)
    err = np.abs(np.rint(predicted) - years)
    total = max(float(err.sum()), 1e-9)
    bands = []
    for lo, hi, label in ((0, 0, "0"), (1, 2, "1-2"), (3, 9, "3-9"), (10, 99, "10-99"), (100, np.inf, ">=100")):
        sel = (err >= lo) & (err <= hi)
        if sel.any():
            bands.append(f"{label}: {sel.sum()} ({sel.mean():.1%}, {err[sel].sum() / total:.0%} of |error|, peak "
                         f"{np.median(confidence[sel]):.2f}, {np.mean(unreadable[sel]):.0%} unreadable)")
    wrong = err > 0
    digits = [(np.rint(a).astype(int)[:, None] // 10 ** np.arange(3, -1, -1)) % 10 for a in (predicted, years)]
    positions = (digits[0] != digits[1])[wrong].mean(0) if wrong.any() else np.zeros(4)
    parts = ["|error| " + "; ".join(bands),
             "wrong digit (of wrong years) " + "/".join(f"{p:.0%}" for p in positions) + " (thousands..units)"]
    for name, sel in (("unreadable", unreadable), ("readable", ~unreadable)):
        if sel.any():
            parts.append(f"{name} {np.mean(sel):.1%}: MAE {err[sel].mean():.2f}, {err[sel].sum() / total:.0%} of |error|")
    return " | ".join(parts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=int, default=20000)
    p.add_argument("--val", type=int, default=1000)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--minutes", type=float, default=9.0, help="training time budget")
    p.add_argument("--epochs", type=int, default=30, help="upper bound; the time budget decides")
    p.add_argument("--backbone", default=PretrainConfig.backbone)
    p.add_argument("--reader", default=PretrainConfig.reader, help="pooled | oriented")
    p.add_argument("--easy-fraction", type=float, default=PretrainConfig.easy_fraction,
                   help="share of the budget on printed digits first (curriculum)")
    p.add_argument("--no-year-share", type=float, default=PretrainConfig.no_year_share,
                   help="share of the training corpus without a year (letters or nothing in its place)")
    p.add_argument("--threads", type=int, default=None, help="torch threads while training")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--test", type=int, default=500)
    p.add_argument("--holdout", type=int, default=300)
    p.add_argument("--no-year", type=int, default=100)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--save", default=None, help="write the trained model's state_dict here")
    p.add_argument("--load", default=None, help="evaluate this saved state_dict (from --save) instead of training")
    p.add_argument("--recalibrate", action="store_true", help="with --load: choose the unreadable threshold and "
                   "the 90 %% interval again on the corpus's validation coins (after a change to the read path)")
    p.add_argument("--reader-offsets", default=None, help="with --load: the oriented reader's angles around the "
                   "estimate, degrees, comma-separated (default: the model's, READER_OFFSETS_DEG; '0' reads one angle)")
    p.add_argument("--corpus-cache", default=None, help="an .npz: loaded if it exists (same sizes and size), else "
                   "written after generating the corpus")
    args = p.parse_args()
    config = PretrainConfig(corpus_size=args.corpus, val_size=args.val, image_size=args.size, backbone=args.backbone,
                            epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
                            max_seconds=args.minutes * 60, corpus_workers=args.workers, device=args.device,
                            reader=args.reader, easy_fraction=args.easy_fraction, num_threads=args.threads,
                            no_year_share=args.no_year_share)
    print(f"torch threads {torch.get_num_threads()}, config {config}")
    t0 = time.perf_counter()
    cached_corpus = bool(args.corpus_cache and os.path.exists(args.corpus_cache))
    if cached_corpus:
        with np.load(args.corpus_cache) as cached:
            corpus = tuple(cached[f"a{i}"] for i in range(len(cached.files)))
        n_none = int(np.isnan(corpus[1].astype(float)).sum())
        if (len(corpus[0]), len(corpus[2]), corpus[0].shape[2], n_none, len(corpus)) != (
                args.corpus, args.val, args.size, int(round(args.no_year_share * args.corpus)), 7):
            raise SystemExit(f"{args.corpus_cache} holds another corpus: delete it or pick another path")
    else:
        corpus = build_corpus(config)
        if args.corpus_cache:
            np.savez(args.corpus_cache, **{f"a{i}": a for i, a in enumerate(corpus)})
    gen_s = time.perf_counter() - t0
    n_pairs = len(corpus[0]) + len(corpus[2])
    how = "loaded from the cache" if cached_corpus else "generated"
    print(f"corpus: {n_pairs} pairs at {args.size} px {how} in {gen_s:.1f} s ({n_pairs / gen_s:.0f} pairs/s), "
          f"{corpus[0].nbytes / 2**20:.0f} MiB")
    if args.load:  # a model saved by an earlier run (--save): evaluate only
        from types import SimpleNamespace

        from coin_assets.ml.model import CoinYearRegressor

        model = CoinYearRegressor(config.backbone, config.mode, config.projection_dim, reader=config.reader,
                                  reader_resolution=config.image_size)
        model.load_state_dict(torch.load(args.load, map_location="cpu", weights_only=True))
        result = SimpleNamespace(model=model.eval())
        print(f"loaded {args.load} (min_confidence {float(model.min_confidence):.3f}, "
              f"interval scale {float(model.interval_scale):.3f})")
        if args.reader_offsets is not None:
            model.reader_offsets = tuple(float(o) for o in args.reader_offsets.split(","))
            print(f"reader offsets {model.reader_offsets}")
        if args.recalibrate:
            scale, val_metrics = calibrate_reader(model, corpus[2], corpus[3], corpus[6])
            print(f"recalibrated on {len(corpus[2])} validation coins: unreadable below "
                  f"{float(model.min_confidence):.3f}, interval scale {scale:.3f}; validation after calibration: "
                  f"{ {k: round(v, 3) for k, v in val_metrics.items()} }")
    else:
        result = pretrain(config, corpus=corpus, on_epoch_end=lambda row: print("  epoch", {
            k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, flush=True))
        print(f"training: {result.seconds:.0f} s, {result.steps} steps, {result.pairs_per_second:.1f} pairs/s, "
              f"interval scale {result.interval_scale:.3f}, unreadable below {result.min_confidence:.3f}; "
              f"validation after calibration: { {k: round(v, 3) for k, v in result.val_metrics.items()} }")
    if args.save and not args.load:
        torch.save(result.model.state_dict(), args.save)
        print(f"saved {args.save}")
    path, mem, ratio = data_path_ratio(result.model, corpus[0], corpus[1], args.batch_size)
    print(f"data path: {path:.1f} pairs/s through the corpus path vs {mem:.1f} pairs/s on an in-memory batch: "
          f"ratio {ratio:.2f}")
    review_width = Settings.from_env().review_max_interval
    train_mean = float(np.nanmean(corpus[1].astype(float)))  # the corpus's no-year coins are NaN
    test_x, test_y = make_corpus(args.test, args.size, seed=config.corpus_seed + 2_000_029, workers=args.workers)
    report("generator test", result.model, test_x, test_y, review_width, train_mean)
    if result.model.reader == "oriented":
        from coin_assets.synth.varied import corpus_orientations

        true_angles = corpus_orientations(args.test, config.corpus_seed + 2_000_029)
        err = orientation_errors(result.model, test_x, true_angles)
        with torch.inference_mode():
            upright = torch.cat([result.model.read_heads(result.model.forward_heads(
                to_input(test_x[i:i + 128]), reader_angles=torch.as_tensor(true_angles[i:i + 128])))["year"]
                for i in range(0, len(test_x), 128)]).numpy()
        print(f"{'orientation (test)':>22}: median error {np.median(err):.1f} deg, within 15 deg {np.mean(err < 15):.1%}, "
              f"off by more than 90 deg {np.mean(err > 90):.1%}; exact when read at the true angle "
              f"{np.mean(upright == test_y):.1%}")
        offsets = result.model.reader_offsets
        timings = {}
        for name, chosen in (("one angle", (0.0,)), ("offsets", offsets), ("one angle again", (0.0,))):
            result.model.reader_offsets = chosen
            t0 = time.perf_counter()
            year = read_arrays(result.model, test_x)["year"]
            timings[name] = (len(test_x) / (time.perf_counter() - t0), np.mean(np.abs(year - test_y)),
                             np.mean(year == test_y))
        result.model.reader_offsets = offsets
        one, tta = timings["one angle again"], timings["offsets"]
        print(f"{'reader angles (test)':>22}: at the estimate only MAE {one[1]:.2f}, exact {one[2]:.1%}, {one[0]:.0f} pairs/s; "
              f"averaged over the estimate {'/'.join(f'{o:+g}' for o in offsets)} deg MAE {tta[1]:.2f}, exact {tta[2]:.1%}, "
              f"{tta[0]:.0f} pairs/s (speed ratio {tta[0] / one[0]:.2f}; the first single-angle pass warms up: "
              f"{timings['one angle'][0]:.0f} pairs/s)")
    hx, hy = holdout_set(args.holdout, args.size)
    report("held-out renderer", result.model, hx, hy, review_width, train_mean)
    nx = no_year_set(args.no_year, args.size)
    out = read_arrays(result.model, nx)
    flagged = out["unreadable"] | (2 * Z_90 * out["sigma"] > review_width)
    kinds = np.array([NO_YEAR_KINDS[i % len(NO_YEAR_KINDS)] for i in range(len(nx))])
    per_kind = ", ".join(f"{k} {np.mean(flagged[kinds == k]):.0%}" for k in NO_YEAR_KINDS if (kinds == k).any())
    print(f"{'no-year coins':>22}: n={len(nx)} flagged unreadable {np.mean(out['unreadable']):.1%}, "
          f"unreadable or sent to review {np.mean(flagged):.1%} (goal 100 %; by kind: {per_kind})")


if __name__ == "__main__":
    main()
