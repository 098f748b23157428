"""The serving request store: every request, its result and its feedback, owned by the API.

SQLAlchemy Core tables in the shape of the Futurisys design note (``requests`` 1–1 ``results``),
on SQLite by default (``Settings.serving_db``) or any SQLAlchemy URL (Postgres in production).
The DuckDB metadata file is never touched here: the ``serving_requests`` asset copies a day of this
log into DuckDB, so the API never waits on a Dagster run that holds the DuckDB writer.

``requests.status`` follows the life of a request: ``completed`` / ``failed`` for synchronous
predictions; ``pending`` → ``claimed`` (with ``claimed_by`` and ``lease_until``) → ``completed`` /
``failed`` for asynchronous ones.

The schema is versioned with Alembic (``coin_assets/serving/migrations``): :meth:`RequestStore.create_tables`
upgrades the store to the newest revision at start-up, one process at a time (SQLite: ``BEGIN IMMEDIATE``;
Postgres: a transaction-level advisory lock), so several API workers may start on one store at once. A
store made by ``metadata.create_all`` before the versioning is taken up by the baseline revision with
its rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from time import sleep

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
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

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


def _sqlite_file(url: str) -> bool:
    """A SQLite database in a file (not ``:memory:``), whose folder is made when missing."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:") \
            or parsed.database.startswith("file:"):
        return False
    Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return True


def make_engine(url: str) -> Engine:
    """An engine for the store; SQLite gets WAL and a busy timeout so readers never block the API."""
    url = _with_installed_driver(url)
    _sqlite_file(url)
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


MIGRATIONS = Path(__file__).with_name("migrations")
MIGRATION_ATTEMPTS = 5
# pg_advisory_xact_lock key of the store's migrations (the bytes of "coin_mig" as a bigint)
_PG_MIGRATION_LOCK = int.from_bytes(b"coin_mig", "big")


def alembic_config(script_location: str | Path | None = None):
    """The store's Alembic Config, built in code (no alembic.ini: works from an installed package)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(script_location or MIGRATIONS).replace("%", "%%"))
    return config


@contextmanager
def migration_connection(url: str, engine: Engine | None = None) -> Iterator[Connection]:
    """One transaction on the store that holds its migration lock until it commits, so two processes
    that start together migrate one after the other (the second finds the store at head).

    SQLite in a file: a connection of its own that opens with ``BEGIN IMMEDIATE`` (the database's write
    lock, waited for up to 60 s; its DDL is transactional, unlike the driver's default). Postgres:
    ``pg_advisory_xact_lock`` first (its DDL is transactional anyway). ``engine`` (the store's, else
    one made here) serves every case but the SQLite file."""
    url = _with_installed_driver(url)
    if _sqlite_file(url):
        own = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False}, poolclass=NullPool)

        @event.listens_for(own, "connect")
        def _autocommit_driver(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # the transaction is ours, DDL included
            dbapi_conn.execute("PRAGMA journal_mode=WAL")

        @event.listens_for(own, "begin")
        def _write_lock(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        try:
            with own.begin() as conn:
                yield conn
        finally:
            own.dispose()
        return
    made = engine is None
    engine = engine if engine is not None else make_engine(url)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
            yield conn
    finally:
        if made:
            engine.dispose()


def upgrade_to_head(url: str, engine: Engine | None = None, script_location: str | Path | None = None,
                    restore_lost_tables: bool = False) -> None:
    """``alembic upgrade head`` on the store, under :func:`migration_connection`'s lock; a no-op when the
    store is at head already. ``restore_lost_tables``: then, in the same transaction, make again (empty)
    any table of the models that the store at head no longer has (one dropped by hand under a running
    service), as ``create_all`` did before the store was versioned."""
    from alembic import command

    config = alembic_config(script_location)
    for attempt in range(MIGRATION_ATTEMPTS):
        try:
            with migration_connection(url, engine) as conn:
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
                if restore_lost_tables:
                    metadata.create_all(conn)  # checkfirst: only what is missing
            return
        except OperationalError as err:
            # SQLite answers "locked" without waiting in a few cases (a WAL file being recovered or
            # checkpointed by a process that just closed it); the whole transaction is tried again
            if "database is locked" not in str(err) or attempt == MIGRATION_ATTEMPTS - 1:
                raise
            sleep(0.5 * (attempt + 1))


def schema_revision(engine: Engine) -> str | None:
    """The Alembic revision the store is at (None: never migrated)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(script_location: str | Path | None = None) -> str | None:
    """The newest revision this code knows."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(script_location)).get_current_head()


class RequestStore:
    """Engine + session factory + the few writes and reads the API, the worker and the audit need."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self.Session = sessionmaker(self.engine, expire_on_commit=False)

    def create_tables(self) -> None:
        """Bring the store's schema to the newest Alembic revision and make again any table it lost
        (idempotent; safe from several processes at once)."""
        upgrade_to_head(self.url, self.engine, restore_lost_tables=True)

    def schema_revision(self) -> str | None:
        return schema_revision(self.engine)

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
