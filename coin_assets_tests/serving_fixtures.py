"""Shared pieces of the serving tests: a temporary MLflow registry with tiny real raw-photo versions,
generated coin photos, Settings pointing every system at a temporary folder, and the API started for
real in its own process (``running_api``)."""

from __future__ import annotations

import io
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import mlflow
import pytest
import torch
from mlflow import MlflowClient

from coin_assets.devtools.supervisor import stop_process_group
from coin_assets.ml import pyfunc as pf
from coin_assets.ml.model import CoinYearRegressor
from coin_assets.ml.registry import PRODUCTION
from coin_assets.settings import Settings
from coin_assets.synth import render_coin_pair

NAME = "coin_serving_test"
RELOAD_TOKEN = "reload-secret-123"
USER_TOKEN = "user-token-alice"
REVIEWER_TOKEN = "reviewer-token-rita"
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_api(data: Path, env: dict[str, str | None], *args: str, grace: float = 15,
                ready: Callable[[], bool] = lambda: True) -> Iterator[str]:
    """``python -m coin_assets.serving *args`` (this worktree's package) on a free port, its data under
    ``data`` and its output in ``data / "server.log"``; ``env`` is laid over this process's environment
    (a ``None`` value removes the variable). Yields the base URL once /health answers 200 and ``ready()``
    holds (within 120 s), and stops the whole process group (``grace`` seconds for the leader) on exit."""
    port = free_port()
    full = {**os.environ, "PYTHONPATH": str(ROOT), "COIN_ASSETS_DATA_DIR": str(data),
            "COIN_ASSETS_API_PORT": str(port), **env}
    full = {key: value for key, value in full.items() if value is not None}
    server_log = data / "server.log"
    with open(server_log, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "coin_assets.serving", *args, "--log-level", "warning"],
                                cwd=ROOT, env=full, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 120
            while time.time() < deadline:
                assert proc.poll() is None, server_log.read_text()[-3000:]
                try:
                    if httpx.get(f"{base}/health", timeout=2).status_code == 200 and ready():
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.3)
            else:
                pytest.fail("the API did not become ready: " + server_log.read_text()[-3000:])
            yield base
        finally:
            stop_process_group(proc, grace=grace)


def jpeg(img, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def coin_photos(year: int = 1987, seed: int = 5, size=(320, 240)) -> tuple[bytes, bytes]:
    front, back = render_coin_pair(year, random.Random(seed), size)
    return jpeg(front), jpeg(back)


def legible_coin_photos(year: int = 1987, seed: int = 5, size=(480, 360)) -> tuple[bytes, bytes]:
    """A coin of the varied generator with its year printed dark below the emblem, upright and sharp: one the
    year reader reads."""
    from dataclasses import replace

    from coin_assets.synth import varied

    rng = random.Random(seed)
    style = replace(varied.sample_style(rng), placement="below", relief="printed_dark", rotation=0.0, blur=0.0,
                    wear=0.0, patina=0.0, squash=1.0, font=("DejaVuSans-Bold.ttf", 1.0), digit_height=0.2)
    front, back = varied.render_photo_pair(year, style, rng, photo_size=size)
    return jpeg(front.image), jpeg(back.image)


class Registry:
    """A sqlite MLflow store under ``root``; ``register()`` logs a tiny real raw-photo version,
    ``model_copy()`` gives a test module its own registered model with copies of logged versions
    (logging costs seconds, copying milliseconds)."""

    def __init__(self, root: Path):
        self.root = root
        self.uri = f"sqlite:///{root / 'mlflow.db'}"
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        exp = self.client.create_experiment("serving", artifact_location=(root / "artifacts").as_uri())
        mlflow.set_experiment(experiment_id=exp)
        self.photos = coin_photos()

    def register(self, seed: int = 0, tags: dict | None = None, reader: bool = False) -> str:
        """A version; with ``reader`` it carries the committed year reader."""
        from coin_assets.ml.year_reading import READER_WEIGHTS

        torch.manual_seed(seed)
        model = CoinYearRegressor(backbone="mobilenet_v3_small")
        with mlflow.start_run():
            info = pf.log_photo_model(model, pf.PhotoModelConfig(image_size=64), *self.photos,
                                      registered_model_name=NAME, reader_weights=READER_WEIGHTS if reader else None)
        version = str(info.registered_model_version)
        for key, value in (tags or {}).items():
            self.client.set_model_version_tag(NAME, version, key, value)
        return version

    def model_copy(self, name: str, versions: list[str]) -> list[str]:
        return [str(self.client.copy_model_version(f"models:/{NAME}/{v}", name).version) for v in versions]

    def broken_version(self, name: str) -> str:
        """A version whose artifacts are not a model at all: loading it fails."""
        folder = self.root / f"broken-{name}"
        folder.mkdir(exist_ok=True)
        (folder / "MLmodel").write_text("this is: [not an MLmodel file\n")
        return str(self.client.create_model_version(name, folder.as_uri()).version)

    def promote(self, version: str, name: str = NAME) -> None:
        self.client.set_registered_model_alias(name, PRODUCTION, version)

    def settings(self, data_dir: Path, name: str = NAME, **overrides) -> Settings:
        base = Settings(data_dir=str(data_dir), mlflow_tracking_uri=self.uri, model_name=name,
                        reload_token=RELOAD_TOKEN, serving_poll_seconds=0,
                        api_tokens=f"alice:user:{USER_TOKEN},rita:reviewer:{REVIEWER_TOKEN}")
        return base.with_overrides(**overrides)


@pytest.fixture(scope="session", name="serving_registry")
def serving_registry_fixture(tmp_path_factory) -> Registry:
    """One store for every serving test module, with two logged versions (seeds 0 and 1)."""
    reg = Registry(tmp_path_factory.mktemp("serving_mlflow"))
    reg.base = [reg.register(seed=0, tags={"training_set_hash": "abc123", "dagster_run_id": "run-1"}),
                reg.register(seed=1)]
    return reg
