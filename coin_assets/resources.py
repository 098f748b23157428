"""One configurable resource per real system, read from environment variables with local defaults.

| variable                      | default                         | meaning                                  |
|-------------------------------|---------------------------------|------------------------------------------|
| COIN_ASSETS_DATA_DIR          | data                            | local root of uploads/bronze/silver/gold |
| COIN_ASSETS_S3_BUCKET         | (unset: local files)            | keep every layer in this bucket instead  |
| COIN_ASSETS_S3_PREFIX         | coin_assets                     | key prefix inside the bucket             |
| AWS_ENDPOINT_URL              | (AWS)                           | S3-compatible endpoint (MinIO, moto)     |
| COIN_ASSETS_DUCKDB            | <data dir>/coin_assets.duckdb   | DuckDB metadata database file            |
| MLFLOW_TRACKING_URI           | sqlite:///<data dir>/mlflow/mlflow.db | MLflow tracking + registry         |
| COIN_ASSETS_MLFLOW_EXPERIMENT | coin_year                       | MLflow experiment                        |
| COIN_ASSETS_MODEL_NAME        | coin_year_regressor             | registered model name                    |
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import ConfigurableResource
from dagster_aws.s3 import S3Resource
from dagster_duckdb import DuckDBResource
from pydantic import PrivateAttr

from coin_assets.core.storage import LocalStore, ObjectStore, S3Store


def data_dir() -> str:
    return os.getenv("COIN_ASSETS_DATA_DIR", "data")


class CoinStorage(ConfigurableResource):
    """Where the image layers live: a local folder (default) or an S3 bucket via dagster-aws."""

    root: str = "data"
    s3_bucket: str | None = None
    s3_prefix: str = "coin_assets"
    s3_endpoint_url: str | None = None
    s3_region: str | None = None

    _store: ObjectStore | None = PrivateAttr(default=None)

    def store(self) -> ObjectStore:
        if self._store is None:
            if self.s3_bucket:
                client = S3Resource(endpoint_url=self.s3_endpoint_url, region_name=self.s3_region).get_client()
                self._store = S3Store(client, self.s3_bucket, self.s3_prefix)
            else:
                Path(self.root).mkdir(parents=True, exist_ok=True)
                self._store = LocalStore(self.root)
        return self._store

    @classmethod
    def from_env(cls) -> CoinStorage:
        return cls(
            root=data_dir(),
            s3_bucket=os.getenv("COIN_ASSETS_S3_BUCKET") or None,
            s3_prefix=os.getenv("COIN_ASSETS_S3_PREFIX", "coin_assets"),
            s3_endpoint_url=os.getenv("AWS_ENDPOINT_URL") or None,
            s3_region=os.getenv("AWS_REGION") or os.getenv("AWS_DEFAULT_REGION") or None,
        )


def duckdb_from_env() -> DuckDBResource:
    database = os.getenv("COIN_ASSETS_DUCKDB") or str(Path(data_dir()) / "coin_assets.duckdb")
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    return DuckDBResource(database=database)


class MlflowRegistry(ConfigurableResource):
    """MLflow tracking and Model Registry settings shared by the model assets, sensors and CLI.

    Runs themselves are opened by dagster-mlflow's `mlflow_tracking` resource (key ``mlflow``),
    configured from the same values by `mlflow_tracking_from_env`.
    """

    tracking_uri: str
    experiment_name: str = "coin_year"
    model_name: str = "coin_year_regressor"
    artifact_root: str | None = None  # where a new experiment keeps artifacts (local default: data/mlflow/artifacts)

    def activate(self):
        import mlflow

        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        return mlflow

    def client(self):
        from mlflow import MlflowClient

        self.activate()
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def ensure_experiment(self) -> str:
        """Create the experiment with its artifact location under the data root (MLflow would
        otherwise put artifacts in ./mlruns of whatever folder the process started in)."""
        client = self.client()
        experiment = client.get_experiment_by_name(self.experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        location = self.artifact_root
        if location and "://" not in location:
            Path(location).mkdir(parents=True, exist_ok=True)
            location = Path(location).resolve().as_uri()
        return client.create_experiment(self.experiment_name, artifact_location=location)

    @classmethod
    def from_env(cls) -> MlflowRegistry:
        root = Path(data_dir()).resolve()
        default_uri = f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
        return cls(
            tracking_uri=os.getenv("MLFLOW_TRACKING_URI") or default_uri,
            experiment_name=os.getenv("COIN_ASSETS_MLFLOW_EXPERIMENT", "coin_year"),
            model_name=os.getenv("COIN_ASSETS_MODEL_NAME", "coin_year_regressor"),
            artifact_root=os.getenv("COIN_ASSETS_MLFLOW_ARTIFACTS") or str(root / "mlflow" / "artifacts"),
        )


def mlflow_tracking_for(registry: MlflowRegistry):
    """dagster-mlflow's run-tracking resource pointed at the same tracking server.

    It is wrapped only to create the experiment first with its artifact location (MLflow would
    otherwise put artifacts in ./mlruns of whatever folder the process started in).
    """
    from dagster import resource
    from dagster_mlflow import mlflow_tracking

    @resource(config_schema=mlflow_tracking.config_schema, description=mlflow_tracking.description)
    def coin_mlflow_tracking(context):
        registry.ensure_experiment()
        yield from mlflow_tracking.resource_fn(context)

    return coin_mlflow_tracking.configured(
        {"experiment_name": registry.experiment_name, "mlflow_tracking_uri": registry.tracking_uri}
    )


def default_resources() -> dict:
    """The resources every entry point uses (Definitions, the CLI), from the environment."""
    registry = MlflowRegistry.from_env()
    return {
        "storage": CoinStorage.from_env(),
        "duckdb": duckdb_from_env(),
        "mlflow_registry": registry,
        "mlflow": mlflow_tracking_for(registry),
    }
