"""Scale-out for real: Postgres-backed Dagster instance, a daemon, two Celery workers on Redis, moto's
S3 server and an MLflow tracking server (Postgres backend, S3 artifacts), all started once for this
module as local processes from packages the project installs (`scale` extra).

- A backfill of two daily partitions and the model chain go through the daemon onto the workers;
  the tables, files and registered model must equal those of an in-process run on the same uploads.
- Failure drills on the same servers: the DuckDB worker SIGKILLed (whole process group) mid-step,
  and the broker restarted during a run. Afterwards the tables, files and model still equal the
  reference and no `duckdb_writer` pool slot stays claimed.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
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

from coin_assets.devtools.local_cluster import REPO_ROOT, LocalCluster
from coin_assets.settings import Settings
from coin_assets.synth import generate_uploads

pytestmark = pytest.mark.slow

TINY = {"image_size": 32, "epochs": 1, "max_steps": 2, "batch_size": 8, "num_workers": 0, "augment": False,
        "backbone": "mobilenet_v3_small", "projection_dim": 16, "num_threads": 1,
        "use_year_reader": False}  # the year reader has its own tests; here the tables must match a local run
TINY_EVALUATION = {"reading_suite_per_placement": 1, "reading_suite_no_year": 1,
                   "reading_suite_photographic_per_placement": 0}
TRAINING_CONFIG = {"ops": {"coin_year_model": {"config": TINY}, "model_evaluation": {"config": TINY_EVALUATION}}}
PREFIX = "coin_assets"
MODEL = "coin_year_regressor"
GOLD_COLUMNS = "partition_date, coin_id, side, sha256, label_year, clean_width, clean_height, user_id"
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


# ------------------------------------------------------------------------------------ reference

def in_process_reference(base: Path, uploads: Path, days: list[str]) -> dict:
    """The same uploads through the in-process executor with the local resource set."""
    from coin_assets.definitions import build_definitions
    from coin_assets.defs.resources import local_resources

    shutil.copytree(uploads, base / "uploads")
    settings = Settings(data_dir=str(base))
    resources = local_resources(settings)
    project = build_definitions(settings)
    assets = [*project.assets, *project.asset_checks]
    instance = DagsterInstance.ephemeral()
    try:
        for day in days:
            materialize(assets, partition_key=day, resources=resources, instance=instance,
                        selection=AssetSelection.assets("bronze_images", "decoded_images", "silver_images", "gold_images",
                                                        "found_coins", "coin_crops"))
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


def submit_job(instance: DagsterInstance, request, location, repo, job_name: str, run_config: dict,
               tags: dict | None = None) -> str:
    """Queue one run (as `dagster job launch` does); the daemon's run queue starts it."""
    from dagster._cli.job import _create_run

    run = _create_run(instance=instance, code_location=location, remote_repo=repo,
                      remote_job=repo.get_full_job(job_name), run_config=run_config, tags=tags or {},
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
    from coin_assets_tests.conftest import PROJECT

    return {node.name for name in job_names for node in PROJECT.resolve_job_def(name).graph.nodes
            if getattr(node.definition, "pool", None) == pool}


def run_failure_text(instance: DagsterInstance, run_id: str) -> str:
    return "\n".join(str(r.dagster_event.event_specific_data)[:1500] for r in instance.all_logs(run_id)
                     if r.dagster_event and r.dagster_event.event_type in
                     (DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE, DagsterEventType.ENGINE_EVENT)
                     and "rror" in str(r.dagster_event.event_specific_data))


# ------------------------------------------------------------------------- the cluster, once

ENV_NAMES = ("DAGSTER_HOME", "MLFLOW_TRACKING_URI", "COIN_ASSETS_DUCKDB", "COIN_ASSETS_S3_BUCKET", "AWS_ENDPOINT_URL",
             "COIN_ASSETS_EXECUTOR", "COIN_ASSETS_PROFILE", "COIN_ASSETS_REGISTRY_LOCK", "COIN_ASSETS_CELERY_VISIBILITY")
# a step of a lost worker is handed out again after this long; above the longest step here
VISIBILITY_TIMEOUT = 40


@dataclass
class Deployment:
    cluster: LocalCluster
    instance: DagsterInstance
    request: object
    location: object
    repo: object
    s3: object
    days: list[str]
    reference: dict

    def submit(self, job_name: str, run_config: dict | None = None, tags: dict | None = None) -> str:
        return submit_job(self.instance, self.request, self.location, self.repo, job_name, run_config or {}, tags)

    def wait(self, run_id: str, timeout: float = 420):
        (run,) = wait_for_runs(self.instance, RunsFilter(run_ids=[run_id]), 1, timeout, self.cluster)
        return run

    def assert_equal_to_reference(self) -> None:
        assert tables(self.cluster.env["COIN_ASSETS_DUCKDB"]) == self.reference["tables"]
        layers = {k.removeprefix(f"{PREFIX}/"): v for k, v in s3_files(self.s3, self.cluster.bucket, PREFIX).items()
                  if k.split("/")[1] in ("bronze", "silver", "gold")}
        assert layers == self.reference["files"]
        server = self.cluster.procs["mlflow"].url
        assert registry_summary(MlflowClient(server, server)) == self.reference["model"]

    def assert_no_pool_slot_claimed(self) -> None:
        info = self.instance.event_log_storage.get_concurrency_info("duckdb_writer")
        assert not info.claimed_slots and not info.pending_steps, (info.claimed_slots, info.pending_steps)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    base = tmp_path_factory.mktemp("scale_out")
    uploads = base / "generated"
    generate_uploads(uploads, coins=24, days=2, seed=3, max_side=160)
    days = sorted(p.name for p in uploads.iterdir() if p.is_dir())
    assert len(days) == 2

    with pytest.MonkeyPatch.context() as env:
        for name in ENV_NAMES:
            env.delenv(name, raising=False)
        env.setenv("COIN_ASSETS_SETTLE_SECONDS", "0")  # the uploads were just written: take them all
        reference = in_process_reference(base / "reference", uploads, days)
        assert reference["model"]["versions"] == 1 and "production" in reference["model"]["aliases"]

        with LocalCluster(base / "cluster") as cluster:
            cluster.start_servers()
            # chunks of 6 photos: each day's decoding and coin finding is several steps, for any worker
            cluster.env.update(COIN_ASSETS_CELERY_VISIBILITY=str(VISIBILITY_TIMEOUT), COIN_ASSETS_SETTLE_SECONDS="0",
                               COIN_ASSETS_CHUNK_PHOTOS="6")
            for key, value in cluster.env.items():
                env.setenv(key, value)
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
                    yield Deployment(cluster, instance, request, location, repo, s3, days, reference)
            finally:
                instance.dispose()


def step_events(instance: DagsterInstance, run_id: str, event_type) -> list[str]:
    return [r.dagster_event.step_key for r in instance.all_logs(run_id, of_type=event_type)]


def wait_for_step_start(deployment: Deployment, run_id: str, steps: set[str], timeout: float = 240) -> str:
    """The first of `steps` that starts in run `run_id` (polled every 0.1 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        started = [k for k in step_events(deployment.instance, run_id, DagsterEventType.STEP_START) if k in steps]
        if started:
            return started[0]
        run = deployment.instance.get_run_by_id(run_id)
        assert run.status not in FINISHED, f"run finished before any of {steps} started: {run.status}"
        time.sleep(0.1)
    raise TimeoutError(f"none of {steps} started in {timeout}s")


# ----------------------------------------------------------------------------------------- tests

def test_backfill_and_model_chain_on_two_celery_workers_equal_an_in_process_run(deployment):
    d = deployment
    instance, cluster = d.instance, d.cluster
    backfill_id = request_backfill(instance, d.repo, "ingestion_job", d.days)
    ingestion_runs = wait_for_runs(instance, RunsFilter(tags={"dagster/backfill": backfill_id}), len(d.days), 420, cluster)
    failed = [r.run_id for r in ingestion_runs if r.status != DagsterRunStatus.SUCCESS]
    assert not failed, run_failure_text(instance, failed[0])
    training_run = d.wait(d.submit("training_job", TRAINING_CONFIG))
    assert training_run.status == DagsterRunStatus.SUCCESS, run_failure_text(instance, training_run.run_id)

    # steps went to the queues the design says: DuckDB writers on worker-1 only; the rest (a day's chunks of
    # decoding and coin finding among them) on whichever worker was free
    placements = {}
    for run in [*ingestion_runs, training_run]:
        placements.update({(run.run_id, k): v for k, v in step_workers(instance, run.run_id).items()})
    assert {k for (_, k) in placements} >= {"bronze_images", "silver_images", "gold_images", "coin_crops",
                                             "training_set", "coin_year_model", "model_evaluation"}
    duckdb_steps = steps_in_pool("duckdb_writer", "ingestion_job", "training_job")
    for (_, step), worker in placements.items():
        if step in duckdb_steps:
            assert worker.startswith("worker-1@"), (step, worker)
    chunk_workers = {}
    for (run_id, step), worker in placements.items():
        if "_chunk[" in step:
            chunk_workers.setdefault(run_id, set()).add(worker.split("@")[0])
    assert all(len([k for (r, k) in placements if r == run.run_id and "_chunk[" in k]) >= 4 for run in ingestion_runs)
    assert any(workers == {"worker-1", "worker-2"} for workers in chunk_workers.values()), chunk_workers
    d.assert_no_pool_slot_claimed()

    # the same tables, files and model as the in-process run
    d.assert_equal_to_reference()
    # values between steps went through S3 (the IO manager), MLflow artifacts too
    assert any(k.startswith(f"{PREFIX}/io/") for k in s3_files(d.s3, cluster.bucket, f"{PREFIX}/io/"))
    assert s3_files(d.s3, cluster.bucket, "mlflow/")


def test_a_worker_killed_mid_step_loses_and_duplicates_nothing(deployment):
    """worker-1 (the DuckDB owner) is SIGKILLed, whole process group, while it runs a DuckDB step of a
    re-run of day 1; a supervisor (here: the test) starts it again. Its unacknowledged step goes back
    on the queue after the visibility timeout and runs again: the run succeeds, the tables and files
    are those of the reference (nothing lost, nothing twice), and no pool slot stays claimed."""
    d = deployment
    duckdb_steps = steps_in_pool("duckdb_writer", "ingestion_job")
    run_id = d.submit("ingestion_job", tags={"dagster/partition": d.days[0]})
    killed_step = wait_for_step_start(d, run_id, duckdb_steps)
    d.cluster.kill("worker-1")
    killed_at = time.monotonic()
    finished_before_kill = killed_step in step_events(d.instance, run_id, DagsterEventType.STEP_SUCCESS)
    d.cluster.restart_worker("worker-1")

    run = d.wait(run_id, timeout=VISIBILITY_TIMEOUT + 300)
    assert run.status == DagsterRunStatus.SUCCESS, run_failure_text(d.instance, run_id)
    starts = step_events(d.instance, run_id, DagsterEventType.STEP_START)
    successes = step_events(d.instance, run_id, DagsterEventType.STEP_SUCCESS)
    print(f"killed worker-1 while {killed_step} ran; finished before the kill: {finished_before_kill}; "
          f"run done {time.monotonic() - killed_at:.0f}s after the kill")
    if not finished_before_kill:  # the drill hit the step mid-way: it ran again, after the visibility timeout
        assert starts.count(killed_step) == 2, starts
        assert time.monotonic() - killed_at >= VISIBILITY_TIMEOUT - 5
    assert successes.count(killed_step) == 1 and sorted(set(successes)) == sorted(successes)
    d.assert_no_pool_slot_claimed()
    d.assert_equal_to_reference()


def test_a_run_across_a_broker_restart_completes_or_fails_cleanly_and_reruns(deployment):
    """Redis (append-only file) is stopped and started again while a step of an ingestion re-run
    runs. The run completes, or fails cleanly (no slot left claimed) and a re-run completes; the
    tables and files equal the reference."""
    d = deployment
    duckdb_steps = steps_in_pool("duckdb_writer", "ingestion_job")
    run_id = d.submit("ingestion_job", tags={"dagster/partition": d.days[1]})
    wait_for_step_start(d, run_id, duckdb_steps)
    d.cluster.restart_redis()
    run = d.wait(run_id, timeout=VISIBILITY_TIMEOUT + 300)
    assert run.status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE)
    print(f"run across a broker restart: {run.status.value}")
    d.assert_no_pool_slot_claimed()
    if run.status != DagsterRunStatus.SUCCESS:  # failed cleanly: a re-run must complete
        print(run_failure_text(d.instance, run_id)[:3000])
        rerun = d.wait(d.submit("ingestion_job", tags={"dagster/partition": d.days[1]}))
        assert rerun.status == DagsterRunStatus.SUCCESS, run_failure_text(d.instance, rerun.run_id)
        d.assert_no_pool_slot_claimed()
    d.assert_equal_to_reference()


def test_promotions_on_any_worker_share_one_postgres_advisory_lock(deployment):
    """The registry lock of the scale-out profile lives in MLflow's Postgres database: one holder at a
    time across processes; the promotions of the runs above took it (COIN_ASSETS_REGISTRY_LOCK)."""
    import subprocess
    import sys

    from coin_assets.ml import registry as reg

    lock_url = deployment.cluster.env["COIN_ASSETS_REGISTRY_LOCK"]
    assert lock_url.startswith("postgresql://")
    server = deployment.cluster.procs["mlflow"].url
    client = MlflowClient(server, server)
    other = [sys.executable, "-c", "import sys; from mlflow import MlflowClient; from coin_assets.ml import registry as reg\n"
             f"with reg.registry_lock(MlflowClient({server!r}, {server!r}), {MODEL!r}, {lock_url!r}, timeout=float(sys.argv[1])):"
             " print('acquired')"]
    with reg.registry_lock(client, MODEL, lock_url):
        held = subprocess.run([*other, "0.5"], capture_output=True, text=True, env=deployment.cluster.env, timeout=60)
        assert held.returncode != 0 and "TimeoutError: registry lock" in held.stderr, held.stderr[-500:]
    free = subprocess.run([*other, "10"], capture_output=True, text=True, env=deployment.cluster.env, timeout=60)
    assert free.returncode == 0 and free.stdout.strip() == "acquired", free.stderr[-500:]


def test_predictions_and_a_rollback_go_through_the_tracking_server(deployment):
    """Last in this file: it changes the registry that the tests above compare with the reference.
    A day's predictions (prediction_job) and a rollback (rollback_job) run through the daemon on the
    Celery workers against the MLflow server: the predictions name the production version; the rollback
    moves production back (under the Postgres registry lock) and records who and why."""
    from coin_assets.ml import registry as reg

    d = deployment
    server = d.cluster.procs["mlflow"].url
    client = MlflowClient(server, server)
    production = reg.get_alias_version(client, MODEL, reg.PRODUCTION)
    assert production is not None

    run = d.wait(d.submit("prediction_job", tags={"dagster/partition": d.days[0]}))
    assert run.status == DagsterRunStatus.SUCCESS, run_failure_text(d.instance, run.run_id)
    with duckdb.connect(d.cluster.env["COIN_ASSETS_DUCKDB"], read_only=True) as conn:
        scored = conn.execute("SELECT model_version, count(*) FROM predictions GROUP BY ALL").fetchall()
    assert [v for v, _ in scored] == [production.version] and scored[0][1] > 0

    # a second version put in production over the first (set up directly: the rollback is what is tested)
    second = client.copy_model_version(f"models:/{MODEL}/{production.version}", MODEL)
    client.set_registered_model_alias(MODEL, reg.PREVIOUS_PRODUCTION, production.version)
    client.set_registered_model_alias(MODEL, reg.PRODUCTION, second.version)
    config = {"ops": {"rollback_production": {"config": {"actor": "ops-on-call", "reason": "scale-out drill"}}}}
    run = d.wait(d.submit("rollback_job", config))
    assert run.status == DagsterRunStatus.SUCCESS, run_failure_text(d.instance, run.run_id)
    assert reg.get_alias_version(client, MODEL, reg.PRODUCTION).version == production.version
    assert client.get_model_version(MODEL, second.version).tags.get("rolled_back_by") == "ops-on-call"
