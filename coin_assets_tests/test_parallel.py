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


def test_bounded_map_raises_the_workers_error():
    with pytest.raises(ValueError):
        list(bounded_map(math.isqrt, [(0, (4,)), (1, (-1,))], workers=2, min_items=1))
