"""Shared helpers and fixtures for the ingestion tests.

Everything is real: a data root under ``tmp_path`` (``CoinStorage(root=...)``), a DuckDB file next
to it, an ephemeral Dagster instance, and tiny photos drawn with Pillow. One fixture is autouse:
``uploads_settle_at_once`` sets ``COIN_ASSETS_SETTLE_SECONDS=0`` for every test, because tests write
uploads and ingest them the same second (runs take only files older than the settle window); the
tests of the window set it themselves.

``lake`` (an :class:`IngestionLake`) bundles them; ``make_upload`` and ``write_sidecar`` are its
upload helpers as fixtures of their own. ``PROJECT`` is the project's definitions built from the default
settings; ``ASSETS``, ``CHECKS``, ``JOBS``, ``SENSORS`` and ``SCHEDULES`` hold its parts by name.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from pathlib import Path

import duckdb
import pytest
from dagster import AssetSelection, DagsterInstance, TableMetadataValue, materialize
from dagster_duckdb import DuckDBResource
from PIL import Image

from coin_assets.definitions import build_definitions
from coin_assets.defs.resources import CoinStorage
from coin_assets.settings import Settings

DAY = "2026-11-20"
DAY2 = "2026-11-21"

# The project's definitions as the loader builds them, from the default settings (`Settings.from_env({})`
# reads no environment: daily partitions from 2025-01-01). Tests take the assets, checks, jobs, sensors
# and schedules they run from here, by name, and give them their own resources.
PROJECT = build_definitions(Settings.from_env({}))
ASSETS = {a.key.to_user_string(): a for a in PROJECT.assets}
CHECKS = {c.check_key.name: c for c in PROJECT.asset_checks}
JOBS = {j.name: j for j in PROJECT.jobs}
SENSORS = {s.name: s for s in PROJECT.sensors}
SCHEDULES = {s.name: s for s in PROJECT.schedules}

INGESTION_ASSETS = [ASSETS[name] for name in ("coin_uploads", "bronze_images", "decoded_images", "silver_images",
                                              "gold_images", "found_coins")]
INGESTION_CHECKS = [CHECKS[name] for name in ("silver_images_are_clean", "quarantine_is_empty",
                                              "gold_lineage_is_intact", "gold_metadata_is_complete")]
LAYERS = ["bronze_images", "decoded_images", "silver_images", "gold_images"]
PIL_FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "gif": "GIF",
               "bmp": "BMP", "tif": "TIFF", "tiff": "TIFF"}
EXIF_ORIENTATION = 0x0112


def encode(img: Image.Image, fmt: str = "jpg", **save_kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, PIL_FORMATS[fmt.lower()], **save_kw)
    return buf.getvalue()


def tiny_photo(size=(120, 90), color=(150, 100, 60)) -> Image.Image:
    """A small RGB image with a little structure (a light block in the top-left corner)."""
    img = Image.new("RGB", size, color)
    img.paste((240, 240, 240), (0, 0, max(1, size[0] // 4), max(1, size[1] // 4)))
    return img


def jpeg_with_orientation(img: Image.Image, orientation: int, **save_kw) -> bytes:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    return encode(img, "jpg", exif=exif.tobytes(), **save_kw)


def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def age(path: Path, seconds: float = 3600.0) -> None:
    """Set a file's mtime ``seconds`` in the past, as for an upload that finished long ago."""
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))


def age_tree(root: Path, seconds: float = 3600.0) -> None:
    """Age every file under ``root`` (uploads written by the generator are otherwise still settling)."""
    for path in Path(root).rglob("*"):
        if path.is_file() and not path.is_symlink():
            age(path, seconds)


def sha256_of_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_evaluations(result) -> dict:
    """{check name: AssetCheckEvaluation} of a run result."""
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def materialization_metadata(result, asset_name: str) -> dict:
    """{key: plain value} of the single materialization of ``asset_name`` in a run result."""
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == asset_name]
    assert len(events) == 1, f"expected one materialization of {asset_name}, got {len(events)}"
    return {k: plain_metadata(v) for k, v in events[0].materialization.metadata.items()}


def metadata_values(evaluation) -> dict:
    return {k: plain_metadata(v) for k, v in evaluation.metadata.items()}


def plain_metadata(value):
    """A metadata value as plain Python: a table as its rows (dicts), anything else its ``value``."""
    if isinstance(value, TableMetadataValue):
        return [dict(record.data) for record in value.records]
    return getattr(value, "value", value)


class IngestionLake:
    """A data root, a DuckDB file and a Dagster instance under one folder, with helpers to upload
    files, materialize partitions, run the checks and read the metadata."""

    def __init__(self, base: Path):
        self.base = Path(base)
        self.root = self.base / "data"
        self.root.mkdir(parents=True, exist_ok=True)
        self.db_path = self.base / "db" / "coin_assets.duckdb"
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self.resources = {"duckdb": DuckDBResource(database=str(self.db_path))}
        self.settle(0)  # tests write uploads and ingest them the same second
        self.store = self.storage.store()
        self.instance = DagsterInstance.ephemeral()

    def settle(self, seconds: float) -> None:
        """Runs and sensors take only uploads unmodified for ``seconds`` (the storage resource's window)."""
        self.storage = CoinStorage(root=str(self.root), settle_seconds=seconds)
        self.resources["storage"] = self.storage

    # ---------------------------------------------------------------- uploads
    def upload_dir(self, day: str | None) -> Path:
        folder = self.root / "uploads" / day if day else self.root / "uploads"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def upload(self, day: str | None, coin_id: str = "c1", side: str = "front", fmt: str = "jpg", *,
               size=(120, 90), color=(150, 100, 60), image: Image.Image | None = None,
               data: bytes | None = None, name: str | None = None, exif_orientation: int | None = None,
               settled: bool = True, **save_kw) -> Path:
        """Write ``uploads/<day>/<coin_id>__<side>.<fmt>`` (or ``name``) and return its path.

        ``data`` writes those bytes as is; otherwise ``image`` (or a tiny photo of ``size`` and
        ``color``) is encoded as ``fmt``. ``settled`` ages the file by an hour."""
        path = self.upload_dir(day) / (name or f"{coin_id}__{side}.{fmt}")
        if data is None:
            img = image if image is not None else tiny_photo(size, color)
            if exif_orientation is not None:
                data = jpeg_with_orientation(img, exif_orientation, **save_kw)
            else:
                data = encode(img, fmt, **save_kw)
        path.write_bytes(data)
        if settled:
            age(path)
        return path

    def sidecar(self, day: str, coin_id: str = "c1", raw: str | bytes | None = None, settled: bool = True,
                **fields) -> Path:
        """Write ``uploads/<day>/<coin_id>.json``: user u1, uploaded at 10:00 of the day, plus
        ``fields``; or ``raw`` bytes/text as is."""
        path = self.upload_dir(day) / f"{coin_id}.json"
        if raw is None:
            doc = {"user_id": "u1", "coin_id": coin_id, "uploaded_at": f"{day}T10:00:00Z"} | fields
            raw = json.dumps(doc)
        path.write_bytes(raw.encode() if isinstance(raw, str) else raw)
        if settled:
            age(path)
        return path

    def coin(self, day: str, coin_id: str, year: int | None = 1990, shade: int = 0, user_id: str = "u1"):
        """A JPEG front, a PNG back and a sidecar (with ``year`` unless None). Distinct ``shade``
        values give distinct bytes."""
        front = self.upload(day, coin_id, "front", "jpg", size=(120, 90), color=(150, 100 + shade, 60))
        back = self.upload(day, coin_id, "back", "png", size=(90, 120), color=(60, 100, 150 - shade))
        self.sidecar(day, coin_id, user_id=user_id, **({"year": year} if year is not None else {}))
        return front, back

    # ---------------------------------------------------------------- runs
    def materialize(self, partition: str = DAY, raise_on_error: bool = True):
        """bronze → silver → gold for one partition, with the ingestion checks."""
        return materialize(
            [*INGESTION_ASSETS, *INGESTION_CHECKS], partition_key=partition, resources=self.resources,
            instance=self.instance, selection=LAYERS, raise_on_error=raise_on_error,
        )

    def run_checks(self, partition: str = DAY, checks=None) -> dict:
        """Only the ingestion checks (nothing materialized); {check name: evaluation}. The run
        result is kept as ``last_result``."""
        checks = list(checks or INGESTION_CHECKS)
        # With only checks selected, Dagster 1.13 cannot infer the partitions definition from
        # `partition_key=`; the partition run tag (what partition_key sets) works.
        result = materialize(
            [*INGESTION_ASSETS, *INGESTION_CHECKS], resources=self.resources, instance=self.instance,
            selection=AssetSelection.checks(*checks), tags={"dagster/partition": partition},
            raise_on_error=False,
        )
        self.last_result = result  # a failing blocking check fails its step, hence the run
        assert not result.get_asset_materialization_events(), "only the checks were selected"
        evaluations = check_evaluations(result)
        assert len(evaluations) == len(checks)
        assert {e.partition for e in evaluations.values()} == {partition}
        return evaluations

    # ---------------------------------------------------------------- reading
    def query(self, sql: str, *params) -> list[tuple]:
        with duckdb.connect(str(self.db_path)) as conn:
            return conn.execute(sql, list(params)).fetchall()

    def df(self, sql: str, *params):
        with duckdb.connect(str(self.db_path)) as conn:
            return conn.execute(sql, list(params)).df()

    def scalar(self, sql: str, *params):
        rows = self.query(sql, *params)
        assert len(rows) == 1, rows
        return rows[0][0]

    def quarantine(self, partition: str = DAY) -> dict[tuple[str, str], str]:
        """{(file name, stage): reason} of the partition's quarantine."""
        rows = self.query("SELECT upload_key, stage, reason FROM quarantine WHERE partition_date = ?", partition)
        return {(key.rsplit("/", 1)[-1], stage): reason for key, stage, reason in rows}

    def gold(self, partition: str = DAY) -> dict[tuple[str, str], dict]:
        """{(coin_id, side): row as dict} of the partition's gold rows."""
        frame = self.df("SELECT * FROM gold_images WHERE partition_date = ? ORDER BY coin_id, side", partition)
        return {(r["coin_id"], r["side"]): r for r in frame.to_dict("records")}

    def upload_row(self, name: str) -> dict:
        frame = self.df("SELECT * FROM uploads WHERE raw_name = ?", name)
        assert len(frame) == 1, f"{len(frame)} upload rows named {name!r}"
        return frame.to_dict("records")[0]

    def files(self, *layers: str) -> dict[str, str]:
        """{key: sha256} of every file under the given layer folders of the data root."""
        out = {}
        for layer in layers or ("bronze", "silver", "gold"):
            base = self.root / layer
            if base.is_dir():
                for path in sorted(base.rglob("*")):
                    if path.is_file():
                        out[path.relative_to(self.root).as_posix()] = sha256_of_file(path)
        return out

    def close(self) -> None:
        self.instance.dispose()


# Test tiers. `make test` runs everything; `make test-fast` leaves out what is marked `servers` (real
# servers, other processes or a browser) and `slow` (training end to end, reading whole photos). A module
# listed here carries the mark as a whole; a test elsewhere carries it itself.
SERVER_MODULES = {
    "test_api_contract", "test_async_requests", "test_demo_backfill", "test_ingestion_crash_recovery",
    "test_ingestion_readers", "test_s3_storage", "test_scale_out", "test_serving_live", "test_serving_request_log",
    "test_serving_store_postgres", "test_serving_workers", "test_webapp_browser",
}
SLOW_MODULES = {"test_base_version", "test_headless_cli", "test_model_lifecycle", "test_pretraining",
                "test_reader_crops"}


# The longest modules, longest first (`pytest --durations`, two cores). `make test` hands whole modules to two
# workers in collection order; starting the longest first keeps one of them from finishing alone.
LONGEST_MODULES = (
    "test_scale_out", "test_demo_backfill", "test_ingestion_crash_recovery", "test_model_lifecycle",
    "test_async_requests", "test_webapp_browser", "test_headless_cli", "test_year_reading", "test_serving_workers",
    "test_api_contract", "test_pretraining", "test_reader_crops", "test_serving_live", "test_photo_pyfunc",
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        if module in SERVER_MODULES:
            item.add_marker(pytest.mark.servers)
        if module in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
    rank = {name: i for i, name in enumerate(LONGEST_MODULES)}
    items.sort(key=lambda item: rank.get(item.module.__name__.rsplit(".", 1)[-1], len(rank)))


@pytest.fixture(autouse=True)
def uploads_settle_at_once(monkeypatch):
    monkeypatch.setenv("COIN_ASSETS_SETTLE_SECONDS", "0")


@pytest.fixture
def lake(tmp_path):
    lake = IngestionLake(tmp_path)
    yield lake
    lake.close()


@pytest.fixture
def make_upload(lake):
    """``make_upload(day, coin_id, side, fmt="jpg", **kw)``: see :meth:`IngestionLake.upload`."""
    return lake.upload


@pytest.fixture
def write_sidecar(lake):
    """``write_sidecar(day, coin_id, raw=None, **fields)``: see :meth:`IngestionLake.sidecar`."""
    return lake.sidecar
