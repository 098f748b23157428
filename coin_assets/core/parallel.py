"""Run a picklable function over many items on every core, with bounded memory.

Few items run in this process (starting workers costs more than it saves). More go to a process pool
(``forkserver``: never fork a process that runs Dagster's threads) with at most ``2 × workers`` items in
flight, so memory does not grow with the partition. Results come in order, or (``ordered=False``) as
they finish, which keeps every worker busy when item costs differ (a 12-megapixel PNG beside small
JPEGs): in order, a slow item at the head holds back the next submissions. A daemonic process (a Celery prefork child) may not
start processes: it uses as many threads instead (Pillow and NumPy release the GIL while they decode,
resize, encode and compute, which is where these functions spend their time).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    as_completed,
    wait,
)
from typing import TypeVar

POOL_MIN_ITEMS = 24
T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def bounded_map(fn: Callable[..., R], items: Iterable[tuple[T, tuple]], workers: int | None = None,
                min_items: int | None = None, ordered: bool = True) -> Iterator[tuple[T, R]]:
    """(item, fn(*args)) for each (item, args), in order unless ``ordered=False``; ``args`` are built
    lazily by the iterable. ``fn`` and the args must pickle (they cross to the workers)."""
    workers = workers or default_workers()
    min_items = POOL_MIN_ITEMS if min_items is None else min_items
    items = iter(items)
    head = []
    for pair in items:  # look ahead just far enough to know whether a pool pays
        head.append(pair)
        if len(head) >= min_items:
            break
    if workers <= 1 or len(head) < min_items:
        for item, args in _chain(head, items):
            yield item, fn(*args)
        return
    with _pool(fn, workers) as pool:
        if not ordered:
            yield from _as_completed(pool, fn, _chain(head, items), 2 * workers)
            return
        pending: deque = deque()
        for item, args in _chain(head, items):
            pending.append((item, pool.submit(fn, *args)))
            if len(pending) >= 2 * workers:
                done_item, future = pending.popleft()
                yield done_item, future.result()
        while pending:
            done_item, future = pending.popleft()
            yield done_item, future.result()


def _as_completed(pool: Executor, fn: Callable, items: Iterator, in_flight: int) -> Iterator:
    pending: dict = {}
    for item, args in items:
        pending[pool.submit(fn, *args)] = item
        if len(pending) >= in_flight:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield pending.pop(future), future.result()
    for future in as_completed(list(pending)):
        yield pending.pop(future), future.result()


def _pool(fn: Callable, workers: int) -> Executor:
    if multiprocessing.current_process().daemon:
        return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bounded_map")
    return ProcessPoolExecutor(max_workers=workers, mp_context=forkserver_for(fn.__module__))


def forkserver_for(module: str):
    """The forkserver context, its server preloading only ``module`` (what the workers run). By
    default it would import ``__main__``, and in a step process of Dagster's multiprocess executor it
    inherits that executor's preload list (all of coin_assets.definitions: seconds of imports)
    before the first worker starts. Takes effect when this process starts its forkserver."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([module])
    return context


def start_workers_early(module: str) -> None:
    """Start this process's forkserver (preloading ``module``) in the background, so that a pool started
    later (the next step, in-process) forks its workers at once instead of first importing ``module``."""
    if multiprocessing.current_process().daemon:
        return  # threads, no pool
    forkserver_for(module)
    threading.Thread(target=multiprocessing.forkserver.ensure_running, name="forkserver_start", daemon=True).start()


def _chain(head: list, rest: Iterator) -> Iterator:
    yield from head
    yield from rest
