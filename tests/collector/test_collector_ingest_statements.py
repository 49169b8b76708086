"""What one ingest costs the database (issue 17: 4,096 reports in under 10 s on SQLite):
the statements per report, counted on real SQLite, and the plan of the duplicate lookup
(one round trip, each branch a unique-index lookup) on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sqlalchemy")

from sqlalchemy import event, select

from bench_agent.collector import db, enrollment
from bench_agent.collector.ingest import _FIND, ingest
from bench_agent.report.attest import NodeKey, sign_report
from tests.collector_support import database_backends, make_report, migrated_database

BACKENDS = database_backends()
WHEN = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[db.Database]:
    with migrated_database(request.param, tmp_path) as database:
        yield database


def _body(key: NodeKey, when: datetime, suite: str = "quick") -> bytes:
    report = make_report("node-a", when=when)
    report["suite"]["name"] = suite
    return json.dumps(sign_report(report, key)).encode()


def _statements(database: db.Database, body: bytes) -> list[str]:
    """The first words and table of each statement one ingest sends."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        words = statement.split()
        table = words[words.index("FROM") + 1] if words[0] == "SELECT" else \
            words[2] if words[0] == "INSERT" else words[1]
        seen.append(f"{words[0]} {table}")

    event.listen(database.engine, "before_cursor_execute", record)
    try:
        ingest(database, body)
    finally:
        event.remove(database.engine, "before_cursor_execute", record)
    return seen


def test_a_report_costs_eleven_statements_and_a_known_node_ten(database: db.Database
                                                               ) -> None:
    key = NodeKey.generate()
    with database.engine.begin() as conn:
        enrollment.enroll_in(conn, "node-a", key.public)
    first = _statements(database, _body(key, WHEN))
    assert first == [
        "SELECT keys",           # the signing key (before verifying)
        "SELECT reports",        # stored already? digest or report id, one UNION ALL
        "SELECT keys",           # not revoked meanwhile (in the write transaction)
        "SELECT nodes",          # the node's row, locked
        "INSERT nodes",          # a first report: the node, its row back (RETURNING)
        "INSERT reports",
        "INSERT measurements",   # all rows of the report in one executemany
        "INSERT verdicts",
        "INSERT node_results",   # the newest result per (suite, profile), an upsert
        "INSERT node_transitions",
        "UPDATE nodes",          # newest report and lifecycle state in one UPDATE
    ]
    # A later acceptance PASS: known node, two moves' worth of state in one UPDATE.
    second = _statements(database, _body(key, WHEN + timedelta(hours=1), "acceptance"))
    assert second == [s for s in first if s != "INSERT nodes"]
    # An older report uploaded late: stored, but neither the newest nor a move.
    late = _statements(database, _body(key, WHEN - timedelta(hours=1), "acceptance"))
    assert late == [s for s in first if s not in
                    ("INSERT nodes", "INSERT node_transitions", "UPDATE nodes")]
    with database.engine.connect() as conn:
        node = conn.execute(select(db.nodes)).one()
        newest = conn.execute(select(db.reports.c.id).where(
            db.reports.c.suite == "acceptance").order_by(db.reports.c.finished_at.desc())
        ).scalars().first()
        moves = conn.execute(select(db.node_transitions.c.from_state,
                                    db.node_transitions.c.to_state)
                             .order_by(db.node_transitions.c.id)).all()
    assert (node.state, node.last_report_id, node.last_finished_at) == \
        ("accepted", newest, (WHEN + timedelta(hours=1)).replace(tzinfo=None))
    assert [tuple(m) for m in moves] == [("new", "burn-in"), ("burn-in", "accepted")]


def test_the_duplicate_lookup_uses_the_unique_indexes(database: db.Database) -> None:
    is_pg = database.engine.dialect.name == "postgresql"
    compiled = _FIND.statement.params(b_digest="0" * 64, b_uuid="u", b_name="n").compile(
        dialect=database.engine.dialect, compile_kwargs={"literal_binds": True})
    with database.engine.connect() as conn:
        if is_pg:
            # With seq scans priced out, a plan without an index means no index fits.
            conn.exec_driver_sql("SET enable_seqscan = off")
            plan = "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {compiled}"))
            assert "Seq Scan on reports" not in plan, plan
            assert "reports_digest_key" in plan and "uq_reports_report_uuid_node" in plan, plan
        else:
            plan = "\n".join(str(r[-1]) for r in
                             conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}"))
            assert "SCAN reports" not in plan, plan
            assert "sqlite_autoindex_reports_1 (digest=?)" in plan, plan
            assert "uq_reports_report_uuid_node (report_uuid=? AND node_id=?)" in plan, plan
