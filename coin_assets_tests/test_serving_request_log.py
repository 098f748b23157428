"""The request log of POST /predict: an answer that is given is on record (the row and its result are
committed before the answer leaves); a log write that fails gives a clear 503 and leaves no photos in
the upload zone; and logging never waits for a Dagster run that holds the DuckDB writer (and reads the
serving store, as the ``serving_requests`` asset does)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from coin_assets.serving.app import create_app
from coin_assets.webapp.client import error_for
from coin_assets_tests.serving_fixtures import (  # noqa: F401 (serving_registry is a fixture)
    coin_photos,
    serving_registry_fixture,
)

NAME = "coin_serving_request_log"


@pytest.fixture(scope="module")
def served(serving_registry, tmp_path_factory):
    (version,) = serving_registry.model_copy(NAME, serving_registry.base[:1])
    serving_registry.promote(version, NAME)
    data = tmp_path_factory.mktemp("request_log_data")
    settings = serving_registry.settings(data, NAME)
    app = create_app(settings)
    with TestClient(app) as client:
        client.settings = settings
        client.store = app.state.store
        client.data_dir = Path(data)
        yield client


def predict(client, seed: int = 1):
    front, back = coin_photos(1940 + seed, seed=seed)
    return client.post("/predict", files={"front": ("f.jpg", front), "back": ("b.jpg", back)})


def uploads(data_dir: Path) -> list[Path]:
    return sorted(p for p in (data_dir / "uploads").rglob("*") if p.is_file()) if (data_dir / "uploads").exists() else []


def counter(client, outcome: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f'coin_serving_requests_total{{outcome="{outcome}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_every_answer_is_on_record_when_it_arrives(served):
    for seed in range(3):
        r = predict(served, seed)
        assert r.status_code == 200, r.text
        row = served.store.get_request(r.json()["request_id"])  # no waiting: it was committed before the answer
        result = served.store.get_result(r.json()["request_id"])
        assert row["status"] == "completed" and row["error"] is None and row["front_key"]
        assert result["year"] == pytest.approx(r.json()["year"], abs=1e-3)


def test_a_log_write_that_fails_gives_a_clear_503_and_leaves_no_photos(served):
    database = served.settings.serving_db[len("sqlite:///"):]
    before_files, before_failures = uploads(served.data_dir), counter(served, "log_unavailable")
    with sqlite3.connect(database) as conn:  # the store loses a table under the running service
        conn.execute("DROP TABLE results")
    try:
        r = predict(served, 7)
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "log_unavailable" and "no answer is given" in r.json()["detail"]
        assert r.headers["retry-after"]
        assert "year" not in r.json()
        assert "could not record this request" in str(error_for(r))  # what the web app tells the person
        assert uploads(served.data_dir) == before_files  # the unanswered request's photos were removed
        assert counter(served, "log_unavailable") == before_failures + 1
    finally:
        served.store.create_tables()
    again = predict(served, 7)
    assert again.status_code == 200 and served.store.get_result(again.json()["request_id"]) is not None


HOLDER = textwrap.dedent("""
    import sqlite3, sys, duckdb
    db = duckdb.connect(sys.argv[1])  # a Dagster run writing DuckDB: holds the file's write lock
    db.execute("CREATE TABLE IF NOT EXISTS busy (x INTEGER)")
    db.execute("BEGIN TRANSACTION")
    db.execute("INSERT INTO busy VALUES (1)")
    store = sqlite3.connect(sys.argv[2], isolation_level=None)  # ...and reading the serving store meanwhile
    store.execute("BEGIN")
    print(store.execute("SELECT count(*) FROM requests").fetchone()[0], flush=True)
    sys.stdin.read()  # hold both until the test closes stdin
    store.execute("COMMIT")
    db.execute("COMMIT")
""")


def test_logging_never_waits_for_a_run_holding_the_duckdb_writer(served):
    database = served.settings.serving_db[len("sqlite:///"):]
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, served.settings.duckdb_file, database],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip().isdigit()  # both held now
        ids = []
        for seed in range(3):
            r = predict(served, 20 + seed)
            assert r.status_code == 200, r.text
            ids.append(r.json()["request_id"])
        # stored while both are still held: a write waiting on the reader would fail at SQLite's busy timeout
        assert holder.poll() is None
        assert all(served.store.get_result(rid) is not None for rid in ids)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert holder.returncode == 0
