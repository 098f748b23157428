"""The serving API over HTTP (FastAPI TestClient: the real app, a real tiny registered model on a
temporary MLflow store, a real SQLite request store, the real upload zone)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from coin_assets.serving.app import create_app
from coin_assets.serving.store import feedback, requests, results
from coin_assets_tests.serving_fixtures import (  # noqa: F401 (serving_registry is a fixture)
    RELOAD_TOKEN,
    REVIEWER_TOKEN,
    USER_TOKEN,
    coin_photos,
    legible_coin_photos,
    serving_registry_fixture,
)

NAME = "coin_serving_api"


@pytest.fixture(scope="module")
def registry(serving_registry):
    reg = serving_registry
    (reg.v1,) = reg.model_copy(NAME, reg.base[:1])
    for key, value in {"training_set_hash": "abc123", "dagster_run_id": "run-1"}.items():
        reg.client.set_model_version_tag(NAME, reg.v1, key, value)
    reg.promote(reg.v1, NAME)
    return reg


@pytest.fixture(scope="module")
def served(registry, tmp_path_factory):
    data = tmp_path_factory.mktemp("serving_data")
    settings = registry.settings(data, NAME, max_photo_bytes=300_000)
    app = create_app(settings)
    with TestClient(app) as client:
        client.data_dir = Path(data)
        client.app_ref = app
        yield client


def files(front: bytes, back: bytes, **extra):
    out = {"front": ("f.jpg", front, "image/jpeg"), "back": ("b.jpg", back, "image/jpeg")}
    out.update({k: (None, v) for k, v in extra.items()})
    return out


def test_health_names_the_production_version(served, registry):
    body = served.get("/health").json()
    assert body["status"] == "ready" and body["model_version"] == registry.v1 and body["alias"] == "production"
    assert body["since"]


def test_predict_multipart_and_json_answer_the_same_year(served, registry):
    front, back = coin_photos(1923, seed=2)
    r = served.post("/predict", files=files(front, back, user_id="u-1", coin_id="../../etc/passwd"))
    assert r.status_code == 200, r.text
    body = r.json()
    for key in ("request_id", "year", "lower_90", "upper_90", "sigma", "needs_review", "model_name",
                "model_version", "latency_ms"):
        assert key in body
    assert body["model_version"] == registry.v1 and body["model_name"] == NAME
    assert body["lower_90"] < body["year"] < body["upper_90"]
    j = served.post("/predict", json={"front": base64.b64encode(front).decode(), "back": base64.b64encode(back).decode()})
    assert j.status_code == 200, j.text
    assert j.json()["year"] == pytest.approx(body["year"], abs=1e-3)
    assert j.json()["request_id"] != body["request_id"]

    # logged: request row + result row in the store, photos + sidecar in the upload zone (never the caller's names)
    store = served.app_ref.state.store
    with store.engine.connect() as conn:
        row = conn.execute(select(requests).where(requests.c.request_id == body["request_id"])).mappings().one()
        res = conn.execute(select(results).where(results.c.request_id == body["request_id"])).mappings().one()
    assert row["status"] == "completed" and row["user_id"] == "u-1" and row["client_coin_id"] == "../../etc/passwd"
    assert res["year"] == pytest.approx(body["year"], abs=1e-3) and res["model_version"] == registry.v1
    day = row["created_at"].date().isoformat()
    assert row["front_key"] == f"uploads/{day}/api-{body['request_id']}__front.jpg"
    assert (served.data_dir / row["front_key"]).read_bytes() == front
    assert (served.data_dir / row["back_key"]).read_bytes() == back
    sidecar = json.loads((served.data_dir / row["sidecar_key"]).read_text())
    assert sidecar["user_id"] == "u-1" and sidecar["request_id"] == body["request_id"] and sidecar["source"] == "api"
    assert "year" not in sidecar
    assert not list(served.data_dir.rglob("passwd"))


def _png_header_bomb() -> bytes:
    """A PNG whose header claims 60000x60000 pixels (the pixel limit must refuse it before decoding)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b"")


def test_bad_inputs_are_clear_4xx_and_nothing_is_stored(served):
    front, back = coin_photos()
    store = served.app_ref.state.store
    with store.engine.connect() as conn:
        before = conn.execute(select(requests)).fetchall()
    uploads_before = sorted(p for p in served.data_dir.rglob("*") if p.is_file() and "uploads" in p.parts)
    text_as_jpg = ("x.jpg", b"hello, I am not an image at all", "image/jpeg")
    cases = {
        "missing side": (dict(files={"front": ("f.jpg", front, "image/jpeg")}), 422, "back: missing"),
        "empty file": (dict(files=files(front, b"")), 422, "back: empty file"),
        "not an image": (dict(files={"front": text_as_jpg, "back": ("b.jpg", back, "image/jpeg")}), 422,
                         "front: not a recognised image"),
        "truncated jpeg": (dict(files=files(front, back[: len(back) // 3])), 422, "back: truncated"),
        "decompression bomb": (dict(files=files(_png_header_bomb(), back)), 422, "pixel limit"),
        "over size": (dict(files=files(front + b"\0" * 300_001, back)), 413, "size limit"),
        "unknown form field": (dict(files=files(front, back, label="1900")), 422, "unknown field"),
        "invalid base64": (dict(json={"front": "%%%not-base64%%%", "back": base64.b64encode(back).decode()}), 422,
                           "front: not valid base64"),
        "unknown json field": (dict(json={"front": base64.b64encode(front).decode(),
                                          "back": base64.b64encode(back).decode(), "path": "/etc"}), 422, "path"),
        "json missing side": (dict(json={"front": base64.b64encode(front).decode()}), 422, "back"),
        "not json": (dict(content=b"{nope", headers={"content-type": "application/json"}), 422, "not valid JSON"),
        "wrong body type": (dict(content=b"abc", headers={"content-type": "text/plain"}), 415, "multipart"),
    }
    for name, (kwargs, status, message) in cases.items():
        r = served.post("/predict", **kwargs)
        assert r.status_code == status, (name, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/json"), name
        assert message in r.json()["detail"], (name, r.json())
    with store.engine.connect() as conn:
        assert conn.execute(select(requests)).fetchall() == before
    assert sorted(p for p in served.data_dir.rglob("*") if p.is_file() and "uploads" in p.parts) == uploads_before


def test_feedback_needs_a_token_and_only_a_reviewer_makes_a_label(served):
    front, back = coin_photos(1950, seed=9)
    rid = served.post("/predict", files=files(front, back)).json()["request_id"]
    assert served.post(f"/predictions/{rid}/feedback", json={"year": 1950}).status_code == 401
    assert served.post(f"/predictions/{rid}/feedback", json={"year": 1950},
                       headers={"Authorization": "Bearer nope-nope-nope"}).status_code == 401
    assert served.post("/predictions/../../x/feedback", json={"year": 1950},
                       headers={"Authorization": f"Bearer {USER_TOKEN}"}).status_code == 404
    user = served.post(f"/predictions/{rid}/feedback", json={"year": 1951},
                       headers={"Authorization": f"Bearer {USER_TOKEN}"})
    assert user.status_code == 201 and user.json()["status"] == "awaiting_review" and user.json()["sender"] == "alice"
    reviews = served.data_dir / "uploads" / "reviews"
    assert not reviews.exists() or not list(reviews.glob(f"*{rid}*"))
    rev = served.post(f"/predictions/{rid}/feedback", json={"year": 1950},
                      headers={"Authorization": f"Bearer {REVIEWER_TOKEN}"})
    assert rev.status_code == 201 and rev.json()["status"] == "label_submitted"
    (csv_file,) = reviews.glob(f"*{rid}*.csv")
    lines = csv_file.read_text().splitlines()
    assert lines[0] == "coin_id,year,reviewer,reviewed_at" and lines[1].startswith(f"api-{rid},1950,rita,")
    with served.app_ref.state.store.engine.connect() as conn:
        rows = conn.execute(select(feedback).where(feedback.c.request_id == rid)).mappings().all()
    assert [(r["sender"], r["role"], r["year"]) for r in rows] == [("alice", "user", 1951), ("rita", "reviewer", 1950)]


def test_models_metadata_docs_and_metrics(served, registry):
    models = served.get("/models").json()
    assert models["serving_version"] == registry.v1
    assert any(v["version"] == registry.v1 and "production" in v["aliases"] for v in models["versions"])
    meta = served.get("/metadata").json()
    assert meta["model_version"] == registry.v1 and meta["training_set_hash"] == "abc123"
    assert meta["dagster_run_id"] == "run-1" and meta["mlflow_run_id"]
    assert {i["name"] for i in json.loads(meta["signature"]["inputs"])} == {"front", "back"}
    assert meta["input_limits"]["max_photo_bytes"] == 300_000
    assert meta["inference"]["optimised"] is True, meta["inference"]  # the traced, frozen copy, checked
    assert meta["inference"]["checked_batch_sizes"] == [1, 3, 8, 16]
    assert served.get("/health").json()["optimised"] is True
    assert served.get("/docs").status_code == 200
    spec = served.get("/openapi.json").json()
    assert "multipart/form-data" in spec["paths"]["/predict"]["post"]["requestBody"]["content"]

    def counter(text: str, outcome: str) -> float:
        for line in text.splitlines():
            if line.startswith(f'coin_serving_requests_total{{outcome="{outcome}"}}'):
                return float(line.split()[-1])
        return 0.0
    before = served.get("/metrics").text
    front, back = coin_photos(1960, seed=3)
    ok = served.post("/predict", files=files(front, back)).json()
    served.post("/predict", files=files(front, b""))
    after = served.get("/metrics").text
    outcome = "unreadable" if ok["unreadable"] else ("needs_review" if ok["needs_review"] else "ok")
    assert counter(after, outcome) == counter(before, outcome) + 1
    assert counter(after, "bad_input") == counter(before, "bad_input") + 1
    assert f'coin_serving_model_version{{model_name="{NAME}",version="{registry.v1}"}} 1.0' in after
    assert "coin_serving_request_latency_seconds_bucket" in after and "coin_serving_queue_depth" in after
    assert "coin_serving_model_optimised 1.0" in after


def test_reload_needs_the_token(served):
    assert served.post("/admin/reload").status_code == 401
    assert served.post("/admin/reload", headers={"X-Reload-Token": "wrong"}).status_code == 401
    r = served.post("/admin/reload", headers={"X-Reload-Token": RELOAD_TOKEN})
    assert r.status_code == 200 and r.json()["changed"] is False


def test_not_ready_without_a_production_model(registry, tmp_path):
    settings = registry.settings(tmp_path, model_name="no_such_model")
    with TestClient(create_app(settings)) as client:
        health = client.get("/health")
        assert health.status_code == 503 and "no 'production' version" in health.json()["reason"]
        front, back = coin_photos()
        r = client.post("/predict", files=files(front, back))
        assert r.status_code == 503 and r.headers["retry-after"]


def test_png_upload_keeps_its_sniffed_extension(served):
    front, back = coin_photos(1999, seed=4)
    buf = io.BytesIO()
    Image.open(io.BytesIO(front)).save(buf, "PNG")
    r = served.post("/predict", files={"front": ("photo.jpg", buf.getvalue(), "image/jpeg"),
                                       "back": ("x.exe", back, "application/octet-stream")})
    assert r.status_code == 200, r.text
    row = served.app_ref.state.store.get_request(r.json()["request_id"])
    assert row["front_key"].endswith("__front.png") and row["back_key"].endswith("__back.jpg")


def test_concurrent_requests_share_one_forward_pass_and_the_queue_is_bounded(served):
    import asyncio

    from coin_assets.serving.batching import MicroBatcher, QueueFull
    from coin_assets.serving.inputs import prepare_photo
    from coin_assets.serving.metrics import ServingMetrics

    model = served.app_ref.state.holder.current
    coins = [coin_photos(1900 + 20 * k, seed=k) for k in range(5)]
    pairs = [np.stack([prepare_photo(side, data, model.image_size, 10**7).array
                       for side, data in zip(("front", "back"), coin, strict=True)]) for coin in coins]

    async def run():
        metrics = ServingMetrics()
        batcher = MicroBatcher(max_batch=16, queue_size=5, metrics=metrics)
        tasks = [asyncio.create_task(batcher.predict(model, pair)) for pair in pairs]
        await asyncio.sleep(0)  # all five wait in the queue before the consumer starts
        with pytest.raises(QueueFull):
            await batcher.predict(model, pairs[0])
        batcher.start()
        answers = await asyncio.gather(*tasks)
        await batcher.stop()
        return answers, metrics

    answers, metrics = asyncio.run(run())
    assert metrics.registry.get_sample_value("coin_serving_batch_size_count") == 1
    assert metrics.registry.get_sample_value("coin_serving_batch_size_sum") == 5
    alone = model.predictor.predict_photos([c[0] for c in coins], [c[1] for c in coins])
    assert [a["year"] for a in answers] == pytest.approx(list(alone["year"]), abs=1e-3)


@pytest.fixture(scope="module")
def reading_served(serving_registry, tmp_path_factory):
    """The API on a version that carries the year reader."""
    name = "coin_serving_api_reader"
    version = serving_registry.register(seed=2, reader=True)
    (copy,) = serving_registry.model_copy(name, [version])
    serving_registry.promote(copy, name)
    data = tmp_path_factory.mktemp("serving_reader")
    with TestClient(create_app(serving_registry.settings(data, name))) as client:
        yield client


def test_the_answer_carries_the_year_read_and_where_on_the_photo(reading_served):
    front, back = legible_coin_photos(1961, seed=3)
    body = reading_served.post("/predict", files=files(front, back)).json()
    reading = body["reading"]
    assert reading["year"] == 1961 and reading["digits"] == "1961" and len(reading["digit_probs"]) == 4
    assert body["year"] == 1961 and not body["unreadable"] and body["lower_90"] <= 1961 <= body["upper_90"]
    region = np.array(reading["region"])
    assert region.shape[0] >= 4 and ((region >= 0) & (region <= 1)).all()
    # the region lies in the lower half of the coin, where this coin's year is printed
    assert region[:, 1].mean() > 0.5
    assert "reading" in reading_served.get("/openapi.json").json()["components"]["schemas"]["Prediction"]["properties"]


def test_a_photo_without_a_coin_gets_no_trusted_year(reading_served):
    blank = Image.new("RGB", (320, 240), (200, 180, 150))
    buf = io.BytesIO()
    blank.save(buf, "JPEG")
    body = reading_served.post("/predict", files=files(buf.getvalue(), buf.getvalue())).json()
    assert body["unreadable"] or body["needs_review"]
    assert body["reading"]["year"] is None
