"""What the routes need, as FastAPI dependencies: each reads the per-app state that ``create_app``
builds once (``app.state``), so the routers are module-level and one process may hold several apps.

``app.state`` holds: ``settings``, ``store`` (the serving store), ``holder`` (the model holder),
``metrics``, ``batcher`` (the micro-batcher), ``uploads`` (the upload zone), ``callers`` (the feedback
tokens, by token) and ``pools`` (the decode and request-log thread pools).

The dependencies are ``async def``: they run on the event loop, not on a worker thread.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request

from coin_assets.core.storage import ObjectStore
from coin_assets.serving import auth
from coin_assets.serving.auth import Caller
from coin_assets.serving.batching import MicroBatcher
from coin_assets.serving.metrics import ServingMetrics
from coin_assets.serving.model_holder import ModelHolder
from coin_assets.serving.store import RequestStore
from coin_assets.settings import Settings


@dataclass(frozen=True)
class Pools:
    """An app's thread pools: ``decode`` for the photos (Pillow releases the GIL; this worker's share of
    the cores) and ``log`` for the upload-zone and request-log writes (I/O: never on the decode threads)."""

    decode: ThreadPoolExecutor
    log: ThreadPoolExecutor


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_store(request: Request) -> RequestStore:
    return request.app.state.store


async def get_holder(request: Request) -> ModelHolder:
    return request.app.state.holder


async def get_metrics(request: Request) -> ServingMetrics:
    return request.app.state.metrics


async def get_batcher(request: Request) -> MicroBatcher:
    return request.app.state.batcher


async def get_uploads(request: Request) -> ObjectStore:
    return request.app.state.uploads


async def get_pools(request: Request) -> Pools:
    return request.app.state.pools


async def get_caller(request: Request, authorization: str | None = Header(default=None)) -> Caller | None:
    """Who sent the request (``Authorization: Bearer <token>``, a token from ``COIN_ASSETS_API_TOKENS``),
    None for no or an unknown token. It refuses nothing itself: the route answers the 401, after the
    request's own parameters and body are validated (a malformed request is a 422 with or without a token)."""
    return auth.identify(request.app.state.callers, auth.bearer_token(authorization))


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[RequestStore, Depends(get_store)]
HolderDep = Annotated[ModelHolder, Depends(get_holder)]
MetricsDep = Annotated[ServingMetrics, Depends(get_metrics)]
BatcherDep = Annotated[MicroBatcher, Depends(get_batcher)]
UploadsDep = Annotated[ObjectStore, Depends(get_uploads)]
PoolsDep = Annotated[Pools, Depends(get_pools)]
CallerDep = Annotated[Caller | None, Depends(get_caller)]
