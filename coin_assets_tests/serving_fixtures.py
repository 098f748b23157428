"""Shared pieces of the serving tests: a temporary MLflow registry with tiny real raw-photo versions,
generated coin photos, and Settings pointing every system at a temporary folder."""

from __future__ import annotations

import io
import random
from pathlib import Path

import mlflow
import torch
from mlflow import MlflowClient

from coin_assets.ml import pyfunc as pf
from coin_assets.ml.model import CoinYearRegressor
from coin_assets.ml.registry import PRODUCTION
from coin_assets.settings import Settings
from coin_assets.synth import render_coin_pair

NAME = "coin_serving_test"
RELOAD_TOKEN = "reload-secret-123"
USER_TOKEN = "user-token-alice"
REVIEWER_TOKEN = "reviewer-token-rita"


def jpeg(img, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def coin_photos(year: int = 1987, seed: int = 5, size=(320, 240)) -> tuple[bytes, bytes]:
    front, back = render_coin_pair(year, random.Random(seed), size)
    return jpeg(front), jpeg(back)


class Registry:
    """A sqlite MLflow store under ``root``; ``register()`` logs a tiny real raw-photo version."""

    def __init__(self, root: Path):
        self.root = root
        self.uri = f"sqlite:///{root / 'mlflow.db'}"
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        exp = self.client.create_experiment("serving", artifact_location=(root / "artifacts").as_uri())
        mlflow.set_experiment(experiment_id=exp)
        self.photos = coin_photos()

    def register(self, seed: int = 0, tags: dict | None = None) -> str:
        torch.manual_seed(seed)
        model = CoinYearRegressor(backbone="mobilenet_v3_small")
        with mlflow.start_run():
            info = pf.log_photo_model(model, pf.PhotoModelConfig(image_size=64), *self.photos,
                                      registered_model_name=NAME)
        version = str(info.registered_model_version)
        for key, value in (tags or {}).items():
            self.client.set_model_version_tag(NAME, version, key, value)
        return version

    def promote(self, version: str) -> None:
        self.client.set_registered_model_alias(NAME, PRODUCTION, version)

    def settings(self, data_dir: Path, **overrides) -> Settings:
        base = Settings(data_dir=str(data_dir), mlflow_tracking_uri=self.uri, model_name=NAME,
                        reload_token=RELOAD_TOKEN, serving_poll_seconds=0,
                        api_tokens=f"alice:user:{USER_TOKEN},rita:reviewer:{REVIEWER_TOKEN}")
        return base.with_overrides(**overrides)
