"""`make cluster`: every scale-out process on this machine, URLs printed, all stopped on Ctrl-C.

Postgres (Dagster instance + MLflow backend), Redis (Celery broker), moto's S3 server, the MLflow
tracking server (artifacts in S3), the Dagster webserver and daemon, and Celery workers: worker-1
owns the DuckDB file and serves the `duckdb` queue, the others serve the default queue.

    python deploy/cluster.py [--dir .cluster] [--workers 2] [--autoscale 10,2] [--port 3000] [--demo-coins 0]
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coin_assets.devtools.local_cluster import LocalCluster  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default=".cluster", help="state and logs (Postgres data, Redis AOF, worker dirs)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--autoscale", default=None, help="MAX,MIN processes per worker (Celery --autoscale)")
    parser.add_argument("--port", type=int, default=3000, help="Dagster webserver port")
    parser.add_argument("--demo-coins", type=int, default=0, help="generate this many demo coins into S3 uploads/")
    args = parser.parse_args(argv)

    cluster = LocalCluster(Path(args.dir).resolve())
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        cluster.start_servers()
        if args.demo_coins:
            _demo_uploads(cluster, args.demo_coins)
        autoscale = tuple(int(x) for x in args.autoscale.split(",")) if args.autoscale else None
        cluster.start_workers(args.workers, autoscale=autoscale)
        cluster.start_daemon()
        cluster.start_webserver(args.port)
        print("\ncoin_assets local cluster (Ctrl-C stops everything):")
        for name, url in cluster.urls().items():
            print(f"  {name:18s} {url}")
        print(f"  {'logs':18s} {cluster.base / 'logs'}")
        print("\nenvironment for a shell that talks to it:")
        for key in ("DAGSTER_HOME", "DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_DB",
                    "COIN_ASSETS_EXECUTOR", "COIN_ASSETS_CELERY_BROKER", "COIN_ASSETS_S3_BUCKET", "AWS_ENDPOINT_URL",
                    "MLFLOW_TRACKING_URI", "COIN_ASSETS_REGISTRY_LOCK", "COIN_ASSETS_DUCKDB"):
            print(f"  export {key}={cluster.env[key]}")
        sys.stdout.flush()
        while not stopping:
            dead = [n for n, p in cluster.procs.items() if not p.running]
            if dead:
                print(f"stopped unexpectedly: {dead}; see {cluster.base / 'logs'}", file=sys.stderr)
                return 1
            time.sleep(1)
        return 0
    finally:
        print("stopping every process…")
        cluster.stop()


def _demo_uploads(cluster: LocalCluster, coins: int) -> None:
    import tempfile

    import boto3

    from coin_assets.synth import generate_uploads

    s3 = boto3.client("s3", endpoint_url=cluster.env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    with tempfile.TemporaryDirectory() as tmp:
        generate_uploads(Path(tmp), coins=coins, days=2, seed=0)
        for path in sorted(Path(tmp).rglob("*")):
            if path.is_file():
                s3.upload_file(str(path), cluster.bucket, f"coin_assets/uploads/{path.relative_to(tmp).as_posix()}")


if __name__ == "__main__":
    sys.exit(main())
