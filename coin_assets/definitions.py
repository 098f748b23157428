"""Wires assets, checks, jobs, sensors, schedules and resources. Nothing else lives here."""

from dagster import Definitions

from coin_assets.defs.assets.crops import coin_crops, found_coins
from coin_assets.defs.assets.ingestion import (
    archived_bronze,
    bronze_images,
    coin_uploads,
    decoded_images,
    gold_images,
    silver_images,
)
from coin_assets.defs.assets.model import (
    base_model_version,
    coin_year_model,
    model_evaluation,
    promotion_decision,
    synthetic_pretraining,
    training_set,
    year_reader_pretraining,
)
from coin_assets.defs.assets.predictions import coin_predictions, review_queue
from coin_assets.defs.assets.review import review_labels
from coin_assets.defs.assets.serving import serving_deployment, serving_requests
from coin_assets.defs.automation import model_consumers_automation
from coin_assets.defs.checks import ingestion_checks
from coin_assets.defs.executors import executor_from_env
from coin_assets.defs.jobs import (
    archive_job,
    ingestion_job,
    prediction_job,
    review_job,
    rollback_job,
    training_job,
)
from coin_assets.defs.model_checks import model_checks
from coin_assets.defs.resources import default_resources
from coin_assets.defs.schedules import (
    bronze_archive_schedule,
    daily_ingestion_schedule,
    daily_prediction_schedule,
    weekly_retraining_schedule,
)
from coin_assets.defs.sensors import abandoned_run_sensor, retraining_sensor, review_sensor, upload_sensor

defs = Definitions(
    assets=[
        coin_uploads, bronze_images, decoded_images, silver_images, gold_images, found_coins, coin_crops,
        archived_bronze,
        review_labels, training_set, synthetic_pretraining, year_reader_pretraining, base_model_version,
        coin_year_model, model_evaluation, promotion_decision,
        coin_predictions, review_queue, serving_deployment, serving_requests,
    ],
    asset_checks=[*ingestion_checks, *model_checks],
    jobs=[ingestion_job, training_job, prediction_job, review_job, rollback_job, archive_job],
    sensors=[upload_sensor, review_sensor, retraining_sensor, abandoned_run_sensor, model_consumers_automation],
    schedules=[daily_ingestion_schedule, daily_prediction_schedule, weekly_retraining_schedule,
               bronze_archive_schedule],
    resources=default_resources(),
    executor=executor_from_env(),
)
