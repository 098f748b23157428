"""Ingestion speed against plain Pillow loops over the same files, in one command.

    python benchmarks/bench_ingestion.py [--coins 150] [--workers N]

Generates ``--coins`` coins (2 photos + sidecar each, mixed formats and sizes) for one day, then:

1. plain loop, one process: read, sha256, draft decode, EXIF transpose, RGB, LANCZOS to 512, JPEG 90
   (``clean_image``, which is exactly that);
2. the same loop on every core (a process pool of ``--workers``, default all cores);
3. a full-decode loop, one process (no draft);
4. the headless ingestion (bronze + decode + silver + gold and their checks, through Dagster,
   in-process) on a fresh data root: images/s and its ratio to loop 2. The command also runs
   coin_crops (the model's coin finding, not part of this comparison): its seconds are printed
   apart and left out of the ratio;
5. the same command again with nothing new: seconds, and its ratio to run 4;
6. peak RSS of the ingestion process;
7. the fixed cost of one run: the same command on a day of 2 coins (4 photos), and the ratio the
   all-cores loop would allow even if every photo cost the pipeline no more than it costs the loop
   (loop seconds / (loop seconds + fixed seconds)).

    python benchmarks/bench_ingestion.py --executors [--coins 150] [--rounds 2]

instead runs ``ingestion_job`` (with its checks) through ``dagster job execute`` on a persistent
instance (deploy/dagster.yaml), once with COIN_ASSETS_EXECUTOR=in_process and once with
multiprocess, each on a fresh copy of the same uploads, and prints both (the run's own duration
from the instance, and the command's wall time with its process start) and their ratio.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from coin_assets.core.images import clean_image
from coin_assets.synth import generate_uploads

DAY = dt.date(2026, 11, 20)


def _one(path: str, use_draft: bool = True) -> int:
    data = Path(path).read_bytes()
    hashlib.sha256(data).hexdigest()
    try:
        return len(clean_image(data, use_draft=use_draft, jpeg_decoder="pillow").data)
    except ValueError:
        return 0


def _full(path: str) -> int:
    return _one(path, use_draft=False)


def loop(paths: list[str], use_draft: bool = True) -> float:
    started = time.perf_counter()
    for path in paths:
        _one(path, use_draft)
    return len(paths) / (time.perf_counter() - started)


def pooled_loop(paths: list[str], workers: int) -> float:
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_one, paths[:workers]))  # start the workers outside the timing
        started = time.perf_counter()
        list(pool.map(_one, paths, chunksize=4))
        return len(paths) / (time.perf_counter() - started)


def headless(root: Path) -> tuple[float, dict, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COIN_ASSETS_", "DAGSTER_", "MLFLOW_"))}
    env.update(COIN_ASSETS_DATA_DIR=str(root), COIN_ASSETS_SETTLE_SECONDS="0")
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    code = ("import json, resource, sys, time; from coin_assets import cli; t = time.perf_counter(); "
            "s = cli.run_headless(None, train=False); s['wall'] = time.perf_counter() - t; "
            "s['rss'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024; print(json.dumps(s, default=str))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    return summary["seconds"]["ingestion"] - summary["seconds"]["of_which_coin_crops"], summary, summary["rss"]


REPO = Path(__file__).resolve().parents[1]


def executor_run(source: Path, base: Path, executor: str) -> tuple[float, float]:
    """(run seconds as recorded by the instance, command wall seconds) of one ingestion_job run."""
    from dagster import DagsterInstance

    root, home = base / executor / "data", base / executor / "dagster_home"
    shutil.copytree(source, root / "uploads")
    home.mkdir(parents=True)
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COIN_ASSETS_", "DAGSTER_", "MLFLOW_"))}
    env.update(COIN_ASSETS_DATA_DIR=str(root), COIN_ASSETS_SETTLE_SECONDS="0", DAGSTER_HOME=str(home),
               COIN_ASSETS_EXECUTOR=executor, PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dagster", "job", "execute", "-m", "coin_assets.definitions",
                    "-j", "ingestion_job", "--tags", json.dumps({"dagster/partition": DAY.isoformat()})],
                   env=env, cwd=base, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    with DagsterInstance.from_config(str(home)) as instance:
        (record,) = instance.get_run_records()
        assert record.dagster_run.status.value == "SUCCESS", record.dagster_run.status
        return record.end_time - record.start_time, wall


def compare_executors(source: Path, tmp: Path, photos: int, rounds: int) -> None:
    """Alternating rounds (the machine may be shared: compare medians, not one pair)."""
    import statistics

    results: dict[str, list[tuple[float, float]]] = {"in_process": [], "multiprocess": []}
    for i in range(rounds):
        for name in results:
            run_s, wall = executor_run(source, tmp / f"round-{i}", name)
            results[name].append((run_s, wall))
            print(f"round {i + 1} {name:13s}: run {run_s:6.2f} s ({photos / run_s:6.1f} images/s), "
                  f"command {wall:6.2f} s, load average {os.getloadavg()[0]:.1f}", flush=True)
    median = {name: (statistics.median(r for r, _ in v), statistics.median(w for _, w in v)) for name, v in results.items()}
    (ip_run, ip_wall), (mp_run, mp_wall) = median["in_process"], median["multiprocess"]
    print(f"median of {rounds}: in_process run {ip_run:.2f} s, multiprocess run {mp_run:.2f} s; "
          f"multiprocess / in_process: run {mp_run / ip_run:.2f}x, command {mp_wall / ip_wall:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--coins", type=int, default=150)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--uploads", help="reuse this upload folder (generated there if missing)")
    parser.add_argument("--executors", action="store_true", help="compare the multiprocess executor with in_process")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of --executors")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        source = Path(args.uploads) if args.uploads else Path(tmp) / "generated"
        if not source.is_dir():
            generate_uploads(source, args.coins, days=1, seed=1, end_date=DAY)
        if args.executors:
            photos = sum(1 for p in source.rglob("*") if p.is_file() and p.suffix != ".json")
            print(f"{photos} photos ({args.coins} coins, one day), {os.cpu_count()} CPU(s)")
            compare_executors(source, Path(tmp), photos, args.rounds)
            return
        shutil.copytree(source, root / "uploads")
        paths = sorted(str(p) for p in (root / "uploads").rglob("*") if p.is_file() and p.suffix != ".json")
        mib = sum(Path(p).stat().st_size for p in paths) / 2**20
        one = loop(paths)
        every = pooled_loop(paths, args.workers)
        full = loop(paths, use_draft=False)
        first_s, summary, rss = headless(root)
        second_s, second, _ = headless(root)
        db_mib = (root / "coin_assets.duckdb").stat().st_size / 2**20
        tiny = Path(tmp) / "tiny"
        generate_uploads(tiny / "uploads", 2, days=1, seed=2, end_date=DAY)
        fixed_s, fixed, _ = headless(tiny)
    rate = len(paths) / first_s
    print(f"{len(paths)} photos ({args.coins} coins, one day, {mib:.1f} MiB), {args.workers} worker(s), "
          f"{os.cpu_count()} CPU(s)")
    print(f"plain loop, 1 process        : {one:7.1f} images/s")
    print(f"plain loop, {args.workers} processes      : {every:7.1f} images/s")
    print(f"full-decode loop, 1 process  : {full:7.1f} images/s")
    print(f"headless ingestion           : {rate:7.1f} images/s ({first_s:.2f} s) = "
          f"{rate / every:.2f} x the all-cores loop")
    print(f"coin_crops (apart)           : {summary['seconds']['of_which_coin_crops']:.2f} s first run, "
          f"{second['seconds']['of_which_coin_crops']:.2f} s second")
    print(f"second run, nothing new      : {second_s:.2f} s = {second_s / first_s:.1%} of the first")
    print(f"reader snapshot refresh      : {summary['seconds']['of_which_reader_snapshot'] * 1000:.0f} ms "
          f"(copy of the {db_mib:.1f} MiB database, inside gold_images)")
    print(f"ingestion peak RSS           : {rss:.0f} MiB")
    loop_s = len(paths) / every
    print(f"fixed cost of a run          : {fixed_s:.2f} s for a day of 2 coins (4 photos); with no per-photo cost "
          f"above the loop's, the ratio could be at most {loop_s / (loop_s + fixed_s):.2f} x")
    print("fixed run, layers: " + json.dumps({k: round(t["seconds"], 2) for k, t in fixed["layers"].items()}))
    print("layers: " + json.dumps({k: {m: round(v, 2) if isinstance(v, float) else v for m, v in t.items()}
                                   for k, t in summary["layers"].items()}))
    print("second: " + json.dumps({k: round(t["seconds"], 2) for k, t in second["layers"].items()}))


if __name__ == "__main__":
    main()
