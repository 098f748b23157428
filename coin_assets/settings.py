"""One settings source: every knob the platform reads from the environment, typed and validated.

``Settings`` is a pydantic-settings model. ``Settings()`` (or ``Settings.from_env()``) reads the
``COIN_ASSETS_*`` variables (and the standard ``MLFLOW_TRACKING_URI``, ``AWS_*`` and ``DAGSTER_HOME``);
a value that does not parse stops the start with a :class:`SettingsError` that names the variable.
Reading has no side effects: nothing is created on disk until a resource opens its system.

The README's configuration table is generated from the fields below
(``python -m coin_assets.settings``); a test fails when the two drift apart.
"""

from __future__ import annotations

import contextvars
import sys
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

API_WORKERS_ENV = "COIN_ASSETS_API_WORKERS"
PROFILES = ("local", "scale_out")
TABLE_START, TABLE_END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"

# from_env(mapping) reads only that mapping (tests, tools), never os.environ
_ONLY_GIVEN = contextvars.ContextVar("coin_assets_settings_only_given", default=False)


class SettingsError(ValueError):
    """A setting that does not parse, named by its environment variable."""


def _setting(default: Any, env: str | tuple[str, ...], meaning: str, shown: str | None = None, **kw) -> Any:
    names = (env,) if isinstance(env, str) else env
    return Field(default, validation_alias=AliasChoices(*names), description=meaning,
                 json_schema_extra={"env": list(names), "shown_default": shown}, **kw)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, populate_by_name=True, extra="ignore", env_ignore_empty=True)

    data_dir: str = _setting("data", "COIN_ASSETS_DATA_DIR",
                             "local root: uploads, layers, DuckDB, MLflow, request store")
    duckdb_path: str | None = _setting(None, "COIN_ASSETS_DUCKDB", "DuckDB metadata file",
                                       "<data dir>/coin_assets.duckdb")
    s3_bucket: str | None = _setting(None, "COIN_ASSETS_S3_BUCKET", "keep every layer in this bucket",
                                     "unset: local files")
    s3_prefix: str = _setting("coin_assets", "COIN_ASSETS_S3_PREFIX", "key prefix inside the bucket")
    s3_endpoint_url: str | None = _setting(None, "AWS_ENDPOINT_URL", "S3-compatible endpoint (MinIO, moto)",
                                           "unset: AWS")
    s3_region: str | None = _setting(None, ("AWS_REGION", "AWS_DEFAULT_REGION"),
                                     "S3 region (`AWS_REGION` first)", "boto3's default")
    aws_access_key_id: SecretStr | None = _setting(None, "AWS_ACCESS_KEY_ID",
                                                   "with the secret key: given to the S3 IO manager by name",
                                                   "unset: boto3's chain", exclude=True, repr=False)
    aws_secret_access_key: SecretStr | None = _setting(None, "AWS_SECRET_ACCESS_KEY",
                                                       "with the key id: given to the S3 IO manager by name",
                                                       "unset: boto3's chain", exclude=True, repr=False)
    mlflow_tracking_uri: str | None = _setting(None, "MLFLOW_TRACKING_URI", "MLflow tracking and registry",
                                               "sqlite:///<data dir>/mlflow/mlflow.db")
    mlflow_artifacts: str | None = _setting(None, "COIN_ASSETS_MLFLOW_ARTIFACTS",
                                            "artifact root of new experiments",
                                            "<data dir>/mlflow/artifacts; a server's own")
    mlflow_experiment: str = _setting("coin_year", "COIN_ASSETS_MLFLOW_EXPERIMENT", "MLflow experiment")
    model_name: str = _setting("coin_year_regressor", "COIN_ASSETS_MODEL_NAME", "registered model name")
    start_date: str = _setting("2025-01-01", "COIN_ASSETS_START_DATE", "first daily partition (YYYY-MM-DD)")
    settle_seconds: float = _setting(10.0, "COIN_ASSETS_SETTLE_SECONDS",
                                     "a file younger than this may still be being written", ge=0)
    archive_after_days: int = _setting(30, "COIN_ASSETS_ARCHIVE_AFTER_DAYS",
                                       "bronze older than this moves to `archive/`", ge=0)
    chunk_photos: int = _setting(2000, "COIN_ASSETS_CHUNK_PHOTOS",
                                 "photos per chunk of a day's decoding and coin finding (a step each)", ge=1)
    sensor_interval: int = _setting(30, "COIN_ASSETS_SENSOR_INTERVAL", "upload and review sensor interval (s)",
                                    gt=0)
    upload_sensor_days: int = _setting(7, "COIN_ASSETS_UPLOAD_SENSOR_DAYS",
                                       "newest day folders of the upload zone the upload sensor lists", ge=1)
    retrain_interval: int = _setting(300, "COIN_ASSETS_RETRAIN_INTERVAL", "retraining sensor interval (s)", gt=0)
    retrain_new_labels: int = _setting(50, "COIN_ASSETS_RETRAIN_NEW_LABELS",
                                       "new labelled coins that trigger retraining", ge=1)
    executor: Literal["in_process", "multiprocess", "celery", "k8s"] = _setting(
        "in_process", "COIN_ASSETS_EXECUTOR", "`in_process`, `multiprocess`, `celery`, `k8s`")
    profile: str | None = _setting(None, "COIN_ASSETS_PROFILE", "resource set: `local` or `scale_out`",
                                   "local (scale_out with celery/k8s)")
    api_host: str = _setting("127.0.0.1", "COIN_ASSETS_API_HOST", "serving API host")
    api_port: int = _setting(8000, "COIN_ASSETS_API_PORT", "serving API port", ge=1, le=65535)
    api_workers: int = _setting(1, API_WORKERS_ENV, "API processes sharing the cores (set by `--workers N`)",
                                ge=1)
    api_url: str | None = _setting(None, "COIN_ASSETS_API_URL", "where the web app finds the API",
                                   "http://<api host>:<api port>")
    serving_db_url: str | None = _setting(None, "COIN_ASSETS_SERVING_DB", "request store (SQLAlchemy URL)",
                                          "sqlite:///<data dir>/serving.db")
    reload_token: str | None = _setting(None, "COIN_ASSETS_RELOAD_TOKEN", "token of `POST /admin/reload`",
                                        "unset: reload disabled")
    api_tokens: str | None = _setting(None, "COIN_ASSETS_API_TOKENS",
                                      "`name:role:token,…` (role `user` or `reviewer`)",
                                      "unset: no feedback accepted")
    serving_poll_seconds: float = _setting(30.0, "COIN_ASSETS_SERVING_POLL_SECONDS",
                                           "how often the API checks the `production` alias (0: never)", ge=0)
    max_photo_bytes: int = _setting(20_000_000, "COIN_ASSETS_MAX_PHOTO_BYTES", "largest photo the API accepts",
                                    gt=0)
    serving_max_batch: int = _setting(16, "COIN_ASSETS_SERVING_MAX_BATCH", "coins per forward pass in the API",
                                      ge=1)
    serving_queue: int = _setting(64, "COIN_ASSETS_SERVING_QUEUE", "requests the API holds before answering 503",
                                  ge=1)
    serving_optimise: bool = _setting(True, "COIN_ASSETS_SERVING_OPTIMISE",
                                      "serve a traced TorchScript copy checked against eager (`0`: eager)")
    webapp_host: str = _setting("127.0.0.1", "COIN_ASSETS_WEBAPP_HOST", "web app host")
    webapp_port: int = _setting(8501, "COIN_ASSETS_WEBAPP_PORT", "web app port", ge=1, le=65535)
    dagster_port: int = _setting(3000, "COIN_ASSETS_DAGSTER_PORT", "dagster dev port (`make demo`)",
                                 ge=1, le=65535)
    workers: int = _setting(1, "COIN_ASSETS_WORKERS", "async request workers started by `make demo`", ge=0)
    request_lease_seconds: float = _setting(30.0, "COIN_ASSETS_REQUEST_LEASE",
                                            "seconds a worker holds a claimed request", gt=0)
    celery_broker: str = _setting("redis://127.0.0.1:6379/0", "COIN_ASSETS_CELERY_BROKER", "Celery broker")
    celery_backend: str | None = _setting(None, "COIN_ASSETS_CELERY_BACKEND", "Celery result backend",
                                          "the broker URL")
    duckdb_queue: str = _setting("duckdb", "COIN_ASSETS_DUCKDB_QUEUE", "Celery queue of the steps that write DuckDB")
    io_prefix: str | None = _setting(None, "COIN_ASSETS_IO_PREFIX", "key prefix of values passed between steps",
                                     "<s3 prefix>/io")
    registry_lock: str | None = _setting(None, "COIN_ASSETS_REGISTRY_LOCK",
                                         "lock of alias moves; `postgresql://…`",
                                         "a file beside the SQLite registry")
    celery_visibility_timeout: float = _setting(3600.0, "COIN_ASSETS_CELERY_VISIBILITY",
                                                "s before a lost worker's step is handed out again", gt=0)
    dagster_home: str | None = _setting(None, "DAGSTER_HOME",
                                        "Dagster instance folder (`make` sets `data/dagster_home`)",
                                        "unset: an ephemeral instance")

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource):
        return (init_settings,) if _ONLY_GIVEN.get() else (init_settings, env_settings)

    @field_validator("start_date")
    @classmethod
    def _iso_date(cls, value: str) -> str:
        date.fromisoformat(value)  # raises: not YYYY-MM-DD
        return value

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, value: str | None) -> str | None:
        if value is not None and value not in PROFILES:
            raise ValueError(f"expected local or scale_out, not {value!r}")
        return value

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The process environment, or only ``env`` when given. Errors name the variable."""
        token = _ONLY_GIVEN.set(env is not None)
        try:
            given = {k: v for k, v in (env or {}).items() if v not in (None, "")}
            return cls(**given)
        except ValidationError as err:
            raise SettingsError(_explain(err)) from None
        finally:
            _ONLY_GIVEN.reset(token)

    @property
    def aws_keys_in_env(self) -> bool:
        """AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are both set: resources refer to them by name."""
        return bool(self.aws_access_key_id and self.aws_secret_access_key)

    def with_overrides(self, **changes) -> Settings:
        return self.model_copy(update=changes)

    @property
    def resource_profile(self) -> str:
        """local: files, SQLite MLflow, Dagster's filesystem IO manager. scale_out: every value a step
        hands to another goes through S3, MLflow is a tracking server; chosen by default when the
        executor sends steps to other machines."""
        return self.profile or ("scale_out" if self.executor in ("celery", "k8s") else "local")

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


def _explain(err: ValidationError) -> str:
    lines = []
    for problem in err.errors():
        name = ".".join(str(part) for part in problem["loc"])
        lines.append(f"{name}={problem.get('input')!r}: {problem['msg']}")
    return "invalid settings: " + "; ".join(lines)


def configuration_table() -> str:
    """The README's configuration table, from the fields (one row a field, in declaration order)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for field in Settings.model_fields.values():
        extra = field.json_schema_extra or {}
        names = ", ".join(f"`{name}`" for name in extra["env"])
        shown = extra.get("shown_default")
        if shown is None:
            default = field.default
            shown = ("1" if default else "0") if isinstance(default, bool) else f"{default:g}" if isinstance(
                default, float) else str(default)
            shown = f"`{shown}`"
        rows.append(f"| {names} | {shown} | {field.description} |")
    return "\n".join(rows)


def readme_with_table(readme: str) -> str:
    """``readme`` with the text between the table markers replaced by :func:`configuration_table`."""
    head, rest = readme.split(TABLE_START, 1)
    _, tail = rest.split(TABLE_END, 1)
    return f"{head}{TABLE_START}\n{configuration_table()}\n{TABLE_END}{tail}"


if __name__ == "__main__":  # python -m coin_assets.settings [README.md]: print the table, or rewrite it in place
    if len(sys.argv) > 1:
        path = Path(sys.argv[1])
        path.write_text(readme_with_table(path.read_text()))
    else:
        print(configuration_table())
