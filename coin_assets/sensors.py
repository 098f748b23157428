"""Sensors: the upload zone starts ingestion runs for the days that have new or changed files."""


import json
import os

from dagster import DefaultSensorStatus, RunRequest, SensorEvaluationContext, SensorResult, SkipReason, sensor

from coin_assets.core.uploads import DEFAULT_SETTLE_SECONDS, fingerprints_by_partition, list_uploads
from coin_assets.jobs import ingestion_job
from coin_assets.partitions import daily_partitions
from coin_assets.resources import CoinStorage

UPLOAD_SENSOR_INTERVAL = int(os.getenv("COIN_ASSETS_SENSOR_INTERVAL", "30"))


def settle_seconds() -> float:
    """A file modified more recently than this may still be being written; wait a tick."""
    return float(os.getenv("COIN_ASSETS_SETTLE_SECONDS", str(DEFAULT_SETTLE_SECONDS)))


@sensor(
    job=ingestion_job,
    minimum_interval_seconds=UPLOAD_SENSOR_INTERVAL,
    default_status=DefaultSensorStatus.RUNNING,
    description="Requests an ingestion run for each day whose settled upload files changed. The cursor "
    "holds one fingerprint per day (hash of key, size, mtime); the run key is day + fingerprint, so the "
    "same files never start two runs.",
)
def upload_sensor(context: SensorEvaluationContext, storage: CoinStorage):
    files = list_uploads(storage.store(), settle_seconds=settle_seconds())
    cursor: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    valid_days = set(daily_partitions.get_partition_keys())
    requests = []
    for day, fingerprint in sorted(fingerprints_by_partition(files).items()):
        if cursor.get(day) == fingerprint:
            continue
        if day not in valid_days:
            context.log.warning(f"uploads for {day} are outside the partitions {daily_partitions}; ignored")
            continue
        requests.append(RunRequest(partition_key=day, run_key=f"{day}:{fingerprint}", tags={"coin_assets/trigger": "upload_sensor"}))
        cursor[day] = fingerprint
    if not requests:
        return SensorResult(skip_reason=SkipReason(f"no new settled uploads among {len(files)} files"), cursor=json.dumps(cursor, sort_keys=True))
    return SensorResult(run_requests=requests, cursor=json.dumps(cursor, sort_keys=True))
