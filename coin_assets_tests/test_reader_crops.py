"""The recogniser's training crops cut by the reader's own detector, and their labels."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from coin_assets.ml import reader_crops as rc
from coin_assets.ml.text_recognizer import STRIP_HEIGHT, STRIP_WIDTH
from coin_assets.synth import varied as v


def _below_coin(rotation: float):
    year_rng, style_rng = v.coin_rngs(4040, 0)
    style = replace(v.sample_style(style_rng), placement="below", rotation=rotation, shift=(0.0, 0.0))
    with_year, _ = v.render_photo_pair(1987, style, style_rng)
    _, style_rng = v.coin_rngs(4040, 0)
    v.sample_style(style_rng)
    without_year, _ = v.render_photo_pair(1987, style, style_rng, year_text="")
    return with_year, without_year, style


@pytest.mark.parametrize("rotation, side", [(0.0, "below"), (90.0, "right")])
def test_the_year_is_where_the_two_renders_differ_and_reads_the_way_the_face_turned(rotation, side):
    with_year, without_year, style = _below_coin(rotation)
    mask = rc.year_mask(with_year.image, without_year.image, with_year.image.size)
    assert mask.sum() > 20
    ys, xs = np.nonzero(mask)
    cx, cy = with_year.centre
    dx, dy = xs.mean() - cx, ys.mean() - cy
    if side == "below":  # below the emblem, read left to right
        assert dy > 0.15 * with_year.radius and abs(dx) < 0.2 * with_year.radius
        assert np.allclose(rc.reading_direction(style), [1.0, 0.0])
    else:  # turned a quarter counter-clockwise: at the right, read upwards
        assert dx > 0.15 * with_year.radius and abs(dy) < 0.2 * with_year.radius
        assert np.allclose(rc.reading_direction(style), [0.0, -1.0], atol=1e-9)
    assert math.isclose(float(np.linalg.norm(rc.reading_direction(style))), 1.0)


def test_mined_crops_hold_the_year_upright_and_its_turned_copies_are_empty():
    strips, labels, photos = rc.mine_crops(5, seed=4041, workers=1)
    assert strips.shape == (len(labels), STRIP_HEIGHT, STRIP_WIDTH) and strips.dtype == np.uint8
    assert [p.placement for p in photos] == list(v.PLACEMENTS)
    years = {str(p.year) for p in photos}
    assert sum(p.year_crops > 0 for p in photos) >= 3  # the detector cuts the year out of most photos
    assert {lab for lab in labels if lab} <= years  # a labelled crop carries its photo's year, nothing else
    # every labelled line is also kept turned over, with nothing upright to read
    assert labels.count("") >= sum(1 for lab in labels if lab)
    assert sum(p.crops for p in photos) == len(labels)


def test_training_mixes_the_mined_crops_and_reports_reading_them(tmp_path):
    from coin_assets.ml.recognizer_training import RecognizerConfig, train_recognizer

    config = RecognizerConfig(corpus_size=64, val_size=16, batch_size=8, max_steps=2, mined_photos=3,
                              mined_val_photos=2, workers=1, checkpoint_every=1, minutes=5)
    result = train_recognizer(config, checkpoint=tmp_path / "ckpt.pt", cache_dir=tmp_path / "crops")
    assert result.steps == 2
    assert "detected_year_exact" in result.history[-1] and "detected_year_exact" in result.val_metrics
    assert sorted(p.name for p in (tmp_path / "crops").iterdir()) == ["mined-31-3.npz", "mined-32-2.npz"]
