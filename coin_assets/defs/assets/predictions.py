"""promotion_decision + gold → coin_predictions → review_queue, built for the daily partitions the
definitions are loaded with (`prediction_assets`)."""

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    AutomationCondition,
    Config,
    MaterializeResult,
    PartitionsDefinition,
    asset,
)
from dagster_duckdb import DuckDBResource
from pydantic import Field

from coin_assets.core import predictions as preds
from coin_assets.core import readers
from coin_assets.core.clock import utcnow
from coin_assets.defs.assets.model import promotion_decision
from coin_assets.defs.metadata import table_preview
from coin_assets.defs.pools import DUCKDB_WRITER_POOL
from coin_assets.defs.resources import CoinStorage, MlflowRegistry
from coin_assets.ml import model_serialization as ser
from coin_assets.ml import registry as reg
from coin_assets.ml.calibration import Z_90
from coin_assets.ml.lifecycle import coin_records
from coin_assets.ml.model import UNREADABLE_SIGMA

# eager() without its "latest day only" clause: a promotion (or new gold) re-scores every day that has gold,
# and a backfill of coin_predictions brings review_queue along; days without gold stay untouched
FOLLOW_EVERY_DAY = (
    AutomationCondition.any_deps_updated().since_last_handled()
    & ~AutomationCondition.any_deps_missing()
    & ~AutomationCondition.any_deps_in_progress()
    & ~AutomationCondition.in_progress()
).with_label("follow upstream on every day")


class ReviewQueueConfig(Config):
    max_interval_years: float = Field(
        20.0, description="queue a prediction whose 90 % interval is wider than this many years")
    label_tolerance_years: float = Field(5.0, description="queue when a known label differs by more than this")


def _score(uri: str, production, coins: pd.DataFrame, read_bytes) -> tuple[list, list, list]:
    """(years, sigmas, readings) of the day's coins: through the version's raw-photo predictor when it has a
    year reader (the photos as uploaded, read like a request to the API), else the tensor model on the crops."""
    import numpy as np

    from coin_assets.ml.pyfunc import load_photo_predictor
    from coin_assets.ml.train import predict

    if not len(coins):
        return [], [], []
    if production.tags.get("input_kind") == "raw_photos":
        predictor = load_photo_predictor(uri)
        if predictor.reader is not None:
            def photo(raw_path, gold_path) -> bytes:
                # the bytes as uploaded, read like a request to the API (the reader reads up to 1600 px); the
                # gold image (512 px) when the upload is no longer in the store
                if isinstance(raw_path, str) and raw_path:
                    try:
                        return read_bytes(raw_path)
                    except Exception:  # noqa: BLE001 - any store's "missing": the gold image still answers
                        pass
                return read_bytes(gold_path)

            out = predictor.predict_photos(
                [photo(r, g) for r, g in zip(coins["front_raw_path"], coins["front_path"], strict=True)],
                [photo(r, g) for r, g in zip(coins["back_raw_path"], coins["back_path"], strict=True)])
            # a photo that cannot be scored keeps a row the review queue picks up: no year, the widest interval
            year = out["year"].fillna(float(np.nanmean(out["year"])) if out["year"].notna().any() else 1970.0)
            sigma = out["sigma"].fillna(float(UNREADABLE_SIGMA))
            readings = [r or None for r in out["reading"]]
            return list(year), list(sigma), readings
    model = ser.load_torch_model(uri)
    image_size = int(production.tags.get("image_size", 128))
    years, sigmas = predict(model, coin_records(coins), image_size=image_size, read_bytes=read_bytes)
    return list(years), list(sigmas), [None] * len(coins)


def prediction_assets(partitions: PartitionsDefinition) -> list[AssetsDefinition]:
    """coin_predictions and review_queue, one partition per upload day."""
    @asset(
        partitions_def=partitions,
        deps=["gold_images", promotion_decision],
        group_name="predictions",
        kinds={"pytorch", "duckdb"},
        pool=DUCKDB_WRITER_POOL,
        output_required=False,
        automation_condition=FOLLOW_EVERY_DAY,
    )
    def coin_predictions(
        context: AssetExecutionContext, storage: CoinStorage, duckdb: DuckDBResource,
        mlflow_registry: MlflowRegistry,
    ):
        """Every paired coin of the day scored by the model that is `production` when the run starts, with a
        90 % interval. A version with a year reader reads each front photo as the API does (the raw-photo
        predictor), and what it read (digits, confidence, where on the photo) is kept with the row. Rows are
        appended to the DuckDB `predictions` table (history is kept per model version) and the gold rows'
        model_version is filled in."""
        client = mlflow_registry.client()
        production = reg.get_alias_version(client, mlflow_registry.model_name, reg.PRODUCTION)
        if production is None:
            context.log.warning("no model has the `production` alias yet: nothing scored")
            return
        uri = reg.model_version_uri(mlflow_registry.model_name, production.version)
        with duckdb.get_connection() as conn:
            coins = preds.coins_to_score(conn, context.partition_key)
        years, sigmas, readings = _score(uri, production, coins, storage.store().read_bytes)
        frame = pd.DataFrame({
            "coin_id": coins["coin_id"],
            "partition_date": context.partition_key,
            "predicted_year": years,
            "sigma": sigmas,
            "reading": readings,
        })
        frame["lower_90"] = frame["predicted_year"] - Z_90 * frame["sigma"]
        frame["upper_90"] = frame["predicted_year"] + Z_90 * frame["sigma"]
        frame["model_name"] = mlflow_registry.model_name
        frame["model_version"] = str(production.version)
        frame["predicted_at"] = utcnow()
        frame["dagster_run_id"] = context.run.run_id
        with duckdb.get_connection() as conn:
            added = preds.insert_predictions(conn, frame)
            readers.refresh_snapshot(conn, duckdb.database, days=[context.partition_key],
                                     tables=("predictions",))
        yield MaterializeResult(metadata={
            "model_version": str(production.version),
            "coins_scored": len(frame),
            "new_rows": added,
            "mean_interval_years": float((frame["upper_90"] - frame["lower_90"]).mean()) if len(frame) else 0.0,
            "preview": table_preview(frame[["coin_id", "predicted_year", "lower_90", "upper_90"]]),
        })

    @asset(
        partitions_def=partitions,
        deps=[coin_predictions],
        group_name="predictions",
        kinds={"duckdb"},
        pool=DUCKDB_WRITER_POOL,
        automation_condition=FOLLOW_EVERY_DAY,
    )
    def review_queue(
        context: AssetExecutionContext, config: ReviewQueueConfig, duckdb: DuckDBResource,
        mlflow_registry: MlflowRegistry,
    ) -> MaterializeResult:
        """Predictions of the day that a person should look at: interval too wide, or disagreeing with a known
        label. Verdicts come back as `uploads/reviews/*.csv` (coin_id,year,reviewer) or `python -m
        coin_assets.cli review`."""
        production = reg.get_alias_version(mlflow_registry.client(), mlflow_registry.model_name,
                                           reg.PRODUCTION)
        version = str(production.version) if production else None
        with duckdb.get_connection() as conn:
            queue = (preds.refresh_review_queue(conn, context.partition_key, version, config.max_interval_years,
                                                config.label_tolerance_years)
                     if version else pd.DataFrame())
            readers.refresh_snapshot(conn, duckdb.database, days=[context.partition_key],
                                     tables=("review_queue",))
        return MaterializeResult(metadata={
            "model_version": version or "none",
            "queued": len(queue),
            "queue": table_preview(queue[["coin_id", "predicted_year", "lower_90", "upper_90", "label_year",
                                          "reason", "reading"]]
                                   if len(queue) else queue, limit=25),
        })

    return [coin_predictions, review_queue]
