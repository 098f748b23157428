"""kill -9 of the headless ingestion at random moments, then a normal run: does it recover?

    python benchmarks/kill_trials.py [--trials 10] [--coins 40] [--seed 0]

One uninterrupted run on generated uploads gives the reference (its wall time bounds the kill
moments). Each trial copies the same uploads into a fresh data root and Dagster instance
(deploy/dagster.yaml), starts `python -m coin_assets.cli headless --skip-training`, SIGKILLs its whole
process group after a random delay, and runs the same command again. Per trial it prints where the
kill landed (the step that was running, from the instance's event log), how long the next run took
to start its first step and to finish, and whether the files (bronze/silver/gold/crops, by sha256)
and rows equal the reference and no crash leftover remains. Exit status 1 if any trial failed.
Slow (a minute or so a trial on 2 cores): not part of the test suite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from coin_assets.core.audit import lake_state  # noqa: E402
from coin_assets.synth import generate_uploads  # noqa: E402

DAY = "2026-11-20"
NEXT_RUN_GOAL_S = 60.0


def _env(root: Path, home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COIN_ASSETS_", "MLFLOW_", "DAGSTER_"))}
    env.update(COIN_ASSETS_DATA_DIR=str(root), DAGSTER_HOME=str(home), COIN_ASSETS_SETTLE_SECONDS="0",
               PYTHONPATH=str(REPO))
    return env


COMMAND = [sys.executable, "-m", "coin_assets.cli", "headless", "--skip-training", "--json", "--days", DAY]


def _lake(base: Path, name: str, uploads: Path) -> tuple[Path, Path]:
    root, home = base / name / "data", base / name / "dagster_home"
    shutil.copytree(uploads, root / "uploads")
    home.mkdir(parents=True)
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    return root, home


def _state(root: Path) -> tuple[dict, list]:
    return lake_state(root, root / "coin_assets.duckdb")


def _where(home: Path) -> str:
    """The step(s) of the killed run that had started and not finished, from the event log."""
    with DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        if not runs:
            return "start-up (no run yet)"
        run = runs[-1]
        started, ended = [], set()
        for record in instance.get_records_for_run(run.run_id).records:
            event = record.event_log_entry.dagster_event
            if event is None:
                continue
            if event.event_type == DagsterEventType.STEP_START:
                started.append(event.step_key)
            elif event.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
                ended.add(event.step_key)
        running = [s for s in started if s not in ended]
        if running:
            return ",".join(running)
        return f"between steps (after {started[-1]})" if started else "run start (no step yet)"


def _first_step_after(home: Path, since: float) -> float | None:
    with DagsterInstance.from_config(str(home)) as instance:
        stamps = [r.event_log_entry.timestamp for run in instance.get_runs()
                  for r in instance.get_records_for_run(run.run_id, of_type=DagsterEventType.STEP_START).records
                  if r.event_log_entry.timestamp >= since]
    return min(stamps) - since if stamps else None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--coins", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", help="work folder (default: a temporary one, removed at the end)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="kill_trials_"))
    base.mkdir(parents=True, exist_ok=True)
    uploads = base / "uploads"
    if not uploads.is_dir():
        generate_uploads(uploads, coins=args.coins, days=1, seed=5, end_date=dt.date.fromisoformat(DAY),
                         max_side=900, formats=["png", "jpg"])
    root, home = _lake(base, "reference", uploads)
    started = time.monotonic()
    subprocess.run(COMMAND, env=_env(root, home), cwd=base, check=True, capture_output=True)
    reference_s = time.monotonic() - started
    reference = _state(root)
    print(f"reference run: {reference_s:.1f} s, {len(reference[0])} files, {len(reference[1])} rows; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    print(f"{'trial':>5} {'kill at':>8}  {'landed in':40s} {'1st step':>8} {'next run':>8}  same  leftovers")
    failures = 0
    for trial in range(1, args.trials + 1):
        root, home = _lake(base, f"trial-{trial}", uploads)
        delay = rng.uniform(0.5, 0.9 * reference_s)
        victim = subprocess.Popen(COMMAND, env=_env(root, home), cwd=base, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            victim.wait(timeout=delay)
            landed = "(finished before the kill)"
        except subprocess.TimeoutExpired:
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait()
            landed = _where(home)
        since = time.time()
        started = time.monotonic()
        again = subprocess.run(COMMAND, env=_env(root, home), cwd=base, capture_output=True, text=True)
        next_s = time.monotonic() - started
        first_step = _first_step_after(home, since)
        same = again.returncode == 0 and _state(root) == reference
        leftovers = [p.relative_to(root).as_posix() for p in root.rglob("*")
                     if p.is_file() and (p.name.startswith(".tmp-") or "staging/silver/" in p.as_posix())]
        ok = same and not leftovers and first_step is not None and first_step <= NEXT_RUN_GOAL_S
        failures += not ok
        print(f"{trial:5d} {delay:7.1f}s  {landed[:40]:40s} {first_step if first_step is not None else float('nan'):7.1f}s "
              f"{next_s:7.1f}s  {'yes' if same else 'NO '}   {len(leftovers)}"
              + ("" if again.returncode == 0 else f"  (exit {again.returncode}: {again.stderr[-300:]!r})"), flush=True)
    print(f"{args.trials - failures}/{args.trials} trials recovered (same files and rows, no leftovers, "
          f"first step within {NEXT_RUN_GOAL_S:.0f} s); load average {os.getloadavg()[0]:.1f}")
    if not args.dir:
        shutil.rmtree(base, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
