"""Operations: GET /health, GET /metrics (Prometheus), POST /admin/reload."""

from __future__ import annotations

from fastapi import APIRouter, Header
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from coin_assets.serving import auth
from coin_assets.serving.deps import HolderDep, MetricsDep, SettingsDep, StoreDep
from coin_assets.serving.errors import VALIDATION, WWW_AUTHENTICATE, error, error_responses
from coin_assets.serving.metrics import ServingMetrics
from coin_assets.serving.model_holder import ModelHolder
from coin_assets.serving.schemas import Health
from coin_assets.serving.store import async_status_counts

router = APIRouter()


def sync_metrics(holder: ModelHolder, metrics: ServingMetrics) -> None:
    """The served version, whether it is optimised and whether the last load failed, into the gauges."""
    cur = holder.current
    if cur is not None:
        metrics.set_served(cur.name, cur.version)
        metrics.optimised.set(1 if cur.inference["optimised"] else 0)
    metrics.load_failed.set(1 if holder.state.last_error else 0)


@router.get("/health", summary="Liveness and readiness",
            responses={200: {"model": Health, "description": "a production model is served"},
                       503: {"model": Health, "description": "no production model loaded (the health report, "
                                                            "with the reason)"}})
async def health(holder: HolderDep, settings: SettingsDep):
    cur = holder.current
    state = holder.state
    body = {"status": "ready" if cur else "not_ready", "model_name": settings.model_name,
            "model_version": cur.version if cur else None, "alias": cur.alias if cur else None,
            "since": cur.loaded_at.isoformat() if cur else None,
            "last_check": state.last_check.isoformat() if state.last_check else None,
            "last_error": state.last_error, "failed_version": state.failed_version,
            "optimised": cur.inference["optimised"] if cur else None}
    if cur is None:
        body["reason"] = state.last_error or "model not loaded yet"
        return JSONResponse(body, status_code=503)
    return body


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"description": "the Prometheus text exposition", "content": {"text/plain": {}}}})
async def prometheus(holder: HolderDep, metrics: MetricsDep, store: StoreDep):
    sync_metrics(holder, metrics)
    counts = await run_in_threadpool(async_status_counts, store)
    for status in ("pending", "claimed", "completed", "failed"):
        metrics.async_requests.labels(status=status).set(counts.get(status, 0))
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


@router.post("/admin/reload", summary="Check the production alias now (token from COIN_ASSETS_RELOAD_TOKEN)",
             responses=error_responses({401: "missing or wrong token (X-Reload-Token or Authorization: Bearer)",
                                        403: "reload disabled: COIN_ASSETS_RELOAD_TOKEN is not set on the service",
                                        422: VALIDATION}, headers={401: WWW_AUTHENTICATE}))
async def reload(holder: HolderDep, metrics: MetricsDep, settings: SettingsDep,
                 x_reload_token: str | None = Header(default=None), authorization: str | None = Header(default=None)):
    if not settings.reload_token:  # no token can be right: refused, whoever asks (not a server fault)
        return error(403, "reload_disabled", "set COIN_ASSETS_RELOAD_TOKEN to enable the reload endpoint")
    if not auth.token_matches(settings.reload_token, x_reload_token or auth.bearer_token(authorization)):
        return error(401, "unauthorized", "reload needs the token from COIN_ASSETS_RELOAD_TOKEN",
                     {"WWW-Authenticate": "Bearer"})
    report = await run_in_threadpool(holder.refresh, True)
    sync_metrics(holder, metrics)
    return report
