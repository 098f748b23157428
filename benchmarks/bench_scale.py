"""How each ingestion cost grows with the day's work and with history, in one command.

    python benchmarks/bench_scale.py [--sizes 300,3000,20000] [--history-days 365] [--history-photos 10000]
                                     [--ratio-pairs 3]

Days of ``--sizes`` generated photos (the demo's generator, JPEG; a pool of at most 3 000 distinct photos,
each file with a trailer naming its day and copy, so that every file has its own checksum) are ingested by
``ingestion_job``'s assets and checks, in-process, each in a process of its own:

- on an **empty history** (a fresh data root per size), and
- on a **year of history**: ``--history-days`` days of ``--history-photos`` uploads each, inserted directly
  (the rows of every ingestion table, the predictions, the readers' Parquet files of every day, and the
  upload zone's files as hard links), then the sizes on the following days.

Per step it prints seconds, milliseconds per photo, the peak memory of the process tree while it ran, and the
rows and files it wrote; then the fixed cost of a second run with nothing new (snapshot refresh included),
the longest writer-slot hold per 1 000 photos, the costs that read whole tables (training-set query,
predictions' and review queue's queries, the upload sensor's listing, the retraining sensor's count), and
the ingestion bronze → gold with checks against the all-cores plain Pillow loop on 3 000 photos, in
``--ratio-pairs`` pairs (each on a fresh data root; the ratio taken pair by pair, the median quoted), with
the CPU seconds of both and the ratio they allow at best; and, in the same pairs, against the same loop
decoding JPEGs as the ingestion does (libjpeg-turbo's M/8 scales through simplejpeg, where Pillow's draft offers
halves, quarters and eighths): the ingestion's own overhead. ``--json`` keeps it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

POOL_MAX = 3000
TRAILER = b"coin-assets-bench-variant:"
WRITER_STEPS = ("bronze_images", "silver_images", "gold_images", "coin_crops")
COIN_FINDING_ASSETS = ("found_coins", "coin_crops")


# ------------------------------------------------------------------------------------------ photos

def make_pool(folder: Path, photos: int) -> list[tuple[bytes, bytes, dict]]:
    """(front JPEG, back JPEG, sidecar) of ``photos // 2`` generated coins, generated once into ``folder``."""
    from coin_assets.synth import generate_uploads

    coins = photos // 2
    if not folder.is_dir() or len(list(folder.rglob("*__front.jpg"))) < coins:
        shutil.rmtree(folder, ignore_errors=True)
        generate_uploads(folder, coins=coins, days=1, seed=2026, formats=["jpg"], generator="varied")
    (day,) = [p for p in folder.iterdir() if p.is_dir()]
    pool = []
    for front in sorted(day.glob("*__front.jpg"))[:coins]:
        stem = front.name.removesuffix("__front.jpg")
        sidecar = day / f"{stem}.json"  # a few coins come without one, as uploads do
        pool.append((front.read_bytes(), (day / f"{stem}__back.jpg").read_bytes(),
                     json.loads(sidecar.read_text()) if sidecar.is_file() else {"user_id": "user-bench"}))
    return pool


def write_day(root: Path, pool: list, day: str, photos: int) -> list[Path]:
    """``photos`` uploads (``photos // 2`` coins) for ``day`` under ``root/uploads/<day>/``, aged past the settle
    window. Returns the image paths."""
    folder = root / "uploads" / day
    folder.mkdir(parents=True, exist_ok=True)
    old = time.time() - 3600
    paths = []
    for i in range(photos // 2):
        front, back, sidecar = pool[i % len(pool)]
        variant = i // len(pool)
        coin_id = f"d{day.replace('-', '')}-{i:06d}"
        for side, data in (("front", front), ("back", back)):
            path = folder / f"{coin_id}__{side}.jpg"
            path.write_bytes(data + TRAILER + f"{day}:{variant}".encode())  # distinct bytes on every day
            paths.append(path)
        doc = {**sidecar, "coin_id": coin_id, "uploaded_at": f"{day}T10:00:00Z"}
        (folder / f"{coin_id}.json").write_text(json.dumps(doc))
    for path in folder.iterdir():
        os.utime(path, (old, old))
    os.sync()  # a day's uploads arrive over the day: on disk, not 500 MB of dirty pages throttling bronze's writes
    return paths


# ----------------------------------------------------------------------------------------- history

def build_history(root: Path, db_file: Path, first_day: dt.date, days: int, photos: int, files: bool = True) -> dict:
    """``days`` days of ``photos`` uploads each, as rows (uploads, silver, gold, coin crops, ingest state,
    predictions) inserted by SQL, and the upload zone's files as hard links (of a few source files: a file
    takes at most ~65 000 links). Returns what was written and how long it took."""
    import duckdb

    from coin_assets.core import crops as crop_tables
    from coin_assets.core import metadata as md
    from coin_assets.core import predictions as preds
    from coin_assets.core import readers

    started = time.perf_counter()
    coins = photos // 2
    with duckdb.connect(str(db_file)) as conn:
        md.ensure_schema(conn)
        crop_tables.ensure_crops_schema(conn)
        preds.ensure_review_queue_schema(conn)
        conn.execute(f"CREATE TEMP TABLE h AS SELECT d, c, s, (DATE '{first_day}' + d::INTEGER) AS day, "
                     "'h' || d || '-' || c AS coin, CASE s WHEN 0 THEN 'front' ELSE 'back' END AS side, "
                     "sha256('h' || d || '-' || c || '-' || s) AS sha "
                     f"FROM range({days}) t1(d), range({coins}) t2(c), range(2) t3(s)")
        day_str = "strftime(day, '%Y-%m-%d')"
        conn.execute(f"""INSERT INTO uploads SELECT 'uploads/' || {day_str} || '/' || coin || '__' || side || '.jpg',
            day, 'image', coin, side, coin || '__' || side || '.jpg', 180000, sha,
            'bronze/' || {day_str} || '/' || sha || '.jpg', NULL, 'user-' || (c % 97), day + INTERVAL 10 HOUR,
            day + INTERVAL 11 HOUR, CASE WHEN c % 7 < 6 THEN 1900 + c % 120 END, NULL, day + INTERVAL 10 HOUR
            FROM h""")
        conn.execute(f"""INSERT INTO uploads SELECT 'uploads/' || {day_str} || '/' || coin || '.json', day, 'sidecar',
            coin, NULL, coin || '.json', 120, sha256(coin), 'bronze/' || {day_str} || '/' || sha256(coin) || '.json',
            NULL, 'user-' || (c % 97), day + INTERVAL 10 HOUR, day + INTERVAL 11 HOUR, NULL, NULL,
            day + INTERVAL 10 HOUR FROM h WHERE s = 0""")
        conn.execute(f"""INSERT INTO silver_images SELECT sha, day, 'bronze/' || {day_str} || '/' || sha || '.jpg',
            sha || '.jpg', 'silver/' || {day_str} || '/' || sha || '.jpg', 20000, 512, 384, 'JPEG', 'RGB', 640, 480,
            1, NULL, day + INTERVAL 11 HOUR FROM h""")
        conn.execute(f"""INSERT INTO gold_images SELECT coin, side, day, 'user-' || (c % 97), day + INTERVAL 10 HOUR,
            day + INTERVAL 11 HOUR, 'uploads/' || {day_str} || '/' || coin || '__' || side || '.jpg',
            coin || '__' || side || '.jpg', 'bronze/' || {day_str} || '/' || sha || '.jpg', 180000, 640, 480,
            sha || '.jpg', 'silver/' || {day_str} || '/' || sha || '.jpg', 20000, 512, 384,
            'gold/' || {day_str} || '/' || coin || '__' || side || '.jpg', sha,
            CASE WHEN c % 7 < 6 THEN 1900 + c % 120 END, CASE WHEN c % 7 < 6 THEN 'sidecar' END, NULL, NULL, '1'
            FROM h""")
        conn.execute(f"""INSERT INTO coin_crops SELECT coin, side, day,
            'gold/' || {day_str} || '/' || coin || '__' || side || '.jpg', sha, true, 320.0, 240.0, 120.0, 0.8,
            NULL, 'crops/' || {day_str} || '/' || coin || '__' || side || '.png', 128, day + INTERVAL 11 HOUR FROM h""")
        conn.execute("""INSERT INTO ingest_state SELECT DISTINCT day, 'history', sha256(day::VARCHAR), NULL, NULL,
            NULL, NULL FROM h""")
        conn.execute("""INSERT INTO predictions SELECT coin, day, 1900 + c % 120, 2.0, 1896.7 + c % 120,
            1903.3 + c % 120, 'coin_year_regressor', '1', day + INTERVAL 12 HOUR, NULL, NULL FROM h WHERE s = 0""")
        rows = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]
                for t in ("uploads", "silver_images", "gold_images", "coin_crops", "predictions")}
        # the readers' Parquet files of every day, as a year of ingestion runs leaves them (each run exports
        # the days it changed); a database never exported gets this full export once, in its first run
        export = readers.refresh_snapshot(conn, db_file, [])
    links = 0
    if files:
        sources = root / "history-sources"
        sources.mkdir(parents=True, exist_ok=True)
        per_source = 60_000
        for d in range(days):
            day = (first_day + dt.timedelta(days=d)).isoformat()
            folder = root / "uploads" / day
            folder.mkdir(parents=True, exist_ok=True)
            for c in range(coins):
                for name in (f"h{d}-{c}__front.jpg", f"h{d}-{c}__back.jpg", f"h{d}-{c}.json"):
                    source = sources / f"{links // per_source}"
                    if links % per_source == 0:
                        source.write_bytes(b"history")
                    os.link(source, folder / name)
                    links += 1
        old = time.time() - 3600
        for source in sources.iterdir():
            os.utime(source, (old, old))
    return {"rows": rows, "upload_files": links, "readers_export_seconds": round(export.seconds, 1),
            "seconds": round(time.perf_counter() - started, 1)}


# ------------------------------------------------------------------------------- in the child process

class TreeMemory:
    """Samples the resident memory of this process and its children every 50 ms (``enabled``: each sample
    walks the process table, CPU taken from the run it measures)."""

    def __init__(self, enabled: bool = True):
        import psutil

        self.enabled = enabled
        self.process = psutil.Process()
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        total = 0
        for proc in [self.process, *self.process.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
            except Exception:  # noqa: BLE001 - a child that just ended
                pass
        return total

    def _run(self):
        while not self._stop.is_set():
            self.samples.append((time.time(), self._rss()))
            time.sleep(0.05)

    def __enter__(self):
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self.enabled:
            self._thread.join()

    def peak(self, start: float, end: float) -> int:
        return max((rss for t, rss in self.samples if start <= t <= end), default=0)


def tree_cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by this process and every process under it: live ones, and
    those that ended and were waited for by one of them (the pool's workers, by the pool or its forkserver)."""
    import psutil

    total = 0.0
    for proc in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:  # ended meanwhile
            pass
    return total


def child_ingest(day: str, without_coin_finding: bool = False) -> dict:
    """One ingestion run of ``day`` (the job's assets and checks, in-process), per step: seconds, peak memory,
    what it wrote. ``without_coin_finding``: bronze → gold with the checks only, and no memory sampling."""
    from dagster import AssetSelection, DagsterEventType, DagsterInstance, materialize

    from coin_assets.definitions import build_definitions
    from coin_assets.defs.resources import default_resources
    from coin_assets.settings import Settings

    settings = Settings.from_env()
    project = build_definitions(settings)
    (ingestion_job,) = [job for job in project.jobs if job.name == "ingestion_job"]
    selection = ingestion_job.selection
    assert isinstance(selection, AssetSelection)
    if without_coin_finding:
        selection = selection - AssetSelection.assets(*COIN_FINDING_ASSETS)
    instance = DagsterInstance.ephemeral()
    started, cpu_before = time.time(), tree_cpu_seconds()
    with TreeMemory(enabled=not without_coin_finding) as memory:
        result = materialize([*project.assets, *project.asset_checks], partition_key=day, selection=selection,
                             resources=default_resources(settings), instance=instance, raise_on_error=True)
    wall, cpu = time.time() - started, tree_cpu_seconds() - cpu_before
    starts, steps = {}, {}
    for record in instance.all_logs(result.run_id):
        event = record.dagster_event
        if event is None or not event.step_key:
            continue
        if event.event_type == DagsterEventType.STEP_START:
            starts[event.step_key] = record.timestamp
        elif event.event_type == DagsterEventType.STEP_SUCCESS:
            begin = starts[event.step_key]
            steps[event.step_key] = {"seconds": record.timestamp - begin,
                                     "peak_mib": memory.peak(begin, record.timestamp) / 2**20}
    written = {}
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        meta = {k: getattr(v, "value", None) for k, v in mat.metadata.items()}
        written[mat.asset_key.to_user_string()] = {k: meta[k] for k in (
            "processed", "skipped_unchanged", "quarantined", "found", "not_found", "rows", "chunks",
            "reader_snapshot_rows", "reader_snapshot_seconds", "bytes_written") if isinstance(meta.get(k), (int, float))}
    return {"wall_seconds": wall, "cpu_seconds": cpu, "peak_mib": memory.peak(started, time.time()) / 2**20, "steps": steps,
            "written": written, "materialized": sorted(written)}


def child_whole_tables(day: str) -> dict:
    """The queries that read whole tables, timed on this data root."""
    from coin_assets.core import predictions as preds
    from coin_assets.core.readers import open_snapshot
    from coin_assets.core.uploads import fingerprints_by_partition, list_uploads
    from coin_assets.defs.resources import default_resources
    from coin_assets.ml.training_set import labelled_coins

    resources = default_resources()
    out = {}

    def timed(name, fn):
        begin = time.perf_counter()
        value = fn()
        out[name] = {"seconds": round(time.perf_counter() - begin, 3), "rows": value}

    with resources["duckdb"].get_connection() as conn:
        timed("training_set query (labelled_coins)", lambda: len(labelled_coins(conn)))
        timed("predictions: coins_to_score (the day)", lambda: len(preds.coins_to_score(conn, day)))
        timed("review queue: refresh_review_queue (the day)",
              lambda: len(preds.refresh_review_queue(conn, day, "1", 40.0, 2.0)))
    store = resources["storage"].store()
    days = resources["storage"].upload_sensor_days
    timed(f"upload_sensor: the newest {days} day folders + fingerprints",
          lambda: len(fingerprints_by_partition(list_uploads(store, settle_seconds=10, newest_days=days))))
    database = resources["duckdb"].database
    with open_snapshot(database) as conn:
        timed("retraining_sensor: labelled coins on the snapshot", lambda: preds.labelled_coin_count(conn))
    return out


# ------------------------------------------------------------------------------------------ parent

def run_child(root: Path, mode: str, day: str) -> dict:
    env = {**os.environ, "COIN_ASSETS_DATA_DIR": str(root), "COIN_ASSETS_SETTLE_SECONDS": "10",
           "DAGSTER_HOME": str(root / "dagster_home")}
    for name in ("COIN_ASSETS_DUCKDB", "MLFLOW_TRACKING_URI", "COIN_ASSETS_S3_BUCKET", "COIN_ASSETS_EXECUTOR"):
        env.pop(name, None)
    (root / "dagster_home").mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, __file__, "--child", mode, "--day", day], env=env, cwd=ROOT,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{mode} {day} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _loop_one(path: str, jpeg_decoder: str = "pillow") -> int:
    import hashlib

    from coin_assets.core.images import clean_image

    data = Path(path).read_bytes()
    hashlib.sha256(data).hexdigest()
    return len(clean_image(data, jpeg_decoder=jpeg_decoder).data)


def pillow_loop(paths: list[Path], workers: int, jpeg_decoder: str = "pillow") -> float:
    """Photos per second of the plain loop (read, sha256, draft decode, EXIF, RGB, 512 px, JPEG) on every core;
    ``jpeg_decoder="simplejpeg"``: the same loop decoding as the ingestion does (libjpeg-turbo's M/8 scales)."""
    import functools

    begin = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(functools.partial(_loop_one, jpeg_decoder=jpeg_decoder), [str(p) for p in paths],
                      chunksize=16))
    return len(paths) / (time.perf_counter() - begin)


def measure(root: Path, day: str, photos: int, pool: list) -> dict:
    paths = write_day(root, pool, day, photos)
    first = run_child(root, "ingest", day)
    again = run_child(root, "ingest", day)
    tables = run_child(root, "tables", day)
    return {"photos": photos, "day": day, "first": first, "nothing_new": again, "whole_tables": tables,
            "paths": [str(p) for p in paths] if photos == 3000 else []}


def ingestion_seconds(run: dict) -> float:
    """Bronze → gold with the checks: every step but coin finding's (``found_coins``, ``coin_crops``)."""
    return sum(s["seconds"] for k, s in run["steps"].items() if not k.startswith(COIN_FINDING_ASSETS))


def ingestion_against_loop(work: Path, pool: list, day: str, pairs: int) -> list[dict]:
    """``pairs`` pairs, each on a fresh data root with the same 3 000 photos: one ingestion run bronze → gold
    with the checks (a process of its own), then the plain Pillow loop on the same files (a process of its
    own); the pair's ratio of photos per second. The machine's speed drifts between minutes, so the ratio is
    taken pair by pair and the median quoted."""
    out = []
    for k in range(pairs):
        root = work / f"ratio-{k}"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        paths = write_day(root, pool, day, 3000)
        run = run_child(root, "ingest-only", day)
        ingest_rate = len(paths) / ingestion_seconds(run)
        listing = root / "paths.txt"
        listing.write_text("\n".join(str(p) for p in paths))
        os.sync()  # the ingestion's writes flushed, not written back while the loop runs
        loops = {}
        for decoder in ("pillow", "simplejpeg"):
            done = subprocess.run([sys.executable, __file__, "--child", "loop", "--paths", str(listing),
                                   "--jpeg-decoder", decoder], cwd=ROOT, capture_output=True, text=True, check=True)
            loops[decoder] = json.loads(done.stdout.strip().splitlines()[-1])
        loop_out, same_decoder = loops["pillow"], loops["simplejpeg"]
        loop_rate = loop_out["photos_per_second"]
        out.append({"ingestion_photos_per_second": ingest_rate, "ingestion_wall_seconds": run["wall_seconds"],
                    "ingestion_cpu_seconds": run["cpu_seconds"], "loop_cpu_seconds": loop_out["cpu_seconds"],
                    "loop_photos_per_second": loop_rate, "ratio": ingest_rate / loop_rate,
                    "same_decoder_loop_photos_per_second": same_decoder["photos_per_second"],
                    "same_decoder_loop_cpu_seconds": same_decoder["cpu_seconds"],
                    "ratio_same_decoder": ingest_rate / same_decoder["photos_per_second"],
                    "steps": {name: round(s["seconds"], 2) for name, s in run["steps"].items()}})
        print(f"pair {k + 1}: ingestion {ingest_rate:.1f} photos/s, Pillow loop {loop_rate:.1f}: ratio "
              f"{ingest_rate / loop_rate:.2f}; the loop decoding as the ingestion does "
              f"{same_decoder['photos_per_second']:.1f}: ratio {ingest_rate / same_decoder['photos_per_second']:.2f}; "
              f"CPU seconds: ingestion {run['cpu_seconds']:.1f} (the run's {run['wall_seconds']:.1f} s), Pillow loop "
              f"{loop_out['cpu_seconds']:.1f}, same-decoder loop {same_decoder['cpu_seconds']:.1f}", flush=True)
        shutil.rmtree(root, ignore_errors=True)
    return out


def report(results: list[dict], loop_rate: float | None, history: dict | None, pairs: list[dict]) -> None:
    print("\n== per step (first run of the day) ==")
    for r in results:
        run = r["first"]
        print(f"\n-- {r['history']} history, {r['photos']} photos ({r['day']}): {run['wall_seconds']:.1f} s in all, "
              f"{1000 * run['wall_seconds'] / r['photos']:.1f} ms a photo, peak {run['peak_mib']:.0f} MiB")
        print(f"   {'step':58s} {'s':>8s} {'ms/photo':>9s} {'peak MiB':>9s}  written")
        for step, s in sorted(run["steps"].items(), key=lambda kv: -kv[1]["seconds"]):
            asset = step.split(".")[0]
            wrote = run["written"].get(asset, {}) if step in (asset, f"{asset}.{asset}_merged") else {}
            print(f"   {step:58s} {s['seconds']:8.2f} {1000 * s['seconds'] / r['photos']:9.2f} {s['peak_mib']:9.0f}  "
                  f"{json.dumps(wrote) if wrote else ''}")
    print("\n== summary ==")
    print(f"{'history':8s} {'photos':>7s} {'ms/photo':>9s} {'peak MiB':>9s} {'ingest ms/photo':>16s} "
          f"{'nothing new s':>14s} {'longest writer hold s/1000 photos':>34s}")
    for r in results:
        run, again = r["first"], r["nothing_new"]
        holds = {k: s["seconds"] for k, s in run["steps"].items() if k in WRITER_STEPS}
        longest = max(holds, key=holds.get)
        print(f"{r['history']:8s} {r['photos']:7d} {1000 * run['wall_seconds'] / r['photos']:9.2f} "
              f"{run['peak_mib']:9.0f} {1000 * ingestion_seconds(run) / r['photos']:16.2f} "
              f"{again['wall_seconds']:14.2f} {1000 * holds[longest] / r['photos']:27.2f} ({longest})")
    by = {(r["history"], r["photos"]): r for r in results}
    for which in ("empty", "year"):
        a, b = by.get((which, 3000)), by.get((which, 20000))
        if a and b:
            per_a = a["first"]["wall_seconds"] / 3000
            per_b = b["first"]["wall_seconds"] / 20000
            print(f"{which} history: time a photo at 20 000 / at 3 000 = {per_b / per_a:.3f}; "
                  f"peak memory 20 000 / 3 000 = {b['first']['peak_mib'] / a['first']['peak_mib']:.3f}")
    empty_fixed = [r["nothing_new"]["wall_seconds"] for r in results if r["history"] == "empty"]
    year_fixed = [r["nothing_new"]["wall_seconds"] for r in results if r["history"] == "year"]
    if empty_fixed and year_fixed:
        print(f"nothing-new run: year history {min(year_fixed):.2f} s / empty {min(empty_fixed):.2f} s = "
              f"{min(year_fixed) / min(empty_fixed):.2f}")
    if pairs:
        ratios = sorted(p["ratio"] for p in pairs)
        median = statistics.median(ratios)
        print(f"ingestion bronze → gold with checks against the plain Pillow loop on all cores, 3 000 photos, "
              f"{len(pairs)} pairs: ratio median {median:.2f} (min {ratios[0]:.2f}, max {ratios[-1]:.2f}); "
              f"ingestion median {statistics.median(p['ingestion_photos_per_second'] for p in pairs):.1f} photos/s, "
              f"loop median {statistics.median(p['loop_photos_per_second'] for p in pairs):.1f}")
        same = sorted(p["ratio_same_decoder"] for p in pairs)
        print(f"   against the same loop decoding as the ingestion does (libjpeg-turbo's M/8 scales through "
              f"simplejpeg): ratio median {statistics.median(same):.2f} (min {same[0]:.2f}, max {same[-1]:.2f}); "
              f"loop median {statistics.median(p['same_decoder_loop_photos_per_second'] for p in pairs):.1f} photos/s")
        cpu_ratio = statistics.median(p["loop_cpu_seconds"] / p["ingestion_cpu_seconds"] for p in pairs)
        print(f"   CPU seconds, median: ingestion {statistics.median(p['ingestion_cpu_seconds'] for p in pairs):.1f}, "
              f"loop {statistics.median(p['loop_cpu_seconds'] for p in pairs):.1f}: with every core busy all the "
              f"time, the ingestion could reach at most {cpu_ratio:.2f} × the loop on this machine")
        steps = {name for p in pairs for name in p["steps"]}
        for name in sorted(steps, key=lambda n: -statistics.median(p["steps"].get(n, 0.0) for p in pairs)):
            print(f"   {name:58s} {statistics.median(p['steps'].get(name, 0.0) for p in pairs):8.2f} s (median)")
    elif loop_rate:
        for r in results:
            if r["photos"] == 3000:
                rate = 3000 / ingestion_seconds(r["first"])
                print(f"{r['history']} history, 3 000 photos: ingestion bronze → gold with checks {rate:.1f} photos/s, "
                      f"plain Pillow loop on all cores {loop_rate:.1f} photos/s: ratio {rate / loop_rate:.2f}")
    print("\n== costs that read whole tables ==")
    for r in results:
        if r["photos"] == min(x["photos"] for x in results):
            for name, v in r["whole_tables"].items():
                print(f"   {r['history']:6s} {name:55s} {v['seconds']:8.3f} s  ({v['rows']} rows)")
    if history:
        print(f"\nyear history inserted: {history}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="300,3000,20000")
    parser.add_argument("--history-days", type=int, default=365)
    parser.add_argument("--history-photos", type=int, default=10000)
    parser.add_argument("--histories", default="empty,year")
    parser.add_argument("--work", default="/tmp/bench_scale")
    parser.add_argument("--json", default=None)
    parser.add_argument("--ratio-pairs", type=int, default=3,
                        help="pairs of (ingestion without coin finding, Pillow loop) on 3 000 photos; 0: none")
    parser.add_argument("--child", choices=("ingest", "ingest-only", "tables", "loop"), help=argparse.SUPPRESS)
    parser.add_argument("--day", help=argparse.SUPPRESS)
    parser.add_argument("--paths", help=argparse.SUPPRESS)
    parser.add_argument("--jpeg-decoder", default="pillow", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child == "loop":
            paths = [Path(p) for p in Path(args.paths).read_text().splitlines()]
            cpu_before = tree_cpu_seconds()
            rate = pillow_loop(paths, os.cpu_count() or 1, args.jpeg_decoder)
            out = {"photos_per_second": rate, "cpu_seconds": tree_cpu_seconds() - cpu_before}
        elif args.child == "tables":
            out = child_whole_tables(args.day)
        else:
            out = child_ingest(args.day, without_coin_finding=args.child == "ingest-only")
        print(json.dumps(out))
        return

    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    pool = make_pool(work / "pool", min(max([*sizes, 3000 if args.ratio_pairs else 0]), POOL_MAX))
    # the history ends the day before the first measured day; the last measured day is today (partitions end today)
    first_measured = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=len(sizes) - 1)
    first_day = first_measured - dt.timedelta(days=args.history_days)
    results, loop_rate, history = [], None, None
    for which in args.histories.split(","):
        if which == "year":
            root = work / "year"
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            history = build_history(root, root / "coin_assets.duckdb", first_day, args.history_days,
                                    args.history_photos)
            print(f"year history: {history}", flush=True)
        for k, photos in enumerate(sizes):
            if which == "empty":
                root = work / f"empty-{photos}"
                shutil.rmtree(root, ignore_errors=True)
                root.mkdir(parents=True)
            day = (first_measured + dt.timedelta(days=k)).isoformat()
            r = measure(root, day, photos, pool)
            r["history"] = which
            if photos == 3000 and loop_rate is None and not args.ratio_pairs:
                loop_rate = pillow_loop([Path(p) for p in r["paths"]], os.cpu_count() or 1)
            r.pop("paths")
            results.append(r)
            print(f"{which} {photos}: {r['first']['wall_seconds']:.1f} s, nothing new {r['nothing_new']['wall_seconds']:.2f} s",
                  flush=True)
            if which == "empty":
                shutil.rmtree(root, ignore_errors=True)
            else:  # keep the history, drop the day's files (disk)
                for layer in ("uploads", "bronze", "silver", "gold", "crops"):
                    shutil.rmtree(root / layer / day, ignore_errors=True)
    pairs = ingestion_against_loop(work, pool, first_measured.isoformat(), args.ratio_pairs)
    report(results, loop_rate, history, pairs)
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "loop_photos_per_second": loop_rate,
                                               "history": history, "ingestion_against_loop": pairs}, indent=2))


if __name__ == "__main__":
    main()
