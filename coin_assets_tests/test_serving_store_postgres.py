"""The serving request store and the asynchronous queue's claim path on a real Postgres (pgserver's
binaries, started by coin_assets.local_cluster as in test_scale_out): the synchronous log round-trips
with its times in UTC, and concurrent claimers (``FOR UPDATE SKIP LOCKED``) claim every pending
request exactly once and finish each with exactly one result."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event, func, insert, select
from sqlalchemy.exc import IntegrityError

from coin_assets.serving import queue
from coin_assets.serving.store import COMPLETED, PENDING, RequestStore, requests, results

pytest.importorskip("pgserver")
pytest.importorskip("psycopg2")

CLAIMERS = 4
PENDING_REQUESTS = 120


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from coin_assets.local_cluster import start_postgres

    server = start_postgres(tmp_path_factory.mktemp("serving_pg"), databases=("serving",))
    store = RequestStore(f"{server.url}/serving")
    try:
        store.create_tables()
        store.create_tables()  # idempotent
        yield store
    finally:
        store.dispose()
        server.stop()


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
