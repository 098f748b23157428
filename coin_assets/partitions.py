"""Daily partitions by UTC upload day. ``end_offset=1`` makes today a partition: uploads arrive today."""

import os

from dagster import DailyPartitionsDefinition

daily_partitions = DailyPartitionsDefinition(
    start_date=os.getenv("COIN_ASSETS_START_DATE", "2025-01-01"),
    timezone="UTC",
    end_offset=1,
)
