"""A report id is stored once per node: unique (report_uuid, node_id).

Before it, a report re-serialized (new payload bytes, same report id) was stored
twice. Rows stored twice whose statements are the same JSON value are merged
(the first kept, its node's pointer moved to it); rows whose report id repeats
with other content are not deleted: the migration stops and names them, for an
operator to decide (nothing is lost without a person seeing it).

The unique index leads with report_uuid, so it also serves lookups by report id
and replaces ix_reports_report_uuid.

Revision ID: 0003_report_uuid_unique
Revises: 0002_one_active_key
"""

from __future__ import annotations

import base64
import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003_report_uuid_unique"
down_revision = "0002_one_active_key"
branch_labels = None
depends_on = None


def _statement(envelope: bytes) -> Any:
    """The stored statement as a comparable value; the raw bytes if unreadable."""
    try:
        return json.loads(base64.b64decode(json.loads(envelope)["payload"]))
    except (ValueError, KeyError, TypeError, RecursionError):
        return envelope


def _merge_duplicates(conn: sa.Connection) -> None:
    reports = sa.table("reports", sa.column("id"), sa.column("report_uuid"),
                       sa.column("node_id"), sa.column("envelope"))
    groups = conn.execute(
        sa.select(reports.c.report_uuid, reports.c.node_id)
        .group_by(reports.c.report_uuid, reports.c.node_id)
        .having(sa.func.count() > 1)).all()
    conflicts = []
    for report_uuid, node_id in groups:
        rows = conn.execute(
            sa.select(reports.c.id, reports.c.envelope)
            .where(reports.c.report_uuid == report_uuid, reports.c.node_id == node_id)
            .order_by(reports.c.id)).all()
        kept = _statement(bytes(rows[0].envelope))
        same = [row.id for row in rows[1:] if _statement(bytes(row.envelope)) == kept]
        if len(same) != len(rows) - 1:
            conflicts.append(f"report id {report_uuid} (rows {', '.join(str(r.id) for r in rows)})")
            continue
        params = {"kept": rows[0].id, "ids": same}
        drop: sa.BindParameter[Any] = sa.bindparam("ids", expanding=True)
        conn.execute(sa.text("UPDATE nodes SET last_report_id = :kept "
                             "WHERE last_report_id IN :ids").bindparams(drop), params)
        for table in ("measurements", "verdicts"):
            # The table names are the two literals above, not input.
            conn.execute(sa.text(f"DELETE FROM {table} WHERE report_id IN :ids")
                         .bindparams(drop), params)
        conn.execute(sa.text("DELETE FROM reports WHERE id IN :ids").bindparams(drop), params)
    if conflicts:
        raise RuntimeError(
            "cannot make report ids unique: these report ids are stored more than once with "
            "different content; keep one row of each (DELETE its measurements, verdicts and "
            "report rows) and start again: " + "; ".join(conflicts))


def upgrade() -> None:
    _merge_duplicates(op.get_bind())
    op.drop_index("ix_reports_report_uuid", table_name="reports")
    op.create_index("uq_reports_report_uuid_node", "reports", ["report_uuid", "node_id"],
                    unique=True)


def downgrade() -> None:
    op.drop_index("uq_reports_report_uuid_node", table_name="reports")
    op.create_index("ix_reports_report_uuid", "reports", ["report_uuid"])
