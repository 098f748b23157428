"""Dagster concurrency pools. The instance config (deploy/dagster.yaml) sets their limits."""

# Every step that writes the DuckDB file runs in this pool; the instance limits it to one at a time.
DUCKDB_WRITER_POOL = "duckdb_writer"
