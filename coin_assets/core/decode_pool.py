"""Decode bronze images into silver on every core, with bounded memory.

A small batch is decoded in this process (starting workers costs more than it saves). A larger one
goes to a process pool (``forkserver``: never fork a process that runs Dagster's threads); at most
``2 × workers`` images are in flight, so memory does not grow with the partition. Workers read the
bronze bytes themselves from a local store; for other stores this process reads them.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from coin_assets.core.images import CleanImage, ImageRejected, clean_image
from coin_assets.core.parallel import forkserver_for
from coin_assets.core.storage import LocalStore, ObjectStore

POOL_MIN_IMAGES = 24
T = TypeVar("T")


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _clean(store: LocalStore | None, key: str, data: bytes | None, max_side: int) -> CleanImage | ImageRejected:
    try:
        return clean_image(store.read_bytes(key) if data is None else data, max_side=max_side)
    except ImageRejected as err:
        return err


def clean_many(store: ObjectStore, items: Iterable[tuple[T, str]], max_side: int, workers: int | None = None
               ) -> Iterator[tuple[T, CleanImage | ImageRejected]]:
    """(item, CleanImage or ImageRejected) for each (item, bronze key), in order."""
    workers = workers or default_workers()
    if multiprocessing.current_process().daemon:  # e.g. a Celery prefork child: it may not start processes
        workers = 1
    items = list(items)
    local = store if isinstance(store, LocalStore) else None
    if workers <= 1 or len(items) < POOL_MIN_IMAGES:
        for item, key in items:
            yield item, _clean(local, key, None if local else store.read_bytes(key), max_side)
        return
    context = forkserver_for(__name__)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending: deque = deque()
        for item, key in items:
            pending.append((item, pool.submit(_clean, local, key, None if local else store.read_bytes(key), max_side)))
            if len(pending) >= 2 * workers:
                done_item, future = pending.popleft()
                yield done_item, future.result()
        while pending:
            done_item, future = pending.popleft()
            yield done_item, future.result()
