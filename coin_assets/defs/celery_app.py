"""The Celery app the workers run: `celery -A coin_assets.defs.celery_app worker -Q dagster,duckdb`.

It is dagster-celery's app (its `execute_plan` task runs one Dagster step in the worker process)
built with the same broker, backend and settings as the executor (coin_assets/defs/executors.py),
from `Settings.from_env()` of the worker's environment. A worker that serves the DuckDB queue must
be the only one that does, on the machine that holds the DuckDB file.
"""

from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from coin_assets.defs.executors import CELERY_APP_CONFIG
from coin_assets.settings import Settings

_settings = Settings.from_env()

app = make_app(
    CeleryExecutor.for_cli(
        broker=_settings.celery_broker,
        backend=_settings.celery_result_backend,
        config_source={**CELERY_APP_CONFIG, "task_default_queue": "dagster", "task_default_priority": 5},
    ).app_args()
)
execute_plan = create_task(app)
