"""A day's CPU-heavy work split into chunks that run as steps of their own, on any worker.

Decoding and coin finding hold no DuckDB connection: each reads the plan that the writer step before
it staged, and stages its results for the writer step after it (`coin_assets.core.staging`). Here that
work becomes a graph-backed asset: one step counts the chunks of the day's plan
(`COIN_ASSETS_CHUNK_PHOTOS` photos each), one step per chunk does it (Dagster's dynamic mapping, so
the Celery executor hands each chunk to whichever worker is free, and the multiprocess executor runs
them side by side), and one step adds up their reports into the asset's metadata. None of them is in
the `duckdb_writer` pool.
"""

import dataclasses
from collections.abc import Callable

import pandas as pd
from dagster import (
    AssetIn,
    AssetsDefinition,
    DynamicOut,
    DynamicOutput,
    In,
    Nothing,
    OpExecutionContext,
    Out,
    PartitionsDefinition,
    graph_asset,
    op,
)

from coin_assets.core.storage import ObjectStore
from coin_assets.defs.metadata import reasons_table, table_preview
from coin_assets.defs.resources import CoinStorage


def add_reports(reports: list[dict]) -> dict:
    """The chunks' reports added up: numbers summed, reason counts merged, text dropped."""
    total: dict = {}
    for report in reports:
        for name, value in report.items():
            if isinstance(value, bool) or isinstance(value, str):
                continue
            if isinstance(value, dict):
                merged = total.setdefault(name, {})
                for key, count in value.items():
                    merged[key] = merged.get(key, 0) + count
            elif isinstance(value, (int, float)):
                total[name] = total.get(name, 0) + value
    return total


def chunk_metadata(reports: list[dict]) -> dict:
    """What a person in the UI acts on: the day's totals, and each chunk's size and seconds."""
    total = add_reports(reports)
    reasons = total.pop("reasons", {})
    extra = total.pop("extra", {})
    meta = {name: round(value, 3) if isinstance(value, float) else value for name, value in total.items()}
    if "skipped" in meta:  # a layer report's name for it
        meta["skipped_unchanged"] = meta.pop("skipped")
    meta.update(extra)
    meta["chunks"] = len(reports)
    meta["slowest_chunk_seconds"] = round(max((r.get("seconds", 0.0) for r in reports), default=0.0), 3)
    meta["chunk_table"] = table_preview(pd.DataFrame(
        [{"chunk": k, "processed": r.get("processed", 0), "seconds": round(r.get("seconds", 0.0), 3)}
         for k, r in enumerate(reports)]))
    if reasons:
        meta["reasons"] = reasons_table(reasons)
    return meta


def chunked_asset(name: str, *, partitions: PartitionsDefinition, after: str, description: str, kinds: set[str],
                  count_chunks: Callable[[ObjectStore, str, int], int],
                  run_chunk: Callable[[ObjectStore, str, int, int], object]) -> AssetsDefinition:
    """The daily asset ``name`` (partitioned by ``partitions``), after asset ``after``:
    ``count_chunks(store, day, chunk_photos)`` steps of ``run_chunk(store, day, chunk=k, chunks=n)`` (which
    returns a dataclass report)."""

    @op(name=f"{name}_plan", ins={"start": In(Nothing)}, out=DynamicOut(tuple),
        description=f"How many chunks of at most `chunk_photos` photos the day's {name} plan splits into.")
    def plan_chunks(context: OpExecutionContext, storage: CoinStorage):
        chunks = count_chunks(storage.store(), context.partition_key, storage.chunk_photos)
        context.log.info(f"{context.partition_key}: {chunks} chunk(s) of at most {storage.chunk_photos} photos")
        for chunk in range(chunks):
            yield DynamicOutput((chunk, chunks), mapping_key=f"chunk_{chunk}")

    @op(name=f"{name}_chunk", description=f"One chunk of the day's {name} work; no DuckDB connection, on any worker.")
    def one_chunk(context: OpExecutionContext, storage: CoinStorage, chunk: tuple) -> dict:
        report = run_chunk(storage.store(), context.partition_key, chunk=chunk[0], chunks=chunk[1])
        context.log.info(f"chunk {chunk[0] + 1} of {chunk[1]}: {report}")
        return dataclasses.asdict(report)

    @op(name=f"{name}_merged", out=Out(Nothing), description=f"The chunks' reports, added up ({name}).")
    def merged(context: OpExecutionContext, reports: list[dict]) -> None:
        context.add_output_metadata(chunk_metadata(reports))

    @graph_asset(name=name, description=description, partitions_def=partitions, group_name="ingestion",
                 kinds=kinds, ins={"upstream": AssetIn(key=after, dagster_type=Nothing)})
    def chunked(upstream):
        return merged(plan_chunks(start=upstream).map(one_chunk).collect())

    return chunked
