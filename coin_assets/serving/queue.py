"""The asynchronous request queue is the ``requests`` table itself (DB-first): claim with a lease,
finish exactly once.

- :func:`claim` moves up to ``limit`` ``pending`` async requests to ``claimed`` by one worker, with
  ``lease_until`` and ``attempts + 1``, in ONE statement: ``WITH picked AS MATERIALIZED (SELECT ...
  LIMIT n FOR UPDATE SKIP LOCKED) UPDATE ... WHERE id IN (SELECT id FROM picked) AND status =
  'pending' RETURNING ...``. On Postgres the picked rows' locks
  let concurrent workers skip each other's rows; on SQLite (no ``FOR UPDATE``) the single UPDATE
  runs under the database write lock, and the ``status = 'pending'`` guard makes it atomic. Either
  way a request is claimed by one worker at a time.
- :func:`release_expired` returns requests whose lease ran out (their worker died or hung) to
  ``pending``; one that has already used ``max_attempts`` leases is ``failed`` with the reason, so a
  request that kills its worker every time cannot block the queue forever.
- :func:`complete` / :func:`fail` finish a request only while the caller still holds its lease
  (``status = 'claimed' AND claimed_by = worker``): a worker that lost its lease (paused past it,
  then woke up) changes nothing. ``results.request_id`` is unique, and the result row is written in
  the same transaction as the status change, so a completed request has exactly one result.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Column, ForeignKey, Integer, String, Table, and_, func, insert, select, update

from coin_assets.core.clock import utcnow
from coin_assets.serving.store import (
    CLAIMED,
    COMPLETED,
    FAILED,
    PENDING,
    RequestStore,
    metadata,
    requests,
    results,
)

ASYNC = "async"
DEFAULT_MAX_ATTEMPTS = 3

# Which requests a batch made (one per coin), in the serving store's metadata so create_tables makes it.
batch_requests = Table(
    "batch_requests", metadata,
    Column("request_id", String(36), ForeignKey("requests.request_id"), primary_key=True),
    Column("batch_id", String(36), nullable=False, index=True),
    Column("position", Integer, nullable=False),
)


@dataclass(frozen=True)
class Claimed:
    request_id: str
    front_key: str | None
    back_key: str | None
    attempts: int
    created_at: datetime


def release_expired(store: RequestStore, now: datetime | None = None,
                    max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> tuple[int, int]:
    """Expired leases → ``pending`` again (or ``failed`` after ``max_attempts``). Returns (released, failed)."""
    now = now or utcnow()
    expired = and_(requests.c.status == CLAIMED, requests.c.lease_until < now)
    with store.session() as s:
        failed = s.execute(
            update(requests).where(expired, requests.c.attempts >= max_attempts).values(
                status=FAILED, claimed_by=None, lease_until=None, completed_at=now, outcome="error:lease",
                error=f"abandoned: its worker stopped {max_attempts} times while scoring it")).rowcount
        released = s.execute(
            update(requests).where(expired).values(status=PENDING, claimed_by=None, lease_until=None)).rowcount
    return released, failed


def claim(store: RequestStore, worker: str, lease_seconds: float, limit: int = 1,
          now: datetime | None = None) -> list[Claimed]:
    """Claim up to ``limit`` pending async requests, oldest first, for ``worker``."""
    now = now or utcnow()
    # MATERIALIZED: picked once. As a plain IN (subquery), Postgres plans a nested-loop semi join that
    # re-runs the locking subquery for every outer row, and one worker claimed every pending request.
    picked = (select(requests.c.id)
              .where(requests.c.status == PENDING, requests.c.mode == ASYNC)
              .order_by(requests.c.id).limit(limit)
              .with_for_update(skip_locked=True)  # rendered on Postgres, ignored on SQLite
              .cte("picked").prefix_with("MATERIALIZED"))
    stmt = (update(requests)
            .where(requests.c.id.in_(select(picked.c.id)), requests.c.status == PENDING)
            .values(status=CLAIMED, claimed_by=worker, lease_until=now + timedelta(seconds=lease_seconds),
                    attempts=requests.c.attempts + 1)
            .returning(requests.c.request_id, requests.c.front_key, requests.c.back_key, requests.c.attempts,
                       requests.c.created_at))
    with store.session() as s:
        rows = s.execute(stmt).all()
    return sorted((Claimed(*row) for row in rows), key=lambda c: c.created_at)


def extend_lease(store: RequestStore, request_ids: list[str], worker: str, lease_seconds: float) -> int:
    with store.session() as s:
        return s.execute(update(requests).where(
            requests.c.request_id.in_(request_ids), requests.c.status == CLAIMED, requests.c.claimed_by == worker,
        ).values(lease_until=utcnow() + timedelta(seconds=lease_seconds))).rowcount


def _held(request_id: str, worker: str):
    return and_(requests.c.request_id == request_id, requests.c.status == CLAIMED, requests.c.claimed_by == worker)


def complete(store: RequestStore, request_id: str, worker: str, result_row: dict, request_updates: dict) -> bool:
    """Store the result and mark the request completed, if ``worker`` still holds it."""
    now = utcnow()
    with store.session() as s:
        changed = s.execute(update(requests).where(_held(request_id, worker)).values(
            status=COMPLETED, completed_at=now, lease_until=None, **request_updates)).rowcount
        if changed != 1:
            return False
        s.execute(insert(results).values(request_id=request_id, created_at=now, **result_row))
    return True


def fail(store: RequestStore, request_id: str, worker: str, reason: str, outcome: str = "error:unreadable") -> bool:
    with store.session() as s:
        return s.execute(update(requests).where(_held(request_id, worker)).values(
            status=FAILED, completed_at=utcnow(), lease_until=None, error=reason, outcome=outcome)).rowcount == 1


def release(store: RequestStore, request_ids: list[str], worker: str) -> int:
    """Give claimed requests back at once (a worker stopping cleanly, or no model to score them)."""
    if not request_ids:
        return 0
    with store.session() as s:
        return s.execute(update(requests).where(
            requests.c.request_id.in_(request_ids), requests.c.status == CLAIMED, requests.c.claimed_by == worker,
        ).values(status=PENDING, claimed_by=None, lease_until=None, attempts=requests.c.attempts - 1)).rowcount


def depth(store: RequestStore) -> dict[str, int]:
    """Async requests per status (the queue depth the metrics and the benchmark report)."""
    with store.engine.connect() as conn:
        rows = conn.execute(select(requests.c.status, func.count()).where(requests.c.mode == ASYNC)
                            .group_by(requests.c.status)).all()
    return {status: n for status, n in rows}
