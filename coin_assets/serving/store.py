"""The serving request store: every request, its result and its feedback, owned by the API.

SQLAlchemy Core tables in the shape of the Futurisys design note (``requests`` 1–1 ``results``),
on SQLite by default (``Settings.serving_db``) or any SQLAlchemy URL (Postgres in production).
The DuckDB metadata file is never touched here: the ``serving_requests`` asset copies a day of this
log into DuckDB, so the API never waits on a Dagster run that holds the DuckDB writer.

``requests.status`` follows the life of a request: ``completed`` / ``failed`` for synchronous
predictions; ``pending`` → ``claimed`` (with ``claimed_by`` and ``lease_until``) → ``completed`` /
``failed`` for asynchronous ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    select,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

PENDING, CLAIMED, COMPLETED, FAILED = "pending", "claimed", "completed", "failed"
STATUSES = (PENDING, CLAIMED, COMPLETED, FAILED)

metadata = MetaData()

requests = Table(
    "requests", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(36), nullable=False, unique=True),  # UUID shown to callers
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("status", String(16), nullable=False, index=True),
    Column("mode", String(8), nullable=False, default="sync"),  # sync | async
    Column("source", String(16), nullable=False, default="api"),
    Column("user_id", String(200)),
    Column("client_coin_id", String(200)),  # as the caller named it; never a path
    Column("coin_id", String(64)),  # the coin id of the uploaded photos: api-<request_id>
    Column("model_name", String(200)),
    Column("model_version", String(32)),
    Column("front_sha256", String(64)),
    Column("back_sha256", String(64)),
    Column("front_key", String(300)),
    Column("back_key", String(300)),
    Column("sidecar_key", String(300)),
    Column("outcome", String(32)),  # ok | needs_review | unreadable | error:<kind>
    Column("error", Text),
    Column("latency_ms", Float),
    Column("claimed_by", String(200)),
    Column("lease_until", DateTime(timezone=True)),
    Column("attempts", Integer, nullable=False, default=0),
    Column("completed_at", DateTime(timezone=True)),
)

results = Table(
    "results", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(36), ForeignKey("requests.request_id"), nullable=False, unique=True),
    Column("year", Float),
    Column("sigma", Float),
    Column("lower_90", Float),
    Column("upper_90", Float),
    Column("needs_review", Boolean),
    Column("unreadable", Boolean),
    Column("model_name", String(200)),
    Column("model_version", String(32)),
    Column("extra", JSON),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

feedback = Table(
    "feedback", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(36), ForeignKey("requests.request_id"), nullable=False, index=True),
    Column("year", Integer, nullable=False),
    Column("sender", String(200), nullable=False),
    Column("role", String(16), nullable=False),  # user | reviewer
    Column("status", String(24), nullable=False),  # label_submitted | awaiting_review
    Column("review_key", String(300)),  # the review CSV written for a reviewer's verdict
    Column("comment", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


def _with_installed_driver(url: str) -> str:
    """``postgresql://`` names psycopg 3 in SQLAlchemy 2.1; use psycopg2 when only that one is installed."""
    import importlib.util

    parsed = make_url(url)
    if parsed.drivername == "postgresql" and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        return parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    return url


def make_engine(url: str) -> Engine:
    """An engine for the store; SQLite gets WAL and a busy timeout so readers never block the API."""
    url = _with_installed_driver(url)
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    is_sqlite = url.startswith("sqlite")
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False} if is_sqlite else {},
                           pool_pre_ping=not is_sqlite)
    if is_sqlite:
        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
    return engine


class RequestStore:
    """Engine + session factory + the few writes and reads the API, the worker and the audit need."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self.Session = sessionmaker(self.engine, expire_on_commit=False)

    def create_tables(self) -> None:
        metadata.create_all(self.engine)  # idempotent

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.Session.begin() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()

    # --- synchronous predictions -------------------------------------------------------------------
    def record_prediction(self, request_row: dict, result_row: dict | None) -> None:
        """One request and (when it was scored) its result, in one transaction (Core: no ORM session
        on the request path)."""
        with self.engine.begin() as conn:
            conn.execute(insert(requests), request_row)
            if result_row is not None:
                conn.execute(insert(results), result_row)

    def get_request(self, request_id: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(requests).where(requests.c.request_id == request_id)).mappings().first()
            return dict(row) if row else None

    def get_result(self, request_id: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(results).where(results.c.request_id == request_id)).mappings().first()
            return dict(row) if row else None

    def record_feedback(self, row: dict) -> int:
        with self.session() as s:
            return s.execute(insert(feedback).values(**row)).inserted_primary_key[0]

    # --- audit ------------------------------------------------------------------------------------
    def day_log(self, day: str) -> tuple[list[dict], list[dict]]:
        """(requests joined with results, feedback) created on UTC ``day`` (YYYY-MM-DD)."""
        start = datetime.combine(date.fromisoformat(day), time(0), tzinfo=timezone.utc)
        end = start + timedelta(days=1)
        cols = [requests] + [c.label(f"result_{c.name}") for c in results.c
                             if c.name in ("year", "sigma", "lower_90", "upper_90", "needs_review", "unreadable")]
        query = (select(*cols).select_from(requests.outerjoin(results, results.c.request_id == requests.c.request_id))
                 .where(requests.c.created_at >= start, requests.c.created_at < end)
                 .order_by(requests.c.created_at))
        fb = select(feedback).where(feedback.c.created_at >= start, feedback.c.created_at < end).order_by(feedback.c.id)
        with self.engine.connect() as conn:
            return ([_utc_row(r) for r in conn.execute(query).mappings()],
                    [_utc_row(r) for r in conn.execute(fb).mappings()])


def _utc_row(row) -> dict:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    out = dict(row)
    for key, value in out.items():
        if isinstance(value, datetime) and value.tzinfo is None:
            out[key] = value.replace(tzinfo=timezone.utc)
    return out


def async_status_counts(store: RequestStore) -> dict[str, int]:
    """How many asynchronous requests are in each status (the worker queue's depth is ``pending``)."""
    from sqlalchemy import func, select

    with store.engine.connect() as conn:
        rows = conn.execute(select(requests.c.status, func.count()).where(requests.c.mode == "async")
                            .group_by(requests.c.status)).all()
    return {status: int(count) for status, count in rows}
