"""The model lifecycle end to end on real Dagster, DuckDB, MLflow (SQLite) and PyTorch.

Coins here are tiny flat images whose front grey level encodes the year, so that a hand-written
"reader" model is exactly right and a constant model is exactly wrong: promotion outcomes are then
deterministic, while v1 is a really trained (tiny, few-step) model from the real asset.
"""

import json
import os

import mlflow
import numpy as np
import pytest
import torch
from dagster import (
    AssetMaterialization,
    AssetSelection,
    DagsterInstance,
    Definitions,
    RunRequest,
    SkipReason,
    build_asset_context,
    build_sensor_context,
    define_asset_job,
    materialize,
)
from dagster_duckdb import DuckDBResource
from PIL import Image

from coin_assets import cli
from coin_assets.defs.assets.model import (
    EvaluationConfig,
    PromotionConfig,
    coin_year_model,
    model_evaluation,
    promotion_decision,
)
from coin_assets.defs.resources import CoinStorage, MlflowRegistry, ServingApi, mlflow_tracking_for
from coin_assets.defs.sensors import retraining_due
from coin_assets.ml import registry as reg
from coin_assets.ml.data import IMAGENET_MEAN, IMAGENET_STD
from coin_assets.ml.model_serialization import sanity_check
from coin_assets_tests.conftest import PROJECT, SENSORS
from coin_assets_tests.tensor_models import log_coin_model

DAY = "2026-11-20"
N_COINS = 40
TINY_TRAINING = {"image_size": 32, "epochs": 1, "max_steps": 2, "batch_size": 8, "num_workers": 0,
                 "augment": False, "projection_dim": 16, "backbone": "mobilenet_v3_small"}
TINY_EVALUATION = {"reading_suite_per_placement": 1, "reading_suite_no_year": 1,
                   "reading_suite_photographic_per_placement": 0}
ALL = [*PROJECT.assets, *PROJECT.asset_checks]


def year_of(i: int) -> int:
    return 1950 + (i * 7) % 76


def write_coins(root, day=DAY, n=N_COINS, prefix="coin"):
    folder = root / "uploads" / day
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        year = year_of(i)
        grey = (year - 1900) * 2  # the front says the year
        Image.new("RGB", (48, 48), (grey, grey, grey)).save(folder / f"{prefix}{i:03d}__front.png")
        Image.new("RGB", (48, 40), (128, 100, i)).save(folder / f"{prefix}{i:03d}__back.png")
        (folder / f"{prefix}{i:03d}.json").write_text(json.dumps(
            {"user_id": "tester", "coin_id": f"{prefix}{i:03d}", "uploaded_at": f"{day}T12:00:00Z", "year": year}))


class ReaderModel(torch.nn.Module):
    """Reads the year from the front's grey level: the better model."""

    def forward(self, pairs):
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        front = pairs[:, 0] * std + mean
        grey = front[:, :, 12:20, 12:20].mean(dim=(1, 2, 3)) * 255.0  # centre, away from letterbox padding
        return torch.stack([1900 + grey / 2.0, torch.ones_like(grey)], dim=1)


class ConstantModel(torch.nn.Module):
    """Always the same year: the worse model."""

    def __init__(self, year: float):
        super().__init__()
        self.year = year

    def forward(self, pairs):
        batch = pairs.shape[0]
        return torch.stack([torch.full((batch,), self.year), torch.full((batch,), 3.0)], dim=1)


@pytest.fixture()
def env(tmp_path, monkeypatch):
    registry = MlflowRegistry(
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_root=str(tmp_path / "artifacts"),
        model_name="coin_test_model", experiment_name="coin_test",
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.tracking_uri)
    monkeypatch.setenv("COIN_ASSETS_MODEL_NAME", registry.model_name)
    monkeypatch.setenv("COIN_ASSETS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("COIN_ASSETS_DUCKDB", str(tmp_path / "meta.duckdb"))
    resources = {
        "storage": CoinStorage(root=str(tmp_path), settle_seconds=0),
        "duckdb": DuckDBResource(database=str(tmp_path / "meta.duckdb")),
        "mlflow_registry": registry,
        "mlflow": mlflow_tracking_for(registry),
        # promotion and rollback tell the API; none runs here, which they record and go on
        "serving_api": ServingApi(url="http://127.0.0.1:9", request_store_url=f"sqlite:///{tmp_path}/serving.db"),
    }
    yield tmp_path, resources, DagsterInstance.ephemeral()
    if mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri("")


def run(resources, instance, assets, partition=None, run_config=None):
    if "model_evaluation" in assets:  # the reading suite at its smallest: one photo a placement
        run_config = {**(run_config or {})}
        run_config["ops"] = {"model_evaluation": {"config": TINY_EVALUATION}, **run_config.get("ops", {})}
    result = materialize(ALL, selection=AssetSelection.assets(*assets), partition_key=partition,
                         resources=resources, instance=instance, run_config=run_config)
    assert result.success
    return result


def ingest_and_train(root, resources, instance, year_reader: bool = False):
    """Ingest a day and train v1 (by default without the year reader: the lifecycle below compares
    tensor-input candidates by their test MAE)."""
    write_coins(root)
    run(resources, instance, ["bronze_images", "silver_images", "gold_images"], DAY)
    return run(resources, instance, ["review_labels", "training_set", "coin_year_model", "model_evaluation",
                                     "promotion_decision"],
               run_config={"ops": {"coin_year_model": {"config": {**TINY_TRAINING, "use_year_reader": year_reader}}}})


def output_of(result, asset_name):
    return result.output_for_node(asset_name)


def register(registry: MlflowRegistry, model, tags) -> str:
    mlflow.set_experiment(experiment_id=registry.ensure_experiment())
    with mlflow.start_run():
        example = np.zeros((1, 2, 3, 32, 32), dtype=np.float32)
        info = log_coin_model(model, example, registered_model_name=registry.model_name,
                                  serialization_format="pickle")
    version = str(info.registered_model_version)
    client = registry.client()
    for key, value in {"image_size": 32, **tags}.items():
        client.set_model_version_tag(registry.model_name, version, key, str(value))
    return version


def evaluate_and_decide(resources, upstream: dict, version: str) -> dict:
    candidate = {**upstream, "version": version}
    evaluation = model_evaluation(
        context=build_asset_context(), config=EvaluationConfig(**TINY_EVALUATION), coin_year_model=candidate,
        storage=resources["storage"], mlflow_registry=resources["mlflow_registry"],
    ).value
    return promotion_decision(
        context=build_asset_context(), config=PromotionConfig(), model_evaluation=evaluation,
        mlflow_registry=resources["mlflow_registry"], serving_api=resources["serving_api"],
    ).value


def run_checks(resources, instance, asset_def):
    """Run only the checks of one asset (its value is not recomputed)."""
    job = define_asset_job("checks_only", selection=AssetSelection.checks_for_assets(asset_def))
    test_defs = Definitions(assets=PROJECT.assets, asset_checks=PROJECT.asset_checks, jobs=[job], resources=resources)
    return check_results(test_defs.resolve_job_def("checks_only").execute_in_process(
        instance=instance))


def check_results(result):
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def prediction_rows(resources):
    with resources["duckdb"].get_connection() as conn:
        return conn.execute("SELECT coin_id, model_version FROM predictions ORDER BY coin_id, model_version").fetchall()


def test_lifecycle_promote_reject_promote_predict_rollback(env):
    root, resources, instance = env
    registry: MlflowRegistry = resources["mlflow_registry"]
    client = registry.client()
    name = registry.model_name

    # 1. the first sane model, trained by the real asset, is promoted
    result = ingest_and_train(root, resources, instance)
    first = output_of(result, "coin_year_model")
    decision = output_of(result, "promotion_decision")
    assert decision["promote"] and "first sane model" in decision["reason"]
    assert reg.get_alias_version(client, name, reg.PRODUCTION).version == first["version"] == "1"
    assert check_results(result)["model_outputs_are_plausible"].passed
    run_tags = client.get_run(first["run_id"]).data.tags
    assert run_tags["dagster_run_id"] == result.run_id and run_tags["training_set_hash"] == first["training_set_hash"]

    # the same data and config again: no pointless new version
    again = run(resources, instance, ["training_set", "coin_year_model", "model_evaluation", "promotion_decision"],
                run_config={"ops": {"coin_year_model": {"config": TINY_TRAINING}}})
    assert not again.get_asset_materialization_events() or all(
        e.asset_key.to_user_string() == "training_set" for e in again.get_asset_materialization_events())
    assert len(client.search_model_versions(f"name='{name}'")) == 1

    # 2. day's predictions by v1
    run(resources, instance, ["coin_predictions", "review_queue"], DAY)
    assert {v for _, v in prediction_rows(resources)} == {"1"}
    assert len(prediction_rows(resources)) == N_COINS

    # 3. a worse candidate is rejected and production is unchanged
    worse = register(registry, ConstantModel(1900.0), {"labelled_coins": N_COINS})
    decision = evaluate_and_decide(resources, first, worse)
    assert not decision["promote"] and decision["staged"]
    assert "not promoted" in decision["reason"] or "rejected" in decision["reason"]
    assert reg.get_alias_version(client, name, reg.PRODUCTION).version == "1"
    worse_tags = client.get_model_version(name, worse).tags
    assert worse_tags["decision"] == "staged" and worse_tags["decision_reason"] == decision["reason"]
    assert reg.get_alias_version(client, name, reg.STAGING).version == worse

    # 4. a better candidate is promoted; the old production stays findable
    better = register(registry, ReaderModel(), {"labelled_coins": N_COINS})
    decision = evaluate_and_decide(resources, first, better)
    assert decision["promote"], decision["reason"]
    assert decision["candidate_metrics"]["mae"] < 1.0
    assert reg.get_alias_version(client, name, reg.PRODUCTION).version == better
    assert reg.get_alias_version(client, name, reg.PREVIOUS_PRODUCTION).version == "1"

    # 5. scoring again keeps history: one row per coin and version, gold shows the newest version
    result = run(resources, instance, ["coin_predictions", "review_queue"], DAY)
    rows = prediction_rows(resources)
    assert len(rows) == 2 * N_COINS and {v for _, v in rows} == {"1", better}
    assert check_results(result)["predictions_scored_once"].passed
    with resources["duckdb"].get_connection() as conn:
        assert conn.execute("SELECT DISTINCT model_version FROM gold_images").fetchall() == [(better,)]
        queued = conn.execute("SELECT count(*) FROM review_queue WHERE model_version = ?", [better]).fetchall()[0][0]
    assert queued == 0  # the reader is sure and right

    # 6. the decision check fails when production is not the best promoted version …
    client.set_registered_model_alias(name, reg.PRODUCTION, "1")
    checks = run_checks(resources, instance, promotion_decision)
    assert not checks["production_is_best_promoted"].passed
    client.set_registered_model_alias(name, reg.PRODUCTION, better)

    # 7. … but not after a rollback, which is one command and records who and why
    assert cli.main(["rollback", "--actor", "alice", "--reason", "test rollback"]) == 0
    assert reg.get_alias_version(client, name, reg.PRODUCTION).version == "1"
    rolled = client.get_model_version(name, better)
    assert rolled.tags["rolled_back_by"] == "alice" and rolled.tags["rollback_reason"] == "test rollback"
    checks = run_checks(resources, instance, promotion_decision)
    assert checks["production_is_best_promoted"].passed


def test_a_candidate_that_forgets_the_reading_is_refused_with_its_reason(env):
    """v1 ships the year reader and reads the suite; a candidate that cannot read (a tensor-input model that
    only regresses) is staged, not promoted, however its MAE compares, and the reason says why."""
    root, resources, instance = env
    first = output_of(ingest_and_train(root, resources, instance, year_reader=True), "coin_year_model")
    registry = resources["mlflow_registry"]
    client = registry.client()
    assert reg.get_alias_version(client, registry.model_name, reg.PRODUCTION).version == first["version"]
    assert client.get_run(first["run_id"]).data.tags["year_reader_sha256"]
    forgetful = register(registry, ReaderModel(), {"labelled_coins": N_COINS})
    decision = evaluate_and_decide(resources, first, forgetful)
    assert not decision["promote"] and decision["staged"]
    assert f"reads worse than production v{first['version']} on the reading suite" in decision["reason"]
    assert client.get_model_version(registry.model_name, forgetful).tags["decision_reason"] == decision["reason"]
    assert reg.get_alias_version(client, registry.model_name, reg.PRODUCTION).version == first["version"]


def test_prediction_check_fails_for_an_unknown_version_missing_coins(env):
    root, resources, instance = env
    ingest_and_train(root, resources, instance)
    with resources["duckdb"].get_connection() as conn:
        # a row from a version the registry never had, scoring a single coin of the day
        conn.execute("INSERT INTO predictions VALUES ('coin000', ?, 1990, 2, 1987, 1993, 'coin_test_model', '99', "
                     "TIMESTAMPTZ '2100-01-01 00:00:00+00', NULL, NULL)", [DAY])
    result = run(resources, instance, ["coin_predictions"], DAY)
    check = check_results(result)["predictions_scored_once"]
    assert not check.passed
    problems = check.metadata["problems"].value
    assert "v99 not in the registry" in problems and "v99 scored coin001 0 times" in problems


def test_model_check_fails_on_non_finite_outputs(env):
    root, resources, instance = env
    registry = resources["mlflow_registry"]

    class NanModel(torch.nn.Module):
        def forward(self, pairs):
            return torch.full((pairs.shape[0], 2), float("nan"))

    version = register(registry, NanModel(), {})
    instance.report_runless_asset_event(AssetMaterialization("coin_year_model", metadata={"model_version": version}))
    checks = run_checks(resources, instance, coin_year_model)
    assert not checks["model_outputs_are_plausible"].passed
    assert sanity_check(reg.model_version_uri(registry.model_name, version),
                            np.zeros((2, 2, 3, 32, 32), dtype=np.float32))


def test_review_verdict_becomes_a_label_used_by_training(env):
    root, resources, instance = env
    write_coins(root, n=6)
    (root / "uploads" / DAY / "coin001.json").unlink()  # coin001 arrives without a label
    run(resources, instance, ["bronze_images", "silver_images", "gold_images"], DAY)
    reviews = root / "uploads" / "reviews"
    reviews.mkdir(parents=True)
    (reviews / "batch1.csv").write_text("coin_id,year,reviewer\ncoin001,1977,bob\ncoin002,99999,bob\n")
    with open(os.path.join(os.fsencode(reviews), b"caf\xe9.csv"), "wb") as fh:  # a name that is not UTF-8
        fh.write(b"coin_id,year,reviewer\ncoin002,1980,eve\n")
    result = run(resources, instance, ["review_labels", "training_set"])
    assert output_of(result, "review_labels")["verdicts"] == 1  # the out-of-range line is rejected, not fatal
    assert any("caf\\xe9.csv: file name is not valid UTF-8" in p for p in output_of(result, "review_labels")["problems"])
    with resources["duckdb"].get_connection() as conn:
        row = conn.execute("SELECT label_year, label_source, labelled_by FROM gold_images "
                           "WHERE coin_id = 'coin001' AND side = 'front'").fetchall()[0]
    assert row == (1977, "review", "bob")
    snapshot = output_of(result, "training_set")
    assert snapshot["coins"] == 6
    # the CLI path records a verdict too, and re-materializing gold keeps it
    assert cli.main(["review", "--coin-id", "coin003", "--year", "1990", "--reviewer", "carol"]) == 0
    assert cli.main(["review", "--coin-id", "no-such-coin", "--year", "1990", "--reviewer", "carol"]) == 2
    run(resources, instance, ["gold_images"], DAY)
    with resources["duckdb"].get_connection() as conn:
        labels = conn.execute("SELECT coin_id, label_year, label_source FROM coins "
                              "WHERE coin_id IN ('coin001', 'coin003') ORDER BY coin_id").fetchall()
    assert labels == [("coin001", 1977, "review"), ("coin003", 1990, "review")]


def test_retraining_fires_at_the_threshold_and_not_before(env):
    root, resources, instance = env
    assert not retraining_due(49, None, 50) and retraining_due(50, None, 50)
    assert not retraining_due(80, 40, 50) and retraining_due(90, 40, 50)
    write_coins(root, n=8)
    run(resources, instance, ["bronze_images", "silver_images", "gold_images"], DAY)
    def sensor_resources(threshold: int) -> dict:
        r = resources["mlflow_registry"]
        registry = MlflowRegistry(tracking_uri=r.tracking_uri, artifact_root=r.artifact_root, model_name=r.model_name,
                                  experiment_name=r.experiment_name, retrain_new_labels=threshold)
        return {"duckdb": resources["duckdb"], "mlflow_registry": registry}

    retraining_sensor = SENSORS["retraining_sensor"]
    with build_sensor_context(instance=instance, resources=sensor_resources(9)) as ctx:
        assert isinstance(retraining_sensor(ctx), SkipReason)  # 8 labelled coins, threshold 9
    with build_sensor_context(instance=instance, resources=sensor_resources(8)) as ctx:
        request = retraining_sensor(ctx)
    assert isinstance(request, RunRequest) and request.run_key == "retrain:8"
