"""The Celery app the workers run: `celery -A coin_assets.defs.celery_app worker -Q dagster,duckdb`.

It is dagster-celery's app (its `execute_plan` task runs one Dagster step in the worker process)
built with the same broker, backend and settings as the executor (coin_assets/defs/executors.py).
`create_celery_app(settings)` builds it; the module attribute `app`, which Celery's `-A` looks up,
is built on first access from `Settings.from_env()` of the worker's environment (importing this
module reads no settings). A worker that serves the DuckDB queue must be the only one that does, on
the machine that holds the DuckDB file.

A worker that dies mid-step (killed, machine lost) never acknowledges its step (acks_late): the
message stays in Redis's unacked set and any worker of that queue puts it back once it is older
than the visibility timeout (COIN_ASSETS_CELERY_VISIBILITY, default 1 h). The timeout must exceed
the longest step, or a step still running is handed out a second time; steps are idempotent
(re-running one gives the same tables and files), so a late duplicate wastes time, not data.
"""

import functools
import signal

from celery import Celery
from celery.signals import task_postrun
from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from coin_assets.defs.executors import CELERY_APP_CONFIG
from coin_assets.settings import Settings


def create_celery_app(settings: Settings) -> Celery:
    """dagster-celery's app on ``settings``' broker and result backend, with its `execute_plan` task."""
    app = make_app(
        CeleryExecutor.for_cli(
            broker=settings.celery_broker,
            backend=settings.celery_result_backend,
            config_source={
                **CELERY_APP_CONFIG, "task_default_queue": "dagster", "task_default_priority": 5,
                # restore abandoned steps every few seconds once they pass the visibility timeout
                "broker_transport_options": {
                    "visibility_timeout": settings.celery_visibility_timeout,
                    "unacked_restore_interval": min(10.0, max(1.0, settings.celery_visibility_timeout / 10)),
                    "unacked_restore_throttle": 1,
                },
            },
        ).app_args()
    )
    create_task(app, shared=False)  # this app's own task: another app built in the process gets its own
    return app


@functools.cache
def worker_app() -> Celery:
    """This process's app, from its environment: built once, on first use."""
    return create_celery_app(Settings.from_env())


def __getattr__(name: str):
    # `celery -A coin_assets.defs.celery_app` reads the module's `app`: the settings are read then
    if name == "app":
        return worker_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@task_postrun.connect
def restore_default_sigterm(**_) -> None:
    """In the pool process, after each step: SIGTERM back to its default (terminate).

    Dagster maps SIGTERM onto SIGINT's handler when a step ends, and Celery's pool processes ignore
    SIGINT, so a process that has run a step would ignore SIGTERM for good. The autoscaler shrinks
    the pool by sending SIGTERM to idle processes (billiard's terminate_controlled): without this,
    "Scaling down" is logged and the processes stay alive."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
