"""bounded_map: the same answers in the same order in this process and on a real process pool."""

from __future__ import annotations

import math

import pytest

from coin_assets.core.parallel import bounded_map


@pytest.mark.parametrize("min_items", [1000, 1])  # in this process, then on a forkserver pool
def test_bounded_map_keeps_order_and_answers(min_items):
    items = ((i, (i * i,)) for i in range(40))  # a generator: the args are built lazily
    out = list(bounded_map(math.isqrt, items, workers=2, min_items=min_items))
    assert out == [(i, i) for i in range(40)]


def test_unordered_results_do_not_wait_behind_a_slow_item():
    import time

    items = [(0, (1.0,)), *((i, (0.01,)) for i in range(1, 21))]  # a slow item first, then quick ones
    out = [item for item, _ in bounded_map(time.sleep, iter(items), workers=2, min_items=1, ordered=False)]
    assert sorted(out) == list(range(21))
    assert out[0] != 0 and out.index(0) > 10  # the other worker went on with the quick items meanwhile


def test_bounded_map_raises_the_workers_error():
    with pytest.raises(ValueError):
        list(bounded_map(math.isqrt, [(0, (4,)), (1, (-1,))], workers=2, min_items=1))


def _map_in_daemon(queue) -> None:
    import threading

    seen_threads = set()

    def isqrt_noting_thread(n):
        seen_threads.add(threading.current_thread().name)
        return math.isqrt(n)

    out = list(bounded_map(isqrt_noting_thread, ((i, (i * i,)) for i in range(40)), workers=2, min_items=1))
    queue.put((out, sorted(seen_threads)))


def test_a_daemonic_process_maps_on_threads():
    """A Celery prefork child is daemonic and may not start processes: it uses threads, not one core."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_map_in_daemon, args=(queue,), daemon=True)
    child.start()
    out, threads = queue.get(timeout=60)
    child.join(timeout=60)
    assert out == [(i, i) for i in range(40)]
    assert threads and all(name.startswith("bounded_map") for name in threads)
