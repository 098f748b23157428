"""Asset checks on the ingestion layers, partitioned like the assets they check (`ingestion_checks`).

They only read, so they are outside the `duckdb_writer` pool: each opens a read-only connection
(coin_assets.defs.writer.reader_connection), copies the rows it audits and closes it before any file
work, so a writer of another run waits at most milliseconds for it.
"""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    MetadataValue,
    PartitionsDefinition,
    asset_check,
)
from dagster_duckdb import DuckDBResource

from coin_assets.core import audit
from coin_assets.defs.metadata import table_preview
from coin_assets.defs.resources import CoinStorage
from coin_assets.defs.writer import INGESTION_RETRY, reader_connection


def _problem_list(problems: list[str], limit: int = 20) -> MetadataValue:
    shown = "\n".join(f"- {p}" for p in problems[:limit]) or "none"
    more = f"\n- … {len(problems) - limit} more" if len(problems) > limit else ""
    return MetadataValue.md(shown + more)


def ingestion_checks(partitions: PartitionsDefinition) -> list[AssetChecksDefinition]:
    """The checks of silver_images and gold_images, one partition per upload day."""

    @asset_check(asset="silver_images", partitions_def=partitions, retry_policy=INGESTION_RETRY)
    def silver_images_are_clean(
        context: AssetCheckExecutionContext, storage: CoinStorage, duckdb: DuckDBResource
    ) -> AssetCheckResult:
        """Every silver file: long side ≤ 512 px, aspect ratio kept within a pixel, RGB."""
        with reader_connection(duckdb) as conn:
            rows = audit.silver_rows(conn, context.partition_key)
        problems = audit.silver_problems(storage.store(), rows, context.partition_key)
        checked = len(rows)
        return AssetCheckResult(
            passed=not problems, metadata={"images_checked": checked, "problems": _problem_list(problems)}
        )

    @asset_check(asset="silver_images", partitions_def=partitions, retry_policy=INGESTION_RETRY)
    def quarantine_is_empty(context: AssetCheckExecutionContext, duckdb: DuckDBResource) -> AssetCheckResult:
        """Warns (never blocks) when files of the day were quarantined, listing them with reasons."""
        with reader_connection(duckdb) as conn:
            frame = audit.quarantine_for(conn, context.partition_key)
        reasons = frame["reason"].str.split(":").str[0].value_counts().to_dict() if len(frame) else {}
        return AssetCheckResult(
            passed=frame.empty,
            severity=AssetCheckSeverity.WARN,
            metadata={"quarantined": len(frame), "reasons": MetadataValue.json(reasons),
                      "files": table_preview(frame, 20)},
        )

    @asset_check(asset="gold_images", partitions_def=partitions, blocking=True, retry_policy=INGESTION_RETRY)
    def gold_lineage_is_intact(
        context: AssetCheckExecutionContext, storage: CoinStorage, duckdb: DuckDBResource
    ) -> AssetCheckResult:
        """Audit: each gold row's gold and silver files exist, its bronze bytes still hash to the recorded
        sha256, no orphan files in bronze, silver or gold, no crash leftover in bronze; coins missing a
        side are listed as unpaired. Bronze bytes are hashed incrementally: a file whose size and
        modification time equal those recorded when it last hashed to its sha256 (`audit/bronze_verified/`)
        is not read again, except 8 such files chosen at random on every check; a file written or
        changed since is hashed in full."""
        with reader_connection(duckdb) as conn:
            facts = audit.lineage_facts(conn, context.partition_key)
        problems, unpaired = audit.lineage_problems(storage.store(), facts, context.partition_key)
        return AssetCheckResult(
            passed=not problems,
            metadata={
                "problems": _problem_list(problems),
                "unpaired_coins": len(unpaired),
                "unpaired": _problem_list(unpaired),
            },
        )

    @asset_check(asset="gold_images", partitions_def=partitions, retry_policy=INGESTION_RETRY)
    def gold_metadata_is_complete(context: AssetCheckExecutionContext,
                                  duckdb: DuckDBResource) -> AssetCheckResult:
        """Required gold columns are not null; no sha256 used twice."""
        with reader_connection(duckdb) as conn:
            problems = audit.metadata_problems(conn, context.partition_key)
        return AssetCheckResult(passed=not problems, metadata={"problems": _problem_list(problems)})

    return [silver_images_are_clean, quarantine_is_empty, gold_lineage_is_intact, gold_metadata_is_complete]
