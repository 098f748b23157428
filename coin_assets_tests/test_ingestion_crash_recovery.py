"""kill -9 of the headless command while bronze holds the `duckdb_writer` pool slot (copying uploads):
the next run on the same Dagster instance (deploy/dagster.yaml) starts at once, and ends with the
same rows and files as a run that was never interrupted. Kills at random moments, many times:
benchmarks/kill_trials.py (slow, not in the suite)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from dagster import DagsterInstance, DagsterRunStatus

from coin_assets.core.audit import lake_state
from coin_assets.synth import generate_uploads

WORKTREE = Path(__file__).resolve().parents[1]
DAY = "2026-11-20"
HANG_GUARD_S = 600  # a hang guard, not a speed bound


def _env(root: Path, home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COIN_ASSETS_", "MLFLOW_", "DAGSTER_"))}
    env.update(COIN_ASSETS_DATA_DIR=str(root), DAGSTER_HOME=str(home), COIN_ASSETS_SETTLE_SECONDS="0",
               PYTHONPATH=str(WORKTREE))
    return env


def _headless(root: Path, home: Path) -> list[str]:
    return [sys.executable, "-m", "coin_assets.cli", "headless", "--skip-training", "--json", "--days", DAY]


def _lake(tmp_path: Path, name: str, uploads: Path) -> tuple[Path, Path]:
    root, home = tmp_path / name / "data", tmp_path / name / "dagster_home"
    shutil.copytree(uploads, root / "uploads")  # copy2: same bytes and mtimes in every lake
    home.mkdir(parents=True)
    shutil.copy(WORKTREE / "deploy" / "dagster.yaml", home / "dagster.yaml")
    return root, home


def _state(root: Path) -> tuple[dict, list]:
    return lake_state(root, root / "coin_assets.duckdb")


def test_kill_9_while_a_step_holds_the_writer_slot_does_not_block_the_next_run(tmp_path):
    uploads = tmp_path / "uploads"
    generate_uploads(uploads, coins=40, days=1, seed=5, end_date=__import__("datetime").date.fromisoformat(DAY),
                     max_side=900, formats=["png"])
    clean_root, clean_home = _lake(tmp_path, "clean", uploads)
    crash_root, crash_home = _lake(tmp_path, "crash", uploads)

    done = subprocess.run(_headless(clean_root, clean_home), env=_env(clean_root, clean_home), cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    victim = subprocess.Popen(_headless(crash_root, crash_home), env=_env(crash_root, crash_home), cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    bronze = crash_root / "bronze" / DAY
    deadline = time.monotonic() + 240
    while not (bronze.is_dir() and any(not p.name.startswith(".tmp-") for p in bronze.iterdir())):
        assert victim.poll() is None, "the run ended before bronze wrote anything: " + victim.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "bronze never started"
        time.sleep(0.02)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    victim.stderr.close()

    with DagsterInstance.from_config(str(crash_home)) as instance:
        (run,) = instance.get_runs()
        assert run.status == DagsterRunStatus.STARTED  # what the kill leaves: a run that looks alive
        held = instance.event_log_storage.get_concurrency_info("duckdb_writer").active_run_ids
        assert held == {run.run_id}, "the killed run holds the writer slot"

    # the next run recovers the dead run's slot at once (it does not wait for a lease to run out)
    again = subprocess.run(_headless(crash_root, crash_home), env=_env(crash_root, crash_home), cwd=tmp_path,
                           capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert again.returncode == 0, again.stderr[-3000:]
    summary = json.loads(again.stdout)
    assert [r["run_id"] for r in summary["recovered_runs"]] == [run.run_id]
    assert f"recovered run {run.run_id}" in again.stderr
    with DagsterInstance.from_config(str(crash_home)) as instance:
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
        assert not instance.event_log_storage.get_concurrency_info("duckdb_writer").active_run_ids

    assert _state(crash_root) == _state(clean_root)
    assert not list(crash_root.rglob(".tmp-*"))
    assert not list((crash_root / "staging").rglob("*.jpg"))
