"""The first schema: keys, nodes, reports, measurements, verdicts.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

NAME = 255


def upgrade() -> None:
    op.create_table(
        "keys",
        sa.Column("keyid", sa.String(64), primary_key=True),
        sa.Column("node_name", sa.String(NAME), nullable=False),
        sa.Column("public_raw", sa.LargeBinary(32), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_keys_node_name", "keys", ["node_name"])
    op.create_table(
        "nodes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(NAME), nullable=False, unique=True),
        sa.Column("first_seen_at", sa.DateTime(), nullable=False),
        sa.Column("last_report_id", sa.Integer, nullable=True),
        sa.Column("last_finished_at", sa.DateTime(), nullable=True),
        sa.Column("last_status", sa.String(8), nullable=True),
    )
    op.create_table(
        "reports",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("report_uuid", sa.String(36), nullable=False),
        sa.Column("node_id", sa.Integer, sa.ForeignKey("nodes.id"), nullable=False),
        sa.Column("keyid", sa.String(64), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("suite", sa.String(NAME), nullable=False),
        sa.Column("profile", sa.String(NAME), nullable=False),
        sa.Column("agent_version", sa.String(64), nullable=False),
        sa.Column("interrupted", sa.Boolean, nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("envelope", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_reports_report_uuid", "reports", ["report_uuid"])
    op.create_index("ix_reports_node_finished", "reports", ["node_id", "finished_at"])
    op.create_index("ix_reports_finished", "reports", ["finished_at"])
    for table in ("measurements", "verdicts"):
        columns: list[sa.Column[Any]] = [
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("report_id", sa.Integer, sa.ForeignKey("reports.id"), nullable=False),
            sa.Column("check_name", sa.String(128), nullable=False),
            sa.Column("metric", sa.String(255), nullable=False),
            sa.Column("device", sa.String(255), nullable=False),
        ]
        if table == "measurements":
            columns += [
                sa.Column("value", sa.Float, nullable=False),
                sa.Column("unit", sa.String(16), nullable=False),
                sa.Column("unstable", sa.Boolean, nullable=False),
            ]
        else:
            columns += [
                sa.Column("status", sa.String(8), nullable=False),
                sa.Column("value", sa.Float, nullable=True),
                sa.Column("unit", sa.String(16), nullable=True),
                sa.Column("threshold", sa.Text, nullable=False),
                sa.Column("source", sa.Text, nullable=False),
                sa.Column("message", sa.Text, nullable=False),
            ]
        op.create_table(table, *columns)
        op.create_index(f"ix_{table}_report_id", table, ["report_id"])


def downgrade() -> None:
    for table in ("verdicts", "measurements", "reports", "nodes", "keys"):
        op.drop_table(table)
