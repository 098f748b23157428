"""Decode bronze images into silver on every core, with bounded memory.

The pool, its bounds and its fallbacks are :func:`coin_assets.core.parallel.bounded_map`'s. Workers
read the bronze bytes themselves from a local store; for other stores this process reads them (lazily:
at most ``2 × workers`` images are in flight).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from coin_assets.core import images
from coin_assets.core.images import CleanImage, ImageRejected, clean_image
from coin_assets.core.parallel import bounded_map, start_workers_early
from coin_assets.core.storage import LocalStore, ObjectStore

POOL_MIN_IMAGES = 24
T = TypeVar("T")


def _clean(store: LocalStore | None, key: str, data: bytes | ImageRejected | None, max_side: int
           ) -> CleanImage | ImageRejected:
    try:
        if isinstance(data, ImageRejected):
            return data  # refused before it was read (see clean_many)
        return clean_image(_read_photo(store, key) if data is None else data, max_side=max_side)
    except ImageRejected as err:
        return err


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


def clean_many(store: ObjectStore, items: Iterable[tuple[T, str]], max_side: int, workers: int | None = None
               ) -> Iterator[tuple[T, CleanImage | ImageRejected]]:
    """(item, CleanImage or ImageRejected) for each (item, bronze key), as they finish."""
    local = store if isinstance(store, LocalStore) else None
    calls = ((item, (local, key, None if local else _read_here(store, key), max_side)) for item, key in items)
    yield from bounded_map(_clean, calls, workers, min_items=POOL_MIN_IMAGES, ordered=False)


def start_decoders_early() -> None:
    """Start the decode pool's forkserver now, in the background (a copy about to hand it work)."""
    start_workers_early(__name__)
