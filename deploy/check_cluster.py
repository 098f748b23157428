"""Start `make cluster` (deploy/cluster.py) for real, check that every URL it prints answers, stop it
with SIGINT (Ctrl-C) and check that every process it started is gone.

    python deploy/check_cluster.py [--timeout 300]

It runs cluster.py in its own process group with a state folder in a temporary directory and a
free webserver port. Checks: Postgres accepts a connection, Redis answers PING, moto's S3 server
lists the bucket, MLflow's /health, the Dagster webserver's /server_info and a GraphQL query, the
daemon's heartbeat in the instance. Exit status 0 when everything answered and nothing survived.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from coin_assets.devtools.supervisor import free_port  # noqa: E402


def http_get(url: str, data: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status, response.read()


def retry(check, timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--timeout", type=float, default=300, help="seconds for the cluster to print its URLs")
    args = parser.parse_args(argv)
    state = Path(tempfile.mkdtemp(prefix="coin_cluster_check_"))
    port = free_port()
    started = time.monotonic()
    cluster = subprocess.Popen([sys.executable, str(REPO_ROOT / "deploy" / "cluster.py"), "--dir", str(state),
                                "--workers", "2", "--port", str(port)], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    urls, env, results = {}, {}, {}
    try:
        for line in cluster.stdout:  # until the environment block is printed
            print(f"| {line.rstrip()}", flush=True)
            if m := re.match(r"\s+export (\w+)=(.*)", line):
                env[m[1]] = m[2]
                if m[1] == "COIN_ASSETS_DUCKDB":
                    break
            elif m := re.match(r"\s+([\w-]+)\s+((?:https?|postgresql|redis)://\S+)", line):
                urls[m[1]] = m[2]
            if time.monotonic() - started > args.timeout:
                raise TimeoutError("no URLs printed")
        print(f"URLs printed after {time.monotonic() - started:.0f}s: {json.dumps(urls)}", flush=True)
        results.update(check_urls(urls, env))
    finally:
        processes = psutil.Process(cluster.pid).children(recursive=True) if cluster.poll() is None else []
        print(f"{len(processes)} processes under cluster.py; SIGINT", flush=True)
        stop_started = time.monotonic()
        cluster.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            tail = cluster.communicate(timeout=120)[0]
        except subprocess.TimeoutExpired:
            os.killpg(cluster.pid, signal.SIGKILL)
            tail = "cluster.py did not exit within 120 s of SIGINT"
        print("\n".join(f"| {line}" for line in tail.splitlines()[-5:]))
        time.sleep(1)
        alive = [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        results["stopped in"] = f"{time.monotonic() - stop_started:.1f}s, exit code {cluster.returncode}"
        results["processes left"] = [f"{p.pid} {' '.join(p.cmdline()[:3])}" for p in alive] or "none"
        for p in alive:
            p.kill()
    print(json.dumps(results, indent=2))
    ok = all(v == "ok" or k in ("stopped in",) for k, v in results.items() if k != "processes left")
    return 0 if ok and results["processes left"] == "none" and cluster.returncode == 0 else 1


def check_urls(urls: dict[str, str], env: dict[str, str]) -> dict[str, str]:
    import boto3
    import psycopg2
    import redis

    results = {}

    def record(name, check, timeout=60):
        try:
            retry(check, timeout)
            results[name] = "ok"
        except Exception as err:  # noqa: BLE001 - reported
            results[name] = f"FAILED: {type(err).__name__}: {err}"[:300]

    def postgres():
        psycopg2.connect(urls["postgres"] + "/dagster").close()

    def broker():
        assert redis.Redis.from_url(env["COIN_ASSETS_CELERY_BROKER"]).ping()

    def s3():
        client = boto3.client("s3", endpoint_url=urls["moto"], region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        assert env["COIN_ASSETS_S3_BUCKET"] in [b["Name"] for b in client.list_buckets()["Buckets"]]

    def mlflow():
        status, body = http_get(urls["mlflow"] + "/health")
        assert status == 200 and body.strip() == b"OK", body

    def webserver():
        status, body = http_get(urls["webserver"] + "/server_info")
        assert status == 200 and b"dagster_webserver_version" in body, body[:200]

    def graphql():
        query = json.dumps({"query": "{ repositoriesOrError { ... on RepositoryConnection { nodes { name } } } }"})
        status, body = http_get(urls["webserver"] + "/graphql", query.encode())
        nodes = json.loads(body)["data"]["repositoriesOrError"]["nodes"]
        assert status == 200 and nodes, body[:300]

    def daemon():
        query = json.dumps({"query": "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }"})
        statuses = json.loads(http_get(urls["webserver"] + "/graphql", query.encode())[1])
        daemons = statuses["data"]["instance"]["daemonHealth"]["allDaemonStatuses"]
        unhealthy = [d["daemonType"] for d in daemons if d["healthy"] is False]
        assert daemons and not unhealthy, unhealthy

    record("postgres", postgres)
    record("redis (broker)", broker)
    record("moto S3", s3)
    record("mlflow /health", mlflow)
    record("dagster webserver /server_info", webserver, timeout=180)
    record("dagster GraphQL (code location loaded)", graphql, timeout=180)
    record("dagster daemon healthy", daemon, timeout=120)
    return results


if __name__ == "__main__":
    sys.exit(main())
