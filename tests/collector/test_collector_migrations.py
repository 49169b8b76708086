"""Migration 0004 on a database made by the schema of today (0003) with data in it, on
real SQLite and PostgreSQL: every row is still read back, and the new tables are
filled from what was stored."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("alembic")

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select

from bench_agent.collector import db, queries
from bench_agent.collector.ingest import ingest
from bench_agent.report.attest import NodeKey
from tests.collector.old_schema import store_old
from tests.collector_support import (
    envelope_bytes,
    make_report,
    postgres_available,
    postgres_database,
)

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not postgres_available(), reason="PostgreSQL is not reachable at 127.0.0.1:5432"))]
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[db.Database]:
    sqlite = contextlib.nullcontext(f"sqlite:///{tmp_path / 'collector.db'}")
    with postgres_database() if request.param == "postgresql" else sqlite as url:
        database = db.Database(url)
        try:
            yield database
        finally:
            database.dispose()


def report(host: str, suite: str, when: datetime, status: str = "PASS",
           gpus: list[str] | None = None) -> dict[str, Any]:
    data = make_report(host, when=when, status=status)
    data["suite"]["name"] = suite
    if gpus is not None:
        data["inventory"]["gpus"] = [{"index": i, "name": name, "uuid": f"GPU-{i}"}
                                     for i, name in enumerate(gpus)]
    return data


def test_a_database_of_todays_schema_with_data_migrates_and_reads_back(
        database: db.Database) -> None:
    database.migrate("0003_report_uuid_unique")
    a, b = NodeKey.generate(), NodeKey.generate()
    with database.engine.begin() as conn:
        a_quick = store_old(conn, envelope_bytes(report("node-a", "quick", T0), a), a)
        a_acc = store_old(conn, envelope_bytes(
            report("node-a", "acceptance", T0 + timedelta(hours=1)), a), a)
        store_old(conn, envelope_bytes(report("node-b", "quick", T0), b), b)
        b_fail = store_old(conn, envelope_bytes(report(
            "node-b", "quick", T0 + timedelta(hours=2), "FAIL",
            gpus=["NVIDIA H100 80GB HBM3"] * 2), b), b)
    database.migrate()

    with database.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), db.metadata) == []
        results = conn.execute(select(db.node_results.c.suite, db.node_results.c.report_id,
                                      db.node_results.c.status)
                               .order_by(db.node_results.c.report_id)).all()
        assert [tuple(r) for r in results] == [("quick", a_quick, "PASS"),
                                               ("acceptance", a_acc, "PASS"),
                                               ("quick", b_fail, "FAIL")]
        states = dict(conn.execute(select(db.nodes.c.name, db.nodes.c.state)).all())
        assert states == {"node-a": "accepted", "node-b": "burn-in"}
        moves = conn.execute(select(db.node_transitions.c.to_state, db.node_transitions.c.actor,
                                    db.node_transitions.c.why, db.node_transitions.c.report_id)
                             .order_by(db.node_transitions.c.to_state)).all()
        assert [(m.to_state, m.actor, m.report_id) for m in moves] == [
            ("accepted", "migration 0004", a_acc), ("burn-in", "migration 0004", None)]
        assert "newest acceptance run passed" in moves[0].why
        gpu = conn.execute(select(db.nodes.c.gpu_model).where(db.nodes.c.name == "node-b")
                           ).scalar_one()
        assert gpu == "NVIDIA H100 80GB HBM3"
        # Verdicts stored before the fault catalog read back with its defaults.
        faults = conn.execute(select(db.verdicts.c.fault_code, db.verdicts.c.remediation,
                                     db.verdicts.c.attempts, db.verdicts.c.flaky)
                              .distinct()).all()
        assert [tuple(f) for f in faults] == [("", "", 1, False)]
        node = queries.get_node(conn, "node-b", datetime(2026, 11, 21))
    assert node is not None
    assert (node["status"], node["failing_checks"], len(node["reports"])) == (
        "FAIL", ["cpu-gemm"], 2)

    # The migrated database takes new reports, with their fault codes, and moves states.
    new = report("node-a", "quick", T0 + timedelta(hours=3), "FAIL")
    new["verdicts"][0].update(fault_code="BA-CPU-GEMM-SLOW", remediation="re-run",
                              component="CPU socket 0", attempts=2, flaky=False)
    stored = ingest(database, envelope_bytes(new, a))
    with database.engine.connect() as conn:
        row = conn.execute(select(db.verdicts).where(
            db.verdicts.c.report_id == stored.report_id,
            db.verdicts.c.check_name == "cpu-gemm")).one()
        state = conn.execute(select(db.nodes.c.state).where(db.nodes.c.name == "node-a")
                             ).scalar_one()
    assert (row.fault_code, row.remediation, row.component, row.attempts) == (
        "BA-CPU-GEMM-SLOW", "re-run", "CPU socket 0", 2)
    assert state == "quarantined"  # accepted + a health FAIL
    database.migrate()  # idempotent
