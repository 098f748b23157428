"""Ingestion of one day (default 200 coins = 400 photos) with the in-process executor and with 1, 2
and 4 Celery workers, on the same real servers (Postgres instance, Redis, moto S3), same command.

    python benchmarks/bench_scale_out.py [--coins 200] [--workers 1,2,4] [--dir /tmp/coin_bench]

Each configuration gets its own S3 prefix and DuckDB file (a cold start on the same uploads) and is
run as `dagster job execute -j ingestion_job` (so every figure includes one process start).
Prints wall seconds, photos/s and the speed-up against in-process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import boto3  # noqa: E402

from coin_assets.devtools.local_cluster import BIN, REPO_ROOT, LocalCluster  # noqa: E402
from coin_assets.synth import generate_uploads  # noqa: E402


def upload(s3, bucket: str, src: Path, prefix: str) -> None:
    for path in sorted(src.rglob("*")):
        if path.is_file():
            s3.upload_file(str(path), bucket, f"{prefix}/uploads/{path.relative_to(src).as_posix()}")


def run_ingestion(env: dict, day: str) -> float:
    started = time.perf_counter()
    subprocess.run([str(BIN / "dagster"), "job", "execute", "-m", "coin_assets.definitions", "-j", "ingestion_job",
                    "--tags", json.dumps({"dagster/partition": day})], env=env, cwd=REPO_ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--coins", type=int, default=200)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--dir", default=None)
    args = parser.parse_args(argv)
    base = Path(args.dir or tempfile.mkdtemp(prefix="coin_bench_"))
    shutil.rmtree(base, ignore_errors=True)
    src = base / "generated"
    coins = generate_uploads(src, coins=args.coins, days=1, seed=0)
    day = next(p.name for p in src.iterdir() if p.is_dir())
    photos = sum(1 for p in (src / day).iterdir() if p.suffix != ".json")
    results = {}
    with LocalCluster(base / "cluster") as cluster:
        cluster.start_servers()
        s3 = boto3.client("s3", endpoint_url=cluster.env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        configs = [("in_process", 0)] + [(f"celery x{n}", n) for n in (int(x) for x in args.workers.split(","))]
        for name, workers in configs:
            prefix = f"bench-{workers}"
            upload(s3, cluster.bucket, src, prefix)
            env = {**cluster.env, "COIN_ASSETS_S3_PREFIX": prefix, "COIN_ASSETS_PROFILE": "scale_out",
                   "COIN_ASSETS_DUCKDB": str(base / f"{prefix}.duckdb"),
                   "COIN_ASSETS_EXECUTOR": "celery" if workers else "in_process"}
            procs = []
            if workers:
                saved = cluster.env
                cluster.env = env
                procs = cluster.start_workers(workers)
                cluster.env = saved
                time.sleep(5)  # workers connect to the broker
            try:
                results[name] = run_ingestion(env, day)
            finally:
                for p in procs:
                    p.stop()
                for key in [k for k in cluster.procs if k.startswith("worker-")]:
                    cluster.procs.pop(key)
            print(f"{name:12s} {results[name]:7.1f} s  {photos / results[name]:6.1f} photos/s  "
                  f"speed-up x{results['in_process'] / results[name]:.2f}", flush=True)
    print(f"{len(coins)} coins, {photos} photos, one day ({day}), {os.cpu_count()} CPU cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
