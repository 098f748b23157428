"""The run configs of coin_year_model and synthetic_pretraining are built from the dataclasses of
coin_assets.ml.config: every dataclass field is a run-config field with its default and description,
the run config maps back onto the dataclass, and the run configs used elsewhere stay valid."""

from __future__ import annotations

import dataclasses

import pytest
from dagster import validate_run_config

from coin_assets.defs.assets.model import (
    PretrainRunConfig,
    TrainingRunConfig,
    coin_year_model,
    synthetic_pretraining,
)
from coin_assets.ml.config import PretrainConfig, TrainConfig

RUN_ONLY = {TrainingRunConfig: {"retrain_same_data", "use_pretrained", "use_year_reader"}, PretrainRunConfig: set()}
CASES = [(TrainingRunConfig, TrainConfig, coin_year_model), (PretrainRunConfig, PretrainConfig, synthetic_pretraining)]


@pytest.mark.parametrize("run_config, dataclass_type, asset", CASES)
def test_every_dataclass_field_is_in_the_launchpad_with_its_default_and_description(run_config, dataclass_type, asset):
    shown = asset.op.config_schema.config_type.fields  # what the launchpad shows
    names = [f.name for f in dataclasses.fields(dataclass_type)]
    assert list(shown) == names + [n for n in shown if n in RUN_ONLY[run_config]]
    assert set(shown) == set(names) | RUN_ONLY[run_config]
    for f in dataclasses.fields(dataclass_type):
        field = shown[f.name]
        assert field.default_provided and field.default_value == f.default, f.name
        assert not field.is_required
        assert field.description == f.metadata.get("description"), f.name
    for name in RUN_ONLY[run_config]:
        assert shown[name].description  # the run-only fields say what they do


def test_the_described_fields_are_the_ones_that_were_described_before():
    described = {f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("description")}
    assert {"backbone", "mode", "device", "weights_path", "max_steps", "num_threads", "digit_heads", "reader",
            "rotation_deg", "use_crops"} <= described
    described = {f.name for f in dataclasses.fields(PretrainConfig) if f.metadata.get("description")}
    assert {"reader", "easy_fraction", "no_year_share", "max_seconds"} <= described


def test_a_run_config_maps_onto_its_dataclass():
    assert TrainingRunConfig().train_config() == TrainConfig()
    assert PretrainRunConfig().pretrain_config() == PretrainConfig()
    chosen = TrainingRunConfig(epochs=2, projection_dim=None, retrain_same_data=True, reader="pooled")
    assert chosen.train_config() == TrainConfig(epochs=2, projection_dim=None, reader="pooled")
    assert PretrainRunConfig(corpus_workers=1, max_seconds=None).pretrain_config() == PretrainConfig(
        corpus_workers=1, max_seconds=None)


@pytest.mark.parametrize("config", [
    {"epochs": 2},  # the --train-config example of `coin_assets.cli headless`
    {"image_size": 32, "epochs": 1, "max_steps": 2, "batch_size": 8, "num_workers": 0, "augment": False,
     "projection_dim": 16, "backbone": "mobilenet_v3_small", "use_year_reader": False, "retrain_same_data": True},
    {"projection_dim": None, "learning_rate": 1e-3, "rotation_deg": 0.0, "weights_path": "/tmp/w.pt"},
])
def test_existing_training_run_configs_stay_valid(config):
    from coin_assets_tests.conftest import PROJECT

    result = validate_run_config(PROJECT.resolve_job_def("training_job"),
                                 {"ops": {"coin_year_model": {"config": config}}})
    assert result["ops"]["coin_year_model"]["config"]["epochs"] == config.get("epochs", TrainConfig.epochs)


def test_existing_pretraining_run_configs_stay_valid_and_unknown_fields_are_refused():
    from dagster import DagsterInvalidConfigError

    from coin_assets_tests.conftest import PROJECT

    job = PROJECT.resolve_implicit_global_asset_job_def()
    tiny = {"corpus_size": 48, "val_size": 24, "image_size": 32, "backbone": "mobilenet_v3_small",
            "projection_dim": 16, "epochs": 1, "batch_size": 16, "max_seconds": None}
    result = validate_run_config(job, {"ops": {"synthetic_pretraining": {"config": tiny}}})
    assert result["ops"]["synthetic_pretraining"]["config"]["max_seconds"] is None
    with pytest.raises(DagsterInvalidConfigError):
        validate_run_config(job, {"ops": {"synthetic_pretraining": {"config": {"not_a_field": 1}}}})
