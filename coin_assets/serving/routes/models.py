"""The model registry as served: GET /models (the versions) and GET /metadata (the serving version)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from coin_assets.core.images import ACCEPTED_FORMATS, MAX_PIXELS
from coin_assets.serving import inputs
from coin_assets.serving.deps import HolderDep, SettingsDep
from coin_assets.serving.errors import error, error_responses
from coin_assets.serving.model_holder import ModelHolder

router = APIRouter()


@router.get("/models", summary="Registered versions with aliases, test metrics and decision reasons")
async def models(holder: HolderDep):
    return await run_in_threadpool(_list_models, holder)


@router.get("/metadata", summary="The serving model's signature, input limits and lineage",
            responses=error_responses({503: "no production model loaded yet"}))
async def metadata(holder: HolderDep, settings: SettingsDep):
    cur = holder.current
    if cur is None:
        return error(503, "not_ready", holder.state.last_error or "no model loaded")
    signature = await run_in_threadpool(_signature, cur.source)
    tags = cur.tags
    return {"model_name": cur.name, "model_version": cur.version, "alias": cur.alias,
            "since": cur.loaded_at.isoformat(), "source": cur.source, "signature": signature,
            "input_limits": {"max_photo_bytes": settings.max_photo_bytes,
                             "max_pixels": cur.predictor.config.max_pixels or MAX_PIXELS,
                             "accepted_formats": sorted(ACCEPTED_FORMATS), "image_size": cur.image_size,
                             "max_request_bytes": inputs.max_request_bytes(settings.max_photo_bytes)},
            "review_max_interval": cur.predictor.config.review_max_interval,
            "training_set_hash": tags.get("training_set_hash"), "mlflow_run_id": cur.run_id,
            "dagster_run_id": tags.get("dagster_run_id"), "tags": tags, "inference": cur.inference}


def _float(value: str):
    try:
        return float(value)
    except ValueError:
        return value


def _signature(source: str) -> dict | None:
    import mlflow.artifacts
    from mlflow.models import Model
    from mlflow.utils.file_utils import local_file_uri_to_path

    if source.startswith("file:"):
        path = local_file_uri_to_path(source)
    else:
        path = mlflow.artifacts.download_artifacts(artifact_uri=f"{source.rstrip('/')}/MLmodel")
    model = Model.load(path)
    return model.signature.to_dict() if model.signature is not None else None


def _list_models(holder: ModelHolder) -> dict:
    from coin_assets.ml.registry import all_versions

    client = holder.client
    try:
        aliases = client.get_registered_model(holder.name).aliases or {}
    except Exception as err:
        return {"model_name": holder.name, "versions": [], "error": str(err)}
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases.items():
        by_version.setdefault(str(version), []).append(alias)
    out = []
    for mv in all_versions(client, holder.name):
        tags = dict(mv.tags or {})
        metrics = {k: _float(v) for k, v in tags.items() if k.startswith("test_")}
        out.append({"version": str(mv.version), "aliases": sorted(by_version.get(str(mv.version), [])),
                    "created_at": mv.creation_timestamp, "run_id": mv.run_id, "test_metrics": metrics,
                    "decision": tags.get("decision"), "decision_reason": tags.get("decision_reason"),
                    "input_kind": tags.get("input_kind"), "tags": tags})
    cur = holder.current
    return {"model_name": holder.name, "serving_version": cur.version if cur else None, "aliases": aliases,
            "versions": sorted(out, key=lambda v: int(v["version"]), reverse=True)}
