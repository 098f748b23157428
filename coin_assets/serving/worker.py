"""The asynchronous prediction worker: ``python -m coin_assets.serving.worker [--name w1]``.

Loop: give expired leases back (:func:`queue.release_expired`), claim a few pending requests with a
lease, read their photos from the upload zone, score them in one forward pass on the production
model (the serving :class:`ModelHolder`, which follows the ``production`` alias), and finish each
one: ``completed`` with its result, or ``failed`` with the reason (photo missing or unreadable).
Several workers can run side by side on one store; a killed worker's requests come back after the
lease. SIGTERM / Ctrl-C: finish the requests in hand, then stop.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass

from coin_assets.core.storage import ObjectStore
from coin_assets.serving import queue
from coin_assets.serving.model_holder import ModelHolder
from coin_assets.serving.request_log import object_store
from coin_assets.serving.store import RequestStore
from coin_assets.settings import Settings

log = logging.getLogger("coin_assets.worker")


def outcome_of(row) -> str:
    if bool(row["unreadable"]):
        return "unreadable"
    return "needs_review" if bool(row["needs_review"]) else "ok"


@dataclass
class WorkerStats:
    completed: int = 0
    failed: int = 0
    lost: int = 0  # finished after the lease was lost: discarded, another worker owns the request


class Worker:
    def __init__(self, settings: Settings, name: str | None = None, batch_size: int = 8, poll_seconds: float = 0.2,
                 store: RequestStore | None = None, objects: ObjectStore | None = None,
                 holder: ModelHolder | None = None, max_attempts: int = queue.DEFAULT_MAX_ATTEMPTS):
        self.settings = settings
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.batch_size = max(1, batch_size)
        self.poll_seconds = poll_seconds
        self.lease = settings.request_lease_seconds
        self.max_attempts = max_attempts
        self.store = store or RequestStore(settings.serving_db)
        self.objects = objects or object_store(settings)
        self.holder = holder or ModelHolder(settings)
        self.stop_event = threading.Event()
        self.stats = WorkerStats()

    def run_once(self) -> int:
        """One round: release expired leases, claim, score, finish. Returns how many were claimed."""
        queue.release_expired(self.store, max_attempts=self.max_attempts)
        if self.holder.current is None:
            return 0  # nothing to score with: leave requests pending (the API reports why on /health)
        claimed = queue.claim(self.store, self.name, self.lease, limit=self.batch_size)
        if claimed:
            self._score(claimed)
        return len(claimed)

    def _score(self, claimed: list[queue.Claimed]) -> None:
        fronts, backs, ok = [], [], []
        for item in claimed:
            try:
                if not item.front_key or not item.back_key:
                    raise FileNotFoundError("the request has no stored photos")
                front, back = self.objects.read_bytes(item.front_key), self.objects.read_bytes(item.back_key)
            except (FileNotFoundError, OSError, KeyError) as err:
                self._fail(item.request_id, f"photos not readable from the upload zone: {err}", "error:missing")
                continue
            fronts.append(front)
            backs.append(back)
            ok.append(item)
        if not ok:
            return
        started = time.perf_counter()
        try:
            frame, model = self.holder.predict_pairs(fronts, backs)
        except Exception:  # the model broke: give the requests back, try again a little later
            log.exception("forward pass failed; releasing %d requests", len(ok))
            queue.release(self.store, [c.request_id for c in ok], self.name)
            self.stop_event.wait(1.0)
            return
        per_coin_ms = (time.perf_counter() - started) * 1000 / len(ok)
        for item, (_, row) in zip(ok, frame.iterrows(), strict=True):
            if row["error"] or not math.isfinite(row["year"]):
                self._fail(item.request_id, str(row["error"] or "the model gave no finite year"), "error:unreadable")
                continue
            result = {k: float(row[k]) for k in ("year", "sigma", "lower_90", "upper_90")}
            result.update(needs_review=bool(row["needs_review"]), unreadable=bool(row["unreadable"]),
                          model_name=model.name, model_version=model.version)
            updates = {"model_name": model.name, "model_version": model.version, "outcome": outcome_of(row),
                       "latency_ms": per_coin_ms}
            if queue.complete(self.store, item.request_id, self.name, result, updates):
                self.stats.completed += 1
            else:
                self.stats.lost += 1

    def _fail(self, request_id: str, reason: str, outcome: str) -> None:
        if queue.fail(self.store, request_id, self.name, reason, outcome):
            self.stats.failed += 1
        else:
            self.stats.lost += 1

    def run(self, max_idle_rounds: int | None = None) -> WorkerStats:
        self.holder.refresh()
        self.holder.start_polling()
        idle = 0
        log.info("worker %s started (lease %.0f s, batch %d)", self.name, self.lease, self.batch_size)
        try:
            while not self.stop_event.is_set():
                if self.holder.current is None:
                    self.holder.refresh()  # waiting for a first production model
                n = self.run_once()
                idle = 0 if n else idle + 1
                if max_idle_rounds is not None and idle >= max_idle_rounds:
                    break
                if not n:
                    self.stop_event.wait(self.poll_seconds if self.holder.current else max(1.0, self.poll_seconds))
        finally:
            self.holder.stop()
            self.store.dispose()
        log.info("worker %s stopped: %s", self.name, self.stats)
        return self.stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Score pending asynchronous prediction requests.")
    parser.add_argument("--name", help="worker name recorded on the requests it claims (default host-pid)")
    parser.add_argument("--batch", type=int, default=8, help="requests claimed and scored together")
    parser.add_argument("--poll", type=float, default=0.2, help="seconds between looks at an empty queue")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = Settings.from_env()
    worker = Worker(settings, name=args.name, batch_size=args.batch, poll_seconds=args.poll)
    worker.store.create_tables()

    def stop(_signum, _frame):
        worker.stop_event.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
