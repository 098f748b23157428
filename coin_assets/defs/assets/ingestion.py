"""uploads → bronze → silver → gold: thin Dagster assets over coin_assets.core.ingest, built for the daily
partitions the definitions are loaded with (`ingestion_assets`)."""

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    AssetSpec,
    Config,
    MaterializeResult,
    MetadataValue,
    PartitionsDefinition,
)
from dagster_duckdb import DuckDBResource
from pydantic import Field

from coin_assets.core import archive, audit, crops, ingest, ingest_state, readers
from coin_assets.core.clock import utcnow
from coin_assets.core.images import MAX_SIDE
from coin_assets.core.ingest import LayerReport
from coin_assets.defs.assets.chunked import chunked_asset
from coin_assets.defs.metadata import reasons_table, table_preview
from coin_assets.defs.resources import CoinStorage
from coin_assets.defs.writer import ingestion_writer_asset, writer_connection

# what bronze, silver and gold write for a day: exported for readers at the end of gold_images
GOLD_STEP_TABLES = ("uploads", "silver_images", "quarantine", "gold_images", "ingest_state")


def _layer_metadata(report: LayerReport) -> dict:
    meta = {
        "processed": report.processed,
        "skipped_unchanged": report.skipped,
        "quarantined": report.quarantined,
        "duplicates": report.duplicates,
        "bytes_written": report.bytes_written,
        "seconds": round(report.seconds, 3),
    }
    meta.update(report.extra)
    if report.reasons:
        meta["quarantine_reasons"] = reasons_table(report.reasons)
    return meta


class BronzeConfig(Config):
    force: bool = Field(False, description="run the whole ingestion chain even when nothing changed since the "
                                           "last complete run (e.g. to re-hash files changed in place)")


def ingestion_assets(partitions: PartitionsDefinition) -> list[AssetSpec | AssetsDefinition]:
    """The uploads and the layers built from them, one partition per upload day: coin_uploads,
    bronze_images, decoded_images, silver_images, gold_images and archived_bronze."""
    coin_uploads = AssetSpec(
        "coin_uploads",
        description=(
            "Photos and sidecars people upload: `uploads/<YYYY-MM-DD>/<coin_id>__front|back.<ext>` and "
            "`<coin_id>.json`. Written by the upload service, watched by `upload_sensor`."
        ),
        group_name="ingestion",
        partitions_def=partitions,
        kinds={"files"},
    )

    @ingestion_writer_asset(partitions, deps=[coin_uploads], kinds={"files", "duckdb"}, output_required=False)
    def bronze_images(context: AssetExecutionContext, config: BronzeConfig, storage: CoinStorage,
                      duckdb: DuckDBResource):
        """The day's settled uploads copied byte for byte into `bronze/<day>/<sha256><ext>`, sha256
        computed while copying. A file modified in the last COIN_ASSETS_SETTLE_SECONDS is left for a later
        run. Never modified afterwards; a byte-identical re-upload is recorded, not stored twice. Crash
        leftovers and bronze files no ledger row points to are removed; links are quarantined, never read.
        Ends by listing the checksums still to decode (`staging/silver/<day>/plan.json`) for `decoded_images`.
        When nothing changed since the last run in which the whole chain ran (uploads, lake files, rows,
        labels: the `ingest_state` table), it materializes nothing and the rest of the chain is skipped."""
        store = storage.store()
        with writer_connection(duckdb) as conn:
            day = ingest_state.check_day(store, conn, context.partition_key, storage.settle_seconds)
            if day.up_to_date and not config.force:
                context.log.info(f"{context.partition_key}: {day.reason}; the ingestion chain has nothing to do")
                return
            ingest_state.start_chain(conn, context.partition_key, context.run_id, day)
            report = ingest.ingest_bronze(store, conn, context.partition_key, files=day.files,
                                          reread_sidecars=day.last_chain_incomplete)
            report.extra["to_decode"] = ingest.write_decode_plan(store, conn, context.partition_key, MAX_SIDE)
        if report.quarantined:
            context.log.warning(f"{report.quarantined} file(s) quarantined: {report.reasons}")
        yield MaterializeResult(metadata={**_layer_metadata(report), "why_run": day.reason})

    decoded_images = chunked_asset(
        "decoded_images", partitions=partitions, after="bronze_images", kinds={"pillow", "files"},
        count_chunks=ingest.decode_chunks, run_chunk=ingest.decode_staged,
        description=(
            "The CPU-heavy half of silver, outside the `duckdb_writer` pool and without DuckDB: the checksums "
            "listed by `bronze_images` decoded, EXIF-rotated, converted to RGB and shrunk to 512 px into "
            "`staging/silver/<day>/<sha256>.jpg`, with the results (sizes, or why a file is not a usable image) "
            "staged in `staging/silver/<day>/decoded-<chunk>-of-<chunks>.json`. A big day is split into chunks of "
            "COIN_ASSETS_CHUNK_PHOTOS photos, each a step of its own on any worker, each on every core."),
    )

    @ingestion_writer_asset(partitions, deps=[decoded_images], kinds={"pillow", "duckdb"})
    def silver_images(context: AssetExecutionContext, storage: CoinStorage,
                      duckdb: DuckDBResource) -> MaterializeResult:
        """Decoded, EXIF-rotated, RGB, long side ≤ 512 px JPEGs named `silver/<day>/<sha256>.jpg` and
        the `silver_images` table: what `decoded_images` staged is moved into place and recorded (the
        short part that holds the writer slot); anything it did not decode is decoded here. Checksums
        already processed are skipped; undecodable files go to the quarantine table."""
        with writer_connection(duckdb) as conn:
            report = ingest.build_silver(storage.store(), conn, context.partition_key, max_side=MAX_SIDE)
            quarantined = audit.quarantine_for(conn, context.partition_key)[["upload_key", "stage", "reason"]]
        if report.quarantined:
            context.log.warning(f"{report.quarantined} image(s) quarantined: {report.reasons}")
        meta = _layer_metadata(report)
        meta["quarantine_preview"] = table_preview(quarantined)
        meta["quarantined_in_partition"] = len(quarantined)
        return MaterializeResult(metadata=meta)

    @ingestion_writer_asset(partitions, deps=[silver_images], kinds={"duckdb", "files"})
    def gold_images(context: AssetExecutionContext, storage: CoinStorage,
                    duckdb: DuckDBResource) -> MaterializeResult:
        """ML-ready images `gold/<day>/<coin>__<side>.jpg` and the DuckDB table `gold_images` (one row per
        coin side: who, when, raw and clean name/path/size/width/height, sha256, label, model version),
        with the `coins` view pairing front and back. Ends by listing the images whose coin is still to
        be found (`staging/crops/<day>/plan.json`) for `found_coins`."""
        with writer_connection(duckdb) as conn:
            report, frame = ingest.build_gold(storage.store(), conn, context.partition_key)
            ingest_state.gold_written(conn, context.partition_key, context.run_id)
            to_search = crops.write_crop_plan(storage.store(), conn, context.partition_key)
            refresh = readers.refresh_snapshot(conn, duckdb.database,
                                               days=[context.partition_key, *report.other_days],
                                               tables=GOLD_STEP_TABLES)
        if not len(frame):
            context.log.warning(f"partition {context.partition_key} has no usable coin image")
        meta = _layer_metadata(report)
        meta.update(
            rows=len(frame),
            coins_to_find=to_search,
            unpaired_coins=report.extra["coins"] - report.extra["paired_coins"],
            preview=table_preview(frame[["coin_id", "side", "user_id", "clean_width", "clean_height", "label_year",
                                         "sha256"]] if len(frame) else frame),
            table=MetadataValue.text("gold_images (view: coins)"),
            reader_snapshot=MetadataValue.path(str(readers.snapshot_path(duckdb.database))),
            reader_snapshot_seconds=round(refresh.seconds, 3),
            reader_snapshot_rows=refresh.rows,
        )
        return MaterializeResult(metadata=meta)

    @ingestion_writer_asset(partitions, deps=[bronze_images], kinds={"files", "duckdb"})
    def archived_bronze(context: AssetExecutionContext, storage: CoinStorage,
                        duckdb: DuckDBResource) -> MaterializeResult:
        """Bronze of a day older than COIN_ASSETS_ARCHIVE_AFTER_DAYS (30) moved to `archive/bronze/<day>/`,
        the ledger repointed (the lineage check verifies the archived bytes; re-processing reads them
        there). A younger day is left alone. Run daily by `bronze_archive_schedule`."""
        after_days = storage.archive_after_days
        if not archive.is_due(context.partition_key, utcnow().date(), after_days):
            return MaterializeResult(metadata={"archived": False, "reason": f"younger than {after_days} days"})
        with writer_connection(duckdb) as conn:
            report = archive.archive_partition(storage.store(), conn, context.partition_key)
        return MaterializeResult(metadata={"archived": True, "moved": report.moved,
                                           "already_archived": report.already_archived,
                                           "bytes_moved": report.bytes_moved})

    return [coin_uploads, bronze_images, decoded_images, silver_images, gold_images, archived_bronze]
