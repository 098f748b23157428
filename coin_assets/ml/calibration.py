"""Split-conformal calibration of the 90 % interval, and the coverage it reaches.

The model gives each coin a year ``ŷ`` and a spread ``s``. On the validation coins (never trained on)
the score is ``|y − ŷ| / s``; its conformal quantile ``q`` (the ⌈(n + 1)(1 − α)⌉-th smallest score) makes
``ŷ ± q·s`` contain the true year of a new, exchangeable coin with probability ≥ 1 − α. The model stores
``q / Z_90`` as ``interval_scale``, so every consumer that computes ``ŷ ± Z_90 · sigma`` gets the
calibrated interval. Coverage is then measured on the test coins.
"""

from __future__ import annotations

import math

import numpy as np

Z_90 = 1.6448536269514722  # NormalDist().inv_cdf(0.95): a two-sided 90 % interval is mu ± Z_90 · sigma
COVERAGE = 0.9


def conformal_quantile(scores, coverage: float = COVERAGE) -> float:
    """The ⌈(n + 1)·coverage⌉-th smallest score; +inf when there are too few scores for that coverage."""
    if not 0 < coverage < 1:
        raise ValueError(f"coverage must be within (0, 1), got {coverage}")
    s = np.sort(np.asarray(scores, dtype=float)[np.isfinite(np.asarray(scores, dtype=float))])
    k = math.ceil((len(s) + 1) * coverage)
    if len(s) == 0 or k > len(s):
        return math.inf
    return float(s[k - 1])


def interval_scale(y_true, year, sigma, coverage: float = COVERAGE) -> float:
    """The factor on the model's sigma (already including any earlier scale) that calibrates
    ``year ± Z_90 · sigma`` to ``coverage`` on these (validation) coins."""
    y_true, year, sigma = (np.asarray(a, dtype=float) for a in (y_true, year, sigma))
    keep = np.isfinite(y_true)
    scores = np.abs(y_true[keep] - year[keep]) / np.maximum(sigma[keep], 1e-6)
    q = conformal_quantile(scores, coverage)
    return q / Z_90


def coverage(y_true, lower, upper) -> float:
    y_true, lower, upper = (np.asarray(a, dtype=float) for a in (y_true, lower, upper))
    keep = np.isfinite(y_true)
    if not keep.any():
        return math.nan
    return float(np.mean((y_true[keep] >= lower[keep]) & (y_true[keep] <= upper[keep])))


def calibrate_model(model, y_true, year, sigma, coverage_: float = COVERAGE) -> float:
    """Multiply the model's ``interval_scale`` so that its 90 % interval covers ``coverage_`` of these
    coins; ``year``/``sigma`` are the model's current outputs on them. Returns the new scale."""

    factor = interval_scale(y_true, year, sigma, coverage_)
    if not math.isfinite(factor):
        raise ValueError(f"{int(np.isfinite(np.asarray(y_true, float)).sum())} labelled coins are too few "
                         f"to calibrate a {coverage_:.0%} interval")
    # never narrower than the year itself: sigma >= 0.5 and scale >= 1 / Z_90 give at least ± 0.5 years
    new = max(float(model.interval_scale) * factor, 1.0 / Z_90)
    model.interval_scale.fill_(new)
    return new


def unreadable_threshold(confidence, correct, precision: float = 0.9, floor: float = 0.35,
                         min_kept: int = 20) -> float:
    """The posterior peak below which a coin is called unreadable, chosen on validation coins: the smallest
    threshold (never below ``floor``) above which at least ``precision`` of the readings are exactly right,
    judged on at least ``min_kept`` coins; 1.0 (every coin unreadable) when no threshold reaches it."""
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=bool)
    order = np.argsort(-confidence)
    conf, hits = confidence[order], np.cumsum(correct[order])
    kept = np.arange(1, len(conf) + 1)
    ok = (kept >= min_kept) & (hits / kept >= precision) & (conf >= floor)
    if not ok.any():
        return 1.0
    # the largest kept set that still reaches the precision: its lowest confidence is the threshold
    return float(conf[np.flatnonzero(ok)[-1]])


def calibrate_unreadable(model, confidence, correct, precision: float = 0.9, floor: float = 0.35) -> float:
    """Store :func:`unreadable_threshold` as the model's ``min_confidence``; returns it."""
    threshold = unreadable_threshold(confidence, correct, precision, floor)
    model.min_confidence.fill_(threshold)
    return threshold
