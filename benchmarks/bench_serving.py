"""Serving latency and throughput of the default production model: our API against ``mlflow models serve`` of
the same registered version and against the same model in process, in one command on one machine with the
same photos.

    python benchmarks/bench_serving.py [--seconds 20] [--clients 1,4,16] [--soak-seconds 600] [--soak-clients 4]

The versions are what an instance serves: v1 is the base version a fresh instance registers and makes
production (:func:`coin_assets.ml.tracking.register_base_version`: the committed year reader, with a prior as its
whole-coin estimate), v2 a version as ``coin_year_model`` registers it (the default ``TrainConfig`` regressor,
untrained, and the same reader), used for the promotion and rollback. The photos are the training generator's
(:mod:`coin_assets.synth.varied`, 1024 x 768 JPEG), so the reader does its real work on each request.

1. in-process floor: one pair at a time through the production version's predictor
   (``PhotoPredictor.predict_photos``: decode, read the year, the regressor), each photo twice in order, in
   rounds alternating with one client on our API sending the same sequence (the ratio is the median of the
   rounds' ratios of p50s);
2. in-process batched throughput on all cores: one process per core, each predicting every pair ``--cycles``
   times as batches of all the pairs, the limit of this machine; the servers get the same fixed workload from
   16 clients (``drain``), so that both sides read the same mix of photos;
3. p50/p95/p99 latency and throughput at 1, 4 and 16 concurrent clients, for our service
   (``python -m coin_assets.serving``, multipart) and ``mlflow models serve --env-manager local``
   (JSON ``dataframe_split`` with base64 photos) of the same version;
4. 16 clients through a promotion and a rollback (alias moved + reload endpoint): failed requests,
   longest stall (longest gap without any answer, and the slowest request);
5. a soak (``--soak-seconds``, default 10 minutes): the service's resident and peak memory after warm-up
   and at the end.
Goals (printed with the measured ratios): p50 at 1 client ≤ 1.3 × floor; throughput at 16 clients ≥ 0.85 × the
in-process batched throughput on all cores; 0 failed requests through promotion and rollback; flat memory.
The load generator runs on the same machine (threads with one httpx client each), for both servers.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
NAME = "coin_year_bench"
SEED = 515151  # the photos' seed: no training, suite or other benchmark uses it
TOKEN = "bench-reload-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def photos(n: int = 8, size: tuple[int, int] = (1024, 768)) -> list[tuple[bytes, bytes]]:
    """Front and back JPEGs of ``n`` coins of the training generator (every placement in turn)."""
    from dataclasses import replace

    from coin_assets.synth import varied

    out = []
    for i in range(n):
        year_rng, style_rng = varied.coin_rngs(SEED, i)
        style = replace(varied.sample_style(style_rng), placement=varied.PLACEMENTS[i % len(varied.PLACEMENTS)])
        pair = []
        for side in varied.render_photo_pair(varied.sample_year(year_rng), style, style_rng, photo_size=size):
            buf = io.BytesIO()
            side.image.convert("RGB").save(buf, "JPEG", quality=90)
            pair.append(buf.getvalue())
        out.append((pair[0], pair[1]))
    return out


def register(root: Path, backbone: str, image_size: int, example) -> tuple[str, list[str]]:
    """v1: the base version, production (what a fresh instance serves); v2: a version as coin_year_model
    registers it (the regressor and the committed year reader)."""
    import mlflow
    import torch
    from mlflow import MlflowClient

    from coin_assets.ml.model import CoinYearRegressor
    from coin_assets.ml.pyfunc import PhotoModelConfig, log_photo_model
    from coin_assets.ml.tracking import register_base_version
    from coin_assets.ml.year_reading import READER_WEIGHTS

    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient()
    exp = client.create_experiment("bench", artifact_location=(root / "artifacts").as_uri())
    mlflow.set_experiment(experiment_id=exp)
    base = register_base_version(client, NAME, image_size, str(READER_WEIGHTS), experiment_id=exp)
    torch.manual_seed(0)
    with mlflow.start_run():
        info = log_photo_model(CoinYearRegressor(backbone=backbone), PhotoModelConfig(image_size=image_size),
                               *example, registered_model_name=NAME, reader_weights=READER_WEIGHTS)
    return uri, [str(base), str(info.registered_model_version)]


def start(cmd: list[str], env: dict, log: Path, health_url: str, timeout: float = 240) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[:3]} exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(health_url, timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop(proc)
    raise RuntimeError(f"{cmd[:3]} not ready in {timeout}s: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen) -> None:
    from coin_assets.devtools.supervisor import stop_process_group

    stop_process_group(proc, grace=15)


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak resident) of a process and its children, from /proc."""
    out = {"rss": 0, "hwm": 0}
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    out["rss"] += int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    out["hwm"] += int(line.split()[1])
        except OSError:
            pass
    return out


class Target:
    def __init__(self, name: str, url: str, make_request):
        self.name, self.url, self.make_request = name, url, make_request
        self.pid: int | None = None


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a server process and its descendants (mlflow serve runs uvicorn as a
    child): what a request costs, much less sensitive to the shared machine's load than wall time."""
    import psutil

    if pid is None:
        return float("nan")
    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def ours(base: str) -> Target:
    def send(client: httpx.Client, pair):
        return client.post(f"{base}/predict", files={"front": ("f.jpg", pair[0]), "back": ("b.jpg", pair[1])})
    return Target("coin_assets API", base, send)


def mlflow_serve(base: str) -> Target:
    def send(client: httpx.Client, pair):
        body = {"dataframe_split": {"columns": ["front", "back"], "data": [
            [base64.b64encode(pair[0]).decode(), base64.b64encode(pair[1]).decode()]]}}
        return client.post(f"{base}/invocations", json=body)
    return Target("mlflow models serve", base, send)


def load(target: Target, pairs, clients: int, seconds: float, on_tick=None) -> dict:
    """``clients`` threads send requests for ``seconds``, and with ``on_tick`` (run in this thread) until
    2 s after it returned; latencies, failures, answer times, versions."""
    stop_at = [time.perf_counter() + seconds]  # a list: on_tick's end may push it back
    ticked = threading.Event()
    if on_tick is None:
        ticked.set()
    lat: list[float] = []
    answered: list[float] = []
    failures: list[str] = []
    versions: list[str] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        with httpx.Client(timeout=60) as client:
            i = k
            while not ticked.is_set() or time.perf_counter() < stop_at[0]:
                t0 = time.perf_counter()
                try:
                    r = target.make_request(client, pairs[i % len(pairs)])
                    ok = r.status_code == 200
                    detail = "" if ok else f"{r.status_code} {r.text[:200]}"
                    version = r.json().get("model_version") if ok and "model_version" in r.text else None
                except httpx.HTTPError as err:
                    ok, detail, version = False, repr(err), None
                t1 = time.perf_counter()
                with lock:
                    if ok:
                        lat.append(t1 - t0)
                        answered.append(t1)
                        if version:
                            versions.append(version)
                    else:
                        failures.append(detail)
                i += clients

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    if on_tick:
        try:
            on_tick()
        finally:
            stop_at[0] = max(stop_at[0], time.perf_counter() + 2.0)  # answers after the last swap, however late
            ticked.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ms = np.array(lat) * 1000 if lat else np.array([np.nan])
    gaps = np.diff(np.array(sorted([started] + answered))) if answered else np.array([wall])
    return {"clients": clients, "requests": len(lat), "failed": len(failures), "failures": failures[:3],
            "p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
            "p99": float(np.percentile(ms, 99)), "max": float(ms.max()), "rps": len(lat) / wall,
            "longest_gap_ms": float(gaps.max() * 1000), "versions": versions}


def floor_predictors(uri_version: str, pairs):
    """(the predictor the API serves, the eager one): the traced, frozen copy (coin_assets.ml.inference),
    eager if that fails or with COIN_ASSETS_SERVING_OPTIMISE=0 (which the API, started with this
    environment, also follows)."""
    from coin_assets.ml.pyfunc import load_photo_predictor
    from coin_assets.settings import Settings

    eager = load_photo_predictor(uri_version)
    predictor = eager.optimised(pairs[:1]) if Settings.from_env().serving_optimise else eager
    if predictor.inference is None:
        print("floor module: eager (COIN_ASSETS_SERVING_OPTIMISE=0)")
    else:
        print(f"floor module: {predictor.inference['method']} ({predictor.inference['detail']}; "
              f"{predictor.inference['seconds']:.1f} s)")
    for pair in pairs[:3]:
        predictor.predict_photos([pair[0]], [pair[1]])
    return predictor, eager


def forward_per_pair(predictors: dict, image_size: int, sizes=(1, 8), rounds: int = 3, repeats: int = 4) -> dict:
    """Forward pass alone (predict_arrays on normalised pairs), ms per pair: the median over ``rounds``
    rounds that alternate the predictors, so that the shared machine's load hits them alike."""
    rng = np.random.default_rng(0)
    out = {}
    for n in sizes:
        batch = rng.standard_normal((n, 2, 3, image_size, image_size)).astype(np.float32)
        times = {name: [] for name in predictors}
        for _ in range(rounds):
            for name, predictor in predictors.items():
                predictor.predict_arrays(batch)
                t0 = time.perf_counter()
                for _ in range(repeats):
                    predictor.predict_arrays(batch)
                times[name].append((time.perf_counter() - t0) * 1000 / repeats / n)
        out[n] = {name: float(np.median(t)) for name, t in times.items()}
    return out


def _latencies(times: list[float]) -> dict:
    ms = np.array(times) * 1000
    return {"p50": float(np.median(ms)), "mean": float(ms.mean()), "p95": float(np.percentile(ms, 95))}


def floor(predictor, pairs, cycles: int) -> dict:
    """One pair at a time in process (PhotoPredictor.predict_photos: decode, read, the regressor), every pair
    ``cycles`` times in order: the same sequence as :func:`one_client`, since a photo's reading time depends on
    how far the reader had to look."""
    times = []
    for pair in [p for _ in range(cycles) for p in pairs]:
        t0 = time.perf_counter()
        predictor.predict_photos([pair[0]], [pair[1]])
        times.append(time.perf_counter() - t0)
    return _latencies(times)


def one_client(target: Target, pairs, cycles: int) -> dict:
    """The same sequence as :func:`floor`, one request at a time through a server."""
    times = []
    with httpx.Client(timeout=60) as client:
        for pair in [p for _ in range(cycles) for p in pairs]:
            t0 = time.perf_counter()
            target.make_request(client, pair).raise_for_status()
            times.append(time.perf_counter() - t0)
    return _latencies(times)


def drain(target: Target, pairs, clients: int, cycles: int) -> dict:
    """A fixed workload, every pair ``cycles`` times, sent by ``clients`` threads that each take the next
    request when their last one is answered: pairs per second over the whole workload. Unlike a fixed time,
    the mix of photos is the same as :func:`batched_throughput`'s, whatever each photo costs to read."""
    work = [p for _ in range(cycles) for p in pairs]
    lock, cursor, failed = threading.Lock(), [0], [0]

    def worker() -> None:
        with httpx.Client(timeout=120) as client:
            while True:
                with lock:
                    if cursor[0] >= len(work):
                        return
                    pair = work[cursor[0]]
                    cursor[0] += 1
                try:
                    ok = target.make_request(client, pair).status_code == 200
                except httpx.HTTPError:
                    ok = False
                if not ok:
                    with lock:
                        failed[0] += 1

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {"pairs": len(work), "failed": failed[0], "seconds": wall, "rps": (len(work) - failed[0]) / wall}


def _batched_worker(args: tuple) -> tuple[int, float]:
    """One core's share: ``cycles`` batches of every pair through the predictor; (pairs, seconds)."""
    uri_version, pairs, cycles, torch_threads = args
    import torch

    if torch_threads:
        torch.set_num_threads(torch_threads)
    from coin_assets.ml.pyfunc import load_photo_predictor
    from coin_assets.settings import Settings

    predictor = load_photo_predictor(uri_version)
    if Settings.from_env().serving_optimise:
        predictor = predictor.optimised(pairs[:1])
    predictor.predict_photos([p[0] for p in pairs[:2]], [p[1] for p in pairs[:2]])  # warm-up
    started = time.perf_counter()
    for _ in range(cycles):
        predictor.predict_photos([p[0] for p in pairs], [p[1] for p in pairs])
    return cycles * len(pairs), time.perf_counter() - started


def batched_throughput(uri_version: str, pairs, cycles: int, torch_threads: int, processes: int | None = None) -> dict:
    """In-process batched throughput on all cores: one process per core, each predicting every pair
    ``cycles`` times as batches of all the pairs; pairs per second summed over the processes."""
    from concurrent.futures import ProcessPoolExecutor

    processes = processes or os.cpu_count() or 1
    with ProcessPoolExecutor(processes) as pool:
        results = list(pool.map(_batched_worker, [(uri_version, pairs, cycles, torch_threads)] * processes))
    return {"processes": processes, "batch": len(pairs), "pairs": sum(n for n, _ in results),
            "rps": sum(n / t for n, t in results)}


def row(name: str, r: dict) -> str:
    return (f"{name:22s} {r['clients']:>7d} {r['requests']:>8d} {r['failed']:>6d} {r['p50']:>8.1f} {r['p95']:>8.1f} "
            f"{r['p99']:>8.1f} {r['rps']:>8.1f} {r.get('cpu_ms', float('nan')):>10.1f}   {os.getloadavg()[0]:>4.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    from coin_assets.ml.config import TrainConfig

    parser.add_argument("--backbone", default=TrainConfig().backbone, help="v2's regressor (coin_year_model's default)")
    parser.add_argument("--image-size", type=int, default=TrainConfig().image_size)
    parser.add_argument("--seconds", type=float, default=20.0, help="per load level")
    parser.add_argument("--cycles", type=int, default=6,
                        help="the fixed workload of the throughput comparison: every photo pair this many times")
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--soak-seconds", type=float, default=600.0)
    parser.add_argument("--soak-clients", type=int, default=4)
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of floor / one client")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="intra-op threads for both servers and the floor (OMP_NUM_THREADS); 0: torch default. "
                             "Two OpenMP threads on an oversubscribed 2-core machine make a forward pass ~8x slower")
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]

    work = Path(tempfile.mkdtemp(prefix="bench_serving_"))
    pairs = photos()
    print(f"work dir {work}; photos {len(pairs[0][0]) // 1024} KiB + {len(pairs[0][1]) // 1024} KiB (1024x768 JPEG); "
          f"production v1: the base version (year reader + prior); v2: year reader + {args.backbone} @ "
          f"{args.image_size}px; cpu cores {os.cpu_count()}; "
          f"load average {os.getloadavg()[0]:.1f}")
    threads_env = {}
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
        threads_env = {"OMP_NUM_THREADS": str(args.torch_threads), "MKL_NUM_THREADS": str(args.torch_threads)}
    uri, versions = register(work, args.backbone, args.image_size, pairs[0])
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    # mlflow models serve execs `uvicorn` from PATH: the one next to this interpreter
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(ROOT), **threads_env, "MLFLOW_TRACKING_URI": uri, "COIN_ASSETS_DATA_DIR": str(work / "data"),
           "COIN_ASSETS_MODEL_NAME": NAME, "COIN_ASSETS_RELOAD_TOKEN": TOKEN, "COIN_ASSETS_SERVING_POLL_SECONDS": "5"}
    our_port, ml_port = free_port(), free_port()
    procs = []
    try:
        api = start([sys.executable, "-m", "coin_assets.serving", "--port", str(our_port), "--log-level", "warning"],
                    env, work / "api.log", f"http://127.0.0.1:{our_port}/health")
        procs.append(api)
        targets = [ours(f"http://127.0.0.1:{our_port}")]
        targets[0].pid = api.pid
        if not args.skip_mlflow:
            mlf = start([sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{NAME}/{versions[0]}",
                         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(ml_port)],
                        env, work / "mlflow_serve.log", f"http://127.0.0.1:{ml_port}/ping")
            procs.append(mlf)
            targets.append(mlflow_serve(f"http://127.0.0.1:{ml_port}"))
            targets[1].pid = mlf.pid

        # The floor (while both servers sit idle), in rounds alternating with one client on our API, so
        # that the shared machine's changing load hits both sides of the ratio alike.
        predictor, eager = floor_predictors(client.get_model_version_download_uri(NAME, versions[0]), pairs)
        if predictor is not eager:
            fw = forward_per_pair({"eager": eager, "optimised": predictor}, args.image_size)
            print("forward pass alone (random pairs, 1 process, servers idle): " + "; ".join(
                f"batch {n}: eager {v['eager']:.1f} ms/pair, optimised {v['optimised']:.1f} ms/pair = "
                f"{v['eager'] / v['optimised']:.2f}×" for n, v in fw.items()) + f" (load average {os.getloadavg()[0]:.1f})")
        del eager
        load(targets[0], pairs, 1, 2.0)  # warm-up
        print(f"\nin-process floor (one pair at a time: decode, read the year, the regressor; {args.torch_threads or 'default'} "
              f"torch threads) against one client on our API, {args.rounds} alternating rounds:")
        round_ratios = []
        for k in range(args.rounds):
            fl = floor(predictor, pairs, 2)
            client_one = one_client(targets[0], pairs, 2)
            round_ratios.append(client_one["p50"] / fl["p50"])
            print(f"  round {k + 1}: floor p50 {fl['p50']:.1f} ms (p95 {fl['p95']:.1f}), API p50 "
                  f"{client_one['p50']:.1f} ms (p95 {client_one['p95']:.1f}) = {round_ratios[-1]:.2f}× "
                  f"(load average {os.getloadavg()[0]:.1f})", flush=True)
        del predictor
        batched = batched_throughput(client.get_model_version_download_uri(NAME, versions[0]), pairs, args.cycles,
                                     args.torch_threads)
        print(f"\nin-process batched throughput on all cores ({batched['processes']} processes, batches of "
              f"{batched['batch']} pairs, every pair {args.cycles} times in each, servers idle): {batched['rps']:.2f} "
              f"pairs/s ({batched['pairs']} pairs; "
              f"load average {os.getloadavg()[0]:.1f})")
        print(f"\n{'server':22s} {'clients':>7s} {'requests':>8s} {'failed':>6s} {'p50 ms':>8s} {'p95 ms':>8s} "
              f"{'p99 ms':>8s} {'req/s':>8s} {'CPU ms/req':>10s}   load average (1 min, machine shared)")
        results: dict[tuple[str, int], dict] = {}
        for target in targets:
            load(target, pairs, 2, 2.0)  # warm-up
        for c in levels:  # interleaved, so that a change in the machine's load hits both servers alike
            for target in targets:
                cpu0 = cpu_seconds(target.pid)
                results[(target.name, c)] = r = load(target, pairs, c, args.seconds)
                r["cpu_ms"] = (cpu_seconds(target.pid) - cpu0) * 1000 / max(r["requests"], 1)
                print(row(target.name, r), flush=True)

        drained = {}
        for target in targets:
            drained[target.name] = d = drain(target, pairs, 16, args.cycles)
            print(f"{target.name}: the fixed workload ({d['pairs']} pairs) at 16 clients in {d['seconds']:.1f} s = "
                  f"{d['rps']:.2f} pairs/s, {d['failed']} failed", flush=True)

        # promotion and rollback under 16 clients
        base = targets[0].url

        reloads = []

        def promote_then_rollback():
            from coin_assets.core.serving_client import request_reload
            from coin_assets.ml import registry as reg

            time.sleep(args.seconds / 2)
            client.set_registered_model_alias(NAME, "production", versions[1])
            t0 = time.perf_counter()
            reloads.append({**request_reload(base_url=base, token=TOKEN), "s": time.perf_counter() - t0})
            time.sleep(args.seconds / 2)
            reg.rollback(client, NAME, actor="bench", reason="benchmark rollback", to_version=versions[0])
            t0 = time.perf_counter()
            reloads.append({**request_reload(base_url=base, token=TOKEN), "s": time.perf_counter() - t0})

        swap = load(targets[0], pairs, 16, args.seconds * 2, on_tick=promote_then_rollback)
        reload_seconds = ", ".join(f"{r['s']:.1f}" for r in reloads)
        switches = sum(1 for a, b in zip(swap["versions"], swap["versions"][1:], strict=False) if a != b)
        print(f"\n16 clients through a promotion (v{versions[0]} → v{versions[1]}) and a rollback (→ v{versions[0]}): "
              f"{swap['requests']} answered, {swap['failed']} failed, longest gap without an answer "
              f"{swap['longest_gap_ms']:.0f} ms, slowest request {swap['max']:.0f} ms, versions seen "
              f"{sorted(set(swap['versions']))}, version changes in answer order {switches}; reload reports "
              f"{[{k: r.get(k) for k in ('ok', 'changed', 'version', 'error')} for r in reloads]}, each reload call took "
              f"{reload_seconds} s (load, optimisation, smoke prediction, swap)")

        # soak
        load(targets[0], pairs, args.soak_clients, 3.0)
        mem0 = memory_kib(api.pid)
        soak = load(targets[0], pairs, args.soak_clients, args.soak_seconds)
        mem1 = memory_kib(api.pid)
        print(f"\nsoak {args.soak_seconds:.0f} s at {args.soak_clients} clients: {soak['requests']} answered, "
              f"{soak['failed']} failed, p50 {soak['p50']:.1f} ms; API memory after warm-up RSS "
              f"{mem0['rss'] / 1024:.0f} MiB (peak {mem0['hwm'] / 1024:.0f} MiB), at the end RSS "
              f"{mem1['rss'] / 1024:.0f} MiB (peak {mem1['hwm'] / 1024:.0f} MiB)")

        print(f"\ngoal p50 at 1 client ≤ 1.3 × floor: median of the rounds {float(np.median(round_ratios)):.2f}× "
              f"({', '.join(f'{r:.2f}' for r in round_ratios)})")
        print(f"goal throughput at 16 clients ≥ 0.85 × in-process batched on all cores (the same workload, every pair "
              f"{args.cycles} times): {drained[targets[0].name]['rps']:.2f} / {batched['rps']:.2f} pairs/s = "
              f"{drained[targets[0].name]['rps'] / batched['rps']:.2f}×")
        if len(targets) > 1:
            theirs = drained[targets[1].name]
            print(f"  mlflow models serve on the same workload at 16 clients: {theirs['rps']:.2f} pairs/s = "
                  f"{theirs['rps'] / batched['rps']:.2f}× in-process")
        print(f"goal 0 failed through promotion and rollback: {swap['failed']}")
        print(f"goal flat memory: peak {mem0['hwm'] / 1024:.0f} → {mem1['hwm'] / 1024:.0f} MiB "
              f"({(mem1['hwm'] - mem0['hwm']) / max(mem0['hwm'], 1) * 100:+.1f} %)")
    finally:
        for proc in procs:
            stop(proc)


if __name__ == "__main__":
    main()
