"""One settings source: every knob the platform reads from the environment, with local defaults.

``Settings.from_env()`` is the only place that reads ``COIN_ASSETS_*`` (and the standard
``MLFLOW_TRACKING_URI`` / ``AWS_*``) variables. It has no side effects: nothing is created on disk
until a resource actually opens its system. Every entry point (Dagster definitions, the CLI, the
serving API, the worker) builds its resources from one ``Settings`` value.

| variable                          | default                                | meaning                                   |
|-----------------------------------|----------------------------------------|-------------------------------------------|
| COIN_ASSETS_DATA_DIR              | data                                   | local root of uploads/bronze/silver/gold  |
| COIN_ASSETS_DUCKDB                | <data dir>/coin_assets.duckdb          | DuckDB metadata database file             |
| COIN_ASSETS_S3_BUCKET             | (unset: local files)                   | keep every layer in this bucket instead   |
| COIN_ASSETS_S3_PREFIX             | coin_assets                            | key prefix inside the bucket              |
| AWS_ENDPOINT_URL                  | (AWS)                                  | S3-compatible endpoint (MinIO, moto)      |
| AWS_REGION / AWS_DEFAULT_REGION   | (boto3 default)                        | S3 region                                 |
| MLFLOW_TRACKING_URI               | sqlite:///<data dir>/mlflow/mlflow.db  | MLflow tracking + registry                |
| COIN_ASSETS_MLFLOW_ARTIFACTS      | <data dir>/mlflow/artifacts (server: its own) | artifact root of a new experiment  |
| COIN_ASSETS_MLFLOW_EXPERIMENT     | coin_year                              | MLflow experiment                         |
| COIN_ASSETS_MODEL_NAME            | coin_year_regressor                    | registered model name                     |
| COIN_ASSETS_START_DATE            | 2025-01-01                             | first daily partition                     |
| COIN_ASSETS_SETTLE_SECONDS        | 10                                     | a file younger than this may be in writing|
| COIN_ASSETS_ARCHIVE_AFTER_DAYS    | 30                                     | bronze older than this moves to archive/  |
| COIN_ASSETS_SENSOR_INTERVAL       | 30                                     | upload sensor interval (s)                |
| COIN_ASSETS_RETRAIN_INTERVAL      | 300                                    | retraining sensor interval (s)            |
| COIN_ASSETS_RETRAIN_NEW_LABELS    | 50                                     | new labelled coins that trigger retraining|
| COIN_ASSETS_REVIEW_MAX_INTERVAL   | 20                                     | 90 % interval width (years) sent to review|
| COIN_ASSETS_EXECUTOR              | in_process                             | in_process, multiprocess, celery, k8s     |
| COIN_ASSETS_API_HOST / _API_PORT  | 127.0.0.1 / 8000                       | serving API address                       |
| COIN_ASSETS_API_WORKERS           | 1 (set by `python -m coin_assets.serving --workers N`) | API processes sharing the cores |
| COIN_ASSETS_SERVING_DB            | sqlite:///<data dir>/serving.db        | serving request store (SQLAlchemy URL)    |
| COIN_ASSETS_API_URL               | http://<api host>:<api port>           | where the web app finds the API           |
| COIN_ASSETS_RELOAD_TOKEN          | (unset: reload endpoint disabled)      | token of POST /admin/reload               |
| COIN_ASSETS_API_TOKENS            | (unset: no feedback accepted)          | name:role:token,... (role user/reviewer)  |
| COIN_ASSETS_SERVING_POLL_SECONDS  | 30                                     | how often the API checks the alias        |
| COIN_ASSETS_MAX_PHOTO_BYTES       | 20000000                               | largest photo the API accepts             |
| COIN_ASSETS_SERVING_MAX_BATCH     | 16                                     | coins per forward pass in the API         |
| COIN_ASSETS_SERVING_QUEUE         | 64                                     | requests the API holds before 503         |
| COIN_ASSETS_WEBAPP_HOST / _PORT   | 127.0.0.1 / 8501                       | Streamlit web app address (make demo)     |
| COIN_ASSETS_DAGSTER_PORT          | 3000                                   | dagster dev port (make demo)              |
| COIN_ASSETS_WORKERS               | 1                                      | async request workers started by make demo|
| COIN_ASSETS_REQUEST_LEASE         | 30                                     | seconds a worker holds a claimed request  |
| COIN_ASSETS_PROFILE               | local (scale_out with celery/k8s)      | which resource set: local or scale_out    |
| COIN_ASSETS_CELERY_BROKER         | redis://127.0.0.1:6379/0               | Celery broker (read as an env source)     |
| COIN_ASSETS_CELERY_BACKEND        | (the broker URL)                       | Celery result backend                     |
| COIN_ASSETS_DUCKDB_QUEUE          | duckdb                                 | Celery queue of the steps writing DuckDB  |
| COIN_ASSETS_IO_PREFIX             | <s3 prefix>/io                         | key prefix of values passed between steps |
| COIN_ASSETS_REGISTRY_LOCK         | (a file beside an SQLite registry)     | lock of alias moves: postgresql:// or path|
| COIN_ASSETS_CELERY_VISIBILITY     | 3600                                   | s before a step of a lost worker is redelivered (> longest step) |
| DAGSTER_HOME                      | (unset: an ephemeral instance)         | Dagster instance folder (dagster.yaml)    |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

API_WORKERS_ENV = "COIN_ASSETS_API_WORKERS"


def _get(env: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    value = env.get(name)
    return value if value not in (None, "") else default


@dataclass(frozen=True)
class Settings:
    data_dir: str = "data"
    duckdb_path: str | None = None
    s3_bucket: str | None = None
    s3_prefix: str = "coin_assets"
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    mlflow_tracking_uri: str | None = None
    mlflow_artifacts: str | None = None
    mlflow_experiment: str = "coin_year"
    model_name: str = "coin_year_regressor"
    start_date: str = "2025-01-01"
    settle_seconds: float = 10.0
    archive_after_days: int = 30
    sensor_interval: int = 30
    retrain_interval: int = 300
    retrain_new_labels: int = 50
    review_max_interval: float = 20.0
    executor: str = "in_process"
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_workers: int = 1
    serving_db_url: str | None = None
    api_url: str | None = None
    reload_token: str | None = None
    api_tokens: str | None = None
    serving_poll_seconds: float = 30.0
    max_photo_bytes: int = 20_000_000
    serving_max_batch: int = 16
    serving_queue: int = 64
    serving_optimise: bool = True  # serve a traced, frozen TorchScript copy of the model (checked against eager)
    webapp_host: str = "127.0.0.1"
    webapp_port: int = 8501
    dagster_port: int = 3000
    workers: int = 1
    request_lease_seconds: float = 30.0
    profile: str | None = None
    celery_broker: str = "redis://127.0.0.1:6379/0"
    celery_backend: str | None = None
    duckdb_queue: str = "duckdb"
    io_prefix: str | None = None
    dagster_home: str | None = None
    registry_lock: str | None = None
    celery_visibility_timeout: float = 3600.0
    aws_keys_in_env: bool = False  # AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY set: resources refer to them by name

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        d = cls()
        return cls(
            data_dir=_get(env, "COIN_ASSETS_DATA_DIR", d.data_dir),
            duckdb_path=_get(env, "COIN_ASSETS_DUCKDB"),
            s3_bucket=_get(env, "COIN_ASSETS_S3_BUCKET"),
            s3_prefix=_get(env, "COIN_ASSETS_S3_PREFIX", d.s3_prefix),
            s3_endpoint_url=_get(env, "AWS_ENDPOINT_URL"),
            s3_region=_get(env, "AWS_REGION", _get(env, "AWS_DEFAULT_REGION")),
            mlflow_tracking_uri=_get(env, "MLFLOW_TRACKING_URI"),
            mlflow_artifacts=_get(env, "COIN_ASSETS_MLFLOW_ARTIFACTS"),
            mlflow_experiment=_get(env, "COIN_ASSETS_MLFLOW_EXPERIMENT", d.mlflow_experiment),
            model_name=_get(env, "COIN_ASSETS_MODEL_NAME", d.model_name),
            start_date=_get(env, "COIN_ASSETS_START_DATE", d.start_date),
            settle_seconds=float(_get(env, "COIN_ASSETS_SETTLE_SECONDS", str(d.settle_seconds))),
            archive_after_days=int(_get(env, "COIN_ASSETS_ARCHIVE_AFTER_DAYS", str(d.archive_after_days))),
            sensor_interval=int(_get(env, "COIN_ASSETS_SENSOR_INTERVAL", str(d.sensor_interval))),
            retrain_interval=int(_get(env, "COIN_ASSETS_RETRAIN_INTERVAL", str(d.retrain_interval))),
            retrain_new_labels=int(_get(env, "COIN_ASSETS_RETRAIN_NEW_LABELS", str(d.retrain_new_labels))),
            review_max_interval=float(_get(env, "COIN_ASSETS_REVIEW_MAX_INTERVAL", str(d.review_max_interval))),
            executor=_get(env, "COIN_ASSETS_EXECUTOR", d.executor),
            api_host=_get(env, "COIN_ASSETS_API_HOST", d.api_host),
            api_port=int(_get(env, "COIN_ASSETS_API_PORT", str(d.api_port))),
            api_workers=max(1, int(_get(env, API_WORKERS_ENV, str(d.api_workers)))),
            serving_db_url=_get(env, "COIN_ASSETS_SERVING_DB"),
            api_url=_get(env, "COIN_ASSETS_API_URL"),
            reload_token=_get(env, "COIN_ASSETS_RELOAD_TOKEN"),
            api_tokens=_get(env, "COIN_ASSETS_API_TOKENS"),
            serving_poll_seconds=float(_get(env, "COIN_ASSETS_SERVING_POLL_SECONDS", str(d.serving_poll_seconds))),
            max_photo_bytes=int(_get(env, "COIN_ASSETS_MAX_PHOTO_BYTES", str(d.max_photo_bytes))),
            serving_max_batch=int(_get(env, "COIN_ASSETS_SERVING_MAX_BATCH", str(d.serving_max_batch))),
            serving_queue=int(_get(env, "COIN_ASSETS_SERVING_QUEUE", str(d.serving_queue))),
            serving_optimise=_get(env, "COIN_ASSETS_SERVING_OPTIMISE", "1").strip().lower() not in ("0", "false", "no", "off"),
            webapp_host=_get(env, "COIN_ASSETS_WEBAPP_HOST", d.webapp_host),
            webapp_port=int(_get(env, "COIN_ASSETS_WEBAPP_PORT", str(d.webapp_port))),
            dagster_port=int(_get(env, "COIN_ASSETS_DAGSTER_PORT", str(d.dagster_port))),
            workers=int(_get(env, "COIN_ASSETS_WORKERS", str(d.workers))),
            request_lease_seconds=float(_get(env, "COIN_ASSETS_REQUEST_LEASE", str(d.request_lease_seconds))),
            profile=_get(env, "COIN_ASSETS_PROFILE"),
            celery_broker=_get(env, "COIN_ASSETS_CELERY_BROKER", d.celery_broker),
            celery_backend=_get(env, "COIN_ASSETS_CELERY_BACKEND"),
            duckdb_queue=_get(env, "COIN_ASSETS_DUCKDB_QUEUE", d.duckdb_queue),
            io_prefix=_get(env, "COIN_ASSETS_IO_PREFIX"),
            dagster_home=_get(env, "DAGSTER_HOME"),
            registry_lock=_get(env, "COIN_ASSETS_REGISTRY_LOCK"),
            celery_visibility_timeout=float(_get(env, "COIN_ASSETS_CELERY_VISIBILITY", str(d.celery_visibility_timeout))),
            aws_keys_in_env=bool(_get(env, "AWS_ACCESS_KEY_ID") and _get(env, "AWS_SECRET_ACCESS_KEY")),
        )

    def with_overrides(self, **changes) -> Settings:
        return replace(self, **changes)

    @property
    def resource_profile(self) -> str:
        """local: files, SQLite MLflow, Dagster's filesystem IO manager. scale_out: every value a step
        hands to another goes through S3, MLflow is a tracking server; chosen by default when the
        executor sends steps to other machines."""
        profile = self.profile or ("scale_out" if self.executor in ("celery", "k8s") else "local")
        if profile not in ("local", "scale_out"):
            raise ValueError(f"COIN_ASSETS_PROFILE={profile!r}: expected local or scale_out")
        return profile

    @property
    def celery_result_backend(self) -> str:
        return self.celery_backend or self.celery_broker

    @property
    def io_key_prefix(self) -> str:
        return self.io_prefix or f"{self.s3_prefix}/io"

    # Derived locations: computed, never created here.
    @property
    def data_root(self) -> Path:
        return Path(self.data_dir)

    @property
    def duckdb_file(self) -> str:
        return self.duckdb_path or str(self.data_root / "coin_assets.duckdb")

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{(self.data_root / 'mlflow' / 'mlflow.db').resolve()}"

    @property
    def mlflow_artifact_root(self) -> str | None:
        """Artifact root of a new experiment. With a tracking server, None: the server's own
        (`mlflow server --artifacts-destination s3://…`, proxied), so no worker writes to its disk."""
        if self.mlflow_artifacts:
            return self.mlflow_artifacts
        if self.tracking_uri.startswith(("http://", "https://")):
            return None
        return str((self.data_root / "mlflow" / "artifacts").resolve())

    @property
    def serving_db(self) -> str:
        return self.serving_db_url or f"sqlite:///{(self.data_root / 'serving.db').resolve()}"

    @property
    def api_base_url(self) -> str:
        return self.api_url or f"http://{self.api_host}:{self.api_port}"
