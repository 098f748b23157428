"""The executor, chosen by COIN_ASSETS_EXECUTOR: in_process (default), multiprocess, celery or k8s
(`executor_from_settings`, with the settings the definitions are loaded with).

On one laptop the steps that write DuckDB run one at a time anyway (pool `duckdb_writer`);
in_process runs a whole run in one process. multiprocess runs each step in a process forked from
a forkserver that preloaded the definitions' modules (no per-step import of torch/MLflow); only the writer
steps take the pool slot, so the decode step and the read-only checks of several runs overlap.

celery (dagster-celery on Redis, `scale` extra) routes by pool: every step in pool `duckdb_writer`
goes to the Celery queue `COIN_ASSETS_DUCKDB_QUEUE` (default `duckdb`), served by the one worker
that owns the DuckDB file; every other step (training, evaluation, promotion) goes to the default
queue `dagster`, served by every worker. The broker URL is read from the environment variable
COIN_ASSETS_CELERY_BROKER by Dagster's config system (an env source), so it never lands in run
config or the run storage. k8s runs each step in a pod (dagster-k8s, on paper: deploy/helm/).

The routed executor is dagster-celery's CeleryExecutor, built by dagster-celery's own (public)
executor definition from the same config, with one change: the queue of each step. Choosing it per
step needs dagster-celery's private task submission, kept in coin_assets/defs/dagster_celery_internals.py
(pinned by coin_assets_tests/test_private_api_adapters.py).
"""

from __future__ import annotations

from dagster import (
    ExecutorDefinition,
    Field,
    StringSource,
    executor,
    in_process_executor,
    multiprocess_executor,
)

from coin_assets.defs.pools import DUCKDB_WRITER_POOL
from coin_assets.settings import Settings


def _celery_config_schema() -> dict:
    from dagster_celery.executor import CELERY_CONFIG

    return {
        **CELERY_CONFIG,
        "duckdb_queue": Field(StringSource, is_required=False, default_value="duckdb",
                              description="Celery queue of the steps in pool duckdb_writer"),
    }


def queue_for_step(step, default_queue: str, duckdb_queue: str) -> str:
    """The Celery queue of one step: an explicit `dagster-celery/queue` tag wins, then the DuckDB
    writers' queue for steps in pool `duckdb_writer`, then the default queue."""
    from dagster_celery.tags import DAGSTER_CELERY_QUEUE_TAG

    if DAGSTER_CELERY_QUEUE_TAG in step.tags:
        return step.tags[DAGSTER_CELERY_QUEUE_TAG]
    return duckdb_queue if step.pool == DUCKDB_WRITER_POOL else default_queue


def _routed_celery_executor_class():
    from dagster_celery.executor import CeleryExecutor

    from coin_assets.defs.dagster_celery_internals import submit_step

    class PoolRoutedCeleryExecutor(CeleryExecutor):
        """dagster-celery's executor, each step sent to the queue of `queue_for_step`."""

        def __init__(self, duckdb_queue: str, **kwargs):
            super().__init__(**kwargs)
            self.duckdb_queue = duckdb_queue

        def execute(self, plan_context, execution_plan):
            from dagster_celery.core_execution_loop import core_celery_execution_loop

            def submit(app, context, step, queue, priority, known_state):
                routed = queue_for_step(step, queue, self.duckdb_queue)
                return submit_step(app, context, step, routed, priority, known_state)

            return core_celery_execution_loop(plan_context, execution_plan, step_execution_fn=submit)

    return PoolRoutedCeleryExecutor


def routed_celery_executor_def() -> ExecutorDefinition:
    from dagster import multiple_process_executor_requirements
    from dagster_celery import celery_executor

    @executor(name="celery", config_schema=_celery_config_schema(),
              requirements=multiple_process_executor_requirements())
    def celery_pool_routed_executor(init_context):
        # dagster-celery's own executor from the same config (its retry mode, broker, backend, ...)
        base = celery_executor.executor_creation_fn(init_context)
        return _routed_celery_executor_class()(
            duckdb_queue=init_context.executor_config["duckdb_queue"],
            retries=base.retries,
            broker=base.broker,
            backend=base.backend,
            include=base.include,
            config_source=init_context.executor_config.get("config_source"),
        )

    return celery_pool_routed_executor


# Celery settings shared by the executor (producer side) and the workers (coin_assets/defs/celery_app.py).
# acks_late + reject_on_worker_lost: a step whose worker process dies is put back on the queue
# instead of being lost; prefetch 1: a worker holds at most the step it runs.
CELERY_APP_CONFIG = {
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
    "broker_connection_retry_on_startup": True,
    "result_expires": 86400,
}


def celery_executor_config(settings: Settings) -> dict:
    return {
        "broker": {"env": "COIN_ASSETS_CELERY_BROKER"},
        # the result backend defaults to the broker (Redis), read from the same variable
        "backend": {"env": "COIN_ASSETS_CELERY_BACKEND" if settings.celery_backend else "COIN_ASSETS_CELERY_BROKER"},
        "duckdb_queue": settings.duckdb_queue,
        "config_source": dict(CELERY_APP_CONFIG),
    }


def executor_from_settings(settings: Settings) -> ExecutorDefinition:
    """The executor ``settings.executor`` names, configured from ``settings``."""
    name = settings.executor
    if name == "multiprocess":
        # Each step is a fork of a server that imported the definitions' modules once, not a fresh
        # interpreter importing torch, MLflow and Dagster again (~4 s a step).
        return multiprocess_executor.configured(
            {"start_method": {"forkserver": {"preload_modules": ["coin_assets.definitions"]}}})
    if name == "in_process":
        return in_process_executor
    if name == "celery":
        return routed_celery_executor_def().configured(celery_executor_config(settings))
    if name == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    raise ValueError(f"COIN_ASSETS_EXECUTOR={name!r}: expected multiprocess, in_process, celery or k8s")
