"""Wires assets, checks, jobs, sensors, schedules and resources. Nothing else lives here."""

from dagster import Definitions

from coin_assets.assets.ingestion import bronze_images, coin_uploads, gold_images, silver_images
from coin_assets.checks import ingestion_checks
from coin_assets.jobs import ingestion_job
from coin_assets.resources import CoinStorage, duckdb_from_env
from coin_assets.schedules import daily_ingestion_schedule
from coin_assets.sensors import upload_sensor

defs = Definitions(
    assets=[coin_uploads, bronze_images, silver_images, gold_images],
    asset_checks=ingestion_checks,
    jobs=[ingestion_job],
    sensors=[upload_sensor],
    schedules=[daily_ingestion_schedule],
    resources={"storage": CoinStorage.from_env(), "duckdb": duckdb_from_env()},
)
