"""Alembic migrations of the serving request store (coin_assets.serving.store).

``RequestStore.create_tables`` runs ``alembic upgrade head`` with a Config built in code
(``coin_assets.serving.store.alembic_config``); ``alembic.ini`` here serves the ``alembic`` command
line when writing a new revision (see docs/operations.md, "Schemas and migrations").
"""
