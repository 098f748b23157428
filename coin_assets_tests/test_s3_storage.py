"""Every layer in S3: a local moto server behind the real boto3 / dagster-aws S3Resource code path."""

import io
import json

import pytest
from dagster import AssetSelection, DagsterInstance, materialize
from dagster_duckdb import DuckDBResource
from PIL import Image

from coin_assets.core.storage import S3Store, UnsafeKeyError
from coin_assets.defs.resources import CoinStorage
from coin_assets_tests.conftest import ASSETS, INGESTION_CHECKS

DAY = "2026-11-21"


@pytest.fixture(scope="module")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture()
def storage(s3_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    resource = CoinStorage(s3_bucket="coins", s3_prefix="lake", s3_endpoint_url=s3_endpoint, s3_region="us-east-1",
                           settle_seconds=0)
    client = resource.store().client
    if "coins" not in [b["Name"] for b in client.list_buckets().get("Buckets", [])]:
        client.create_bucket(Bucket="coins")
    for page in client.get_paginator("list_objects_v2").paginate(Bucket="coins"):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket="coins", Key=obj["Key"])
    return resource


def png(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (700, 300), colour).save(buf, "PNG")
    return buf.getvalue()


def test_s3_store_round_trip_and_refuses_escaping_keys(storage):
    store: S3Store = storage.store()
    store.write_bytes("a/b.bin", b"hello")
    assert store.exists("a/b.bin") and not store.exists("a/c.bin")
    assert store.read_bytes("a/b.bin") == b"hello" and store.size("a/b.bin") == 5
    store.copy("a/b.bin", "a/c.bin")
    assert [o.key for o in store.list("a")] == ["a/b.bin", "a/c.bin"]
    assert store.uri("a/b.bin") == "s3://coins/lake/a/b.bin"
    store.write_bytes("a/d/e.bin", b"deeper")
    top, folders = store.list_level("a")
    assert [o.key for o in top] == ["a/b.bin", "a/c.bin"] and folders == ["d"]  # one level, like a local store
    store.delete("a/c.bin")
    assert not store.exists("a/c.bin")
    with pytest.raises(UnsafeKeyError):
        store.write_bytes("../outside", b"x")


def test_ingestion_partition_on_s3(storage, tmp_path, monkeypatch):
    monkeypatch.setenv("COIN_ASSETS_SETTLE_SECONDS", "0")  # objects written just now are taken
    store = storage.store()
    store.write_bytes(f"uploads/{DAY}/c1__front.png", png((200, 150, 40)))
    store.write_bytes(f"uploads/{DAY}/c1__back.png", png((90, 90, 90)))
    store.write_bytes(f"uploads/{DAY}/c1.json", json.dumps({"user_id": "u", "year": 1999}).encode())
    store.write_bytes(f"uploads/{DAY}/broken__front.jpg", b"not an image")
    resources = {"storage": storage, "duckdb": DuckDBResource(database=str(tmp_path / "meta.duckdb"))}
    selection = AssetSelection.assets("bronze_images", "silver_images", "gold_images")
    instance = DagsterInstance.ephemeral()
    for _ in range(2):  # the second run must change nothing
        result = materialize([*(ASSETS[name] for name in ("coin_uploads", "bronze_images", "silver_images",
                                                          "gold_images")), *INGESTION_CHECKS],
                             selection=selection, partition_key=DAY,
                             resources=resources, instance=instance)
        assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"silver_images_are_clean": True, "quarantine_is_empty": False,
                      "gold_lineage_is_intact": True, "gold_metadata_is_complete": True}
    keys = sorted(o.key for layer in ("bronze", "silver", "gold") for o in store.list(layer))
    assert len([k for k in keys if k.startswith(f"bronze/{DAY}/")]) == 4  # everything kept, bad bytes too
    assert len([k for k in keys if k.startswith(f"silver/{DAY}/")]) == 2
    assert [k for k in keys if k.startswith("gold/")] == [f"gold/{DAY}/c1__back.jpg", f"gold/{DAY}/c1__front.jpg"]
    with resources["duckdb"].get_connection() as conn:
        rows = conn.execute("SELECT side, clean_width, clean_height, label_year FROM gold_images ORDER BY side").fetchall()
        reasons = conn.execute("SELECT reason FROM quarantine").fetchall()
    assert rows == [("back", 512, 219, 1999), ("front", 512, 219, 1999)]
    assert reasons == [("not a recognised image (Pillow cannot identify the file)",)]
