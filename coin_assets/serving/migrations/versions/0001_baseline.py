"""Baseline: the request store as ``metadata.create_all`` made it before the store was versioned.

A store created that way has these tables and no ``alembic_version``: Alembic starts it at the base and
runs this revision, which creates only the tables that are missing (a store made by a process that did
not import ``coin_assets.serving.queue`` has no ``batch_requests``) and keeps every row of the others.

Revision ID: 0001
Revises:
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _requests() -> None:
    op.create_table(
        "requests",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("user_id", sa.String(200)),
        sa.Column("client_coin_id", sa.String(200)),
        sa.Column("coin_id", sa.String(64)),
        sa.Column("model_name", sa.String(200)),
        sa.Column("model_version", sa.String(32)),
        sa.Column("front_sha256", sa.String(64)),
        sa.Column("back_sha256", sa.String(64)),
        sa.Column("front_key", sa.String(300)),
        sa.Column("back_key", sa.String(300)),
        sa.Column("sidecar_key", sa.String(300)),
        sa.Column("outcome", sa.String(32)),
        sa.Column("error", sa.Text),
        sa.Column("latency_ms", sa.Float),
        sa.Column("claimed_by", sa.String(200)),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("request_id"),
    )
    op.create_index("ix_requests_created_at", "requests", ["created_at"])
    op.create_index("ix_requests_status", "requests", ["status"])


def _results() -> None:
    op.create_table(
        "results",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(36), sa.ForeignKey("requests.request_id"), nullable=False),
        sa.Column("year", sa.Float),
        sa.Column("sigma", sa.Float),
        sa.Column("lower_90", sa.Float),
        sa.Column("upper_90", sa.Float),
        sa.Column("needs_review", sa.Boolean),
        sa.Column("unreadable", sa.Boolean),
        sa.Column("model_name", sa.String(200)),
        sa.Column("model_version", sa.String(32)),
        sa.Column("extra", sa.JSON),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("request_id"),
    )


def _feedback() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(36), sa.ForeignKey("requests.request_id"), nullable=False),
        sa.Column("year", sa.Integer, nullable=False),
        sa.Column("sender", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("review_key", sa.String(300)),
        sa.Column("comment", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_feedback_request_id", "feedback", ["request_id"])


def _batch_requests() -> None:
    op.create_table(
        "batch_requests",
        sa.Column("request_id", sa.String(36), sa.ForeignKey("requests.request_id"), primary_key=True),
        sa.Column("batch_id", sa.String(36), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
    )
    op.create_index("ix_batch_requests_batch_id", "batch_requests", ["batch_id"])


TABLES = {"requests": _requests, "results": _results, "feedback": _feedback, "batch_requests": _batch_requests}


def upgrade() -> None:
    # offline (``alembic upgrade --sql``) there is no database to look at: every table is written out
    existing = set() if op.get_context().as_sql else set(sa.inspect(op.get_bind()).get_table_names())
    for name, create in TABLES.items():  # requests first: the others refer to it
        if name not in existing:
            create()


def downgrade() -> None:
    for name in reversed(TABLES):
        op.drop_table(name)
