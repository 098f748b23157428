"""The serving API: ``create_app(settings) -> FastAPI``; run by ``python -m coin_assets.serving``.

GET /health, POST /predict, GET /predictions/{id}, POST /predictions/{id}/feedback, GET /models,
GET /metadata, GET /metrics, POST /admin/reload, the asynchronous routes, and the OpenAPI docs at /docs.

``create_app`` builds the per-app state once (``app.state``: the settings, the serving store, the model
holder, the micro-batcher, the metrics, the upload zone, the feedback tokens, the thread pools), adds
the ``/predict`` gate and the error handlers, and includes the module-level routers of
:mod:`coin_assets.serving.routes` and :mod:`coin_assets.serving.async_api`; the routes get the state
through the dependencies of :mod:`coin_assets.serving.deps`.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from coin_assets.serving import async_api, auth, inputs
from coin_assets.serving.batching import MicroBatcher
from coin_assets.serving.deps import Pools
from coin_assets.serving.errors import error
from coin_assets.serving.gate import PredictGate
from coin_assets.serving.inputs import BadInput
from coin_assets.serving.metrics import ServingMetrics
from coin_assets.serving.model_holder import ModelHolder
from coin_assets.serving.request_log import object_store
from coin_assets.serving.routes import models, ops, predict, predictions
from coin_assets.serving.store import RequestStore
from coin_assets.settings import Settings


def create_app(settings: Settings | None = None, holder: ModelHolder | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    metrics = ServingMetrics()
    store = RequestStore(settings.serving_db)
    callers = auth.parse_tokens(settings.api_tokens)
    uploads = object_store(settings)
    holder = holder or ModelHolder(settings, on_reload=lambda outcome: metrics.reloads.labels(outcome=outcome).inc())
    batcher = MicroBatcher(settings.serving_max_batch, settings.serving_queue, metrics)
    # Decoding (Pillow releases the GIL) on this worker's share of the cores, front and back at once;
    # the forward pass on the batcher's one thread with the torch threads set by threads_for_worker.
    decode_threads, torch_threads = threads_for_worker(settings.api_workers)
    pools = Pools(decode=ThreadPoolExecutor(max_workers=decode_threads, thread_name_prefix="preprocess"),
                  log=ThreadPoolExecutor(max_workers=4, thread_name_prefix="request-log"))

    app = FastAPI(title="coin_assets serving", version="1", lifespan=lifespan,
                  description="The production coin-year model over HTTP. Every answered request is logged and its "
                              "photos go into the upload zone, so they flow through bronze, silver and gold.")
    app.state.settings, app.state.store, app.state.holder, app.state.metrics = settings, store, holder, metrics
    app.state.batcher, app.state.uploads, app.state.callers, app.state.pools = batcher, uploads, callers, pools
    app.state.torch_threads = torch_threads
    app.add_middleware(PredictGate, max_in_flight=settings.serving_queue,
                       max_body=inputs.max_request_bytes(settings.max_photo_bytes), metrics=metrics)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(BadInput, _bad)
    app.include_router(async_api.router)  # before GET /predictions/{request_id}: /predictions/history is no id
    app.include_router(ops.router)
    app.include_router(predict.router)
    app.include_router(predictions.router)
    app.include_router(models.router)
    return app


@asynccontextmanager
async def lifespan(app: FastAPI):
    """Start: torch threads, the store's tables, the first model load, polling, the batcher; stop: the
    same in reverse (the pools drained before the store is closed)."""
    state = app.state
    if state.torch_threads:
        import torch

        torch.set_num_threads(state.torch_threads)
    await run_in_threadpool(state.store.create_tables)
    await run_in_threadpool(state.holder.refresh)
    ops.sync_metrics(state.holder, state.metrics)
    state.holder.start_polling()
    state.batcher.start()
    try:
        yield
    finally:
        state.holder.stop()
        await state.batcher.stop()
        state.pools.decode.shutdown(wait=True)
        state.pools.log.shutdown(wait=True)
        state.store.dispose()
        state.metrics.worker_exiting()


async def _validation(request: Request, exc: RequestValidationError):
    problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
                         for e in exc.errors())
    return error(422, "bad_input", problems)


async def _http(request: Request, exc: StarletteHTTPException):
    return error(exc.status_code, "http_error", str(exc.detail), getattr(exc, "headers", None))


async def _bad(request: Request, exc: BadInput):
    return error(exc.status, exc.code, exc.message)


def threads_for_worker(api_workers: int = 1) -> tuple[int, int]:
    """(decode threads, torch intra-op threads) for one API process: its share of the cores
    (``api_workers`` processes share them), half of it for torch, so that the forward pass and the
    decoding never fight over more threads than cores. ``OMP_NUM_THREADS``, when set, wins for torch
    (0 returned: leave torch alone)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    workers = max(1, api_workers)
    share = max(1, cores // workers)
    torch_threads = 0 if os.environ.get("OMP_NUM_THREADS") else max(1, share // 2)
    return max(2, share), torch_threads
