"""The production model the API serves, following the registry's ``production`` alias.

A new version is loaded off the request path (the polling thread or the reload endpoint's worker
thread), checked with a smoke prediction on a generated coin, then swapped in by replacing one
reference. A request holds the :class:`LoadedModel` it started with until it answers, so in-flight
requests finish on their version. Before the smoke prediction the predictor is replaced by its traced,
frozen TorchScript copy (:meth:`PhotoPredictor.optimised`, checked against the eager module; the eager
one is kept when that fails). A version that fails to load or to predict is never swapped in:
the old one keeps serving and the failure is kept for /health and /metrics.
"""

from __future__ import annotations

import io
import logging
import math
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from coin_assets.core.clock import utcnow
from coin_assets.ml.pyfunc import PhotoPredictor, load_photo_predictor
from coin_assets.ml.registry import PRODUCTION, get_alias_version
from coin_assets.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    alias: str
    source: str  # artifact location the version was loaded from
    run_id: str | None
    tags: dict
    predictor: PhotoPredictor
    loaded_at: datetime

    @property
    def image_size(self) -> int:
        return self.predictor.config.image_size

    @property
    def inference(self) -> dict:
        """How the served module was optimised (coin_assets.ml.inference), for /metadata and /health."""
        info = getattr(self.predictor, "inference", None)
        return info or {"optimised": False, "method": "eager", "detail": "as loaded (COIN_ASSETS_SERVING_OPTIMISE=0, or a predictor without optimised())"}


@dataclass
class HolderState:
    last_check: datetime | None = None
    last_error: str | None = None  # why the latest production version is not served
    failed_version: str | None = None
    reloads_ok: int = 0
    reloads_failed: int = 0
    history: list[dict] = field(default_factory=list)


def smoke_pair() -> tuple[bytes, bytes]:
    """A generated coin photographed front and back: the smoke test of every new version."""
    from coin_assets.synth import render_coin_pair

    pair = []
    for img in render_coin_pair(1990, random.Random(0), (256, 256)):
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        pair.append(buf.getvalue())
    return pair[0], pair[1]


def smoke_check(predictor: PhotoPredictor, pair: tuple[bytes, bytes]) -> None:
    out = predictor.predict_photos([pair[0]], [pair[1]])
    if out["error"].iloc[0]:
        raise RuntimeError(f"smoke prediction failed: {out['error'].iloc[0]}")
    year, sigma = float(out["year"].iloc[0]), float(out["sigma"].iloc[0])
    if not (math.isfinite(year) and math.isfinite(sigma) and sigma > 0):
        raise RuntimeError(f"smoke prediction is not a finite year with a positive sigma ({year}, {sigma})")


class ModelHolder:
    """The current production predictor, its version info, and ``predict_pairs`` on it."""

    def __init__(self, settings: Settings, loader: Callable[[str], PhotoPredictor] = load_photo_predictor,
                 on_change: Callable[[LoadedModel], None] | None = None,
                 on_reload: Callable[[str], None] | None = None):
        from mlflow import MlflowClient

        self.settings = settings
        self.name = settings.model_name
        self.client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
        self._loader = loader
        self._on_change = on_change
        self._on_reload = on_reload
        self._current: LoadedModel | None = None
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._smoke: tuple[bytes, bytes] | None = None
        self.state = HolderState()

    @property
    def current(self) -> LoadedModel | None:
        return self._current  # one reference read: callers keep the model they got

    def refresh(self, force: bool = False) -> dict:
        """Check the alias; load, smoke-test and swap in a new production version. Never raises.
        A version that failed before is retried only when ``force`` (the reload endpoint)."""
        with self._refresh_lock:
            self.state.last_check = utcnow()
            try:
                mv = get_alias_version(self.client, self.name, PRODUCTION)
            except Exception as err:  # registry unreachable: keep serving what we have
                self.state.last_error = f"registry check failed: {err}"
                return self._report(changed=False)
            if mv is None:
                if self._current is None:
                    self.state.last_error = f"no '{PRODUCTION}' version of {self.name!r} in the registry yet"
                return self._report(changed=False)
            version = str(mv.version)
            if self._current is not None and self._current.version == version:
                self.state.last_error, self.state.failed_version = None, None
                return self._report(changed=False)
            if version == self.state.failed_version and not force:
                return self._report(changed=False)
            try:
                source = self.client.get_model_version_download_uri(self.name, version)
                predictor = self._loader(source)
                if self._smoke is None:
                    self._smoke = smoke_pair()
                predictor = self._optimised(predictor)
                smoke_check(predictor, self._smoke)
            except Exception as err:
                self.state.failed_version = version
                self.state.last_error = f"version {version} not swapped in: {type(err).__name__}: {err}"
                self.state.reloads_failed += 1
                log.error(self.state.last_error)
                if self._on_reload:
                    self._on_reload("failed")
                return self._report(changed=False)
            new = LoadedModel(self.name, version, PRODUCTION, source, mv.run_id, dict(mv.tags or {}), predictor,
                              utcnow())
            previous = self._current
            self._current = new  # the atomic swap
            self.state.last_error, self.state.failed_version = None, None
            self.state.reloads_ok += 1
            self.state.history.append({"version": version, "since": new.loaded_at.isoformat(),
                                       "previous": previous.version if previous else None})
            del self.state.history[:-20]
            log.info("serving %s v%s (was %s)", self.name, version, previous.version if previous else "none")
            if self._on_reload:
                self._on_reload("ok")
            if self._on_change:
                self._on_change(new)
            return self._report(changed=True)

    def _optimised(self, predictor: PhotoPredictor) -> PhotoPredictor:
        """The traced, frozen copy (checked against eager at batch sizes 1, 3, 8 and the batcher's largest,
        on random pairs and on the smoke coin), or the eager predictor with the reason in ``inference``."""
        if not self.settings.serving_optimise or not hasattr(predictor, "optimised"):
            return predictor
        sizes = sorted({1, 3, 8, max(1, self.settings.serving_max_batch)})
        return predictor.optimised([self._smoke], check_batch_sizes=sizes)

    def _report(self, changed: bool) -> dict:
        cur = self._current
        return {"changed": changed, "version": cur.version if cur else None, "error": self.state.last_error,
                "failed_version": self.state.failed_version}

    def predict_pairs(self, fronts: Sequence, backs: Sequence) -> tuple[pd.DataFrame, LoadedModel]:
        """Raw photo pairs → the pyfunc's output frame, on the version current when called."""
        model = self._current
        if model is None:
            raise RuntimeError(self.state.last_error or "no model loaded")
        return model.predictor.predict_photos(fronts, backs), model

    # --- polling -------------------------------------------------------------------------------
    def start_polling(self) -> None:
        if self._thread is not None or self.settings.serving_poll_seconds <= 0:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, name="model-holder-poll", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.settings.serving_poll_seconds):
            self.refresh()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
