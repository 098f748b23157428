"""Choose the year reader's trust settings (``min_confidence``, ``margin``, ``min_reads``) on generated photos.

    python benchmarks/calibrate_reader.py --per-placement 20

Reads ``--per-placement`` photos of each placement from the training generator (a calibration seed that no
benchmark, suite or test uses) plus coins without a year through every stage once, keeping what each stage read;
then replays the product's decision (stage by stage, stopping early) and prints, for a grid of settings, the share of year coins read exactly, read wrong with
trust, and of no-year coins given a year. The defaults in ``ml/year_reading.py`` are the cheapest row with no
confident wrong answer and no year on a coin without one.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CALIBRATION_SEED = 90210


def main(argv: list[str] | None = None) -> None:
    from coin_assets.ml.year_reading import ReaderSettings, YearReader, load_recognizer
    from coin_assets.synth import varied as v

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-placement", type=int, default=20)
    parser.add_argument("--no-year", type=int, default=30)
    parser.add_argument("--weights", default=None)
    args = parser.parse_args(argv)
    reader = YearReader(load_recognizer(args.weights) if args.weights else load_recognizer(),
                        ReaderSettings(early_exit=2.0))  # read every stage: the grid decides afterwards
    started = time.perf_counter()
    coins = []
    for k, placement in enumerate(v.PLACEMENTS):
        for i in range(args.per_placement):
            year_rng, style_rng = v.coin_rngs(CALIBRATION_SEED, k * 100_000 + i)
            year = v.sample_year(year_rng)
            front, _ = v.render_photo_pair(year, replace(v.sample_style(style_rng), placement=placement), style_rng)
            coins.append((year, placement, front.image))
    for i in range(args.no_year):
        text_rng, style_rng = v.no_year_rngs(CALIBRATION_SEED, i)
        front, _ = v.render_photo_pair(None, v.sample_style(style_rng), style_rng,
                                       year_text=v.sample_no_year_text(text_rng))
        coins.append((None, "no_year", front.image))
    stages_of = []  # per coin, the lines read at each stage (every stage is read once; the grid replays them)
    for _, _, image in coins:
        view, affine, _ = reader.coin_view(image)
        stages_of.append([reader.recognise(crops, where, image.size)
                          for crops, where in reader.stages(view, affine, image)])
    print(f"{len(coins)} coins read in {time.perf_counter() - started:.0f} s")
    print(f"{'min_conf':>8} {'margin':>6} {'reads':>5} {'exact':>7} {'wrong':>7} {'no-year answered':>16}  per placement exact")
    for min_conf in (0.6, 0.7, 0.8, 0.9, 0.95):
        for margin in (0.3, 0.5, 0.7):
            for min_reads in (1, 2):
                settings = ReaderSettings(min_confidence=min_conf, margin=margin, early_exit=min_conf,
                                          min_reads=min_reads)
                exact = wrong = no_year = 0
                per = {p: 0 for p in v.PLACEMENTS}
                for (year, placement, _), stages in zip(coins, stages_of, strict=True):
                    got = replay(stages, settings).year
                    if year is None:
                        no_year += got is not None
                    elif got == year:
                        exact += 1
                        per[placement] += 1
                    elif got is not None:
                        wrong += 1
                n = len(coins) - args.no_year
                print(f"{min_conf:>8.2f} {margin:>6.2f} {min_reads:>5d} {exact / n:>7.1%} {wrong / n:>7.1%} "
                      f"{no_year / max(1, args.no_year):>16.1%}  "
                      + " ".join(f"{p}:{c / args.per_placement:.0%}" for p, c in per.items()))


def replay(stages: list, settings):
    """The product's decision (:meth:`YearReader.read`) on lines already read: stage by stage, stopping at the
    first whose year clears ``settings.early_exit``."""
    from coin_assets.ml.year_reading import decide

    lines: list = []
    reading = decide(lines, settings)
    for stage in stages:
        lines += stage
        reading = decide(lines, settings)
        if reading.year is not None and reading.confidence >= settings.early_exit:
            break
    return reading

if __name__ == "__main__":
    main()
