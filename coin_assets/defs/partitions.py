"""Daily partitions by UTC upload day. ``end_offset=1`` makes today a partition: uploads arrive today."""

from dagster import DailyPartitionsDefinition

from coin_assets.settings import Settings

daily_partitions = DailyPartitionsDefinition(
    start_date=Settings.from_env().start_date,
    timezone="UTC",
    end_offset=1,
)
