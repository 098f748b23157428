"""What coin_assets relies on in the libraries' private or undocumented corners, pinned, so an upgrade
that changes it fails here instead of silently in a deployment.

- dagster-celery: ``_submit_task`` (coin_assets/defs/dagster_celery_internals.py, the pool routing of
  coin_assets/defs/executors.py), built on dagster-celery's public executor definition.
- Dagster: no private import left in coin_assets. Pinned here: the run statuses run_recovery treats as
  finished are still Dagster's own list, the default instance launches with ``dagster.DefaultRunLauncher``,
  and the logger named as a string in coin_assets/defs/known_warnings.py still exists under that name.
- MLflow: ``ModelVersion`` rebuilt with its public constructor keeps every property (registry._normalise);
  the registry lock follows the client's public ``tracking_uri``.
- pgserver: the Postgres programs' folder comes from its public ``pg_config`` function.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from types import SimpleNamespace

import pytest
from dagster import (
    DagsterRunStatus,
    DefaultRunLauncher,
    InitExecutorContext,
    instance_for_test,
    job,
    op,
    reconstructable,
)


@op
def a_step():
    return 1


@job
def tiny_job():
    a_step()


# ------------------------------------------------------------------------------------ dagster-celery

def _routed_executor(instance):
    from coin_assets.defs.executors import routed_celery_executor_def

    executor_def = routed_celery_executor_def()
    config = {"duckdb_queue": "duckdb", "broker": "memory://", "backend": "cache+memory://",
              "include": ["coin_assets.defs.celery_app"], "config_source": {"task_acks_late": True},
              "retries": {"enabled": {}}}
    context = InitExecutorContext(job=reconstructable(tiny_job), executor_def=executor_def,
                                  executor_config=config, instance=instance)
    return executor_def.executor_creation_fn(context)


def test_the_routed_celery_executor_is_dagster_celerys_built_from_the_same_config():
    """dagster-celery's public executor definition builds the executor; ours keeps its settings."""
    from dagster_celery.executor import CeleryExecutor

    with instance_for_test() as instance:
        executor = _routed_executor(instance)
    assert isinstance(executor, CeleryExecutor) and executor.duckdb_queue == "duckdb"
    assert executor.broker == "memory://" and executor.backend == "cache+memory://"
    assert executor.include == ["coin_assets.defs.celery_app"]
    assert executor.config_source.task_acks_late is True  # merged over dagster-celery's defaults
    assert executor.retries.enabled
    assert executor.app_args()["retries"] is executor.retries


def test_dagster_celery_submits_a_step_with_submit_task_to_the_queue_given():
    """The private function keeps its signature, is still what dagster-celery's own executor hands its
    execution loop, and the loop still hands it (app, context, step, queue, priority, known_state)."""
    from dagster_celery.core_execution_loop import core_celery_execution_loop
    from dagster_celery.executor import CeleryExecutor, _submit_task

    assert list(inspect.signature(_submit_task).parameters) == [
        "app", "plan_context", "step", "queue", "priority", "known_state"]
    assert "step_execution_fn=_submit_task" in inspect.getsource(CeleryExecutor.execute)
    assert "step_execution_fn" in inspect.signature(core_celery_execution_loop).parameters
    loop = inspect.getsource(core_celery_execution_loop).replace("\n", " ")
    assert " ".join("step_execution_fn( app, job_context, step, queue, priority,".split()) in " ".join(loop.split())


def test_submit_step_sends_the_task_to_the_queue_it_is_given(monkeypatch):
    import dagster_celery.tasks

    from coin_assets.defs.dagster_celery_internals import submit_step

    sent = {}

    class FakeSignature:
        def apply_async(self, **options):
            sent["options"] = options
            return "async-result"

    class FakeTask:
        def si(self, **kwargs):
            sent["kwargs"] = kwargs
            return FakeSignature()

    def create_task(given_app):
        sent["app"] = given_app
        return FakeTask()

    app = object()
    monkeypatch.setattr(dagster_celery.tasks, "create_task", create_task)
    with instance_for_test() as instance:
        context = SimpleNamespace(reconstructable_job=reconstructable(tiny_job), instance=instance,
                                  dagster_run=SimpleNamespace(run_id="run-1"), executor=_routed_executor(instance))
        result = submit_step(app, context, SimpleNamespace(key="a_step"), "duckdb", 3, None)
    assert result == "async-result" and sent["app"] is app
    assert sent["options"] == {"priority": 3, "queue": "duckdb", "routing_key": "duckdb.execute_plan"}
    packed = sent["kwargs"]["execute_step_args_packed"]  # what the worker's task unpacks
    assert packed["pipeline_run_id"] == "run-1" and packed["step_keys_to_execute"] == ["a_step"]


# ------------------------------------------------------------------------------------------- dagster

def test_the_finished_run_statuses_are_dagsters():
    from dagster._core.storage.dagster_run import FINISHED_STATUSES

    from coin_assets.defs.run_recovery import FINISHED, IN_FLIGHT

    assert set(FINISHED) == set(FINISHED_STATUSES)
    assert not set(FINISHED) & set(IN_FLIGHT) and DagsterRunStatus.STARTED in IN_FLIGHT


def test_a_default_instance_launches_runs_with_the_public_default_run_launcher():
    from coin_assets.defs.run_recovery import is_local_instance, recover_abandoned_runs

    with instance_for_test() as instance:
        assert isinstance(instance.run_launcher, DefaultRunLauncher) and is_local_instance(instance)
        assert recover_abandoned_runs(instance) == []  # the storage calls it makes exist


def test_the_logger_named_in_known_warnings_still_logs_that_message():
    from coin_assets.defs.known_warnings import KNOWN_LOG_RECORDS

    for logger_name, _message, _why in KNOWN_LOG_RECORDS:
        module = importlib.import_module(logger_name)  # a module logging under its own name
        assert any(isinstance(v, logging.Logger) and v.name == logger_name for v in vars(module).values())
    assert "emitted no result" in inspect.getsource(importlib.import_module(KNOWN_LOG_RECORDS[0][0]))


# -------------------------------------------------------------------------------------------- mlflow

def test_a_model_version_normalised_to_a_str_version_keeps_every_property():
    from mlflow.entities import Metric
    from mlflow.entities.logged_model_parameter import LoggedModelParameter
    from mlflow.entities.model_registry import ModelVersion, ModelVersionTag

    from coin_assets.ml.registry import _normalise

    original = ModelVersion(
        name="coin", version=7, creation_timestamp=1, last_updated_timestamp=2, description="d", user_id="u",
        current_stage="None", source="models:/m-1", run_id="r1", status="READY", status_message="ok",
        tags=[ModelVersionTag("decision", "promoted")], run_link="http://x", aliases=["production"],
        model_id="m-1", params=[LoggedModelParameter("k", "v")], metrics=[Metric("mae", 1.0, 3, 0)],
        workspace="default")
    properties = [name for name, member in inspect.getmembers(ModelVersion) if isinstance(member, property)]
    assert {"version", "tags", "aliases", "model_id", "workspace"} <= set(properties)
    normalised = _normalise(original)
    assert normalised.version == "7"
    for name in properties:
        if name != "version":
            assert getattr(normalised, name) == getattr(original, name), name
    assert _normalise(normalised) is normalised and _normalise(None) is None


def test_the_registry_lock_follows_the_clients_tracking_uri(tmp_path):
    from mlflow import MlflowClient

    from coin_assets.ml.registry import lock_target

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)  # as every coin_assets client is built
    assert client.tracking_uri == uri
    assert lock_target(client) == str(tmp_path / "mlflow.db") + ".lock"
    server = "http://127.0.0.1:9"
    assert "coin_assets_registry_" in lock_target(MlflowClient(tracking_uri=server, registry_uri=server))


# ------------------------------------------------------------------------------------------ pgserver

def test_the_postgres_programs_come_from_pgservers_public_pg_config():
    pgserver = pytest.importorskip("pgserver")
    from coin_assets.devtools.local_cluster import _postgres_bin

    assert callable(pgserver.pg_config)
    bin_dir = _postgres_bin()
    assert (bin_dir / "postgres").is_file() and (bin_dir / "initdb").is_file()
