"""The Celery app the workers run: `celery -A coin_assets.defs.celery_app worker -Q dagster,duckdb`.

It is dagster-celery's app (its `execute_plan` task runs one Dagster step in the worker process)
built with the same broker, backend and settings as the executor (coin_assets/defs/executors.py),
from `Settings.from_env()` of the worker's environment. A worker that serves the DuckDB queue must
be the only one that does, on the machine that holds the DuckDB file.

A worker that dies mid-step (killed, machine lost) never acknowledges its step (acks_late): the
message stays in Redis's unacked set and any worker of that queue puts it back once it is older
than the visibility timeout (COIN_ASSETS_CELERY_VISIBILITY, default 1 h). The timeout must exceed
the longest step, or a step still running is handed out a second time; steps are idempotent
(re-running one gives the same tables and files), so a late duplicate wastes time, not data.
"""

import signal

from celery.signals import task_postrun
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
        config_source={
            **CELERY_APP_CONFIG, "task_default_queue": "dagster", "task_default_priority": 5,
            # restore abandoned steps every few seconds once they pass the visibility timeout
            "broker_transport_options": {
                "visibility_timeout": _settings.celery_visibility_timeout,
                "unacked_restore_interval": min(10.0, max(1.0, _settings.celery_visibility_timeout / 10)),
                "unacked_restore_throttle": 1,
            },
        },
    ).app_args()
)
execute_plan = create_task(app)


@task_postrun.connect
def restore_default_sigterm(**_) -> None:
    """In the pool process, after each step: SIGTERM back to its default (terminate).

    Dagster maps SIGTERM onto SIGINT's handler when a step ends, and Celery's pool processes ignore
    SIGINT, so a process that has run a step would ignore SIGTERM for good. The autoscaler shrinks
    the pool by sending SIGTERM to idle processes (billiard's terminate_controlled): without this,
    "Scaling down" is logged and the processes stay alive."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
