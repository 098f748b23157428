"""Choose the year reader's trust settings (``min_confidence``, ``min_share``, ``min_reads``,
``max_rival``, and ``confirm_from``: the second opinion, off or on) on photographic and
drawn coins.

    python benchmarks/calibrate_reader.py --per-placement 12 --no-year 24 --cache /tmp/calibration.pkl

Reads ``--per-placement`` photos of each placement from the photographic generator (:mod:`coin_assets.synth.struck`,
its training look) and from the drawn generator (:mod:`coin_assets.synth.varied`), plus coins without a year from
both, through every stage of the product's reader once, keeping what each stage read (``--cache`` keeps it, so
that the grid can be replayed without reading again). Then it replays the product's decision (stage by stage,
stopping at the first trusted year) for a grid of settings and prints, per set, the share of year coins read
exactly, read wrong with trust, and of no-year coins given a year. Calibration seeds are used by no benchmark,
suite or test, and the held-out renderers are never read here: they stay the test of these settings.

The script's pick is the row with the most exact reads on the photographic coins among those with no confident
wrong answer on any set and no year on a coin without one (on a set large enough that no row is free of them:
among those with the fewest); ties: the fewest recognisers, the most exact on all sets, the strictest settings.
``docs/reading.md`` says which settings the product keeps, and why.
"""

from __future__ import annotations

import argparse
import functools
import io
import pickle
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CALIBRATION_SEED = 90210
GRID = {"readers": (("ocr",), ("ocr", "own")), "min_confidence": (0.3, 0.5, 0.7, 0.8, 0.9),
        "min_share": (0.6, 0.75, 0.9), "min_reads": (1, 2, 3), "max_rival": (0.5, 0.7, 1.0),
        "confirm_from": (None, 0.5)}


def calibration_coins(per_placement: int, no_year: int) -> list[tuple[str, str, int | None, int]]:
    """(set, placement, year, index): what to draw, cheap to send to a worker."""
    from coin_assets.synth import struck as s
    from coin_assets.synth import varied as v

    coins = []
    for k, placement in enumerate(s.STRUCK_PLACEMENTS):
        coins += [("struck", placement, k, i) for i in range(per_placement)]
    for k, placement in enumerate(v.PLACEMENTS):
        coins += [("generator", placement, k, i) for i in range(per_placement)]
    coins += [("no_year", "struck", 0, i) for i in range(no_year // 2)]
    coins += [("no_year", "generator", 0, i) for i in range(no_year - no_year // 2)]
    return coins


def draw(coin) -> tuple:
    """(year or None, the front photo) of a calibration coin."""
    from coin_assets.synth import struck as s
    from coin_assets.synth import varied as v

    kind, placement, k, i = coin
    if kind == "struck":
        year_rng, look_rng = s.struck_rngs(CALIBRATION_SEED, k * 100_000 + i)
        year = s.sample_struck_year(year_rng)
        front, _, _ = s.render_struck_photo_pair(year, look_rng, placement=placement)
        return year, front.image
    if kind == "generator":
        year_rng, style_rng = v.coin_rngs(CALIBRATION_SEED, k * 100_000 + i)
        year = v.sample_year(year_rng)
        front, _ = v.render_photo_pair(year, replace(v.sample_style(style_rng), placement=placement), style_rng)
        return year, front.image
    if placement == "struck":
        rng = random.Random(f"calibration-no-year:{CALIBRATION_SEED}:{i}")
        letters = "".join(rng.choice("ABCDEFGHKLMNPRSTVWXYZ") for _ in range(rng.choice((0, 3, 4))))
        front, _, _ = s.render_struck_photo_pair(None, rng, year_text=letters)
        return None, front.image
    text_rng, style_rng = v.no_year_rngs(CALIBRATION_SEED, i)
    front, _ = v.render_photo_pair(None, v.sample_style(style_rng), style_rng,
                                   year_text=v.sample_no_year_text(text_rng))
    return None, front.image


def read_all_stages(coin, readers: tuple[str, ...] = ("ocr", "own")) -> tuple:
    """What every stage of the product's reader read on one coin (its photo JPEG-encoded, as uploaded), and per
    stage what the second recogniser read again on the lines a second opinion asks it about
    (:func:`~coin_assets.ml.year_reading.lines_to_confirm`, in their order)."""
    from PIL import Image

    from coin_assets.ml.year_reading import ReaderSettings, YearReader, lines_to_confirm, load_recognizer

    year, image = draw(coin)
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=90)
    image = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    reader = _reader(YearReader, ReaderSettings, load_recognizer, readers)
    view, affine, found = reader.coin_view(image)
    stages, seconds = [], []
    for crops, where in reader.stages(view, affine, image):
        crops_read: dict = {}
        stage = reader.recognise(crops, where, image.size, crops_read)
        again = [line for line in lines_to_confirm(stage, reader.settings) if id(line) in crops_read]
        second_reads: dict = {}
        reader.read_again(again, crops_read, second_reads)
        stages.append(stage)
        seconds.append([second_reads[id(line)] for line in again])
    return coin[0], coin[1], year, found, stages, seconds


_READER = None


def _reader(YearReader, ReaderSettings, load_recognizer, readers):
    global _READER
    if _READER is None:
        import torch

        torch.set_num_threads(1)
        _READER = YearReader(load_recognizer(), ReaderSettings(readers=readers))  # the grid picks
        if _READER._second is True:
            from coin_assets.ml.year_reading import shared_ocr_reader

            _READER._second = shared_ocr_reader(1, None)
    return _READER


def replay(stages: list, settings, seconds: list | None = None):
    """The product's decision (:meth:`YearReader.read`) on lines already read: stage by stage, stopping at the
    first stage that gives a trusted year; with ``seconds`` (the second recogniser's reads, per stage) and
    ``settings.confirm_from``, a second opinion where a stage gives none."""
    from coin_assets.ml.year_reading import confirmed_reading, decide, lines_to_confirm

    lines: list = []
    second_reads: dict = {}
    reading = decide(lines, settings)
    for k, stage in enumerate(stages):
        lines += stage
        if seconds is not None:
            second_reads.update({id(line): again for line, again in zip(
                lines_to_confirm(stage, settings), seconds[k], strict=False)})
        reading = decide(lines, settings)
        if reading.year is None and seconds is not None:
            reading = confirmed_reading(lines, second_reads, settings) or reading
        if reading.year is not None:
            break
    return reading


def score(records: list, settings) -> dict:
    """Per set: exact, wrong (answered and wrong) and answered (no-year coins) shares, and per placement exact."""
    out: dict = {}
    for kind, placement, year, _, stages, *seconds in records:
        got = replay(stages, settings, seconds[0] if seconds else None).year
        entry = out.setdefault(kind, {"n": 0, "exact": 0, "wrong": 0, "placements": {}})
        entry["n"] += 1
        per = entry["placements"].setdefault(placement, [0, 0])
        per[1] += 1
        if year is None:
            entry["wrong"] += got is not None
        elif got == year:
            entry["exact"] += 1
            per[0] += 1
        elif got is not None:
            entry["wrong"] += 1
    return out


def main(argv: list[str] | None = None) -> None:
    from itertools import product

    from coin_assets.ml.year_reading import ReaderSettings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-placement", type=int, default=12)
    parser.add_argument("--no-year", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cache", default=None, help="a pickle of what was read: replayed when it exists")
    parser.add_argument("--ocr-only", action="store_true",
                        help="read with PP-OCR's recogniser alone (the product's default; six times faster)")
    args = parser.parse_args(argv)
    readers = ("ocr",) if args.ocr_only else ("ocr", "own")
    if args.cache and Path(args.cache).exists():
        records = pickle.loads(Path(args.cache).read_bytes())
        print(f"{len(records)} coins from {args.cache}")
    else:
        started = time.perf_counter()
        coins = calibration_coins(args.per_placement, args.no_year)
        with ProcessPoolExecutor(args.workers) as pool:
            records = list(pool.map(functools.partial(read_all_stages, readers=readers), coins, chunksize=2))
        print(f"{len(records)} coins read in {time.perf_counter() - started:.0f} s")
        if args.cache:
            Path(args.cache).write_bytes(pickle.dumps(records))
    sets = sorted({r[0] for r in records})
    print(f"{'readers':>9} {'min_conf':>8} {'share':>5} {'reads':>5} {'rival':>5} {'2nd':>5}  "
          + "  ".join(f"{s + ' exact/wrong':>24}" for s in sets))
    rows = []
    grid = {**GRID, "readers": tuple(r for r in GRID["readers"] if set(r) <= set(readers))}
    for readers, min_conf, min_share, min_reads, max_rival, confirm_from in product(*grid.values()):
        if confirm_from is not None and confirm_from >= min_conf:
            continue
        settings = ReaderSettings(readers=readers, min_confidence=min_conf, min_share=min_share, min_reads=min_reads,
                                  max_rival=max_rival, confirm_from=confirm_from)
        result = score(records, settings)
        rows.append((settings, result))
        second = "off" if confirm_from is None else f"{confirm_from:.2f}"
        print(f"{'+'.join(readers):>9} {min_conf:>8.2f} {min_share:>5.2f} {min_reads:>5d} {max_rival:>5.2f} {second:>5}  "
              + "  ".join(
            f"{result[s]['exact'] / result[s]['n']:>15.1%} / {result[s]['wrong'] / result[s]['n']:>5.1%}" for s in sets))
    safe = [(st, r) for st, r in rows if all(r[s]["wrong"] == 0 for s in sets)]
    if not safe:  # a larger set: no row is free of confident wrong answers; the rows with the fewest
        fewest = min(sum(r[s]["wrong"] for s in sets) for _, r in rows)
        safe = [(st, r) for st, r in rows if sum(r[s]["wrong"] for s in sets) == fewest]
        print(f"\nno row without a confident wrong answer; the fewest: {fewest} coins")
    if safe:
        # the most exact on photographic coins; then the cheapest readers, the most exact on all, the strictest
        settings, result = max(safe, key=lambda row: (row[1].get("struck", row[1][sets[0]])["exact"],
                                                      -len(row[0].readers), sum(row[1][s]["exact"] for s in sets),
                                                      row[0].min_confidence, row[0].min_share))
        print(f"\nchosen: readers {'+'.join(settings.readers)}, min_confidence {settings.min_confidence}, "
              f"min_share {settings.min_share}, min_reads {settings.min_reads}, max_rival {settings.max_rival}, "
              f"confirm_from {settings.confirm_from}")
        for s in sets:
            print(f"  {s}: " + ", ".join(f"{p} {c}/{n}" for p, (c, n) in result[s]["placements"].items()))


if __name__ == "__main__":
    main()
