"""Decode bronze images into silver on every core, with bounded memory.

The pool, its bounds and its fallbacks are :func:`coin_assets.core.parallel.bounded_map`'s. Workers
read the bronze bytes themselves from a local store, and write the clean JPEG there themselves when
told where (``stage_key``): then no image's bytes cross between processes, and this process, which
shares the cores with the workers, only keeps the books. For other stores this process reads the
bytes (lazily: at most ``2 × workers`` images are in flight) and gets the clean bytes back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from coin_assets.core import images
from coin_assets.core.images import CleanImage, ImageRejected, clean_image
from coin_assets.core.parallel import bounded_map, start_workers_early
from coin_assets.core.storage import LocalStore, ObjectStore

POOL_MIN_IMAGES = 24
LOCAL_BATCH = 8
T = TypeVar("T")


@dataclass(frozen=True)
class WrittenImage:
    """A clean image a worker wrote to ``key`` of the local store (``key`` None: the write failed, e.g.
    its folder was removed meanwhile); ``image`` is its description, without the bytes."""

    key: str | None
    size: int
    image: CleanImage


def _clean(store: LocalStore | None, key: str, data: bytes | ImageRejected | None, max_side: int,
           out_key: str | None = None) -> CleanImage | WrittenImage | ImageRejected:
    try:
        if isinstance(data, ImageRejected):
            return data  # refused before it was read (see clean_many)
        clean = clean_image(_read_photo(store, key) if data is None else data, max_side=max_side)
    except ImageRejected as err:
        return err
    if out_key is None:
        return clean
    try:
        store.write_bytes(out_key, clean.data)
    except OSError:
        out_key = None
    return WrittenImage(out_key, len(clean.data), dataclasses.replace(clean, data=b""))


def _read_photo(store: ObjectStore, key: str) -> bytes:
    """The file's bytes, unless it is over MAX_FILE_BYTES: then it is refused before it is read."""
    size = store.size(key)
    if size > images.MAX_FILE_BYTES:
        raise ImageRejected(f"file too large for a photo: {size} bytes, over the {images.MAX_FILE_BYTES}-byte limit")
    return store.read_bytes(key)


def _read_here(store: ObjectStore, key: str) -> bytes | ImageRejected:
    try:
        return _read_photo(store, key)
    except ImageRejected as err:
        return err


def _clean_batch(store: LocalStore | None, calls: list[tuple]) -> list[CleanImage | WrittenImage | ImageRejected]:
    return [_clean(store, *call) for call in calls]


def _batches(pairs: Iterable[tuple[T, tuple]], size: int) -> Iterator[tuple[list[T], list[tuple]]]:
    items, calls = [], []
    for item, call in pairs:
        items.append(item)
        calls.append(call)
        if len(items) == size:
            yield items, calls
            items, calls = [], []
    if items:
        yield items, calls


def clean_many(store: ObjectStore, items: Iterable[tuple[T, str]], max_side: int, workers: int | None = None,
               stage_key: Callable[[T], str] | None = None
               ) -> Iterator[tuple[T, CleanImage | WrittenImage | ImageRejected]]:
    """(item, result) for each (item, bronze key), as they finish: ImageRejected, or on a local store with
    ``stage_key`` a WrittenImage (the worker wrote the clean JPEG to ``stage_key(item)``), else a
    CleanImage with its bytes. On a local store a worker takes ``LOCAL_BATCH`` images at a time (one
    round trip each, not one an image); elsewhere one, as this process holds each one's bytes."""
    local = store if isinstance(store, LocalStore) else None
    size = LOCAL_BATCH if local else 1
    calls = ((item, (key, None if local else _read_here(store, key), max_side,
                     stage_key(item) if local and stage_key else None)) for item, key in items)
    batches = ((batch_items, (local, batch_calls)) for batch_items, batch_calls in _batches(calls, size))
    for batch_items, results in bounded_map(_clean_batch, batches, workers, ordered=False,
                                            min_items=-(-POOL_MIN_IMAGES // size)):
        yield from zip(batch_items, results, strict=True)


def start_decoders_early() -> None:
    """Start the decode pool's forkserver now, in the background (a copy about to hand it work)."""
    start_workers_early(__name__)
