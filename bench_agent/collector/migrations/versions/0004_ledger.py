"""The acceptance ledger: node lifecycle states and their history, the newest result of
each suite and profile per node, fault codes on verdicts, GPU model and labels.

Revision ID: 0004_ledger
Revises: 0003_report_uuid_unique

Added:
    nodes.state, nodes.state_changed_at   lifecycle (collector/lifecycle.py)
    nodes.gpu_model                       of the newest report's inventory
    node_transitions                      every state change: who, why, which report
    node_results                          newest report per (node, suite, profile)
    node_labels                           operator labels (key=value)
    verdicts.fault_code, component, remediation, attempts, flaky   (the fault contract)
    reports.gpu_model
    indexes for the dashboard's filters (EXPLAIN-checked in tests)

Existing rows are filled from what is stored: node_results from the reports,
each node's state from its reports (a node whose newest acceptance run passed is
accepted, one with reports is in burn-in, one without is new), recorded as a
transition by "migration 0004" so the history says where the state came from.
Verdicts stored before the fault catalog get its defaults (no code, 1 attempt).
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004_ledger"
down_revision = "0003_report_uuid_unique"
branch_labels = None
depends_on = None

NAME = 255
# The suite names of suites/acceptance.yaml: the only backfill that moves a node on.
ACCEPTANCE = "acceptance"


def _gpu_model(envelope: bytes) -> str:
    try:
        predicate = json.loads(base64.b64decode(json.loads(envelope)["payload"]))["predicate"]
        gpus = predicate.get("inventory", {}).get("gpus") or []
        return ", ".join(sorted({str(g.get("name", "")) for g in gpus if g.get("name")}))[:NAME]
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return ""


def upgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("state", sa.String(16), nullable=False,
                                   server_default="new"))
        batch.add_column(sa.Column("state_changed_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("gpu_model", sa.String(NAME), nullable=False,
                                   server_default=""))
    op.create_index("ix_nodes_state", "nodes", ["state"])
    op.create_index("ix_nodes_gpu_model", "nodes", ["gpu_model"])
    with op.batch_alter_table("reports") as batch:
        batch.add_column(sa.Column("gpu_model", sa.String(NAME), nullable=False,
                                   server_default=""))
    with op.batch_alter_table("verdicts") as batch:
        batch.add_column(sa.Column("fault_code", sa.String(64), nullable=False,
                                   server_default=""))
        batch.add_column(sa.Column("component", sa.Text, nullable=False, server_default=""))
        batch.add_column(sa.Column("remediation", sa.String(32), nullable=False,
                                   server_default=""))
        batch.add_column(sa.Column("attempts", sa.Integer, nullable=False, server_default="1"))
        batch.add_column(sa.Column("flaky", sa.Boolean, nullable=False,
                                   server_default=sa.false()))
    op.create_index("ix_verdicts_fault_code", "verdicts", ["fault_code", "report_id"])
    op.create_index("ix_verdicts_check_status", "verdicts", ["check_name", "status",
                                                             "report_id"])
    op.create_index("ix_verdicts_metric_status", "verdicts", ["metric", "status", "report_id"])
    op.create_table(
        "node_transitions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("node_id", sa.Integer, sa.ForeignKey("nodes.id"), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("from_state", sa.String(16), nullable=False),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(NAME), nullable=False),
        sa.Column("why", sa.Text, nullable=False),
        sa.Column("report_id", sa.Integer, sa.ForeignKey("reports.id"), nullable=True),
    )
    op.create_index("ix_node_transitions_node_at", "node_transitions", ["node_id", "at"])
    op.create_table(
        "node_results",
        sa.Column("node_id", sa.Integer, sa.ForeignKey("nodes.id"), primary_key=True),
        sa.Column("suite", sa.String(NAME), primary_key=True),
        sa.Column("profile", sa.String(NAME), primary_key=True),
        sa.Column("report_id", sa.Integer, sa.ForeignKey("reports.id"), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_node_results_report", "node_results", ["report_id"])
    op.create_index("ix_node_results_status", "node_results", ["status", "node_id"])
    op.create_table(
        "node_labels",
        sa.Column("node_id", sa.Integer, sa.ForeignKey("nodes.id"), primary_key=True),
        sa.Column("key", sa.String(63), primary_key=True),
        sa.Column("value", sa.String(NAME), nullable=False),
    )
    op.create_index("ix_node_labels_key_value", "node_labels", ["key", "value"])
    _backfill(op.get_bind())


def _backfill(conn: sa.Connection) -> None:
    reports = sa.table("reports", sa.column("id"), sa.column("node_id"), sa.column("suite"),
                       sa.column("profile"), sa.column("status"), sa.column("finished_at"),
                       sa.column("envelope"), sa.column("gpu_model"))
    nodes = sa.table("nodes", sa.column("id"), sa.column("last_report_id"),
                     sa.column("state"), sa.column("state_changed_at"), sa.column("gpu_model"))
    results = sa.table("node_results", sa.column("node_id"), sa.column("suite"),
                       sa.column("profile"), sa.column("report_id"), sa.column("status"),
                       sa.column("finished_at"))
    transitions = sa.table("node_transitions", sa.column("node_id"), sa.column("at"),
                           sa.column("from_state"), sa.column("to_state"),
                           sa.column("actor"), sa.column("why"), sa.column("report_id"))
    newest: dict[tuple[int, str, str], Any] = {}
    for row in conn.execute(sa.select(reports.c.id, reports.c.node_id, reports.c.suite,
                                      reports.c.profile, reports.c.status,
                                      reports.c.finished_at).order_by(reports.c.id)):
        key = (row.node_id, row.suite, row.profile)
        if key not in newest or (row.finished_at, row.id) > (newest[key].finished_at,
                                                             newest[key].id):
            newest[key] = row
    if newest:
        conn.execute(sa.insert(results), [
            {"node_id": r.node_id, "suite": r.suite, "profile": r.profile, "report_id": r.id,
             "status": r.status, "finished_at": r.finished_at} for r in newest.values()])
    # The GPU model lives only in the signed payload: read once per node's newest report.
    for node_id, last_id in conn.execute(sa.select(nodes.c.id, nodes.c.last_report_id)
                                         .where(nodes.c.last_report_id.is_not(None))).all():
        envelope = conn.execute(sa.select(reports.c.envelope)
                                .where(reports.c.id == last_id)).scalar()
        if envelope is not None:
            model = _gpu_model(bytes(envelope))
            conn.execute(sa.update(reports).where(reports.c.id == last_id)
                         .values(gpu_model=model))
            conn.execute(sa.update(nodes).where(nodes.c.id == node_id).values(gpu_model=model))
    now = datetime.now(UTC).replace(tzinfo=None)
    by_node: dict[int, list[Any]] = {}
    for r in newest.values():
        by_node.setdefault(r.node_id, []).append(r)
    for node_id, rows in by_node.items():
        accepted = [r for r in rows if r.suite == ACCEPTANCE and r.status == "PASS"]
        state, why, report_id = ("accepted", "its newest acceptance run passed",
                                 accepted[0].id) if accepted else (
            "burn-in", "it has reports but no passed acceptance run", None)
        # The change is dated by the newest report it was judged from, not by the
        # migration: a report that finished after it (uploaded late) still moves
        # the node, one that finished before does not (lifecycle.report_moves).
        judged = max(r.finished_at for r in rows)
        conn.execute(sa.update(nodes).where(nodes.c.id == node_id)
                     .values(state=state, state_changed_at=judged))
        conn.execute(sa.insert(transitions).values(
            node_id=node_id, at=now, from_state="new", to_state=state,
            actor="migration 0004", why=f"state set from the stored reports: {why}",
            report_id=report_id))


def downgrade() -> None:
    op.drop_table("node_labels")
    op.drop_table("node_results")
    op.drop_table("node_transitions")
    for name in ("ix_verdicts_metric_status", "ix_verdicts_check_status",
                 "ix_verdicts_fault_code"):
        op.drop_index(name, table_name="verdicts")
    with op.batch_alter_table("verdicts") as batch:
        for column in ("flaky", "attempts", "remediation", "component", "fault_code"):
            batch.drop_column(column)
    with op.batch_alter_table("reports") as batch:
        batch.drop_column("gpu_model")
    op.drop_index("ix_nodes_gpu_model", table_name="nodes")
    op.drop_index("ix_nodes_state", table_name="nodes")
    with op.batch_alter_table("nodes") as batch:
        for column in ("gpu_model", "state_changed_at", "state"):
            batch.drop_column(column)
