"""Micro-batching: coins from concurrent requests share one forward pass.

Requests put their preprocessed pair on a bounded queue (full → :class:`QueueFull`, the API answers
503 with Retry-After). One consumer takes everything waiting (up to ``max_batch``), groups it by the
model each request started on, and runs one forward pass per group on a single worker thread. No
timer: while one pass runs, the next requests gather, so a lone request waits for nothing.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from coin_assets.serving.metrics import ServingMetrics
from coin_assets.serving.model_holder import LoadedModel


class QueueFull(RuntimeError):
    pass


@dataclass
class _Item:
    model: LoadedModel
    pair: np.ndarray  # [2, 3, S, S]
    future: asyncio.Future


class MicroBatcher:
    def __init__(self, max_batch: int, queue_size: int, metrics: ServingMetrics | None = None):
        self.max_batch = max(1, max_batch)
        self.queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=max(1, queue_size))
        self.metrics = metrics
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forward")
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        while not self.queue.empty():
            item = self.queue.get_nowait()
            if not item.future.done():
                item.future.set_exception(RuntimeError("service shutting down"))
        self._executor.shutdown(wait=True)

    def submit(self, model: LoadedModel, pair: np.ndarray) -> asyncio.Future:
        """Queue one coin for ``model`` (:class:`QueueFull` at once when the queue is full); the future
        gives year, sigma and unreadable."""
        future = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait(_Item(model, pair, future))
        except asyncio.QueueFull:
            raise QueueFull(f"prediction queue full ({self.queue.maxsize} waiting)") from None
        self._gauge()
        return future

    async def predict(self, model: LoadedModel, pair: np.ndarray) -> dict:
        """year, sigma, unreadable of one coin, computed by ``model``."""
        return await self.submit(model, pair)

    def _gauge(self) -> None:
        if self.metrics:
            self.metrics.queue_depth.set(self.queue.qsize())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            while len(batch) < self.max_batch and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            self._gauge()
            groups: dict[int, list[_Item]] = {}
            for item in batch:
                groups.setdefault(id(item.model), []).append(item)
            for items in groups.values():
                model = items[0].model
                try:
                    out = await loop.run_in_executor(
                        self._executor, model.predictor.predict_arrays, np.stack([i.pair for i in items]))
                except Exception as err:  # a broken forward pass fails its requests, not the service
                    for item in items:
                        if not item.future.done():
                            item.future.set_exception(err)
                    continue
                if self.metrics:
                    self.metrics.batch_size.observe(len(items))
                for k, item in enumerate(items):
                    if not item.future.done():  # the caller may have gone away
                        item.future.set_result({"year": float(out["year"][k]), "sigma": float(out["sigma"][k]),
                                                "unreadable": bool(out["unreadable"][k])})
