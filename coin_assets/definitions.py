"""Wires assets, checks, jobs, sensors, schedules and resources. Nothing else lives here.

`defs` is what Dagster loads (`dagster dev -m coin_assets.definitions`, `dagster api grpc`,
workspace.yaml): a lazy definitions loader that reads the settings once, when Dagster loads it, and
builds the definitions from them. Importing this module reads no settings.
"""

from dagster import Definitions, definitions

from coin_assets.defs.assets.crops import crop_assets
from coin_assets.defs.assets.ingestion import ingestion_assets
from coin_assets.defs.assets.model import (
    base_model_version,
    coin_year_model,
    model_evaluation,
    promotion_decision,
    synthetic_pretraining,
    training_set,
    year_line_reader_training,
    year_reader_pretraining,
)
from coin_assets.defs.assets.predictions import prediction_assets
from coin_assets.defs.assets.review import review_labels
from coin_assets.defs.assets.serving import serving_assets
from coin_assets.defs.automation import model_consumers_automation
from coin_assets.defs.checks import ingestion_checks
from coin_assets.defs.executors import executor_from_settings
from coin_assets.defs.jobs import build_jobs
from coin_assets.defs.model_checks import model_checks
from coin_assets.defs.partitions import daily_partitions
from coin_assets.defs.resources import default_resources
from coin_assets.defs.schedules import build_schedules
from coin_assets.defs.sensors import abandoned_run_sensor, build_sensors
from coin_assets.settings import Settings


def build_definitions(settings: Settings) -> Definitions:
    """The platform's definitions for ``settings``: daily partitions from its start date, sensor
    intervals, resources and executor."""
    partitions = daily_partitions(settings.start_date)
    jobs = build_jobs(partitions)
    return Definitions(
        assets=[
            *ingestion_assets(partitions), *crop_assets(partitions),
            review_labels, training_set, synthetic_pretraining, year_reader_pretraining, year_line_reader_training,
            base_model_version,
            coin_year_model, model_evaluation, promotion_decision,
            *prediction_assets(partitions), *serving_assets(partitions),
        ],
        asset_checks=[*ingestion_checks(partitions), *model_checks(partitions)],
        jobs=list(jobs),
        sensors=[
            *build_sensors(jobs, partitions, upload_interval_seconds=settings.sensor_interval,
                           retrain_interval_seconds=settings.retrain_interval),
            abandoned_run_sensor, model_consumers_automation,
        ],
        schedules=build_schedules(jobs, partitions),
        resources=default_resources(settings),
        executor=executor_from_settings(settings),
    )


@definitions
def defs() -> Definitions:
    """The definitions from the process environment's settings (`Settings.from_env()`)."""
    return build_definitions(Settings.from_env())
