"""Alembic environment of the serving request store.

Run by ``RequestStore.create_tables`` (``coin_assets.serving.store.upgrade_to_head``), which hands over
an open connection in ``config.attributes["connection"]``, inside the one transaction that holds the
migration lock; or by the ``alembic`` command line with ``alembic.ini`` beside this file, which opens
the same kind of connection to ``sqlalchemy.url``, else ``COIN_ASSETS_SERVING_DB`` (else the Settings
default).
SQLite runs in batch mode, so ``op.alter_column`` / ``op.drop_column`` work there too.
"""

from __future__ import annotations

from alembic import context

import coin_assets.serving.queue  # noqa: F401  (registers batch_requests on the store's metadata)
from coin_assets.serving.store import metadata

config = context.config
target_metadata = metadata


def _configure(**kwargs) -> None:
    context.configure(target_metadata=target_metadata, render_as_batch=True, compare_type=True, **kwargs)


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from coin_assets.settings import Settings

    return Settings.from_env().serving_db


def run_migrations_offline() -> None:
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    from coin_assets.serving.store import migration_connection

    with migration_connection(_url()) as connection:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
