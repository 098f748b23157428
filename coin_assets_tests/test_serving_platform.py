"""Requests feed the platform: the API's logged photos are picked up by the next upload_sensor tick and
ingested into gold, a reviewer's feedback becomes a gold label through review_sensor + review_labels,
and serving_requests brings the day's request log into DuckDB linked to those gold rows."""

from __future__ import annotations

import pandas as pd
import pytest
from dagster import SensorResult, build_sensor_context, materialize
from fastapi.testclient import TestClient

from coin_assets.core.clock import utcnow
from coin_assets.defs.assets.review import review_labels
from coin_assets.defs.resources import ServingApi
from coin_assets.serving.app import create_app
from coin_assets_tests.conftest import ASSETS, SENSORS
from coin_assets_tests.serving_fixtures import (  # noqa: F401 (serving_registry is a fixture)
    REVIEWER_TOKEN,
    USER_TOKEN,
    coin_photos,
    serving_registry_fixture,
)

NAME = "coin_serving_platform"
upload_sensor, review_sensor = SENSORS["upload_sensor"], SENSORS["review_sensor"]
serving_requests = ASSETS["serving_requests"]


@pytest.fixture(scope="module")
def registry(serving_registry):
    (version,) = serving_registry.model_copy(NAME, serving_registry.base[:1])
    serving_registry.promote(version, NAME)
    return serving_registry


def test_requests_are_ingested_labelled_and_audited(registry, lake, monkeypatch):
    monkeypatch.setenv("COIN_ASSETS_SETTLE_SECONDS", "0")
    settings = registry.settings(lake.root, NAME, serving_db_url=f"sqlite:///{lake.base / 'serving.db'}")
    day = utcnow().date().isoformat()
    with TestClient(create_app(settings)) as api:
        answers = []
        for year, seed in ((1931, 1), (1977, 2)):
            r = api.post("/predict", files={"front": ("a.jpg", coin_photos(year, seed)[0], "image/jpeg"),
                                            "back": ("b.jpg", coin_photos(year, seed)[1], "image/jpeg"),
                                            "user_id": (None, "visitor-7")})
            assert r.status_code == 200, r.text
            answers.append(r.json())
        first, second = (a["request_id"] for a in answers)
        auth = {"Authorization": f"Bearer {REVIEWER_TOKEN}"}
        assert api.post(f"/predictions/{first}/feedback", json={"year": 1931}, headers=auth).status_code == 201
        assert api.post(f"/predictions/{second}/feedback", json={"year": 1900},
                        headers={"Authorization": f"Bearer {USER_TOKEN}"}).status_code == 201

    # an API process killed after writing a request's photos, before recording the request
    orphan = "api-00000000-0000-4000-8000-000000000000"
    for side in ("front", "back"):
        (lake.upload_dir(day) / f"{orphan}__{side}.jpg").write_bytes(coin_photos(1950, 3)[side == "back"])
    (lake.upload_dir(day) / f"{orphan}.json").write_text('{"user_id": "visitor-8", "source": "api"}')

    # the next upload_sensor tick asks for the day; the ingestion run puts both coins into gold
    tick = upload_sensor(build_sensor_context(resources={"storage": lake.storage}, instance=lake.instance))
    assert isinstance(tick, SensorResult) and [r.partition_key for r in tick.run_requests] == [day]
    lake.materialize(day)
    gold = lake.gold(day)
    for rid in (first, second):
        assert {side for coin, side in gold if coin == f"api-{rid}"} == {"front", "back"}
        assert gold[(f"api-{rid}", "front")]["user_id"] == "visitor-7"
        assert pd.isna(gold[(f"api-{rid}", "front")]["label_year"])  # the API's sidecar carries no label

    # the reviewer's verdict (only theirs) becomes the label
    review_tick = review_sensor(build_sensor_context(resources={"storage": lake.storage}, instance=lake.instance))
    assert isinstance(review_tick, SensorResult) and len(review_tick.run_requests) == 1
    materialize([review_labels], resources=lake.resources, instance=lake.instance)
    labels = dict(lake.query("SELECT coin_id, label_year FROM coins WHERE coin_id LIKE 'api-%'"))
    assert labels[f"api-{first}"] == 1931
    assert labels[f"api-{second}"] is None
    assert lake.scalar("SELECT labelled_by FROM gold_images WHERE coin_id = ? AND side = 'front'",
                       f"api-{first}") == "rita"

    # the day's request log lands in DuckDB, linked to the same bytes in gold; re-running is idempotent
    api = ServingApi(url=settings.api_base_url, request_store_url=settings.serving_db)
    for _ in range(2):
        audit = materialize([serving_requests], partition_key=day, resources={**lake.resources, "serving_api": api},
                            instance=lake.instance)
    meta = audit.asset_materializations_for_node("serving_requests")[0].metadata
    assert meta["uploads_without_request"].value == 1
    assert [r.data["coin_id"] for r in meta["uploads_without_request_coins"].records] == [orphan]
    rows = lake.df("SELECT * FROM serving_lineage ORDER BY created_at")
    assert list(rows["request_id"]) == [first, second]
    assert rows["in_gold"].all() and rows["same_bytes"].all() and rows["gold_paired"].all()
    assert list(rows["served_version"]) == [answers[0]["model_version"]] * 2
    assert rows["served_year"].tolist() == pytest.approx([a["year"] for a in answers], abs=1e-3)
    assert rows["label_year"].iloc[0] == 1931
    fb = lake.df("SELECT sender, role, status, year FROM serving_feedback ORDER BY feedback_id")
    assert fb.values.tolist() == [["rita", "reviewer", "label_submitted", 1931], ["alice", "user", "awaiting_review", 1900]]
