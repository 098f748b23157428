"""Importing the package reads no settings. They are read when Dagster loads the definitions
(`coin_assets.definitions.defs`, a `@dagster.definitions` loader), once per load, and the daily
partitions, the sensor intervals and the executor follow them; the workers' Celery app reads them
when Celery asks for it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import Definitions

from coin_assets.definitions import defs
from coin_assets.settings import SettingsError

WORKTREE = Path(__file__).resolve().parents[1]
BAD_START = "2025-13-01"  # no month 13: the settings refuse it

# Every module of the package is imported, except the scripts that run when imported: `python -m` entry
# points (`__main__`), Streamlit's page and Alembic's environment.
IMPORT_EVERY_MODULE = """
import importlib, pkgutil
import coin_assets
from coin_assets.settings import SettingsError

SCRIPTS = {"coin_assets.webapp.app", "coin_assets.serving.migrations.env"}
imported = []
for info in pkgutil.walk_packages(coin_assets.__path__, "coin_assets."):
    if info.name.endswith(".__main__") or info.name in SCRIPTS:
        continue
    importlib.import_module(info.name)
    imported.append(info.name)
print("imported", len(imported), "modules")

import coin_assets.defs.celery_app as celery_app
import coin_assets.definitions as definitions
for name, load in (("definitions", definitions.defs), ("celery app", lambda: celery_app.app)):
    try:
        load()
    except SettingsError as err:
        print(f"{name} refused: {err}")
"""


def _environment(tmp_path: Path, **settings: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COIN_ASSETS_", "DAGSTER_", "MLFLOW_"))}
    env.update(PYTHONPATH=str(WORKTREE), COIN_ASSETS_DATA_DIR=str(tmp_path / "data"), **settings)
    return env


@pytest.mark.servers
def test_importing_every_module_reads_no_settings_and_loading_reads_them(tmp_path):
    done = subprocess.run([sys.executable, "-c", IMPORT_EVERY_MODULE], cwd=tmp_path, capture_output=True, text=True,
                          env=_environment(tmp_path, COIN_ASSETS_START_DATE=BAD_START), timeout=300)
    assert done.returncode == 0, done.stderr
    imported = int(done.stdout.split("imported ", 1)[1].split()[0])
    assert imported > 50, done.stdout
    refusal = f"COIN_ASSETS_START_DATE={BAD_START!r}"
    assert f"definitions refused: invalid settings: {refusal}" in done.stdout, done.stdout
    assert f"celery app refused: invalid settings: {refusal}" in done.stdout, done.stdout
    assert list(tmp_path.iterdir()) == []  # and nothing written


@pytest.mark.servers
def test_dagster_loads_the_lazy_definitions_and_reports_a_bad_setting_by_name(tmp_path):
    """What `dagster dev -m`, `dagster api grpc -m` and workspace.yaml do: Dagster's own loader finds
    `defs` in the module and calls it."""
    command = [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-m",
               "coin_assets.definitions"]
    valid = subprocess.run(command, cwd=tmp_path, env=_environment(tmp_path), capture_output=True, text=True,
                           timeout=300)
    assert valid.returncode == 0, valid.stderr
    assert "All code locations passed validation" in valid.stderr + valid.stdout
    refused = subprocess.run(command, cwd=tmp_path, env=_environment(tmp_path, COIN_ASSETS_START_DATE=BAD_START),
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0
    assert f"COIN_ASSETS_START_DATE={BAD_START!r}" in refused.stderr + refused.stdout


def test_loading_the_definitions_with_a_bad_setting_names_the_variable(monkeypatch):
    monkeypatch.setenv("COIN_ASSETS_START_DATE", BAD_START)
    with pytest.raises(SettingsError, match=f"COIN_ASSETS_START_DATE={BAD_START!r}"):
        defs()


def test_partitions_intervals_and_executor_follow_the_settings_of_each_load(monkeypatch, tmp_path):
    monkeypatch.setenv("COIN_ASSETS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COIN_ASSETS_START_DATE", "2026-03-15")
    monkeypatch.setenv("COIN_ASSETS_SENSOR_INTERVAL", "7")
    monkeypatch.setenv("COIN_ASSETS_RETRAIN_INTERVAL", "90")
    monkeypatch.setenv("COIN_ASSETS_EXECUTOR", "multiprocess")
    loaded = defs()
    assert isinstance(loaded, Definitions)
    Definitions.validate_loadable(loaded)

    graph = loaded.resolve_asset_graph()
    partitioned = {key.to_user_string(): graph.get(key).partitions_def for key in graph.get_all_asset_keys()
                   if graph.get(key).partitions_def is not None}
    assert set(partitioned) == {"coin_uploads", "bronze_images", "decoded_images", "silver_images", "gold_images",
                                "archived_bronze", "found_coins", "coin_crops", "coin_predictions", "review_queue",
                                "serving_requests"}
    assert {p.get_first_partition_key() for p in partitioned.values()} == {"2026-03-15"}
    for name in ("ingestion_job", "archive_job", "prediction_job"):
        assert loaded.resolve_job_def(name).partitions_def.get_first_partition_key() == "2026-03-15"
    checks = {key.name: graph.get(key).partitions_def for key in graph.asset_check_keys}
    assert checks["gold_lineage_is_intact"].get_first_partition_key() == "2026-03-15"
    assert checks["predictions_scored_once"].get_first_partition_key() == "2026-03-15"

    sensors = {s.name: s.minimum_interval_seconds for s in loaded.sensors}
    assert (sensors["upload_sensor"], sensors["review_sensor"], sensors["retraining_sensor"]) == (7, 7, 90)
    assert loaded.executor.name == "multiprocess"

    # read again on the next load, not kept from the first
    monkeypatch.setenv("COIN_ASSETS_START_DATE", "2026-04-01")
    monkeypatch.delenv("COIN_ASSETS_EXECUTOR")
    reloaded = defs()
    assert reloaded.resolve_job_def("ingestion_job").partitions_def.get_first_partition_key() == "2026-04-01"
    assert reloaded.executor.name == "in_process"


def test_the_serving_resource_reads_no_settings_in_a_run(monkeypatch):
    """Asset bodies and ops ask the API through the `serving_api` resource, built from the settings of the
    load: a run reads none (here they would be refused)."""
    from coin_assets.defs.resources import ServingApi

    monkeypatch.setenv("COIN_ASSETS_START_DATE", BAD_START)
    api = ServingApi(url="http://127.0.0.1:9", request_store_url="sqlite://", reload_token=None)
    assert api.request_reload() == {
        "ok": False, "error": "COIN_ASSETS_RELOAD_TOKEN not set: not asking the service to reload"}
    assert api.health()["reachable"] is False
