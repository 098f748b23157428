"""One configurable resource per real system, built from `coin_assets.settings.Settings`.

Nothing here touches the disk at import or construction; folders are made when a system is opened.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from dagster import ConfigurableResource, EnvVar
from dagster_aws.s3 import S3Resource
from dagster_duckdb import DuckDBResource
from pydantic import Field, PrivateAttr

from coin_assets.core import serving_client
from coin_assets.core.storage import LocalStore, ObjectStore, S3Store
from coin_assets.settings import Settings


class CoinStorage(ConfigurableResource):
    """Where the image layers live: a local folder (default) or an S3 bucket via dagster-aws."""

    root: str = "data"
    s3_bucket: str | None = None
    s3_prefix: str = "coin_assets"
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    settle_seconds: float = Field(10.0, description="an upload modified more recently may still be being written")
    archive_after_days: int = Field(30, description="bronze older than this many days moves to archive/")
    upload_sensor_days: int = Field(7, description="the upload sensor lists the newest this many day folders of the "
                                                   "upload zone (older days: a backfill)")
    chunk_photos: int = Field(2000, description="photos per chunk of a day's decoding and coin finding: each "
                                                "chunk is a step of its own, on any worker")

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
    def from_settings(cls, settings: Settings) -> CoinStorage:
        return cls(
            root=settings.data_dir,
            s3_bucket=settings.s3_bucket,
            s3_prefix=settings.s3_prefix,
            s3_endpoint_url=settings.s3_endpoint_url,
            s3_region=settings.s3_region,
            settle_seconds=settings.settle_seconds,
            archive_after_days=settings.archive_after_days,
            chunk_photos=settings.chunk_photos,
            upload_sensor_days=settings.upload_sensor_days,
        )

    @classmethod
    def from_env(cls) -> CoinStorage:
        return cls.from_settings(Settings.from_env())


class MetadataDuckDB(DuckDBResource):
    """dagster-duckdb's resource; the database's folder is created when a connection opens."""

    @contextmanager
    def get_connection(self):
        if self.database not in ("", ":memory:") and "://" not in self.database:
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        with super().get_connection() as conn:
            yield conn


def duckdb_from_settings(settings: Settings) -> MetadataDuckDB:
    return MetadataDuckDB(database=settings.duckdb_file)


def duckdb_from_env() -> MetadataDuckDB:
    return duckdb_from_settings(Settings.from_env())


class MlflowRegistry(ConfigurableResource):
    """MLflow tracking and Model Registry settings shared by the model assets, sensors and CLI.

    Runs themselves are opened by dagster-mlflow's `mlflow_tracking` resource (key ``mlflow``),
    configured from the same values by `mlflow_tracking_from_env`.
    """

    tracking_uri: str
    experiment_name: str = "coin_year"
    model_name: str = "coin_year_regressor"
    artifact_root: str | None = None  # where a new experiment keeps artifacts (local default: data/mlflow/artifacts)
    lock_url: str | None = None  # registry lock (postgresql:// or a file); None: see ml.registry.lock_target
    retrain_new_labels: int = Field(50, description="labelled coins added since the production version "
                                    "that make the retraining sensor start a training run")

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
    def from_settings(cls, settings: Settings) -> MlflowRegistry:
        return cls(
            tracking_uri=settings.tracking_uri,
            experiment_name=settings.mlflow_experiment,
            model_name=settings.model_name,
            artifact_root=settings.mlflow_artifact_root,
            lock_url=settings.registry_lock,
            retrain_new_labels=settings.retrain_new_labels,
        )

    @classmethod
    def from_env(cls) -> MlflowRegistry:
        return cls.from_settings(Settings.from_env())


class ServingApi(ConfigurableResource):
    """The serving API: told to check the `production` alias after a promotion or rollback, asked
    which version it serves, and its request store read back for the audit tables."""

    url: str = Field("http://127.0.0.1:8000", description="base URL of the serving API")
    reload_token: str | None = Field(None, description="token of POST /admin/reload (unset: the API is "
                                     "not asked to reload and follows the alias by polling)")
    request_store_url: str = Field(description="SQLAlchemy URL of the API's request store")

    def request_reload(self) -> dict:
        return serving_client.request_reload(base_url=self.url, token=self.reload_token)

    def health(self) -> dict:
        return serving_client.serving_health(base_url=self.url)

    @classmethod
    def from_settings(cls, settings: Settings) -> ServingApi:
        return cls(url=settings.api_base_url, request_store_url=settings.serving_db,
                   # by name, so the token shows as an environment variable in the UI, never its value
                   reload_token=EnvVar("COIN_ASSETS_RELOAD_TOKEN") if settings.reload_token else None)


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


def local_resources(settings: Settings) -> dict:
    """One machine: layers in a folder (or S3), MLflow in SQLite, step outputs through Dagster's
    default filesystem IO manager (under $DAGSTER_HOME/storage)."""
    registry = MlflowRegistry.from_settings(settings)
    return {
        "storage": CoinStorage.from_settings(settings),
        "duckdb": duckdb_from_settings(settings),
        "mlflow_registry": registry,
        "mlflow": mlflow_tracking_for(registry),
        "serving_api": ServingApi.from_settings(settings),
    }


def scale_out_resources(settings: Settings) -> dict:
    """Steps on several machines: every value a step hands to the next goes through S3
    (`io_manager`), the layers are in S3, MLflow is a tracking server. The DuckDB file stays with
    the one worker that serves the DuckDB queue (see coin_assets/defs/executors.py)."""
    from coin_assets.defs.io_managers import io_manager_from_settings

    problems = []
    if not settings.s3_bucket:
        problems.append("COIN_ASSETS_S3_BUCKET (layers and step outputs must be on object storage)")
    if "://" not in settings.tracking_uri or settings.tracking_uri.startswith(("sqlite:", "file:")):
        problems.append("MLFLOW_TRACKING_URI pointing at a tracking server (http://…), not a local file")
    if not (settings.registry_lock or "").startswith("postgresql"):
        problems.append("COIN_ASSETS_REGISTRY_LOCK, a postgresql:// URL every worker reaches (promotions and "
                        "rollbacks on several machines must share one lock; the password from PGPASSWORD)")
    if problems:
        raise ValueError("scale_out profile needs " + "; ".join(problems))
    return {**local_resources(settings), "io_manager": io_manager_from_settings(settings)}


def default_resources(settings: Settings | None = None) -> dict:
    """The resources every entry point uses (Definitions, the CLI), from one Settings value:
    `local_resources` or `scale_out_resources` by `Settings.resource_profile`."""
    settings = settings or Settings.from_env()
    if settings.resource_profile == "scale_out":
        return scale_out_resources(settings)
    return local_resources(settings)
