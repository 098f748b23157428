"""gold_images → found_coins → coin_crops: the coin found once per gold image, its centred crop, centre
and radius: found in chunks on any worker, recorded by the DuckDB writer. Built for the daily partitions
the definitions are loaded with (`crop_assets`)."""

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    PartitionsDefinition,
)
from dagster_duckdb import DuckDBResource

from coin_assets.core import crops, ingest_state, readers
from coin_assets.defs.assets.chunked import chunked_asset
from coin_assets.defs.metadata import table_preview
from coin_assets.defs.resources import CoinStorage
from coin_assets.defs.writer import ingestion_writer_asset, writer_connection


def crop_assets(partitions: PartitionsDefinition) -> list[AssetsDefinition]:
    """found_coins and coin_crops, one partition per upload day, after gold_images."""
    found_coins = chunked_asset(
        "found_coins", partitions=partitions, after="gold_images", kinds={"numpy", "files"},
        count_chunks=crops.crop_chunks, run_chunk=crops.find_coins_staged,
        description=(
            "The circle search (about 30 ms a photo), outside the `duckdb_writer` pool and without DuckDB: for "
            "every gold image listed by `gold_images` in `staging/crops/<day>/plan.json`, the coin found and its "
            "crop written to `crops/<day>/<coin>__<side>.png`, its row staged in "
            "`staging/crops/<day>/found-<chunk>-of-<chunks>.json` for `coin_crops` to record. A big day is split "
            "into chunks of COIN_ASSETS_CHUNK_PHOTOS photos, each a step of its own on any worker."),
    )

    @ingestion_writer_asset(partitions, deps=[found_coins], kinds={"duckdb", "files"})
    def coin_crops(context: AssetExecutionContext, storage: CoinStorage, duckdb: DuckDBResource) -> MaterializeResult:
        """The model's input: for every gold image, the coin found by a circle Hough transform and a
        crops/<day>/<coin>__<side>.png centred on it at a fixed scale, in the DuckDB table `coin_crops`
        (centre, radius, edge support) or `found = false` with the reason. Unchanged images are skipped.
        Records what `found_coins` staged (the short part that holds the writer slot); an image no chunk
        did is searched here, without a connection held. Last step of the ingestion chain: when the whole
        chain ran in this run, it records the day's fingerprint (`chain_complete`), which lets the next
        run with nothing new skip the chain."""
        store = storage.store()
        with writer_connection(duckdb) as conn:
            plan = crops.plan_crops(conn, context.partition_key)
        report, rows = crops.crops_for_plan(store, plan)
        with writer_connection(duckdb) as conn:
            table = crops.record_crops(conn, context.partition_key, report, rows)
            chain_complete = ingest_state.complete_chain(store, conn, context.partition_key, context.run_id)
            refresh = readers.refresh_snapshot(conn, duckdb.database,
                                               days=[context.partition_key, *report.other_days],
                                               tables=("coin_crops", "ingest_state"))
        crops.clear_crop_staging(store, context.partition_key)
        if report.not_found:
            context.log.warning(f"{report.not_found} image(s) without a coin found: {report.reasons}")
        reasons = pd.DataFrame(
            [{"reason": r, "images": n} for r, n in sorted(report.reasons.items(), key=lambda kv: -kv[1])])
        return MaterializeResult(metadata={
            "processed": report.staged + report.processed,
            "skipped_unchanged": report.skipped_unchanged,
            "staged_by_found_coins": report.staged,
            "searched_here": report.processed,
            "found": report.found,
            "not_found": report.not_found,
            "removed": report.removed,
            "seconds": round(report.seconds, 3),
            "chain_complete": chain_complete,
            "reader_snapshot_seconds": round(refresh.seconds, 3),
            "no_coin_reasons": table_preview(reasons),
            "preview": table_preview(table[["coin_id", "side", "found", "centre_x", "centre_y", "radius", "support",
                                             "reason"]] if len(table) else table),
            "table": MetadataValue.text("coin_crops"),
        })

    return [found_coins, coin_crops]
