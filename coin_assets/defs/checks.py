"""Asset checks on the ingestion layers, partitioned like the assets they check."""


from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
)
from dagster_duckdb import DuckDBResource

from coin_assets.core import audit
from coin_assets.core import metadata as md
from coin_assets.defs.assets.ingestion import gold_images, silver_images
from coin_assets.defs.metadata import markdown_table
from coin_assets.defs.partitions import daily_partitions
from coin_assets.defs.pools import DUCKDB_WRITER_POOL
from coin_assets.defs.resources import CoinStorage
from coin_assets.defs.writer import INGESTION_RETRY, writer_connection


def _problem_list(problems: list[str], limit: int = 20) -> MetadataValue:
    shown = "\n".join(f"- {p}" for p in problems[:limit]) or "none"
    more = f"\n- … {len(problems) - limit} more" if len(problems) > limit else ""
    return MetadataValue.md(shown + more)


@asset_check(asset=silver_images, partitions_def=daily_partitions, pool=DUCKDB_WRITER_POOL, retry_policy=INGESTION_RETRY)
def silver_images_are_clean(
    context: AssetCheckExecutionContext, storage: CoinStorage, duckdb: DuckDBResource
) -> AssetCheckResult:
    """Every silver file: long side ≤ 512 px, aspect ratio kept within a pixel, RGB."""
    with writer_connection(duckdb) as conn:
        problems = audit.silver_problems(storage.store(), conn, context.partition_key)
        checked = md.table_counts(conn, context.partition_key)["silver_images"]
    return AssetCheckResult(
        passed=not problems, metadata={"images_checked": checked, "problems": _problem_list(problems)}
    )


@asset_check(asset=silver_images, partitions_def=daily_partitions, pool=DUCKDB_WRITER_POOL, retry_policy=INGESTION_RETRY)
def quarantine_is_empty(context: AssetCheckExecutionContext, duckdb: DuckDBResource) -> AssetCheckResult:
    """Warns (never blocks) when files of the day were quarantined, listing them with reasons."""
    with writer_connection(duckdb) as conn:
        frame = audit.quarantine_for(conn, context.partition_key)
    reasons = frame["reason"].str.split(":").str[0].value_counts().to_dict() if len(frame) else {}
    return AssetCheckResult(
        passed=frame.empty,
        severity=AssetCheckSeverity.WARN,
        metadata={"quarantined": len(frame), "reasons": MetadataValue.json(reasons), "files": markdown_table(frame, 20)},
    )


@asset_check(asset=gold_images, partitions_def=daily_partitions, blocking=True, pool=DUCKDB_WRITER_POOL, retry_policy=INGESTION_RETRY)
def gold_lineage_is_intact(
    context: AssetCheckExecutionContext, storage: CoinStorage, duckdb: DuckDBResource
) -> AssetCheckResult:
    """Audit: each gold row's gold and silver files exist, its bronze bytes still hash to the recorded
    sha256, no orphan files in silver or gold; coins missing a side are listed as unpaired."""
    with writer_connection(duckdb) as conn:
        problems, unpaired = audit.lineage_problems(storage.store(), conn, context.partition_key)
    return AssetCheckResult(
        passed=not problems,
        metadata={
            "problems": _problem_list(problems),
            "unpaired_coins": len(unpaired),
            "unpaired": _problem_list(unpaired),
        },
    )


@asset_check(asset=gold_images, partitions_def=daily_partitions, pool=DUCKDB_WRITER_POOL, retry_policy=INGESTION_RETRY)
def gold_metadata_is_complete(context: AssetCheckExecutionContext, duckdb: DuckDBResource) -> AssetCheckResult:
    """Required gold columns are not null; no sha256 used twice."""
    with writer_connection(duckdb) as conn:
        problems = audit.metadata_problems(conn, context.partition_key)
    return AssetCheckResult(passed=not problems, metadata={"problems": _problem_list(problems)})


ingestion_checks = [silver_images_are_clean, quarantine_is_empty, gold_lineage_is_intact, gold_metadata_is_complete]
