"""Scale-out for real: Postgres-backed Dagster instance, a daemon, two Celery workers on Redis, moto's
S3 server and an MLflow tracking server (Postgres backend, S3 artifacts), all started here as local
processes from packages the project installs (`scale` extra). A backfill of two daily partitions
and the model chain go through the daemon onto the workers; the tables, files and registered model
must equal those of an in-process run on the same uploads.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import boto3
import duckdb
import mlflow
import pytest
from dagster import AssetSelection, DagsterInstance, DagsterRunStatus, RunsFilter, materialize
from dagster._core.events import DagsterEventType
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster._time import get_current_timestamp
from mlflow import MlflowClient

from coin_assets.local_cluster import REPO_ROOT, LocalCluster
from coin_assets.settings import Settings
from coin_assets.synth import generate_uploads

pytestmark = pytest.mark.slow

TINY = {"image_size": 32, "epochs": 1, "max_steps": 2, "batch_size": 8, "num_workers": 0, "augment": False,
        "backbone": "mobilenet_v3_small", "projection_dim": 16, "num_threads": 1}
TRAINING_CONFIG = {"ops": {"coin_year_model": {"config": TINY}}}
PREFIX = "coin_assets"
MODEL = "coin_year_regressor"
GOLD_COLUMNS = "partition_date, coin_id, side, sha256, label_year, clean_width, clean_height, user_id"
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


# ------------------------------------------------------------------------------------ reference

def in_process_reference(base: Path, uploads: Path, days: list[str]) -> dict:
    """The same uploads through the in-process executor with the local resource set."""
    from coin_assets.definitions import defs
    from coin_assets.defs.resources import local_resources

    shutil.copytree(uploads, base / "uploads")
    settings = Settings(data_dir=str(base))
    resources = local_resources(settings)
    assets = [*defs.assets, *defs.asset_checks]
    instance = DagsterInstance.ephemeral()
    try:
        for day in days:
            materialize(assets, partition_key=day, resources=resources, instance=instance,
                        selection=AssetSelection.assets("bronze_images", "silver_images", "gold_images", "coin_crops"))
        materialize(assets, resources=resources, instance=instance, run_config=TRAINING_CONFIG,
                    selection=AssetSelection.assets("review_labels", "training_set", "coin_year_model",
                                                    "model_evaluation", "promotion_decision"))
        client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
        model = registry_summary(client)
    finally:
        if mlflow.active_run():
            mlflow.end_run()
        mlflow.set_tracking_uri("")
        instance.dispose()
    files = {p.relative_to(base).as_posix(): sha256(p.read_bytes())
             for layer in ("bronze", "silver", "gold") for p in sorted((base / layer).rglob("*")) if p.is_file()}
    return {"tables": tables(settings.duckdb_file), "files": files, "model": model}


# ----------------------------------------------------------------------------------- comparisons

def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tables(db_file: str) -> dict:
    with duckdb.connect(db_file, read_only=True) as conn:
        return {
            "gold_images": conn.execute(f"SELECT {GOLD_COLUMNS} FROM gold_images ORDER BY ALL").fetchall(),
            "counts": {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                       for t in ("uploads", "silver_images", "gold_images", "quarantine")},
            "paired": conn.execute("SELECT count(*) FROM coins WHERE paired").fetchone()[0],
        }


def s3_files(s3, bucket: str, prefix: str) -> dict[str, str]:
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = sha256(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
    return out


def registry_summary(client: MlflowClient) -> dict:
    versions = client.search_model_versions(f"name='{MODEL}'")
    aliases = client.get_registered_model(MODEL).aliases
    return {
        "versions": len(versions),
        "aliases": sorted(aliases),
        "training_set_hash": sorted({v.tags.get("training_set_hash") or client.get_run(v.run_id).data.tags.get(
            "training_set_hash") for v in versions}),
    }


# ------------------------------------------------------------------------------ driving Dagster

@contextmanager
def workspace(instance: DagsterInstance):
    with WorkspaceProcessContext(instance, WorkspaceFileTarget([str(REPO_ROOT / "workspace.yaml")])) as ctx:
        request = ctx.create_request_context()
        location = request.get_code_location("coin_assets")
        yield request, location, next(iter(location.get_repositories().values()))


def stop_instigators(instance: DagsterInstance, repo) -> None:
    """Sensors and schedules off before the daemon starts: the test starts every run itself."""
    for sensor in repo.get_sensors():
        instance.stop_sensor(sensor.get_remote_origin_id(), sensor.selector_id, sensor)
    for schedule in repo.get_schedules():
        instance.stop_schedule(schedule.get_remote_origin_id(), schedule.selector_id, schedule)


def request_backfill(instance: DagsterInstance, repo, job_name: str, partitions: list[str]) -> str:
    """A job backfill in status REQUESTED: the daemon's backfill loop creates and queues the runs."""
    from dagster._core.utils import make_new_backfill_id

    partition_set = next(p for p in repo.get_partition_sets() if p.job_name == job_name)
    backfill_id = make_new_backfill_id()
    instance.add_backfill(PartitionBackfill(
        backfill_id=backfill_id, partition_set_origin=partition_set.get_remote_origin(),
        status=BulkActionStatus.REQUESTED, partition_names=partitions, from_failure=False,
        reexecution_steps=None, tags={}, backfill_timestamp=get_current_timestamp(),
    ))
    return backfill_id


def submit_job(instance: DagsterInstance, request, location, repo, job_name: str, run_config: dict) -> str:
    """Queue one run (as `dagster job launch` does); the daemon's run queue starts it."""
    from dagster._cli.job import _create_run

    run = _create_run(instance=instance, code_location=location, remote_repo=repo,
                      remote_job=repo.get_full_job(job_name), run_config=run_config, tags={},
                      op_selection=None, run_id=None)
    return instance.submit_run(run.run_id, request).run_id


def wait_for_runs(instance: DagsterInstance, runs_filter: RunsFilter, count: int, timeout: float, cluster) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = instance.get_runs(runs_filter)
        if len(runs) >= count and all(r.status in FINISHED for r in runs):
            return runs
        dead = [n for n, p in cluster.procs.items() if not p.running]
        assert not dead, f"processes died: {dead}\n" + "\n".join(cluster.procs[n].tail() for n in dead)
        time.sleep(1)
    logs = "\n".join(f"--- {n}\n{p.tail(25)}" for n, p in cluster.procs.items() if n.startswith(("celery", "dagster")))
    raise TimeoutError(f"runs not finished after {timeout}s: "
                       f"{[(r.run_id[:8], r.status) for r in instance.get_runs(runs_filter)]}\n{logs}")


def step_workers(instance: DagsterInstance, run_id: str) -> dict[str, str]:
    """{step key: Celery worker hostname} from the engine events dagster-celery writes."""
    out = {}
    for record in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        event = record.dagster_event
        metadata = event.engine_event_data.metadata if event.engine_event_data else {}
        if "Celery worker" in metadata:
            out[event.step_key] = getattr(metadata["Celery worker"], "value", metadata["Celery worker"])
    return out


def steps_in_pool(pool: str, *job_names: str) -> set[str]:
    from coin_assets.definitions import defs

    return {node.name for name in job_names for node in defs.resolve_job_def(name).graph.nodes
            if getattr(node.definition, "pool", None) == pool}


def run_failure_text(instance: DagsterInstance, run_id: str) -> str:
    return "\n".join(str(r.dagster_event.event_specific_data)[:1500] for r in instance.all_logs(run_id)
                     if r.dagster_event and r.dagster_event.event_type in
                     (DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE, DagsterEventType.ENGINE_EVENT)
                     and "rror" in str(r.dagster_event.event_specific_data))


# ----------------------------------------------------------------------------------------- test

def test_backfill_and_model_chain_on_two_celery_workers_equal_an_in_process_run(tmp_path, monkeypatch):
    uploads = tmp_path / "generated"
    generate_uploads(uploads, coins=24, days=2, seed=3, max_side=160)
    days = sorted(p.name for p in uploads.iterdir() if p.is_dir())
    assert len(days) == 2

    for name in ("DAGSTER_HOME", "MLFLOW_TRACKING_URI", "COIN_ASSETS_DUCKDB", "COIN_ASSETS_S3_BUCKET",
                 "AWS_ENDPOINT_URL", "COIN_ASSETS_EXECUTOR", "COIN_ASSETS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    reference = in_process_reference(tmp_path / "reference", uploads, days)
    assert reference["model"]["versions"] == 1 and "production" in reference["model"]["aliases"]

    with LocalCluster(tmp_path / "cluster") as cluster:
        cluster.start_servers()
        for key, value in cluster.env.items():
            monkeypatch.setenv(key, value)
        s3 = boto3.client("s3", endpoint_url=cluster.env["AWS_ENDPOINT_URL"], region_name="us-east-1")
        for path in sorted(uploads.rglob("*")):
            if path.is_file():
                s3.upload_file(str(path), cluster.bucket, f"{PREFIX}/uploads/{path.relative_to(uploads).as_posix()}")

        instance = DagsterInstance.get()
        try:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            with workspace(instance) as (request, location, repo):
                stop_instigators(instance, repo)
                cluster.start_workers(2)
                cluster.start_daemon()
                backfill_id = request_backfill(instance, repo, "ingestion_job", days)
                ingestion_runs = wait_for_runs(instance, RunsFilter(tags={"dagster/backfill": backfill_id}),
                                               len(days), 420, cluster)
                failed = [r.run_id for r in ingestion_runs if r.status != DagsterRunStatus.SUCCESS]
                assert not failed, run_failure_text(instance, failed[0])
                training_run_id = submit_job(instance, request, location, repo, "training_job", TRAINING_CONFIG)
                (training_run,) = wait_for_runs(instance, RunsFilter(run_ids=[training_run_id]), 1, 420, cluster)
                assert training_run.status == DagsterRunStatus.SUCCESS, run_failure_text(instance, training_run_id)

            # steps went to the queues the design says: DuckDB writers on worker-1, the rest on worker-2
            placements = {}
            for run in [*ingestion_runs, training_run]:
                placements.update({(run.run_id, k): v for k, v in step_workers(instance, run.run_id).items()})
            assert {k for (_, k) in placements} >= {"bronze_images", "silver_images", "gold_images",
                                                     "training_set", "coin_year_model", "model_evaluation"}
            duckdb_steps = steps_in_pool("duckdb_writer", "ingestion_job", "training_job")
            for (_, step), worker in placements.items():
                expected = "worker-1@" if step in duckdb_steps else "worker-2@"
                assert worker.startswith(expected), (step, worker)
            # no pool slot stays claimed
            info = instance.event_log_storage.get_concurrency_info("duckdb_writer")
            assert not info.claimed_slots and not info.pending_steps
        finally:
            instance.dispose()

        # the same tables, files and model as the in-process run
        assert tables(cluster.env["COIN_ASSETS_DUCKDB"]) == reference["tables"]
        layers = {k.removeprefix(f"{PREFIX}/"): v for k, v in s3_files(s3, cluster.bucket, PREFIX).items()
                  if k.split("/")[1] in ("bronze", "silver", "gold")}
        assert layers == reference["files"]
        # values between steps went through S3 (the IO manager), MLflow artifacts too
        assert any(k.startswith(f"{PREFIX}/io/") for k in s3_files(s3, cluster.bucket, f"{PREFIX}/io/"))
        assert s3_files(s3, cluster.bucket, "mlflow/")
        server = cluster.procs["mlflow"].url
        assert registry_summary(MlflowClient(server, server)) == reference["model"]
