"""Jobs: named selections of assets (their checks come along)."""

from dagster import AssetSelection, define_asset_job

from coin_assets.assets.ingestion import bronze_images, gold_images, silver_images
from coin_assets.partitions import daily_partitions

ingestion_job = define_asset_job(
    "ingestion_job",
    selection=AssetSelection.assets(bronze_images, silver_images, gold_images),
    partitions_def=daily_partitions,
    description="uploads → bronze → silver → gold for one UTC day, with the ingestion checks.",
)
