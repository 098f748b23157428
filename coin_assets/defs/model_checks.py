"""Asset checks on the model, the promotion decision and the predictions (`model_checks`: the predictions'
check is partitioned like them)."""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetKey,
    MetadataValue,
    PartitionsDefinition,
    asset_check,
)
from dagster_duckdb import DuckDBResource

from coin_assets.core import predictions as preds
from coin_assets.core.uploads import YEAR_MAX_PLAUSIBLE, YEAR_MIN
from coin_assets.defs.assets.model import coin_year_model, promotion_decision
from coin_assets.defs.pools import DUCKDB_WRITER_POOL
from coin_assets.defs.resources import MlflowRegistry
from coin_assets.ml import model_serialization as ser
from coin_assets.ml import registry as reg
from coin_assets.ml.lifecycle import input_example


def _latest_metadata(context, asset_key: AssetKey) -> dict:
    event = context.instance.get_latest_materialization_event(asset_key)
    if event is None or event.asset_materialization is None:
        return {}
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


@asset_check(asset=coin_year_model)
def model_outputs_are_plausible(context: AssetCheckExecutionContext, mlflow_registry: MlflowRegistry) -> AssetCheckResult:
    """The latest registered version, loaded through MLflow, gives finite years within the plausible
    range and a positive sigma on a smoke batch."""
    from mlflow.exceptions import MlflowException

    version = _latest_metadata(context, coin_year_model.key).get("model_version")
    if version is None:
        return AssetCheckResult(passed=False, metadata={"problems": "no model version materialized yet"})
    uri = reg.model_version_uri(mlflow_registry.model_name, version)
    try:
        tags = mlflow_registry.client().get_model_version(mlflow_registry.model_name, version).tags
    except MlflowException as err:
        what = "missing from the registry" if reg.is_missing_error(err) else f"registry lookup failed: {err}"
        return AssetCheckResult(passed=False, metadata={"model_version": version, "problems": f"v{version} {what}"})
    # the same sanity check as promotion, with this project's plausible year range
    problems = ser.sanity_check(uri, input_example(int(tags.get("image_size", 128)), batch=4),
                                year_range=(YEAR_MIN, YEAR_MAX_PLAUSIBLE))
    return AssetCheckResult(passed=not problems, metadata={
        "model_version": version, "problems": "; ".join(problems) or "none",
    })


@asset_check(asset=promotion_decision)
def production_is_best_promoted(context: AssetCheckExecutionContext, mlflow_registry: MlflowRegistry) -> AssetCheckResult:
    """`production` points at the promoted version with the best test MAE, unless a rollback chose otherwise."""
    client = mlflow_registry.client()
    name = mlflow_registry.model_name
    production = reg.get_alias_version(client, name, reg.PRODUCTION)
    promoted = reg.promoted_versions(client, name)
    if production is None:
        return AssetCheckResult(passed=not promoted, metadata={"production": "none", "promoted_versions": len(promoted)})
    maes = {v.version: float(v.tags["test_mae"]) for v in promoted if "test_mae" in v.tags}
    best = min(maes, key=maes.get) if maes else None
    rollback = production.tags.get("restored_by_rollback") == "true"
    passed = rollback or (best is not None and maes[best] >= maes.get(production.version, float("inf")) - 1e-9)
    return AssetCheckResult(passed=passed, metadata={
        "production_version": production.version,
        "best_promoted_version": best or "none",
        "promoted_test_mae": MetadataValue.json(maes),
        "restored_by_rollback": rollback,
    })


def model_checks(partitions: PartitionsDefinition) -> list[AssetChecksDefinition]:
    """The model's and the promotion's checks, and the predictions' check with one partition per upload day."""

    @asset_check(asset="coin_predictions", partitions_def=partitions, pool=DUCKDB_WRITER_POOL)
    def predictions_scored_once(
        context: AssetCheckExecutionContext, duckdb: DuckDBResource, mlflow_registry: MlflowRegistry
    ) -> AssetCheckResult:
        """Every paired coin of the day is scored exactly once by the version that scored the day last, no
        version scored a coin twice, and every version that scored the day exists in the registry."""
        from mlflow.exceptions import MlflowException

        day = context.partition_key
        with duckdb.get_connection() as conn:
            versions, gaps = preds.scoring_gaps(conn, day)
        client = mlflow_registry.client()
        missing, lookup_errors = [], []
        for version in versions:
            try:
                client.get_model_version(mlflow_registry.model_name, version)
            except MlflowException as err:
                (missing if reg.is_missing_error(err) else lookup_errors).append(f"v{version}: {err}")
        problems = ([f"v{v} scored {c} {n} times" for v, c, n in gaps[:20]]
                    + [f"{m.split(':')[0]} not in the registry" for m in missing]
                    + [f"registry lookup failed for {e}" for e in lookup_errors])
        return AssetCheckResult(passed=not problems, metadata={
            "model_versions": MetadataValue.json(versions), "problems": "\n".join(problems) or "none",
        })

    return [model_outputs_are_plausible, production_is_best_promoted, predictions_scored_once]
