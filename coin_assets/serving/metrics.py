"""Prometheus metrics of the API (prometheus_client), one registry per app so that apps never clash.

Several uvicorn workers (``python -m coin_assets.serving --workers N``) run in prometheus_client's
multiprocess mode: ``PROMETHEUS_MULTIPROC_DIR`` names a folder, fresh for each service start, where
every worker keeps its values; ``/metrics`` answers from any worker with the sum over all of them
(counters and histograms include workers that have exited, gauges only live ones). A worker that
dies without its shutdown hook leaves its gauge files behind: :func:`forget_dead_workers` removes
those of processes that are gone (``mark_process_dead``) before each scrape.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_PID_FILE = re.compile(r"^(?:counter|histogram|summary|gauge_\w+?)_(\d+)\.db$")


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def prepare_multiprocess_dir(path: str | os.PathLike) -> Path:
    """Make ``path`` an empty metrics folder for a new service start (old values would be counted)."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.db"):
        old.unlink()
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def worker_pids(path: str | os.PathLike) -> set[int]:
    """The processes that have metric files in ``path``."""
    return {int(m.group(1)) for f in Path(path).glob("*.db") if (m := _PID_FILE.match(f.name))}


def forget_dead_workers(path: str | os.PathLike) -> list[int]:
    """``mark_process_dead`` for every process with files in ``path`` that no longer exists."""
    dead = sorted(pid for pid in worker_pids(path) if not _alive(pid))
    for pid in dead:
        multiprocess.mark_process_dead(pid, str(path))
    return dead


class ServingMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.multiprocess_dir = multiprocess_dir()
        r = self.registry
        self.requests = Counter("coin_serving_requests", "Prediction requests by outcome", ["outcome"], registry=r)
        self.latency = Histogram("coin_serving_request_latency_seconds", "Server-side latency of /predict",
                                 buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5), registry=r)
        self.batch_size = Histogram("coin_serving_batch_size", "Coins per forward pass",
                                    buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.queue_depth = Gauge("coin_serving_queue_depth", "Requests waiting for a forward pass", registry=r,
                                 multiprocess_mode="livesum")
        self.in_flight = Gauge("coin_serving_in_flight", "Prediction requests being handled", registry=r,
                               multiprocess_mode="livesum")
        self.served = Gauge("coin_serving_model_version", "1 for the model version being served (by any worker)",
                            ["model_name", "version"], registry=r, multiprocess_mode="livemax")
        self.reloads = Counter("coin_serving_reloads", "Model reload attempts by outcome", ["outcome"], registry=r)
        self.load_failed = Gauge("coin_serving_model_load_failed",
                                 "1 while the latest production version could not be loaded", registry=r,
                                 multiprocess_mode="livemax")
        self.optimised = Gauge("coin_serving_model_optimised",
                               "1 when the served module is the traced, frozen TorchScript copy, 0 when eager "
                               "(the least over workers)", registry=r, multiprocess_mode="livemin")
        self.feedback = Counter("coin_serving_feedback", "Feedback received by role", ["role"], registry=r)
        self.async_requests = Gauge("coin_async_requests", "Asynchronous requests in the store by status",
                                    ["status"], registry=r, multiprocess_mode="livemostrecent")
        self._served_labels: tuple[str, str] | None = None

    def set_served(self, name: str, version: str) -> None:
        labels = (name, version)
        if self._served_labels not in (None, labels):
            if self.multiprocess_dir:  # a removed label would live on in this worker's file: say 0
                self.served.labels(*self._served_labels).set(0)
            else:
                self.served.remove(*self._served_labels)
        self.served.labels(*labels).set(1)
        self._served_labels = labels

    def exposition(self) -> bytes:
        """The text format of every metric: this process's, or the sum over all workers."""
        if not self.multiprocess_dir:
            return generate_latest(self.registry)
        forget_dead_workers(self.multiprocess_dir)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
        return generate_latest(registry)

    def worker_exiting(self) -> None:
        if self.multiprocess_dir:
            multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)
