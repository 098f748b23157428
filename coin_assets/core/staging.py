"""Work staged between a step that holds no DuckDB connection and the writer step that records it.

The CPU-heavy half of a layer (decoding, coin finding) reads a plan that the writer step before it
wrote (``<prefix>/plan.json``), works on one chunk of it on any worker, and stages its results as
``<prefix>/<stem>-<chunk>-of-<chunks>.json`` beside the files it made. The writer step after it
reads every staged result of the day (whatever the chunking was), records what matches its own
plan, does the rest itself, and empties the prefix. Files are written whole (the store writes
atomically), so a chunk killed midway leaves either its results or none, never half of them.
"""

from __future__ import annotations

import json
import math

from coin_assets.core.storage import ObjectStore

PLAN = "plan.json"


def chunk_count(items: int, chunk_size: int) -> int:
    """How many chunks of at most ``chunk_size`` items; at least one, so that the step after always runs."""
    if chunk_size < 1:
        raise ValueError(f"chunk size must be at least 1, got {chunk_size}")
    return max(1, math.ceil(items / chunk_size))


def chunk_of(items: list, chunk: int, chunks: int) -> list:
    """The ``chunk``-th of ``chunks`` contiguous, near-equal slices of ``items``."""
    if not 0 <= chunk < chunks:
        raise ValueError(f"chunk {chunk} is not one of {chunks}")
    start, end = (len(items) * chunk) // chunks, (len(items) * (chunk + 1)) // chunks
    return items[start:end]


def read_json(store: ObjectStore, key: str) -> dict | None:
    try:
        return json.loads(store.read_bytes(key)) if store.exists(key) else None
    except (OSError, ValueError):
        return None  # a half-written file cannot happen (atomic writes), but a staged file is never trusted blindly


def write_plan(store: ObjectStore, prefix: str, plan: dict) -> None:
    store.write_bytes(f"{prefix}/{PLAN}", json.dumps(plan).encode())


def read_plan(store: ObjectStore, prefix: str) -> dict | None:
    return read_json(store, f"{prefix}/{PLAN}")


def write_results(store: ObjectStore, prefix: str, stem: str, chunk: int, chunks: int, entries: list[dict]) -> str:
    key = f"{prefix}/{stem}-{chunk:05d}-of-{chunks:05d}.json"
    store.write_bytes(key, json.dumps({"chunk": chunk, "chunks": chunks, "entries": entries}).encode())
    return key


def read_results(store: ObjectStore, prefix: str, stem: str, key_of) -> dict:
    """Every staged entry of the prefix under ``stem`` (any chunking; of two entries with the same key, the
    one in the file whose name sorts last), keyed by ``key_of(entry)``."""
    found = {}
    for obj in sorted(store.list(prefix), key=lambda o: o.key):
        name = obj.key.rsplit("/", 1)[-1]
        if name.startswith(f"{stem}-") and name.endswith(".json"):
            for entry in (read_json(store, obj.key) or {}).get("entries", []):
                found[key_of(entry)] = entry
    return found
