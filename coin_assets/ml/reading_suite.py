"""A frozen reading suite: generated photos that every candidate model reads in ``model_evaluation``.

Full-size photos, the same ones for a given seed and size: ``per_placement`` coins of each placement (below,
above and beside the emblem, along the rim facing in and out) drawn by :mod:`coin_assets.synth.varied`, and of
each placement photographed by :mod:`coin_assets.synth.struck` (struck relief under lights, wear, other dates on
the face, years split by the design; placements ``struck_<placement>``), plus coins without a year (blank or
letters in the year's place) from both. They are scored through the version's raw-photo
predictor, exactly as a person's photo is (the silver code, coin finding, the year reader, the model), so
a candidate that has lost the reading shows it here whatever its test MAE on the uploads says.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace

import numpy as np

SUITE_SEED = 7001


@dataclass(frozen=True)
class SuiteCoin:
    front: bytes
    back: bytes
    year: int | None  # None: a coin without a year
    placement: str


def _jpeg(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def reading_suite(per_placement: int = 8, no_year: int = 8, seed: int = SUITE_SEED,
                  photographic_per_placement: int | None = None) -> list[SuiteCoin]:
    """The suite's coins: ``per_placement`` drawn and ``photographic_per_placement`` (default: as many)
    photographed coins of each placement, and ``no_year`` coins without a year of each kind."""
    import random

    from coin_assets.synth import struck as s
    from coin_assets.synth import varied as v

    coins = []
    photographic = per_placement if photographic_per_placement is None else photographic_per_placement
    for k, placement in enumerate(s.STRUCK_PLACEMENTS):
        for i in range(photographic):
            year_rng, look_rng = s.struck_rngs(seed, k * 10_000 + i)
            year = s.sample_struck_year(year_rng)
            front, back, _ = s.render_struck_photo_pair(year, look_rng, placement=placement)
            coins.append(SuiteCoin(_jpeg(front.image), _jpeg(back.image), year, f"struck_{placement}"))
    for k, placement in enumerate(v.PLACEMENTS):
        for i in range(per_placement):
            year_rng, style_rng = v.coin_rngs(seed, k * 10_000 + i)
            year = v.sample_year(year_rng)
            style = replace(v.sample_style(style_rng), placement=placement)
            front, back = v.render_photo_pair(year, style, style_rng)
            coins.append(SuiteCoin(_jpeg(front.image), _jpeg(back.image), year, placement))
    for i in range(no_year):
        text_rng, style_rng = v.no_year_rngs(seed, i)
        style = v.sample_style(style_rng)
        front, back = v.render_photo_pair(None, style, style_rng, year_text=v.sample_no_year_text(text_rng))
        coins.append(SuiteCoin(_jpeg(front.image), _jpeg(back.image), None, "no_year"))
        if not photographic:
            continue
        rng = random.Random(f"reading-suite-no-year:{seed}:{i}")
        front, back, _ = s.render_struck_photo_pair(None, rng, year_text=rng.choice(("", "AMRT", "LIBERTAS")))
        coins.append(SuiteCoin(_jpeg(front.image), _jpeg(back.image), None, "no_year"))
    return coins


def score_reading(predictor, suite: list[SuiteCoin]) -> dict:
    """Reading figures of a :class:`coin_assets.ml.pyfunc.PhotoPredictor` on the suite:
    ``reading_exact`` (share of year coins answered with the right year and not flagged),
    ``reading_confident_wrong`` (answered, not flagged, wrong), ``no_year_flagged`` (coins without a year
    flagged unreadable or sent to review) and ``reading_exact_<placement>``."""
    out = predictor.predict_photos([c.front for c in suite], [c.back for c in suite])
    answered = ~(out["unreadable"].to_numpy(bool) | out["needs_review"].to_numpy(bool))
    predicted = out["year"].to_numpy(float)
    truth = np.array([np.nan if c.year is None else c.year for c in suite], float)
    has_year = np.isfinite(truth)
    right = answered & has_year & (np.round(predicted) == truth)
    wrong = answered & has_year & (np.round(predicted) != truth)
    metrics = {
        "reading_exact": float(right[has_year].mean()) if has_year.any() else float("nan"),
        "reading_confident_wrong": float(wrong[has_year].mean()) if has_year.any() else float("nan"),
        "no_year_flagged": float((~answered[~has_year]).mean()) if (~has_year).any() else float("nan"),
        "reading_coins": int(has_year.sum()),
    }
    placements = np.array([c.placement for c in suite])
    for placement in sorted(set(placements[has_year])):
        mask = has_year & (placements == placement)
        metrics[f"reading_exact_{placement}"] = float(right[mask].mean())
    return metrics
