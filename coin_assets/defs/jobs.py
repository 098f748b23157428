"""Jobs: named selections of assets (their checks come along), and the rollback job. The jobs of daily
assets are partitioned like them: `build_jobs` takes the partitions the definitions are loaded with."""

from collections import namedtuple

from dagster import (
    AssetSelection,
    Config,
    OpExecutionContext,
    PartitionsDefinition,
    define_asset_job,
    job,
    op,
)
from pydantic import Field

from coin_assets.defs.resources import MlflowRegistry, ServingApi
from coin_assets.ml import registry as reg

# The platform's jobs by name; iterating gives them all (for `Definitions(jobs=...)`).
Jobs = namedtuple("Jobs", "ingestion_job archive_job training_job prediction_job review_job rollback_job")


class RollbackConfig(Config):
    actor: str = Field(description="who rolls back (recorded on the model versions)")
    reason: str = Field(description="why (recorded on the model versions)")
    to_version: str | None = Field(None, description="version to restore; default: the previous production")


@op
def rollback_production(context: OpExecutionContext, config: RollbackConfig, mlflow_registry: MlflowRegistry,
                        serving_api: ServingApi) -> dict:
    """Point `production` back at the previous version, recording who and why."""
    result = reg.rollback(mlflow_registry.client(), mlflow_registry.model_name, config.actor, config.reason,
                          to_version=config.to_version, lock_url=mlflow_registry.lock_url)
    context.log.info(f"production: v{result.from_version} → v{result.to_version} by {result.actor}: {result.reason}")
    context.log.info(f"serving API reload: {serving_api.request_reload()}")
    return {"from_version": result.from_version, "to_version": result.to_version}


@job(description="Rollback in one step: production → previous version (config: actor, reason[, to_version]).")
def rollback_job():
    rollback_production()


def build_jobs(partitions: PartitionsDefinition) -> Jobs:
    """Every job; those of the daily assets (ingestion, archive, prediction) take ``partitions``."""
    return Jobs(
        ingestion_job=define_asset_job(
            "ingestion_job",
            selection=AssetSelection.assets("bronze_images", "decoded_images", "silver_images", "gold_images",
                                            "found_coins", "coin_crops"),
            partitions_def=partitions,
            description="uploads → bronze → silver → gold (+ coin-centred crops) for one UTC day, with the "
            "ingestion checks.",
        ),
        archive_job=define_asset_job(
            "archive_job",
            selection=AssetSelection.assets("archived_bronze"),
            partitions_def=partitions,
            description="Move one day's bronze to archive/ (when older than COIN_ASSETS_ARCHIVE_AFTER_DAYS).",
        ),
        training_job=define_asset_job(
            "training_job",
            selection=AssetSelection.assets("training_set", "coin_year_model", "model_evaluation",
                                            "promotion_decision"),
            description="training set → model → evaluation against production → promotion decision.",
        ),
        prediction_job=define_asset_job(
            "prediction_job",
            selection=AssetSelection.assets("coin_predictions", "review_queue"),
            partitions_def=partitions,
            description="Score one day's coins with the production model and queue doubtful ones for review.",
        ),
        review_job=define_asset_job(
            "review_job",
            selection=AssetSelection.assets("review_labels"),
            description="Read review verdicts from uploads/reviews/ into gold labels.",
        ),
        rollback_job=rollback_job,
    )
