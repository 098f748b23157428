"""promotion_decision → serving_deployment (which version the API serves, since when);
gold + predictions → serving_requests (one day of the API's request log in DuckDB, for audit), built for
the daily partitions the definitions are loaded with (`serving_assets`)."""

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    Config,
    MaterializeResult,
    MetadataValue,
    Output,
    PartitionsDefinition,
    asset,
)
from dagster_duckdb import DuckDBResource
from pydantic import Field

from coin_assets.core.serving_audit import load_serving_day
from coin_assets.defs.assets.model import promotion_decision
from coin_assets.defs.metadata import table_preview
from coin_assets.defs.pools import DUCKDB_WRITER_POOL
from coin_assets.defs.resources import MlflowRegistry, ServingApi
from coin_assets.ml import registry as reg


class ServingDeploymentConfig(Config):
    ask_reload: bool = Field(True, description="ask the API to check the alias now (needs its reload token)")


@asset(deps=[promotion_decision], group_name="serving", kinds={"fastapi", "mlflow"})
def serving_deployment(context: AssetExecutionContext, config: ServingDeploymentConfig,
                       mlflow_registry: MlflowRegistry, serving_api: ServingApi) -> Output[dict]:
    """Which model version the serving API answers with, and since when, next to the registry's production
    version. Best-effort: an API that is down is recorded (reachable: false), never a failed run; the API
    follows the alias by polling in any case."""
    production = reg.get_alias_version(mlflow_registry.client(), mlflow_registry.model_name, reg.PRODUCTION)
    production_version = str(production.version) if production else None
    reload = serving_api.request_reload() if config.ask_reload else {"ok": None}
    health = serving_api.health()
    value = {
        "api_url": serving_api.url, "reachable": health.get("reachable", False),
        "serving_version": health.get("model_version"), "serving_since": health.get("since"),
        "production_version": production_version,
        "in_sync": bool(production_version) and health.get("model_version") == production_version,
        "serving_error": health.get("last_error") or health.get("error"),
        "reload": {k: v for k, v in reload.items() if k in ("ok", "changed", "version", "error", "status_code")},
    }
    (context.log.info if value["in_sync"] else context.log.warning)(
        f"API serves {value['serving_version']} (production {production_version}); {value['serving_error'] or ''}")
    return Output(value, metadata={
        "serving_version": value["serving_version"] or "none", "serving_since": value["serving_since"] or "unknown",
        "production_version": production_version or "none", "in_sync": value["in_sync"],
        "reachable": value["reachable"], "serving_error": value["serving_error"] or "",
        "api_url": MetadataValue.url(serving_api.url),
    })


def serving_assets(partitions: PartitionsDefinition) -> list[AssetsDefinition]:
    """serving_deployment, and serving_requests with one partition per UTC day."""

    @asset(partitions_def=partitions, deps=["gold_images", "coin_predictions"], group_name="serving",
           kinds={"duckdb", "sqlalchemy"}, pool=DUCKDB_WRITER_POOL)
    def serving_requests(context: AssetExecutionContext, duckdb: DuckDBResource,
                         serving_api: ServingApi) -> MaterializeResult:
        """One UTC day of the API's requests and feedback, copied from its store into DuckDB
        (serving_requests, serving_feedback) and linked to gold and the predictions (view serving_lineage).
        API uploads of the day with no request row (a process that died between writing the photos and
        recording the request) are counted in `uploads_without_request`. Re-running a day replaces it."""
        from coin_assets.serving.store import RequestStore

        day = context.partition_key
        store = RequestStore(serving_api.request_store_url)
        try:
            store.create_tables()
            requests, feedback = store.day_log(day)
        finally:
            store.dispose()
        with duckdb.get_connection() as conn:
            summary = load_serving_day(conn, day, requests, feedback)
        context.log.info(f"{day}: {summary['requests']} requests, {summary['in_gold']} in gold")
        unrecorded = summary["uploads_without_request"]
        if len(unrecorded):
            context.log.warning(f"{day}: {len(unrecorded)} API upload(s) without a request row (the API "
                                "process died before recording them): ingested like any upload")
        return MaterializeResult(metadata={
            "requests": summary["requests"], "in_gold": summary["in_gold"],
            "with_batch_prediction": summary["with_batch_prediction"],
            "latency_ms_p50": float(summary["latency_ms_p50"] or 0.0),
            "latency_ms_p95": float(summary["latency_ms_p95"] or 0.0),
            "outcomes": table_preview(summary["outcomes"]),
            "feedback": table_preview(summary["feedback"]),
            "uploads_without_request": len(unrecorded),
            "uploads_without_request_coins": table_preview(unrecorded, limit=50),
        })

    return [serving_deployment, serving_requests]
