"""The executor, chosen by COIN_ASSETS_EXECUTOR: in_process (default), multiprocess, celery or k8s.

On one laptop the steps that write DuckDB run one at a time anyway (pool `duckdb_writer`), so a
process per step only adds start-up time; in_process runs a whole run in one process.

celery and k8s need the `scale` extra (`pip install -e '.[scale]'`) and a Postgres-backed instance
(deploy/postgres/dagster.yaml); their own settings come from run config as documented by
dagster-celery and dagster-k8s.
"""

from dagster import ExecutorDefinition, in_process_executor, multiprocess_executor

from coin_assets.settings import Settings


def executor_from_env(settings: Settings | None = None) -> ExecutorDefinition:
    name = (settings or Settings.from_env()).executor
    if name == "multiprocess":
        return multiprocess_executor
    if name == "in_process":
        return in_process_executor
    if name == "celery":
        from dagster_celery import celery_executor

        return celery_executor
    if name == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    raise ValueError(f"COIN_ASSETS_EXECUTOR={name!r}: expected multiprocess, in_process, celery or k8s")
