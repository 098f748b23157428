"""The README's backfill command against a running `make demo` instance (dagster dev started through
coin_assets.devtools.launcher, as the Makefile does): its runs succeed in the code location both name
`coin_assets`; then SIGTERM to the launcher stops every process within seconds."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from playwright import sync_api as playwright_sync

from coin_assets_tests.browser import chromium, screenshot
from coin_assets_tests.conftest import DAY, DAY2, IngestionLake, age_tree

WORKTREE = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_webserver(port: int, demo: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert demo.poll() is None, "dagster dev exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, "dagster dev did not come up"
        time.sleep(0.5)


@pytest.mark.slow
def test_readme_backfill_command_runs_through_a_running_demo_and_the_demo_stops(tmp_path):
    lake = IngestionLake(tmp_path / "lake")
    for day in (DAY, DAY2):
        lake.coin(day, f"coin-{day}")
    age_tree(lake.root / "uploads")
    lake.close()
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((WORKTREE / "deploy" / "dagster.yaml").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COIN_ASSETS_", "MLFLOW_", "DAGSTER_"))}
    env.update(DAGSTER_HOME=str(home), COIN_ASSETS_DATA_DIR=str(lake.root), COIN_ASSETS_START_DATE="2026-11-01",
               COIN_ASSETS_SENSOR_INTERVAL="3600", PYTHONPATH=str(WORKTREE), PATH=f"{BIN}:{env.get('PATH', '')}")
    port = _free_port()
    demo = subprocess.Popen(
        [sys.executable, "-m", "coin_assets.devtools.launcher", "--grace", "5", "--", str(BIN / "dagster"), "dev",
         "-h", "127.0.0.1", "-p", str(port)],
        cwd=WORKTREE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for_webserver(port, demo)  # the demo is up (its instance storage exists) before the command
        # the README's command line, verbatim but for the days
        backfill = subprocess.run(
            [str(BIN / "dagster"), "job", "backfill", "-j", "ingestion_job", "--partitions", f"{DAY},{DAY2}",
             "-w", "workspace.yaml", "--noprompt"],
            cwd=WORKTREE, env=env, capture_output=True, text=True, timeout=180)
        assert backfill.returncode == 0, backfill.stdout[-2000:] + backfill.stderr[-2000:]
        deadline = time.monotonic() + 240
        with DagsterInstance.from_config(str(home)) as instance:
            while True:
                runs = [r for r in instance.get_runs(RunsFilter(job_name="ingestion_job"))
                        if "dagster/backfill" in r.tags]
                statuses = sorted(r.status.value for r in runs)
                if len(runs) == 2 and all(r.status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE)
                                          for r in runs):
                    break
                assert time.monotonic() < deadline, f"backfill runs not done: {statuses}"
                time.sleep(1)
            failures = [m.message for r in runs if r.status == DagsterRunStatus.FAILURE
                        for m in instance.all_logs(r.run_id) if m.level >= 40][:5]
            assert statuses == ["SUCCESS", "SUCCESS"], failures
            assert sorted(r.tags["dagster/partition"] for r in runs) == [DAY, DAY2]
        # what a person sees in the UI: the asset graph, each asset with its latest materialization
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(120_000)
            page.goto(f"http://127.0.0.1:{port}/asset-groups")
            page.get_by_text("Global asset lineage").wait_for()
            skip = page.get_by_role("button", name="Skip")  # a new instance's one-time invitation
            try:
                skip.wait_for(timeout=5_000)
                skip.click()
            except playwright_sync.TimeoutError:
                pass
            page.get_by_text("predictions").first.wait_for()
            page.wait_for_timeout(1_500)  # the graph's layout settles
            screenshot(page, "dagster_asset_graph.png", tmp_path)
        descendants = psutil.Process(demo.pid).children(recursive=True)
        assert len(descendants) >= 3  # dagster dev, its webserver, daemon and code server
    finally:
        demo.send_signal(signal.SIGTERM)
        demo.wait(timeout=60)

    def alive() -> list[int]:
        return [p.pid for p in descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

    deadline = time.monotonic() + 30  # the launcher has exited; its children are gone or going
    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert alive() == []
