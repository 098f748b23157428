"""Several uvicorn workers (``python -m coin_assets.serving --workers 2``, started for real): /metrics
answers from any worker with the sum over all of them (prometheus_client multiprocess mode), the
metrics folder is emptied at start, and a worker killed with SIGKILL leaves no live gauge behind
while its counted requests stay counted."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from coin_assets.serving.metrics import worker_pids
from coin_assets_tests.serving_fixtures import (  # noqa: F401 (serving_registry is a fixture)
    coin_photos,
    running_api,
    serving_registry_fixture,
)

NAME = "coin_serving_workers"
STALE = "counter_999999.db"


@pytest.fixture(scope="module")
def server(serving_registry, tmp_path_factory):
    (version,) = serving_registry.model_copy(NAME, serving_registry.base[:1])
    serving_registry.promote(version, NAME)
    data = tmp_path_factory.mktemp("workers_data")
    folder = data / "metrics"
    folder.mkdir()
    (folder / STALE).write_bytes(b"\0" * 64)  # left by an earlier start: must not be counted
    env = {"MLFLOW_TRACKING_URI": serving_registry.uri, "COIN_ASSETS_MODEL_NAME": NAME,
           "COIN_ASSETS_SERVING_POLL_SECONDS": "0", "PROMETHEUS_MULTIPROC_DIR": str(folder), "OMP_NUM_THREADS": "1"}
    with running_api(data, env, "--workers", "2", grace=20, ready=lambda: len(worker_pids(folder)) == 2) as base:
        yield base, folder


def requests_by_worker(folder: Path) -> dict[int, float]:
    """Predictions counted in each worker's own file."""
    out = {}
    for path in folder.glob("counter_*.db"):
        pid = int(path.stem.split("_")[1])
        out[pid] = sum(s.value for m in MultiProcessCollector.merge([str(path)], accumulate=False)
                       for s in m.samples if s.name == "coin_serving_requests_total")
    return out


def scraped_total(base: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=10).text  # a new connection: any worker answers
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("coin_serving_requests_total{"))


def test_metrics_sum_over_workers_and_survive_a_killed_worker(server):
    base, folder = server
    assert not (folder / STALE).exists()
    photos = coin_photos(1975, seed=3)

    def predict(_):
        r = httpx.post(f"{base}/predict", files={"front": ("f.jpg", photos[0]), "back": ("b.jpg", photos[1])},
                       timeout=60)  # no shared client: every request a new connection
        assert r.status_code == 200, r.text

    sent = 0
    # a worker still tracing and checking its model (seconds on a loaded machine) accepts few connections
    # meanwhile: keep sending until both have answered
    deadline = time.time() + 120
    with ThreadPoolExecutor(4) as pool:
        while sent < 400 and time.time() < deadline:
            list(pool.map(predict, range(4)))
            sent += 4
            if sum(1 for n in requests_by_worker(folder).values() if n > 0) == 2:
                break
    by_worker = requests_by_worker(folder)
    assert sorted(n > 0 for n in by_worker.values()) == [True, True], by_worker  # both workers answered
    assert sum(by_worker.values()) == sent
    assert [scraped_total(base) for _ in range(6)] == [sent] * 6  # whichever worker answers the scrape

    victim = max(by_worker)
    os.kill(victim, signal.SIGKILL)
    deadline = time.time() + 90  # uvicorn starts a new worker in its place
    while time.time() < deadline and not (worker_pids(folder) - set(by_worker)):
        time.sleep(0.5)
    assert worker_pids(folder) - set(by_worker), "no worker replaced the killed one"
    assert scraped_total(base) == sent  # its counted requests stay counted
    assert not list(folder.glob(f"gauge_live*_{victim}.db"))  # its live gauges are gone
    text = httpx.get(f"{base}/metrics", timeout=10).text
    assert "coin_serving_in_flight 0.0" in text
    assert f'coin_serving_model_version{{model_name="{NAME}",version=' in text
