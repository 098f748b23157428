"""Versioned schemas: a database written by an earlier release is upgraded to the newest schema with its
rows, and upgrading again changes nothing.

DuckDB (core/metadata.py ``migrate``): the fixtures in ``schemas/duckdb_<commit>.sql`` are the statements
that the ensure functions of three earlier releases ran, with a few rows. The serving request store
(Alembic, coin_assets/serving/migrations): ``schemas/serving_store_3a37afd_sqlite.sql`` is the store as
``metadata.create_all`` made it before it was versioned (the Postgres one is used by
test_serving_store_postgres.py).
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from sqlalchemy import inspect, select, text

from coin_assets.core import crops, predictions, serving_audit
from coin_assets.core import metadata as md
from coin_assets.serving import store as store_module
from coin_assets.serving.store import RequestStore, feedback, head_revision, requests, results

SCHEMAS = Path(__file__).with_name("schemas")
DUCKDB_RELEASES = sorted(p.name for p in SCHEMAS.glob("duckdb_*.sql"))
COMPONENTS = {"metadata": md.MIGRATIONS, "coin_crops": crops.MIGRATIONS,
              "review_queue": predictions.REVIEW_QUEUE_MIGRATIONS, "serving_audit": serving_audit.MIGRATIONS}
SYNC_ID, ASYNC_ID = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"


def sql_statements(path: Path) -> list[str]:
    """The statements of a fixture file (each ends with ';' at the end of a line; '--' lines are comments)."""
    body = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in body.split(";\n") if s.strip().rstrip(";").strip()]


def ensure_everything(conn) -> None:
    """Every DuckDB entry point that makes tables, as the assets call them."""
    md.ensure_schema(conn)
    crops.ensure_crops_schema(conn)
    predictions.ensure_review_queue_schema(conn)
    serving_audit.ensure_serving_schema(conn)


def dump(conn, tables=None, columns=None) -> dict[str, list]:
    """Every row of each table (``columns``: only these columns of a table), in a stable order."""
    tables = tables or [t for (t,) in conn.execute(
        "SELECT table_name FROM duckdb_tables() WHERE table_name <> 'schema_version' ORDER BY 1").fetchall()]
    out = {}
    for t in tables:
        cols = ", ".join(columns[t]) if columns else "*"
        out[t] = conn.execute(f"SELECT {cols} FROM {t} ORDER BY ALL").fetchall()
    return out


def table_columns(conn) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for table, column in conn.execute("SELECT table_name, column_name FROM duckdb_columns() "
                                      "WHERE table_name <> 'schema_version' ORDER BY table_name, column_index"
                                      ).fetchall():
        out.setdefault(table, []).append(column)
    return out


def shape(conn) -> set[tuple]:
    """(table, column, type, nullable) of every column, and the views."""
    return set(conn.execute("SELECT table_name, column_name, data_type, is_nullable FROM duckdb_columns() "
                            "WHERE table_name <> 'schema_version'").fetchall()) | {
        ("view", v) for (v,) in conn.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}


# --- DuckDB ---------------------------------------------------------------------------------------------

@pytest.fixture(params=DUCKDB_RELEASES)
def earlier_release(request, tmp_path):
    """A DuckDB file written by an earlier release's schema, and its tables' columns and rows then."""
    path = tmp_path / "metadata.duckdb"
    with duckdb.connect(str(path)) as conn:
        for statement in sql_statements(SCHEMAS / request.param):
            conn.execute(statement)
        assert md.schema_version(conn) == 0
        before_columns = table_columns(conn)
        before_rows = dump(conn)
    return path, before_columns, before_rows


def test_duckdb_upgrades_a_database_of_an_earlier_release_and_keeps_its_rows(earlier_release, tmp_path):
    path, before_columns, before_rows = earlier_release
    with duckdb.connect(str(path)) as conn:
        ensure_everything(conn)
        for component, migrations in COMPONENTS.items():
            assert md.schema_version(conn, component) == len(migrations), component
        columns = table_columns(conn)
        # the columns and tables added since the earliest release
        assert "source_modified" in columns["uploads"]
        assert "reading" in columns["predictions"] and "reading" in columns["review_queue"]
        assert {"ingest_state", "coin_crops", "serving_requests", "serving_feedback"} <= set(columns)
        # every row kept, the new columns empty on them
        assert dump(conn, list(before_rows), before_columns) == before_rows
        assert conn.execute("SELECT reading FROM predictions").fetchall() == [(None,)]
        assert conn.execute("SELECT coin_id, paired, label_year FROM coins").fetchall() == [("c1", True, 1988)]
        upgraded = shape(conn)
    with duckdb.connect(str(tmp_path / "fresh.duckdb")) as fresh:
        ensure_everything(fresh)
        assert shape(fresh) == upgraded  # the same schema as a database made by this release


def test_duckdb_upgrading_again_is_a_no_op(earlier_release):
    path, _, _ = earlier_release
    with duckdb.connect(str(path)) as conn:
        ensure_everything(conn)
        versions = conn.execute("SELECT * FROM schema_version ORDER BY ALL").fetchall()
        rows, columns = dump(conn), table_columns(conn)
        ensure_everything(conn)
        assert conn.execute("SELECT * FROM schema_version ORDER BY ALL").fetchall() == versions
        assert dump(conn) == rows and table_columns(conn) == columns
    # at head the ensure functions only read: a read-only connection (a reader's snapshot) may call them
    with duckdb.connect(str(path), read_only=True) as conn:
        ensure_everything(conn)


def test_duckdb_applies_new_migrations_in_order_each_once(tmp_path):
    first = md.Migration(1, "things", ("CREATE TABLE things (id INTEGER PRIMARY KEY, name VARCHAR)",))

    def backfill(conn):
        conn.execute("UPDATE things SET label = upper(name)")

    second = md.Migration(2, "things.label", ("ALTER TABLE things ADD COLUMN label VARCHAR", backfill))
    with duckdb.connect(str(tmp_path / "m.duckdb")) as conn:
        assert md.migrate(conn, "things", [first]) == 1
        conn.execute("INSERT INTO things VALUES (1, 'penny'), (2, 'dime')")
        assert md.migrate(conn, "things", [first, second]) == 2
        assert md.migrate(conn, "things", [first, second]) == 2
        assert conn.execute("SELECT * FROM things ORDER BY id").fetchall() == [(1, "penny", "PENNY"),
                                                                               (2, "dime", "DIME")]
        assert conn.execute("SELECT version, description FROM schema_version WHERE component = 'things' "
                            "ORDER BY version").fetchall() == [(1, "things"), (2, "things.label")]
        assert md.schema_version(conn, "metadata") == 0  # components are versioned apart


def test_duckdb_a_failing_migration_changes_nothing(tmp_path):
    first = md.Migration(1, "things", ("CREATE TABLE things (id INTEGER PRIMARY KEY)",))
    broken = md.Migration(2, "broken", ("ALTER TABLE things ADD COLUMN label VARCHAR",
                                        "INSERT INTO no_such_table VALUES (1)"))
    with duckdb.connect(str(tmp_path / "m.duckdb")) as conn:
        md.migrate(conn, "things", [first])
        with pytest.raises(duckdb.CatalogException):
            md.migrate(conn, "things", [first, broken])
        assert md.schema_version(conn, "things") == 1
        assert [c for (c,) in conn.execute("SELECT column_name FROM duckdb_columns() "
                                           "WHERE table_name = 'things'").fetchall()] == ["id"]


def test_duckdb_inside_the_callers_transaction_migrates_in_it(tmp_path):
    with duckdb.connect(str(tmp_path / "m.duckdb")) as conn:
        conn.execute("BEGIN TRANSACTION")
        md.ensure_schema(conn)
        conn.execute("ROLLBACK")
        assert md.schema_version(conn) == 0
        conn.execute("BEGIN TRANSACTION")
        md.ensure_schema(conn)
        conn.execute("COMMIT")
        assert md.schema_version(conn) == len(md.MIGRATIONS)


def test_duckdb_a_database_newer_than_the_code_is_refused(tmp_path):
    with duckdb.connect(str(tmp_path / "m.duckdb")) as conn:
        md.ensure_schema(conn)
        conn.execute("INSERT INTO schema_version VALUES ('metadata', ?, 'from a newer release', now())",
                     [len(md.MIGRATIONS) + 1])
        with pytest.raises(RuntimeError, match="newer than this code knows"):
            md.ensure_schema(conn)


# --- the serving request store (Alembic) ------------------------------------------------------------

def later_revision(tmp_path: Path) -> Path:
    """The store's migrations plus a revision after head (a column added, a column altered in batch
    mode), as the next release might bring; returns the script location."""
    location = tmp_path / "migrations"
    shutil.copytree(store_module.MIGRATIONS, location, ignore=shutil.ignore_patterns("__pycache__"))
    (location / "versions" / "9999_later.py").write_text(f'''
import sqlalchemy as sa
from alembic import op

revision = "9999"
down_revision = {head_revision()!r}
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("requests", sa.Column("note", sa.String(200)))
    with op.batch_alter_table("feedback") as batch:
        batch.alter_column("comment", existing_type=sa.Text(), type_=sa.String(2000))


def downgrade():
    with op.batch_alter_table("feedback") as batch:
        batch.alter_column("comment", existing_type=sa.String(2000), type_=sa.Text())
    op.drop_column("requests", "note")
''')
    return location


def version_rows(store: RequestStore) -> list[tuple]:
    with store.engine.connect() as conn:
        return conn.execute(text("SELECT version_num FROM alembic_version")).all()


def store_rows(store: RequestStore) -> dict[str, list]:
    with store.engine.connect() as conn:
        return {t.name: [tuple(r) for r in conn.execute(select(*t.c).order_by(*t.primary_key.columns))]
                for t in (requests, results, feedback)}


def models_differences(store: RequestStore) -> list:
    """What Alembic's autogenerate finds between the store and the SQLAlchemy tables (none: in step)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    import coin_assets.serving.queue  # noqa: F401  (batch_requests)

    with store.engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                store_module.metadata)


@pytest.fixture(params=["with batch_requests", "without batch_requests"])
def pre_alembic_store(request, tmp_path):
    """A SQLite store as create_all made it before the versioning (the serving_requests asset, which
    never imported the queue, made one without batch_requests)."""
    path = tmp_path / "serving.db"
    with sqlite3.connect(path) as conn:
        conn.executescript((SCHEMAS / "serving_store_3a37afd_sqlite.sql").read_text())
        if request.param == "without batch_requests":
            conn.execute("DROP TABLE batch_requests")
    return f"sqlite:///{path}"


def test_serving_store_takes_up_a_pre_alembic_store_and_keeps_its_rows(pre_alembic_store, tmp_path):
    store = RequestStore(pre_alembic_store)
    try:
        assert store.schema_revision() is None
        before = store_rows(store)
        assert len(before["requests"]) == 2 and len(before["results"]) == 1 and len(before["feedback"]) == 1
        store_module.upgrade_to_head(store.url, store.engine)  # the migrations alone
        assert store.schema_revision() == head_revision() and version_rows(store) == [(head_revision(),)]
        assert store_rows(store) == before
        assert "batch_requests" in inspect(store.engine).get_table_names()
        assert models_differences(store) == []
        store.create_tables()  # what start-up runs
        assert store.get_result(SYNC_ID)["extra"] == {"reading": {"year": 1987}}
        day, fb = store.day_log("2026-12-01")
        assert [r["request_id"] for r in day] == [SYNC_ID, ASYNC_ID] and [f["year"] for f in fb] == [1988]

        store.create_tables()  # again: nothing to do
        assert version_rows(store) == [(head_revision(),)] and store_rows(store) == before

        # the next release's revision: its column appears, the rows stay (feedback rebuilt in batch mode)
        location = later_revision(tmp_path)
        store_module.upgrade_to_head(store.url, store.engine, script_location=location)
        store_module.upgrade_to_head(store.url, store.engine, script_location=location)
        assert version_rows(store) == [("9999",)]
        assert "note" in {c["name"] for c in inspect(store.engine).get_columns("requests")}
        assert store_rows(store) == before
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT note FROM requests")).all() == [(None,), (None,)]
    finally:
        store.dispose()


def test_serving_store_new_store_is_at_head_and_matches_the_models(tmp_path):
    for url in (f"sqlite:///{tmp_path / 'new.db'}", "sqlite:///:memory:"):
        store = RequestStore(url)
        try:
            store_module.upgrade_to_head(store.url, store.engine)  # the migrations alone make the models' tables
            assert version_rows(store) == [(head_revision(),)]
            assert models_differences(store) == []
            store.create_tables()
            assert version_rows(store) == [(head_revision(),)]
        finally:
            store.dispose()


RACER = """
import sys, time
from pathlib import Path
from coin_assets.serving.store import RequestStore
store = RequestStore(sys.argv[1])
Path(sys.argv[2]).touch()
while not Path(sys.argv[3]).exists():
    time.sleep(0.001)
store.create_tables()
store.dispose()
"""


def test_serving_store_makes_again_a_table_lost_under_a_running_service(tmp_path):
    store = RequestStore(f"sqlite:///{tmp_path / 'serving.db'}")
    try:
        store.create_tables()
        with store.engine.begin() as conn:
            conn.execute(text("DROP TABLE results"))
        store.create_tables()
        assert "results" in inspect(store.engine).get_table_names()
        assert version_rows(store) == [(head_revision(),)]
    finally:
        store.dispose()


@pytest.mark.servers
def test_serving_store_processes_starting_together_upgrade_it_once(pre_alembic_store, tmp_path):
    """API workers start at the same moment on one store that has no alembic_version yet."""
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{k}" for k in range(3)]
    procs = [subprocess.Popen([sys.executable, "-c", RACER, pre_alembic_store, str(r), str(go)],
                              stderr=subprocess.PIPE, text=True) for r in ready]
    try:
        deadline = time.monotonic() + 120
        while not all(r.exists() for r in ready) and time.monotonic() < deadline:
            time.sleep(0.02)
        go.touch()
        errors = [p.communicate(timeout=120)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0, 0], "\n".join(e[-2000:] for e in errors)
    store = RequestStore(pre_alembic_store)
    try:
        assert version_rows(store) == [(head_revision(),)]
        assert len(store_rows(store)["requests"]) == 2
        assert "batch_requests" in inspect(store.engine).get_table_names()
    finally:
        store.dispose()
