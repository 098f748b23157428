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

    def local_path(self, key: str) -> str | None:
        """A filesystem path for a key when the store is local (None on S3)."""
        store = self.store()
        return str(store.path(key)) if isinstance(store, LocalStore) else None

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
