"""The registered model as a raw-photo MLflow pyfunc: contract, bad rows, base64, migration, serving."""

from __future__ import annotations

import io
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient

from coin_assets.devtools.supervisor import stop_process_group
from coin_assets.ml import pyfunc as pf
from coin_assets.ml.model import CoinYearRegressor
from coin_assets.synth import render_coin_pair
from coin_assets_tests.tensor_models import log_coin_model

NAME = "coin_pyfunc_test"


def _jpeg(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photos():
    front, back = render_coin_pair(1987, random.Random(5), (320, 240))
    return _jpeg(front), _jpeg(back)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    experiment = MlflowClient().create_experiment("pyfunc", artifact_location=(root / "artifacts").as_uri())
    mlflow.set_experiment(experiment_id=experiment)
    yield uri
    mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def photo_version(registry, photos):
    torch.manual_seed(0)
    model = CoinYearRegressor(backbone="mobilenet_v3_small")
    with mlflow.start_run():
        info = pf.log_photo_model(model, pf.PhotoModelConfig(image_size=64), *photos, registered_model_name=NAME)
    return str(info.registered_model_version), model


def test_pyfunc_takes_raw_photos_as_bytes_or_base64(photo_version, photos):
    version, module = photo_version
    loaded = mlflow.pyfunc.load_model(f"models:/{NAME}/{version}")
    front, back = photos
    as_bytes = loaded.predict(pd.DataFrame({"front": [front], "back": [back]}))
    as_b64 = loaded.predict(pf.example_input(front, back))
    assert list(as_bytes.columns) == list(pf.OUTPUT_COLUMNS)
    assert as_bytes["error"].iloc[0] == ""
    assert np.isfinite(as_bytes["year"].iloc[0]) and as_bytes["sigma"].iloc[0] > 0
    assert as_bytes["lower_90"].iloc[0] < as_bytes["year"].iloc[0] < as_bytes["upper_90"].iloc[0]
    assert as_bytes["year"].iloc[0] == pytest.approx(as_b64["year"].iloc[0])
    # the same number as the in-process path on the same preprocessing
    pair = np.stack([pf.preprocess_photo(front, 64), pf.preprocess_photo(back, 64)])[None]
    with torch.no_grad():
        direct = module.eval()(torch.from_numpy(pair)).numpy()[0]
    assert as_bytes["year"].iloc[0] == pytest.approx(float(direct[0]), abs=1e-3)
    assert pf.is_photo_model(f"models:/{NAME}/{version}")
    assert MlflowClient().get_model_version(NAME, version).tags[pf.INPUT_KIND_TAG] == pf.RAW_PHOTOS


def test_a_bad_row_gets_its_reason_and_the_others_are_scored(photo_version, photos):
    version, _ = photo_version
    predictor = pf.load_photo_predictor(f"models:/{NAME}/{version}")
    front, back = photos
    out = predictor.predict_photos([front, b"not an image", front, "%%%not base64%%%", front[: len(front) // 3]],
                                   [back, back, b"", back, back])
    assert out["error"].iloc[0] == ""
    assert "front: not a recognised image" in out["error"].iloc[1]
    assert "back: empty file" in out["error"].iloc[2]
    assert "front: photo is not valid base64" in out["error"].iloc[3]
    assert out["error"].iloc[4].startswith("front: truncated")
    assert out["unreadable"].iloc[1:].all() and out["needs_review"].iloc[1:].all()
    assert out["year"].iloc[1:].isna().all() and np.isfinite(out["year"].iloc[0])


def test_tensor_input_version_is_migrated_explicitly(registry, photos):
    torch.manual_seed(1)
    model = CoinYearRegressor(backbone="mobilenet_v3_small")
    example = np.random.default_rng(0).standard_normal((1, 2, 3, 64, 64)).astype(np.float32)
    with mlflow.start_run():
        info = log_coin_model(model, example, registered_model_name=NAME, serialization_format="pickle")
    client = MlflowClient()
    old = str(info.registered_model_version)
    client.set_model_version_tag(NAME, old, "image_size", "64")
    assert not pf.is_photo_model(f"models:/{NAME}/{old}")
    new = pf.migrate_tensor_version(client, NAME, old, *photos)
    assert pf.is_photo_model(f"models:/{NAME}/{new}")
    assert client.get_model_version(NAME, new).tags["migrated_from"] == old
    out = mlflow.pyfunc.load_model(f"models:/{NAME}/{new}").predict(pf.example_input(*photos))
    pair = np.stack([pf.preprocess_photo(p, 64) for p in photos])[None]
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(pair)).numpy()[0, 0]
    assert out["year"].iloc[0] == pytest.approx(float(expected), abs=1e-3)
    with pytest.raises(ValueError, match="already takes raw photos"):
        pf.migrate_tensor_version(client, NAME, new, *photos)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_mlflow_models_serve_answers_a_raw_photo_request(registry, photo_version, photos, tmp_path):
    """`mlflow models serve` of the registered version, none of our code around it: JSON with base64."""
    version, _ = photo_version
    port = _free_port()
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "MLFLOW_TRACKING_URI": registry, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
    proc = subprocess.Popen(
        [str(Path(bin_dir) / "mlflow"), "models", "serve", "-m", f"models:/{NAME}/{version}", "--env-manager",
         "local", "-h", "127.0.0.1", "-p", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                assert proc.poll() is None, "mlflow models serve exited"
                time.sleep(0.5)
        body = pf.example_input(*photos)
        import json

        payload = json.dumps({"dataframe_records": body.to_dict(orient="records")}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", payload,
                                         {"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(request, timeout=60).read())
        row = answer["predictions"][0]
        assert set(pf.OUTPUT_COLUMNS) <= set(row) and row["error"] == ""
        assert row["lower_90"] < row["year"] < row["upper_90"]
    finally:
        stop_process_group(proc, grace=10)
