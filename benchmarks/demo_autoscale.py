"""Workers that follow the load, with Celery's own autoscaler, on this machine.

    python benchmarks/demo_autoscale.py [--burst 4] [--max 4] [--min 1]

Starts the local cluster's servers, worker-1 (DuckDB owner) and worker-2 with `--autoscale=MAX,MIN`
on the default queue, ingests one small day, then sends a burst of training runs at once (each a
`coin_year_model` step on the default queue). Prints worker-2's live pool processes every 2 s: it grows with
the burst and shrinks back to MIN after the quiet period (Celery's AUTOSCALE_KEEPALIVE, set to 10 s).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import boto3  # noqa: E402

from coin_assets.devtools.local_cluster import BIN, REPO_ROOT, LocalCluster, start_celery_worker  # noqa: E402
from coin_assets.synth import generate_uploads  # noqa: E402

TINY = {"image_size": 32, "epochs": 1, "max_steps": 2, "batch_size": 8, "num_workers": 0, "augment": False,
        "backbone": "mobilenet_v3_small", "projection_dim": 16, "num_threads": 1, "retrain_same_data": True}


def pool_size(worker) -> int:
    """Live pool processes of a worker: the children of its main process (psutil), zombies left out
    (a pool process the autoscaler stopped stays a zombie until billiard reaps it)."""
    import psutil

    try:
        children = psutil.Process(worker.popen.pid).children()
    except psutil.NoSuchProcess:
        return 0
    alive = 0
    for child in children:
        try:
            alive += child.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            pass
    return alive


def scaling_events(worker) -> list[str]:
    """Celery's own record of what its autoscaler did (worker log lines)."""
    return [line.split("] ", 1)[-1] for line in worker.log.read_text(errors="replace").splitlines()
            if "Scaling up" in line or "Scaling down" in line]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--burst", type=int, default=4)
    parser.add_argument("--max", type=int, default=4)
    parser.add_argument("--min", type=int, default=1)
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="coin_autoscale_"))
    src = base / "generated"
    generate_uploads(src, coins=24, days=1, seed=3, max_side=160)
    day = next(p.name for p in src.iterdir() if p.is_dir())
    with LocalCluster(base / "cluster") as cluster:
        cluster.start_servers()
        s3 = boto3.client("s3", endpoint_url=cluster.env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        for path in sorted(src.rglob("*")):
            if path.is_file():
                s3.upload_file(str(path), cluster.bucket, f"coin_assets/uploads/{path.relative_to(src).as_posix()}")
        env = {**cluster.env, "AUTOSCALE_KEEPALIVE": "10", "COIN_ASSETS_SETTLE_SECONDS": "0"}
        cluster.procs["worker-1"] = start_celery_worker(cluster.base, "worker-1", ["duckdb"], env)
        cluster.procs["worker-2"] = start_celery_worker(cluster.base, "worker-2", ["dagster"], env,
                                                        autoscale=(args.max, args.min))
        dagster = [str(BIN / "dagster"), "job", "execute", "-m", "coin_assets.definitions"]
        subprocess.run([*dagster, "-j", "ingestion_job", "--tags", json.dumps({"dagster/partition": day})],
                       env=env, cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        config = base / "train.json"
        config.write_text(json.dumps({"ops": {"coin_year_model": {"config": TINY}}}))
        started = time.monotonic()
        print(f"t=0: burst of {args.burst} training runs; worker-2 autoscale={args.max},{args.min}", flush=True)
        runs = [subprocess.Popen([*dagster, "-j", "training_job", "-c", str(config)], env=env, cwd=REPO_ROOT,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(args.burst)]
        sizes = []
        quiet_since = None
        while time.monotonic() - started < 540:
            size = pool_size(cluster.procs["worker-2"])
            sizes.append(size)
            done = all(r.poll() is not None for r in runs)
            print(f"t={time.monotonic() - started:5.0f}s  worker-2 pool={size}  runs done={sum(r.poll() is not None for r in runs)}",
                  flush=True)
            if done and quiet_since is None:
                quiet_since = time.monotonic()
            if quiet_since and size == args.min and time.monotonic() - quiet_since > 5:
                break
            time.sleep(2)
        codes = [r.wait() for r in runs]
        print(f"runs exit codes {codes}; pool min {min(s for s in sizes if s)} max {max(s for s in sizes if s)} "
              f"final {sizes[-1]}")
        print("worker-2 autoscaler:", "; ".join(scaling_events(cluster.procs["worker-2"])) or "no scaling")
    return 0


if __name__ == "__main__":
    sys.exit(main())
