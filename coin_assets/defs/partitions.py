"""Daily partitions by UTC upload day, from the configured first day (COIN_ASSETS_START_DATE).
``end_offset=1`` makes today a partition: uploads arrive today."""

from dagster import DailyPartitionsDefinition


def daily_partitions(start_date: str) -> DailyPartitionsDefinition:
    """One partition per UTC day from ``start_date`` (YYYY-MM-DD) up to and including today."""
    return DailyPartitionsDefinition(start_date=start_date, timezone="UTC", end_offset=1)
