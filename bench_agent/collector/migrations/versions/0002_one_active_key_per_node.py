"""One active key per node: a partial unique index on keys(node_name) WHERE not revoked.

Revision ID: 0002_one_active_key
Revises: 0001

Before it, enrollments that raced on PostgreSQL (auto-enroll, or two admins)
could leave a node with several active keys. The index cannot be built over
such rows, so this revision first keeps each node's newest active key (the one
its node most likely holds now: a reinstalled node enrolls a new key) and
revokes the others, logging each. Their reports stay, with their provenance.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0002_one_active_key"
down_revision = "0001"
branch_labels = None
depends_on = None

log = logging.getLogger("bench_agent.collector")


def upgrade() -> None:
    conn = op.get_bind()
    keys = sa.table("keys", sa.column("keyid", sa.String), sa.column("node_name", sa.String),
                    sa.column("enrolled_at", sa.DateTime), sa.column("revoked_at", sa.DateTime))
    rows = conn.execute(
        sa.select(keys.c.keyid, keys.c.node_name).where(keys.c.revoked_at.is_(None))
        .order_by(keys.c.node_name, keys.c.enrolled_at.desc(), keys.c.keyid.desc())).all()
    kept: set[str] = set()
    now = datetime.now(UTC).replace(tzinfo=None)
    for keyid, node in rows:
        if node not in kept:
            kept.add(node)
            continue
        log.warning("node %r had several active keys: revoking %s, keeping its newest",
                    node, keyid)
        conn.execute(sa.update(keys).where(keys.c.keyid == keyid).values(revoked_at=now))
    op.create_index("uq_keys_node_active", "keys", ["node_name"], unique=True,
                    sqlite_where=sa.text("revoked_at IS NULL"),
                    postgresql_where=sa.text("revoked_at IS NULL"))


def downgrade() -> None:
    op.drop_index("uq_keys_node_active", table_name="keys")
