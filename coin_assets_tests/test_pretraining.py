"""Synthetic pre-training → fine-tuning on people's coins: real Dagster, DuckDB, MLflow (SQLite), PyTorch."""

import json

import numpy as np
import pytest

from coin_assets.ml.config import PretrainConfig
from coin_assets.ml.model import CoinYearRegressor
from coin_assets.ml.model_serialization import load_torch_model
from coin_assets.ml.pretrain import calibrate_reader, pretrain, reading_metrics, rotate_quarters, to_input
from coin_assets.ml.tracking import PRETRAINED_POINTER
from coin_assets.synth.varied import make_corpus

from .test_model_lifecycle import DAY, TINY_TRAINING, env, output_of, run, write_coins  # noqa: F401

TINY_PRETRAIN = {"corpus_size": 48, "val_size": 24, "image_size": 32, "backbone": "mobilenet_v3_small",
                 "projection_dim": 16, "epochs": 1, "batch_size": 16, "max_seconds": None}


def test_pretrain_trains_from_memory_and_calibrates_on_validation():
    corpus = (*make_corpus(64, 32, seed=0, workers=1), *make_corpus(30, 32, seed=1, workers=1))
    result = pretrain(PretrainConfig(**{**TINY_PRETRAIN, "corpus_size": 64, "val_size": 30, "epochs": 1}),
                      corpus=corpus)
    assert result.steps == 4 and len(result.history) == 1
    assert result.val_metrics["n"] == 30
    # split conformal: at least 90 % of the calibration coins inside their interval
    assert result.val_metrics["coverage_90"] >= 0.9
    assert float(result.model.interval_scale) == pytest.approx(result.interval_scale)
    again = reading_metrics(result.model, corpus[2], corpus[3])
    assert again["mae"] == result.val_metrics["mae"]
    # choosing the calibration again (bench_reader.py --load --recalibrate) replaces the earlier one, not on top of it
    threshold = float(result.model.min_confidence)
    result.model.interval_scale.fill_(5.0)
    result.model.min_confidence.fill_(0.99)
    scale, metrics = calibrate_reader(result.model, corpus[2], corpus[3])
    assert scale == pytest.approx(result.interval_scale) and metrics["mae"] == result.val_metrics["mae"]
    assert float(result.model.min_confidence) == threshold


def test_the_corpus_holds_coins_without_a_year_with_year_nan_and_the_validation_only_measures_them():
    from coin_assets.ml.pretrain import build_corpus
    from coin_assets.synth.varied import corpus_orientations, make_no_year

    config = PretrainConfig(**{**TINY_PRETRAIN, "corpus_size": 50, "val_size": 30, "no_year_share": 0.1,
                               "reader": "oriented", "max_steps": 2, "corpus_workers": 1})
    corpus = build_corpus(config)
    train_x, train_y, val_x, val_y, rotations, printed, val_none = corpus
    assert len(train_x) == len(train_y) == len(rotations) == len(printed) == 50
    assert np.isnan(train_y[45:]).all() and np.isfinite(train_y[:45]).all()
    assert np.array_equal(train_y[:45], make_corpus(45, 32, seed=0, workers=1)[1])  # the year coins as before
    none_x, texts = make_no_year(5, 32, seed=0, workers=1)
    assert np.array_equal(train_x[45:], none_x) and not any(ch.isdigit() for t in texts for ch in t)
    assert np.array_equal(np.isnan(rotations[45:]), [t == "" for t in texts])  # a blank has no upright
    assert np.allclose(rotations[:45], corpus_orientations(45, seed=0))
    assert np.isfinite(val_y.astype(float)).all() and len(val_x) == 30 and len(val_none) == 3
    result = pretrain(config, corpus=corpus)
    assert np.isfinite(result.history[-1]["train_mae"])
    assert result.val_metrics["n"] == 30 and 0.0 <= result.val_metrics["no_year_flagged"] <= 1.0
    with pytest.raises(ValueError, match="no_year_share"):
        build_corpus(PretrainConfig(**{**TINY_PRETRAIN, "no_year_share": 1.0}))


def test_rotate_quarters_keeps_pixels_and_turns_each_image():
    import torch

    x = to_input(make_corpus(4, 16, seed=3, workers=1)[0])
    out = rotate_quarters(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    for b in range(4):
        for s in range(2):
            assert any(torch.equal(out[b, s], torch.rot90(x[b, s], k, dims=(-2, -1))) for k in range(4))


def test_fine_tuning_starts_from_the_pretraining_and_mlflow_records_the_lineage(env):  # noqa: F811
    root, resources, instance = env
    write_coins(root)
    run(resources, instance, ["bronze_images", "silver_images", "gold_images"], DAY)
    pre = run(resources, instance, ["synthetic_pretraining"],
              run_config={"ops": {"synthetic_pretraining": {"config": TINY_PRETRAIN}}})
    pretrained = output_of(pre, "synthetic_pretraining")
    pointer = json.loads((root / PRETRAINED_POINTER).read_bytes())
    assert pointer["mlflow_run_id"] == pretrained["mlflow_run_id"]
    client = resources["mlflow_registry"].client()
    pre_run = client.get_run(pretrained["mlflow_run_id"])
    assert pre_run.data.tags["kind"] == "synthetic_pretraining"
    assert pre_run.data.params["pretrain.corpus_size"] == "48"
    assert "val_mae" in pre_run.data.metrics
    assert "pretraining_curve.png" in {a.path for a in client.list_artifacts(pretrained["mlflow_run_id"])}

    result = run(resources, instance, ["review_labels", "training_set", "coin_year_model"],
                 run_config={"ops": {"coin_year_model": {"config": {**TINY_TRAINING, "projection_dim": 16}}}})
    model = output_of(result, "coin_year_model")
    version = client.get_model_version(resources["mlflow_registry"].model_name, model["version"])
    assert version.tags["pretrained_run_id"] == pretrained["mlflow_run_id"]
    assert client.get_run(model["run_id"]).data.tags["pretrained_run_id"] == pretrained["mlflow_run_id"]
    loaded = load_torch_model(f"models:/{version.name}/{version.version}")
    assert isinstance(loaded, CoinYearRegressor) and loaded.has_digit_heads
    assert np.isfinite(float(loaded.interval_scale))

    # the same data and config again: nothing trained, and the run and the asset say so
    again = run(resources, instance, ["training_set", "coin_year_model"],
                run_config={"ops": {"coin_year_model": {"config": {**TINY_TRAINING, "projection_dim": 16}}}})
    assert not [e for e in again.get_asset_materialization_events() if e.asset_key.path == ["coin_year_model"]]
    tags = instance.get_run_by_id(again.run_id).tags
    assert tags["coin_assets/coin_year_model"] == "not retrained"
    assert tags["coin_assets/existing_version"] == model["version"]
    observations = [e for e in again.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    assert observations and "not retrained" in observations[0].asset_observation_data.asset_observation.metadata[
        "skipped"].value


def test_pretraining_an_oriented_reader_supervises_its_orientation_head():
    from coin_assets.synth.varied import corpus_orientations

    corpus = (*make_corpus(32, 32, seed=0, workers=1), *make_corpus(20, 32, seed=1, workers=1),
              corpus_orientations(32, seed=0))
    result = pretrain(PretrainConfig(**{**TINY_PRETRAIN, "corpus_size": 32, "val_size": 20, "reader": "oriented"}),
                      corpus=corpus)
    assert result.steps == 2 and result.model.reader == "oriented"
    assert result.val_metrics["n"] == 20 and result.val_metrics["coverage_90"] >= 0.9


def test_curriculum_phase_is_the_first_share_of_the_budget():
    from coin_assets.ml.pretrain import _in_easy_phase

    timed = PretrainConfig(max_seconds=100.0, easy_fraction=0.25)
    assert _in_easy_phase(timed, step=10_000, total_steps=10, elapsed=24.0)
    assert not _in_easy_phase(timed, step=0, total_steps=10, elapsed=26.0)
    stepped = PretrainConfig(max_seconds=None, easy_fraction=0.5)
    assert _in_easy_phase(stepped, step=4, total_steps=10, elapsed=1e9)
    assert not _in_easy_phase(stepped, step=5, total_steps=10, elapsed=0.0)
