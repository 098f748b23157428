"""The one private piece of dagster-celery that coin_assets uses, in one place.

dagster-celery routes a step to the queue of its `dagster-celery/queue` op tag. coin_assets routes
by pool instead (every step in pool `duckdb_writer` goes to the queue of the worker that owns the
DuckDB file, see coin_assets/defs/executors.py), which needs a queue chosen per step when it is
submitted. dagster-celery's execution loop (``core_celery_execution_loop``) takes the submit
function as an argument; the function that builds and sends a step's Celery task is the private
``dagster_celery.executor._submit_task``, called here with the queue coin_assets chose.

coin_assets_tests/test_private_api_adapters.py pins what this relies on: ``_submit_task`` exists
with this signature and sends the task to the queue it is given (routing key ``<queue>.execute_plan``),
and the execution loop calls its ``step_execution_fn`` with these arguments. An upgrade that changes
any of it fails there, not silently in a deployment.
"""

from __future__ import annotations


def submit_step(app, plan_context, step, queue: str, priority: int, known_state):
    """Send one step to Celery queue `queue` (dagster-celery's own submission, with our queue)."""
    from dagster_celery.executor import _submit_task

    return _submit_task(app, plan_context, step, queue, priority, known_state)
