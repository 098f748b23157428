"""The API started for real (``python -m coin_assets.serving`` on uvicorn, this worktree's package):
a promotion during a stream of requests, a broken version that is never swapped in, a rollback that
reaches the service by polling, the streaming body limit and the bounded number of held requests."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from coin_assets.core import serving_client
from coin_assets.ml import registry as reg
from coin_assets_tests.serving_fixtures import (  # noqa: F401 (serving_registry is a fixture)
    RELOAD_TOKEN,
    coin_photos,
    free_port,
    running_api,
    serving_registry_fixture,
)

NAME = "coin_serving_live"

MAX_PHOTO = 300_000
MAX_HELD = 8  # room for the 3 streaming clients of the promotion test (each holds one request at a time)


@pytest.fixture(scope="module")
def registry(serving_registry):
    reg_ = serving_registry
    reg_.v1, reg_.v2 = reg_.model_copy(NAME, reg_.base)
    reg_.promote(reg_.v1, NAME)
    return reg_


@pytest.fixture(scope="module")
def server(registry, tmp_path_factory):
    env = {"MLFLOW_TRACKING_URI": registry.uri, "COIN_ASSETS_MODEL_NAME": NAME,
           "COIN_ASSETS_RELOAD_TOKEN": RELOAD_TOKEN, "COIN_ASSETS_SERVING_POLL_SECONDS": "1",
           "COIN_ASSETS_SERVING_QUEUE": str(MAX_HELD), "COIN_ASSETS_MAX_PHOTO_BYTES": str(MAX_PHOTO)}
    with running_api(tmp_path_factory.mktemp("live_data"), env) as base:
        yield base


def predict(client: httpx.Client, base: str, photos) -> httpx.Response:
    return client.post(f"{base}/predict", files={"front": ("f.jpg", photos[0]), "back": ("b.jpg", photos[1])},
                       timeout=30)


def health(base: str) -> dict:
    return httpx.get(f"{base}/health", timeout=5).json()


def test_promotion_during_a_stream_of_requests(server, registry):
    photos = coin_photos(1960, seed=3)
    seen: list[list[str]] = [[] for _ in range(3)]
    failures: list[str] = []
    stop = threading.Event()

    def stream(k: int) -> None:
        with httpx.Client() as client:
            while not stop.is_set():
                r = predict(client, server, photos)
                if r.status_code != 200:
                    failures.append(f"{r.status_code} {r.text}")
                else:
                    seen[k].append(r.json()["model_version"])

    threads = [threading.Thread(target=stream, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    def every_stream_has(version, count: int) -> None:
        deadline = time.monotonic() + 120
        while sum(1 for versions in seen if versions.count(version) >= count) < len(seen) and not failures:
            assert time.monotonic() < deadline, f"streams did not answer with version {version}: {seen}"
            time.sleep(0.05)

    every_stream_has(registry.v1, 2)
    registry.promote(registry.v2, NAME)
    report = serving_client.request_reload(base_url=server, token=RELOAD_TOKEN)
    every_stream_has(registry.v2, 2)
    stop.set()
    for t in threads:
        t.join()
    assert failures == []
    assert report["ok"] and report["version"] == registry.v2
    for versions in seen:
        assert versions[0] == registry.v1 and versions[-1] == registry.v2
        switch = versions.index(registry.v2)
        assert set(versions[switch:]) == {registry.v2}  # no flapping back
    assert health(server)["model_version"] == registry.v2


def test_a_broken_version_is_never_swapped_in_and_rollback_reaches_the_service(server, registry):
    assert health(server)["model_version"] == registry.v2
    broken = registry.broken_version(NAME)
    registry.promote(broken, NAME)
    report = serving_client.request_reload(base_url=server, token=RELOAD_TOKEN)
    assert not report["ok"] and report["version"] == registry.v2 and f"version {broken}" in report["error"]
    h = health(server)
    assert h["status"] == "ready" and h["model_version"] == registry.v2 and h["failed_version"] == broken
    assert predict(httpx.Client(), server, coin_photos()).json()["model_version"] == registry.v2
    metrics = httpx.get(f"{server}/metrics").text
    assert "coin_serving_model_load_failed 1.0" in metrics
    failed = [line for line in metrics.splitlines() if line.startswith('coin_serving_reloads_total{outcome="failed"}')]
    assert failed and float(failed[0].split()[-1]) >= 1  # the poller may have tried it first

    # the rollback command's registry change reaches the service without any reload call (polling)
    reg.rollback(registry.client, NAME, actor="test", reason="broken weights", to_version=registry.v1)
    deadline = time.time() + 20
    while time.time() < deadline and health(server)["model_version"] != registry.v1:
        time.sleep(0.3)
    h = health(server)
    assert h["model_version"] == registry.v1 and h["last_error"] is None
    assert "coin_serving_model_load_failed 0.0" in httpx.get(f"{server}/metrics").text


def _raw_request(port: int, headers: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(headers.encode())
    return sock


def test_a_body_over_the_limit_is_refused_while_streaming(server):
    port = int(server.rsplit(":", 1)[1])
    sock = _raw_request(port, "POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                              "Content-Type: multipart/form-data; boundary=xyz\r\n\r\n")
    part = (b'--xyz\r\nContent-Disposition: form-data; name="front"; filename="f.jpg"\r\n'
            b"Content-Type: image/jpeg\r\n\r\n")
    sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
    chunk = b"\0" * 100_000
    answer, sent = b"", 0
    sock.settimeout(0.05)
    try:
        while sent < 200:  # 20 MB if nobody stopped us
            sent += 1
            try:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except OSError:
                break
            try:
                answer += sock.recv(65536)
            except (TimeoutError, BlockingIOError):
                continue
            if answer:
                break
        sock.settimeout(5)
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert sent < 40  # the limit is ~0.9 MB: refused long before the 20 MB were sent


def test_more_held_requests_than_allowed_get_503_with_retry_after(server):
    port = int(server.rsplit(":", 1)[1])
    slow = [_raw_request(port, "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                               "Content-Type: multipart/form-data; boundary=xyz\r\n\r\n--xyz\r\n")
            for _ in range(MAX_HELD)]
    try:
        deadline = time.monotonic() + 30  # until the server holds MAX_HELD requests waiting for their bodies
        while (r := predict(httpx.Client(), server, coin_photos())).status_code == 200:
            assert time.monotonic() < deadline, "the held requests never filled the server"
            time.sleep(0.1)
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and r.json()["error"] == "overloaded"
    finally:
        for s in slow:
            s.close()
    deadline = time.time() + 10
    while time.time() < deadline:
        r = predict(httpx.Client(), server, coin_photos())
        if r.status_code == 200:
            break
        time.sleep(0.2)
    assert r.status_code == 200


def test_serving_deployment_records_the_served_version(server, registry, tmp_path):
    from dagster import DagsterInstance, materialize

    from coin_assets.defs.assets.serving import serving_deployment
    from coin_assets.defs.resources import MlflowRegistry, ServingApi

    mlflow_registry = MlflowRegistry(tracking_uri=registry.uri, model_name=NAME)
    instance = DagsterInstance.ephemeral()
    values = {}
    for label, url in (("up", server), ("down", f"http://127.0.0.1:{free_port()}")):
        api = ServingApi(url=url, reload_token=RELOAD_TOKEN, request_store_url=f"sqlite:///{tmp_path / 'unused.db'}")
        result = materialize([serving_deployment], resources={"mlflow_registry": mlflow_registry, "serving_api": api},
                             instance=instance)
        assert result.success  # an unreachable API is recorded, never a failed run
        values[label] = result.output_for_node("serving_deployment")
    up, down = values["up"], values["down"]
    assert up["reachable"] and up["in_sync"] and up["serving_version"] == up["production_version"] == registry.v1
    assert up["serving_since"] and up["reload"]["ok"]
    assert not down["reachable"] and not down["in_sync"] and down["production_version"] == registry.v1
