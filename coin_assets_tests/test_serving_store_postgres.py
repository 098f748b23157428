"""The serving request store and the asynchronous queue's claim path on a real Postgres (pgserver's
binaries, started by coin_assets.devtools.local_cluster as in test_scale_out): the synchronous log round-trips
with its times in UTC, and concurrent claimers (``FOR UPDATE SKIP LOCKED``) claim every pending
request exactly once and finish each with exactly one result. The schema is Alembic's: a new store and
one made by ``create_all`` before the versioning (schemas/serving_store_3a37afd_postgresql.sql) reach
the newest revision with their rows, a later revision applies, and workers starting together on a new
store upgrade it once (advisory lock)."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event, func, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError

from coin_assets.serving import queue
from coin_assets.serving import store as store_module
from coin_assets.serving.store import COMPLETED, PENDING, RequestStore, head_revision, requests, results
from coin_assets_tests.test_schema_migrations import (
    SCHEMAS,
    SYNC_ID,
    later_revision,
    models_differences,
    sql_statements,
    store_rows,
    version_rows,
)

pytest.importorskip("pgserver")
pytest.importorskip("psycopg2")

CLAIMERS = 4
PENDING_REQUESTS = 120


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from coin_assets.devtools.local_cluster import start_postgres

    server = start_postgres(tmp_path_factory.mktemp("serving_pg"), databases=("serving", "pre_alembic", "racing"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def store(server):
    store = RequestStore(f"{server.url}/serving")
    try:
        store_module.upgrade_to_head(store.url, store.engine)  # the migrations alone make the tables
        store.create_tables()
        store.create_tables()  # idempotent
        yield store
    finally:
        store.dispose()


def test_the_store_is_at_the_newest_revision_and_matches_the_models(store):
    assert store.schema_revision() == head_revision()
    assert version_rows(store) == [(head_revision(),)]
    assert models_differences(store) == []


def test_a_store_made_before_the_versioning_is_taken_up_with_its_rows(server, tmp_path):
    legacy = RequestStore(f"{server.url}/pre_alembic")
    try:
        with legacy.engine.begin() as conn:
            for statement in sql_statements(SCHEMAS / "serving_store_3a37afd_postgresql.sql"):
                conn.exec_driver_sql(statement)
        before = store_rows(legacy)
        assert legacy.schema_revision() is None and len(before["requests"]) == 2
        store_module.upgrade_to_head(legacy.url, legacy.engine)  # the migrations alone
        assert version_rows(legacy) == [(head_revision(),)]
        assert store_rows(legacy) == before
        assert models_differences(legacy) == []
        legacy.create_tables()  # what start-up runs: nothing left to do
        assert version_rows(legacy) == [(head_revision(),)]
        assert store_rows(legacy) == before
        assert legacy.get_request(SYNC_ID)["completed_at"] == datetime(2026, 12, 1, 9, 30, 0, 41500, tzinfo=timezone.utc)
        # the next release's revision applies (a column added, one altered) and keeps the rows
        location = later_revision(tmp_path)
        store_module.upgrade_to_head(legacy.url, legacy.engine, script_location=location)
        store_module.upgrade_to_head(legacy.url, legacy.engine, script_location=location)
        assert version_rows(legacy) == [("9999",)]
        assert "note" in {c["name"] for c in inspect(legacy.engine).get_columns("requests")}
        assert store_rows(legacy) == before
    finally:
        legacy.dispose()


def test_workers_starting_together_upgrade_a_new_store_once(server):
    stores = [RequestStore(f"{server.url}/racing") for _ in range(CLAIMERS)]
    start = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def starter(store: RequestStore) -> None:
        try:
            start.wait()
            store.create_tables()
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=starter, args=(s,)) for s in stores]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        assert version_rows(stores[0]) == [(head_revision(),)]
        with stores[0].engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM requests")).scalar() == 0
    finally:
        for s in stores:
            s.dispose()


def test_the_claim_statement_skips_locked_rows_on_postgres(store):
    assert store.engine.dialect.name == "postgresql"
    statements = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        assert queue.claim(store, "nobody", lease_seconds=1, limit=3) == []
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    assert any("AS MATERIALIZED" in s and "FOR UPDATE SKIP LOCKED" in s for s in statements), statements


def test_a_synchronous_prediction_round_trips(store):
    rid = str(uuid.uuid4())
    created = datetime(2026, 3, 4, 23, 59, 30, tzinfo=timezone.utc)
    store.record_prediction(
        {"request_id": rid, "created_at": created, "status": COMPLETED, "mode": "sync", "source": "api",
         "user_id": "u-1", "coin_id": f"api-{rid}", "model_name": "m", "model_version": "3",
         "front_sha256": "a" * 64, "back_sha256": "b" * 64, "outcome": "ok", "latency_ms": 12.5, "attempts": 1,
         "completed_at": created},
        {"request_id": rid, "year": 1987.5, "sigma": 4.0, "lower_90": 1980.9, "upper_90": 1994.1,
         "needs_review": False, "unreadable": False, "model_name": "m", "model_version": "3", "created_at": created})
    assert store.get_request(rid)["created_at"] == created
    assert store.get_result(rid)["year"] == 1987.5
    day, feedback = store.day_log("2026-03-04")
    assert [r["request_id"] for r in day] == [rid] and day[0]["result_year"] == 1987.5 and feedback == []
    assert store.day_log("2026-03-05") == ([], [])
    with pytest.raises(IntegrityError):  # request ids are unique: a second row for the same request is refused
        store.record_prediction({"request_id": rid, "created_at": created, "status": COMPLETED, "mode": "sync",
                                 "attempts": 1}, None)


def test_concurrent_claimers_take_every_request_exactly_once(store):
    now = datetime.now(timezone.utc)
    ids = [str(uuid.uuid4()) for _ in range(PENDING_REQUESTS)]
    with store.session() as s:
        s.execute(insert(requests), [
            {"request_id": rid, "created_at": now + timedelta(microseconds=k), "status": PENDING, "mode": queue.ASYNC,
             "source": "api", "coin_id": f"api-{rid}", "front_key": f"uploads/x/{rid}__front.jpg",
             "back_key": f"uploads/x/{rid}__back.jpg", "attempts": 0} for k, rid in enumerate(ids)])

    claimed: dict[str, list[str]] = {f"worker-{k}": [] for k in range(CLAIMERS)}
    finished: dict[str, int] = {}
    start = threading.Barrier(CLAIMERS)
    errors: list[BaseException] = []

    def claimer(name: str) -> None:
        try:
            start.wait()
            while batch := queue.claim(store, name, lease_seconds=60, limit=3):
                assert len(batch) <= 3, f"{name} claimed {len(batch)} requests at once"
                for item in batch:
                    claimed[name].append(item.request_id)
                    assert queue.complete(store, item.request_id, name,
                                          {"year": 1900.0, "sigma": 5.0, "lower_90": 1891.8, "upper_90": 1908.2,
                                           "needs_review": False, "unreadable": False, "model_name": "m",
                                           "model_version": "1"}, {"model_name": "m", "model_version": "1"})
                    finished[item.request_id] = finished.get(item.request_id, 0) + 1
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=claimer, args=(name,)) for name in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    every = [rid for got in claimed.values() for rid in got]
    assert sorted(every) == sorted(ids)  # each request claimed once, none left out
    assert sum(1 for got in claimed.values() if got) >= 2  # the claimers really ran side by side
    assert set(finished.values()) == {1}
    with store.engine.connect() as conn:
        statuses = dict(conn.execute(select(requests.c.status, func.count()).where(requests.c.request_id.in_(ids))
                                     .group_by(requests.c.status)).all())
        per_request = conn.execute(select(results.c.request_id, func.count()).where(results.c.request_id.in_(ids))
                                   .group_by(results.c.request_id)).all()
        owners = dict(conn.execute(select(requests.c.request_id, requests.c.claimed_by)
                                   .where(requests.c.request_id.in_(ids))).all())
    assert statuses == {COMPLETED: PENDING_REQUESTS}
    assert len(per_request) == PENDING_REQUESTS and {n for _, n in per_request} == {1}
    assert all(owners[rid] == name for name, got in claimed.items() for rid in got)
    # a worker that no longer holds a request cannot finish it again
    assert not queue.complete(store, ids[0], "worker-0", {"year": 1.0, "model_name": "m", "model_version": "1"}, {})
