"""DB-first asynchronous predictions: the API only stores requests; workers claim them with a lease.

Real parts throughout: a tiny registered raw-photo model in a temporary MLflow registry, the serving
app (FastAPI TestClient), the SQLite request store, the upload zone on disk, and real worker
processes (``python -m coin_assets.serving.worker``) of which one is killed mid-request.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select

from coin_assets.core.clock import utcnow
from coin_assets.serving import queue
from coin_assets.serving.app import create_app
from coin_assets.serving.store import requests, results
from coin_assets.serving.worker import Worker
from coin_assets_tests.serving_fixtures import Registry, coin_photos

ROOT = Path(__file__).resolve().parent.parent
LEASE = 3.0


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    reg = Registry(tmp_path_factory.mktemp("mlflow"))
    reg.promote(reg.register(seed=0))
    return reg


@pytest.fixture(scope="module")
def photos():
    return [coin_photos(year=1900 + 13 * i, seed=i, size=(200, 150)) for i in range(4)]


def make_client(registry, data_dir: Path):
    settings = registry.settings(data_dir, request_lease_seconds=LEASE)
    return settings, TestClient(create_app(settings))


def post_pair(client, front: bytes, back: bytes, **form):
    return client.post("/predictions/requests", data=form,
                       files={"front": ("f.jpg", front, "image/jpeg"), "back": ("b.jpg", back, "image/jpeg")})


def start_worker(settings, name: str, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COIN_ASSETS_DATA_DIR": settings.data_dir,
           "MLFLOW_TRACKING_URI": settings.tracking_uri, "COIN_ASSETS_MODEL_NAME": settings.model_name,
           "COIN_ASSETS_REQUEST_LEASE": str(LEASE), "COIN_ASSETS_SERVING_POLL_SECONDS": "0"}
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "coin_assets.serving.worker", "--name", name, "--batch", "4",
                                 "--poll", "0.05"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_for(predicate, timeout: float, what: str, procs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        for proc in procs:
            assert proc.poll() is None, f"a worker exited early with code {proc.returncode}"
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_200_requests_two_workers_one_killed_mid_request(registry, photos, tmp_path):
    settings, client = make_client(registry, tmp_path / "data")
    logs = {name: tmp_path / f"{name}.log" for name in ("w1", "w2")}
    with client:
        store = client.app.state.store
        workers = {name: start_worker(settings, name, path) for name, path in logs.items()}
        try:
            wait_for(lambda: all(b"started" in p.read_bytes() for p in logs.values()), 120, "both workers to load",
                     workers.values())
            ids = []
            for i in range(200):
                front, back = photos[i % len(photos)]
                answer = post_pair(client, front, back, user_id="collector", coin_id=f"c{i}")
                assert answer.status_code == 202, answer.text
                assert answer.json()["status"] == "pending"
                ids.append(answer.json()["request_id"])

            # Freeze w1 while it holds claimed requests, then kill it: those requests are mid-request.
            def w1_claimed() -> list[str]:
                with store.engine.connect() as conn:
                    return list(conn.execute(select(requests.c.request_id).where(
                        requests.c.status == "claimed", requests.c.claimed_by == "w1")).scalars())

            stolen: list[str] = []
            deadline = time.monotonic() + 60
            while not stolen and time.monotonic() < deadline:
                if w1_claimed():
                    os.kill(workers["w1"].pid, signal.SIGSTOP)
                    stolen = w1_claimed()
                    if not stolen:
                        os.kill(workers["w1"].pid, signal.SIGCONT)
                time.sleep(0.002)
            assert stolen, "w1 never held a request"
            workers["w1"].kill()
            workers["w1"].wait(10)

            def all_done() -> bool:
                with store.engine.connect() as conn:
                    return conn.execute(select(func.count()).where(requests.c.status == "completed")).scalar() == 200

            wait_for(all_done, 240, "all 200 requests to complete", [workers["w2"]])
        finally:
            for proc in workers.values():
                if proc.poll() is None:
                    proc.terminate()
            for proc in workers.values():
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        assert workers["w2"].returncode == 0  # SIGTERM: a clean stop

        with store.engine.connect() as conn:
            rows = {r.request_id: r for r in conn.execute(select(requests).where(requests.c.request_id.in_(ids)))}
            per_request = dict(conn.execute(select(results.c.request_id, func.count()).group_by(results.c.request_id)).all())
        assert {r.status for r in rows.values()} == {"completed"}
        assert per_request == {rid: 1 for rid in ids}  # every request has exactly one result
        for rid in stolen:  # w1's requests came back after the lease and w2 finished them
            assert rows[rid].claimed_by == "w2" and rows[rid].attempts == 2
        # w1 may be frozen at its very first claim (then w2 scored everything): only the two workers scored
        assert "w2" in {r.claimed_by for r in rows.values()} <= {"w1", "w2"}
        answer = client.get(f"/predictions/{stolen[0]}").json()
        assert answer["status"] == "completed" and answer["result"]["model_version"] == "1"
        assert answer["result"]["lower_90"] < answer["result"]["year"] < answer["result"]["upper_90"]


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buf.getvalue()


def test_batch_history_inputs_and_failures(registry, photos, tmp_path):
    settings, client = make_client(registry, tmp_path / "data")
    uploads = tmp_path / "data" / "uploads"
    with client:
        store = client.app.state.store
        # Bad input: a text file named .jpg is refused and nothing is stored.
        bad = client.post("/predictions/requests", files={"front": ("coin.jpg", b"hello, not a photo", "image/jpeg"),
                                                          "back": ("b.jpg", photos[0][1], "image/jpeg")})
        assert bad.status_code == 422 and "front" in bad.json()["detail"]
        assert not uploads.exists() or not any(p.is_file() for p in uploads.rglob("*"))
        with store.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(requests)).scalar() == 0

        # A batch: a zip of two coins plus one without its back, and a loose pair; one name is no coin.
        archive = _zip({"set/a1__front.jpg": photos[0][0], "set/a1__back.jpg": photos[0][1],
                        "a2__obverse.jpg": photos[1][0], "a2__reverse.jpg": photos[1][1],
                        "lonely__front.jpg": photos[2][0], "notes.txt": b"hello"})
        answer = client.post("/predictions/batch", data={"user_id": "collector"}, files=[
            ("files", ("coins.zip", archive, "application/zip")),
            ("files", ("b3__front.png", photos[3][0], "image/png")),
            ("files", ("b3__back.png", photos[3][1], "image/png"))])
        assert answer.status_code == 202, answer.text
        batch = answer.json()
        assert batch["coins"] == ["a1", "a2", "b3"]
        assert {r["name"] for r in batch["rejected"]} == {"notes.txt", "lonely"}
        progress = client.get(f"/predictions/batches/{batch['batch_id']}").json()
        assert (progress["total"], progress["done"]) == (3, 0)

        # One more single request whose stored photo disappears before scoring: it fails with the reason.
        gone = post_pair(client, *photos[0], user_id="someone").json()["request_id"]
        front_key = store.get_request(gone)["front_key"]
        (tmp_path / "data" / front_key).unlink()

        worker = Worker(settings, name="inline", batch_size=8)
        stats = worker.run(max_idle_rounds=1)
        assert (stats.completed, stats.failed) == (3, 1)

        progress = client.get(f"/predictions/batches/{batch['batch_id']}").json()
        assert (progress["total"], progress["done"]) == (3, 3)
        assert [i["coin_id"] for i in progress["items"]] == ["a1", "a2", "b3"]
        assert all(i["status"] == "completed" and i["result"]["year"] is not None for i in progress["items"])
        failed = client.get(f"/predictions/{gone}").json()
        assert failed["status"] == "failed" and "photos not readable" in failed["error"]
        assert client.get(f"/predictions/{gone}").json()["result"] is None

        # History: filters and paging.
        hist = client.get("/predictions/history", params={"user_id": "collector", "page_size": 2}).json()
        assert hist["total"] == 3 and len(hist["items"]) == 2
        page2 = client.get("/predictions/history", params={"user_id": "collector", "page_size": 2, "page": 2}).json()
        assert len(page2["items"]) == 1
        assert {i["request_id"] for i in hist["items"] + page2["items"]} == set(batch["request_ids"])
        assert client.get("/predictions/history", params={"status": "failed"}).json()["total"] == 1
        assert client.get("/predictions/history", params={"model_version": "1"}).json()["total"] == 3
        today = time.strftime("%Y-%m-%d", time.gmtime())
        assert client.get("/predictions/history", params={"day": today}).json()["total"] == 4
        assert client.get("/predictions/history", params={"day": "2001-01-01"}).json()["total"] == 0
        assert client.get("/predictions/history", params={"status": "nonsense"}).status_code == 422

        # The model's view of a photo: the letterboxed input at the model's size.
        png = client.get(f"/predictions/{batch['request_ids'][0]}/inputs/front")
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(png.content)).size == (64, 64)
        assert client.get(f"/predictions/{batch['request_ids'][0]}/inputs/left").status_code == 404


def test_expired_lease_returns_to_pending_then_fails_after_max_attempts(registry, photos, tmp_path):
    settings, client = make_client(registry, tmp_path / "data")
    with client:
        store = client.app.state.store
        rid = post_pair(client, *photos[0]).json()["request_id"]
        start = utcnow()  # the lease clock is passed in: no waiting for a lease to run out
        for attempt in range(1, 3):
            now = start + timedelta(minutes=attempt)
            (claimed,) = queue.claim(store, "ghost", lease_seconds=30, now=now)
            assert claimed.request_id == rid and claimed.attempts == attempt
            later = now + timedelta(seconds=31)
            assert queue.claim(store, "other", lease_seconds=10, now=later) == []  # held, even if the lease ran out
            assert queue.release_expired(store, now=now + timedelta(seconds=29), max_attempts=3) == (0, 0)
            assert queue.release_expired(store, now=later, max_attempts=3) == (1, 0)
            assert store.get_request(rid)["status"] == "pending"
        now = start + timedelta(minutes=3)
        queue.claim(store, "ghost", lease_seconds=30, now=now)
        assert queue.release_expired(store, now=now + timedelta(seconds=31), max_attempts=3) == (0, 1)
        row = store.get_request(rid)
        assert row["status"] == "failed" and "stopped 3 times" in row["error"]
        # A worker that lost its lease cannot finish the request any more.
        assert not queue.complete(store, rid, "ghost", {"year": 1.0}, {})
        assert store.get_result(rid) is None


def test_metrics_report_the_async_queue_depth(registry, photos, tmp_path):
    def gauge(text: str, status: str) -> float:
        for line in text.splitlines():
            if line.startswith(f'coin_async_requests{{status="{status}"}}'):
                return float(line.split()[-1])
        raise AssertionError(f"no coin_async_requests gauge for {status}")

    _, client = make_client(registry, tmp_path / "data")
    with client:
        assert gauge(client.get("/metrics").text, "pending") == 0
        for front, back in photos[:2]:
            assert post_pair(client, front, back).status_code == 202
        text = client.get("/metrics").text
        assert gauge(text, "pending") == 2 and gauge(text, "completed") == 0
