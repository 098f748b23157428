"""Asynchronous predictions: throughput with 1 and 2 workers, and POST → completed latency of a burst.

    python benchmarks/bench_async.py [--requests 200] [--image-size 128] [--workers 1 2]

One command, same machine, same registered version, same photos. For each worker count: a fresh
request store; the workers (``python -m coin_assets.serving.worker`` processes) are started and have
loaded the model; then a burst of ``--requests`` POST /predictions/requests goes through the real
app (in this process, FastAPI TestClient), and the run ends when every request is completed.
Reported per run: drain throughput (the workers paused while the queue fills, then completed
requests / s until it is empty; ratio against the first run), and, for a second burst arriving
while the workers run, p50 / p95 / max of completed_at − created_at.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import torch
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from sqlalchemy import func, select

from coin_assets.ml import pyfunc as pf
from coin_assets.ml.model import CoinYearRegressor
from coin_assets.ml.registry import PRODUCTION
from coin_assets.serving.app import create_app
from coin_assets.serving.store import requests
from coin_assets.settings import Settings
from coin_assets.synth import render_coin_pair

ROOT = Path(__file__).resolve().parent.parent
NAME = "coin_bench_async"


def jpeg(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def register(root: Path, image_size: int, photos: tuple[bytes, bytes]) -> str:
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri, uri)
    mlflow.set_experiment(experiment_id=client.create_experiment("bench", (root / "artifacts").as_uri()))
    torch.manual_seed(0)
    with mlflow.start_run():
        info = pf.log_photo_model(CoinYearRegressor(backbone="mobilenet_v3_small"), pf.PhotoModelConfig(image_size),
                                  *photos, registered_model_name=NAME)
    client.set_registered_model_alias(NAME, PRODUCTION, str(info.registered_model_version))
    return uri


def run(n_workers: int, n_requests: int, uri: str, base: Path, pairs: list[tuple[bytes, bytes]]) -> dict:
    data = base / f"data_{n_workers}"
    settings = Settings(data_dir=str(data), mlflow_tracking_uri=uri, model_name=NAME, serving_poll_seconds=0)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COIN_ASSETS_DATA_DIR": str(data), "MLFLOW_TRACKING_URI": uri,
           "COIN_ASSETS_MODEL_NAME": NAME, "COIN_ASSETS_SERVING_POLL_SECONDS": "0"}
    with TestClient(create_app(settings)) as client:
        store = client.app.state.store
        logs = [base / f"w{n_workers}_{i}.log" for i in range(n_workers)]
        procs = [subprocess.Popen([sys.executable, "-m", "coin_assets.serving.worker", "--name", f"w{i}",
                                   "--batch", "8", "--poll", "0.05"], cwd=ROOT, env=env, stdout=open(log, "wb"),
                                  stderr=subprocess.STDOUT) for i, log in enumerate(logs)]
        try:
            while not all(b"started" in log.read_bytes() for log in logs):
                if any(p.poll() is not None for p in procs):
                    raise RuntimeError("a worker exited: " + " | ".join(log.read_text()[-500:] for log in logs))
                time.sleep(0.1)

            def post_burst() -> float:
                began = time.time()
                for i in range(n_requests):
                    front, back = pairs[i % len(pairs)]
                    answer = client.post("/predictions/requests",
                                         files={"front": ("f.jpg", front), "back": ("b.jpg", back)})
                    assert answer.status_code == 202, answer.text
                return time.time() - began

            def wait_all(total: int) -> None:
                while True:
                    with store.engine.connect() as conn:
                        done = conn.execute(select(func.count()).where(requests.c.status == "completed")).scalar()
                    if done >= total:
                        return
                    if any(p.poll() is not None for p in procs):
                        raise RuntimeError("a worker exited during the run")
                    time.sleep(0.02)

            # 1. drain: workers paused while the queue fills, then timed until the queue is empty
            for p in procs:
                p.send_signal(signal.SIGSTOP)
            post_burst()
            began = time.time()
            for p in procs:
                p.send_signal(signal.SIGCONT)
            wait_all(n_requests)
            drain = time.time() - began
            # 2. burst: workers running while the requests arrive; POST → completed per request
            with store.engine.connect() as conn:
                first_id = conn.execute(select(func.max(requests.c.id))).scalar()
            posted = post_burst()
            wait_all(2 * n_requests)
            with store.engine.connect() as conn:
                rows = conn.execute(select(requests.c.created_at, requests.c.completed_at)
                                    .where(requests.c.id > first_id)).all()
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(30)
    latencies = sorted((done - created).total_seconds() for created, done in rows)
    return {"workers": n_workers, "requests": n_requests, "post_s": posted, "drain_s": drain,
            "throughput": n_requests / drain, "p50": statistics.median(latencies),
            "p95": latencies[int(0.95 * (len(latencies) - 1))], "max": latencies[-1]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    rng = random.Random(0)
    pairs = [tuple(jpeg(img) for img in render_coin_pair(1900 + 7 * i, rng, (640, 480))) for i in range(8)]
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        uri = register(base / "mlflow", args.image_size, pairs[0])
        print(f"{os.cpu_count()} CPUs · {args.requests} requests per run · 640x480 JPEG pairs · "
              f"mobilenet_v3_small at {args.image_size}px · batch 8 per worker")
        results = [run(n, args.requests, uri, base, pairs) for n in args.workers]
    baseline = results[0]["throughput"]
    print("drain: completed requests / s once the queue holds them all (ratio against the first run);")
    print("burst: POST -> completed per request while the burst arrives and the workers run")
    print(f"{'workers':>7} {'drain s':>8} {'req/s':>7} {'ratio':>6} {'burst POST s':>12} {'p50 s':>7} {'p95 s':>7} "
          f"{'max s':>7}")
    for r in results:
        print(f"{r['workers']:>7} {r['drain_s']:>8.2f} {r['throughput']:>7.1f} {r['throughput'] / baseline:>6.2f} "
              f"{r['post_s']:>12.2f} "
              f"{r['p50']:>7.2f} {r['p95']:>7.2f} {r['max']:>7.2f}")


if __name__ == "__main__":
    main()
