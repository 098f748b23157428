"""Recover from runs whose process died (kill -9, OOM, a closed laptop) on a local instance.

A run killed while a step held a pool slot stays STARTED with the slot claimed, and every later
run waits for that slot forever. Dagster's own remedies (``run_monitoring`` in deploy/dagster.yaml)
need the daemon and, with the local run launcher, only act after ``max_runtime_seconds``. This
module does the precise thing on one machine: a run is *abandoned* when the process that started
it (the pid of its RUN_START event) is gone, or was replaced by a newer process with the same pid.
Abandoned runs are marked failed and their pool slots freed; finished runs still holding slots
have them freed too. The headless command calls it before it starts; `abandoned_run_sensor` calls it
every 30 s under `dagster dev`.
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, DefaultRunLauncher, RunsFilter

from coin_assets.defs.pools import DUCKDB_WRITER_POOL

IN_FLIGHT = [DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
# the statuses a run ends in (Dagster's own list is private; coin_assets_tests/test_private_api_adapters.py
# checks that this one still matches it)
FINISHED = [DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED]


@dataclass(frozen=True)
class RecoveredRun:
    run_id: str
    job_name: str
    status: str  # before recovery
    pid: int
    slots_freed: int


def _start_event(instance: DagsterInstance, run_id: str):
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_START, limit=1).records
    return records[0].event_log_entry if records else None


def process_is_gone(pid: int, started_before: float) -> bool:
    """True when no process has this pid, or the one that has it started after ``started_before``
    (the pid was reused) or is a zombie."""
    try:
        proc = psutil.Process(pid)
        return proc.status() == psutil.STATUS_ZOMBIE or proc.create_time() > started_before + 1.0
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return True


def is_local_instance(instance: DagsterInstance) -> bool:
    """Pids mean something only when runs execute on this machine (the default run launcher)."""
    return isinstance(instance.run_launcher, DefaultRunLauncher)


def recover_abandoned_runs(instance: DagsterInstance) -> list[RecoveredRun]:
    """Mark runs whose process is gone as failed and free their pool slots; free slots still held
    by finished runs. Safe to call at any time and from several processes (idempotent)."""
    recovered: list[RecoveredRun] = []
    if is_local_instance(instance):
        for record in instance.get_run_records(RunsFilter(statuses=IN_FLIGHT)):
            run = record.dagster_run
            entry = _start_event(instance, run.run_id)
            pid = entry.dagster_event.pid if entry and entry.dagster_event else None
            if pid is None or not process_is_gone(pid, entry.timestamp):
                continue
            message = (f"The process of this run (pid {pid}) is gone (killed or crashed); coin_assets "
                       "marked the run failed and freed its pool slots so later runs can start.")
            fresh = instance.get_run_by_id(run.run_id)
            if fresh is None or fresh.status not in IN_FLIGHT:
                continue  # finished meanwhile
            if fresh.status == DagsterRunStatus.CANCELING:
                instance.report_run_canceled(fresh, message)
            else:
                instance.report_run_failed(fresh, message)
            held = _slots_held(instance, run.run_id)
            _free_slots(instance, run.run_id)
            recovered.append(RecoveredRun(run.run_id, run.job_name, run.status.value, pid, held))
    if instance.event_log_storage.supports_global_concurrency_limits:
        holding = instance.event_log_storage.get_concurrency_run_ids()
        if holding:
            for record in instance.get_run_records(RunsFilter(run_ids=list(holding), statuses=FINISHED)):
                _free_slots(instance, record.dagster_run.run_id)
    return recovered


def _free_slots(instance: DagsterInstance, run_id: str) -> None:
    if instance.event_log_storage.supports_global_concurrency_limits:
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)


def _slots_held(instance: DagsterInstance, run_id: str) -> int:
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return 0
    pools = {DUCKDB_WRITER_POOL, *(limit.name for limit in storage.get_pool_limits())}
    return sum(1 for info in storage.get_concurrency_infos(sorted(pools)).values()
               for slot in info.claimed_slots if slot.run_id == run_id)


def runs_holding_pool(instance: DagsterInstance, pool: str) -> list[str]:
    """Run ids that hold a slot of ``pool`` now (to say who a waiting run waits for)."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    return sorted(storage.get_concurrency_info(pool).active_run_ids)
