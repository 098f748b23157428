"""Sensors: uploads start ingestion, review files start label updates, new labels start retraining
(`build_sensors`, for the jobs, daily partitions and intervals the definitions are loaded with), and
abandoned runs are recovered."""

import json

import duckdb as duckdb_module
from dagster import (
    DefaultSensorStatus,
    PartitionsDefinition,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from dagster_duckdb import DuckDBResource

from coin_assets.core.predictions import labelled_coin_count
from coin_assets.core.readers import open_snapshot
from coin_assets.core.uploads import (
    REVIEW_PREFIX,
    fingerprints_by_partition,
    list_uploads,
)
from coin_assets.defs.jobs import Jobs
from coin_assets.defs.resources import CoinStorage, MlflowRegistry
from coin_assets.defs.run_recovery import recover_abandoned_runs
from coin_assets.ml import registry as reg


def retraining_due(labelled_now: int, labelled_at_production: int | None, threshold: int) -> bool:
    """Enough new labelled coins since the production model was trained (or enough for a first model)."""
    return labelled_now - (labelled_at_production or 0) >= threshold


def build_sensors(jobs: Jobs, partitions: PartitionsDefinition, *, upload_interval_seconds: int,
                  retrain_interval_seconds: int) -> list[SensorDefinition]:
    """upload_sensor and review_sensor, ticking every ``upload_interval_seconds``; retraining_sensor every
    ``retrain_interval_seconds``. The upload sensor asks only for days among ``partitions``."""

    @sensor(
        job=jobs.ingestion_job,
        minimum_interval_seconds=upload_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description="Requests an ingestion run for each day whose settled upload files changed, among the "
        "newest COIN_ASSETS_UPLOAD_SENSOR_DAYS (7) day folders of the upload zone: a tick lists those folders, "
        "not the history (an older day is ingested by a backfill). The cursor holds one fingerprint per day "
        "(hash of key, size, mtime); the run key is day + fingerprint, so the same files never start two runs.",
    )
    def upload_sensor(context: SensorEvaluationContext, storage: CoinStorage):
        files = list_uploads(storage.store(), settle_seconds=storage.settle_seconds,
                             newest_days=storage.upload_sensor_days)
        cursor: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        valid_days = set(partitions.get_partition_keys())
        requests = []
        for day, fingerprint in sorted(fingerprints_by_partition(files).items()):
            if cursor.get(day) == fingerprint:
                continue
            if day not in valid_days:
                context.log.warning(f"uploads for {day} are outside the daily partitions; ignored")
                continue
            requests.append(RunRequest(partition_key=day, run_key=f"{day}:{fingerprint}",
                                       tags={"coin_assets/trigger": "upload_sensor"}))
            cursor[day] = fingerprint
        new_cursor = json.dumps(cursor, sort_keys=True)
        if not requests:
            return SensorResult(skip_reason=SkipReason(f"no new settled uploads among {len(files)} files"),
                                cursor=new_cursor)
        return SensorResult(run_requests=requests, cursor=new_cursor)

    @sensor(job=jobs.review_job, minimum_interval_seconds=upload_interval_seconds,
            default_status=DefaultSensorStatus.RUNNING,
            description="Runs review_labels when review verdict files in uploads/reviews/ appear or change.")
    def review_sensor(context: SensorEvaluationContext, storage: CoinStorage):
        objects = [o for o in storage.store().list(REVIEW_PREFIX) if o.key.lower().endswith(".csv")]
        if not objects:
            return SkipReason("no review files")
        fingerprint = json.dumps(sorted((o.key, o.size, o.modified.timestamp()) for o in objects))
        import hashlib

        key = hashlib.sha256(fingerprint.encode()).hexdigest()[:16]
        if context.cursor == key:
            return SkipReason("review files unchanged")
        return SensorResult(run_requests=[RunRequest(run_key=f"reviews:{key}")], cursor=key)

    @sensor(job=jobs.training_job, minimum_interval_seconds=retrain_interval_seconds,
            default_status=DefaultSensorStatus.RUNNING,
            description="Retrains when COIN_ASSETS_RETRAIN_NEW_LABELS (default 50) labelled coins arrived since "
            "the production model was trained.")
    def retraining_sensor(context: SensorEvaluationContext, duckdb: DuckDBResource,
                          mlflow_registry: MlflowRegistry):
        try:
            # The reader snapshot: never a lock on the file ingestion writes.
            with open_snapshot(duckdb.database) as conn:
                labelled = labelled_coin_count(conn)
        except FileNotFoundError as err:
            return SkipReason(str(err))
        except duckdb_module.CatalogException:
            return SkipReason("the metadata snapshot has no gold tables yet")
        production = reg.get_alias_version(mlflow_registry.client(), mlflow_registry.model_name,
                                           reg.PRODUCTION)
        at_production = int(production.tags.get("labelled_coins", 0)) if production else None
        threshold = mlflow_registry.retrain_new_labels
        if not retraining_due(labelled, at_production, threshold):
            return SkipReason(f"{labelled} labelled coins, {at_production or 0} at production v"
                              f"{production.version if production else '-'}; threshold {threshold}")
        return RunRequest(run_key=f"retrain:{labelled}", tags={"coin_assets/trigger": "retraining_sensor",
                                                                "coin_assets/labelled_coins": str(labelled)})

    return [upload_sensor, review_sensor, retraining_sensor]


@sensor(minimum_interval_seconds=30, default_status=DefaultSensorStatus.RUNNING,
        description="Every 30 s: a run whose process is gone (kill -9, OOM) is marked failed and its "
        "`duckdb_writer` pool slot freed, so later runs never wait for it (coin_assets/defs/run_recovery.py).")
def abandoned_run_sensor(context: SensorEvaluationContext):
    recovered = recover_abandoned_runs(context.instance)
    for run in recovered:
        context.log.warning(f"run {run.run_id} ({run.job_name}): process {run.pid} is gone; marked failed, "
                            f"{run.slots_freed} pool slot(s) freed")
    return SkipReason(f"{len(recovered)} abandoned run(s) recovered" if recovered else "no abandoned runs")
