"""db.Prepared: ingest's statements run on the DBAPI cursor on SQLite (issue 17's speed),
storing and reading exactly what Connection.execute stores and reads, with SQLAlchemy's
exceptions and events; on PostgreSQL they go through Connection.execute."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sqlalchemy")

from sqlalchemy import bindparam, event, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError

from bench_agent.collector import db
from tests.collector_support import database_backends, migrated_database

BACKENDS = database_backends()
AT = datetime(2026, 11, 27, 10, 0, 1, 250_000)


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[db.Database]:
    with migrated_database(request.param, tmp_path) as database:
        yield database


def _report(node_id: int, digest: str, **extra: Any) -> dict[str, Any]:
    return {"digest": digest, "report_uuid": digest[:36], "node_id": node_id,
            "keyid": "k" * 64, "status": "PASS", "suite": "quick", "profile": "p",
            "agent_version": "0.1.0", "interrupted": True, "started_at": AT,
            "finished_at": AT, "received_at": AT, "envelope": b"\x00{signed}\xff",
            "gpu_model": "", **extra}


PREPARED_INSERT = db.Prepared(insert(db.reports).returning(db.reports.c.id))
PREPARED_SELECT = db.Prepared(
    select(db.reports.c.id, db.reports.c.interrupted, db.reports.c.finished_at,
           db.reports.c.envelope).where(db.reports.c.node_id == bindparam("b_node"))
    .order_by(db.reports.c.id))


def _node(conn: Any) -> int:
    node_id: int = conn.execute(insert(db.nodes).returning(db.nodes.c.id),
                                {"name": "n1", "first_seen_at": AT}).scalar_one()
    return node_id


def test_what_it_stores_and_reads_is_what_sqlalchemy_stores_and_reads(
        database: db.Database) -> None:
    with database.engine.begin() as conn:
        node = _node(conn)
        prepared_id = PREPARED_INSERT.first(conn, _report(node, "a" * 64)).id
        core_id = conn.execute(insert(db.reports).returning(db.reports.c.id),
                               _report(node, "b" * 64)).scalar_one()
    with database.engine.connect() as conn:
        # As stored: the same text for the times (SQLite keeps no datetime type), the
        # same flag and bytes.
        stored = {r[0]: tuple(r[1:]) for r in conn.execute(text(
            "SELECT id, CAST(finished_at AS TEXT), CAST(interrupted AS TEXT), envelope "
            "FROM reports"))}
        assert stored[prepared_id] == stored[core_id]
        if database.is_sqlite:
            assert stored[prepared_id][:2] == ("2026-11-27 10:00:01.250000", "1")
        # As read back: the same values, typed.
        prepared_rows = PREPARED_SELECT.rows(conn, {"b_node": node})
        core_rows = conn.execute(PREPARED_SELECT.statement, {"b_node": node}).all()
    assert [tuple(r) for r in prepared_rows] == [tuple(r) for r in core_rows] == [
        (prepared_id, True, AT, b"\x00{signed}\xff"), (core_id, True, AT, b"\x00{signed}\xff")]
    assert prepared_rows[0].finished_at == AT and prepared_rows[1].interrupted is True


def test_an_update_is_compiled_for_the_columns_it_is_given(database: db.Database) -> None:
    statement = db.Prepared(update(db.nodes).where(db.nodes.c.id == bindparam("b_node")))
    with database.engine.begin() as conn:
        node = _node(conn)
        statement.run(conn, {"b_node": node, "state": "burn-in"})
        statement.run(conn, {"b_node": node, "last_status": "FAIL", "state_changed_at": AT})
        row = conn.execute(select(db.nodes.c.state, db.nodes.c.last_status,
                                  db.nodes.c.state_changed_at)).one()
    assert tuple(row) == ("burn-in", "FAIL", AT)


def test_executemany_stores_every_row(database: db.Database) -> None:
    statement = db.Prepared(insert(db.measurements))
    with database.engine.begin() as conn:
        report = PREPARED_INSERT.first(conn, _report(_node(conn), "c" * 64)).id
        statement.run(conn, [{"report_id": report, "check_name": "c", "metric": f"m{i}",
                              "device": "", "value": i / 2, "unit": "IOPS",
                              "unstable": i == 1} for i in range(3)])
        rows = conn.execute(select(db.measurements.c.metric, db.measurements.c.value,
                                   db.measurements.c.unstable)
                            .order_by(db.measurements.c.id)).all()
    assert [tuple(r) for r in rows] == [("m0", 0.0, False), ("m1", 0.5, True),
                                        ("m2", 1.0, False)]


def test_a_constraint_is_sqlalchemys_integrity_error_and_the_transaction_rolls_back(
        database: db.Database) -> None:
    with database.engine.begin() as conn:
        node = _node(conn)
        PREPARED_INSERT.first(conn, _report(node, "d" * 64))
    with pytest.raises(IntegrityError, match=r"(?i)unique"), database.engine.begin() as conn:
        PREPARED_INSERT.first(conn, _report(node, "e" * 64))
        PREPARED_INSERT.first(conn, _report(node, "d" * 64))  # the digest again
    with database.engine.connect() as conn:
        digests = conn.execute(select(db.reports.c.digest)).scalars().all()
    assert digests == ["d" * 64]  # "e..." went with the failed transaction


def test_a_database_error_is_sqlalchemys_operational_error(tmp_path: Path) -> None:
    database = db.Database(f"sqlite:///{tmp_path / 'empty.db'}")  # not migrated
    try:
        with pytest.raises(OperationalError, match="no such table: reports"), \
                database.engine.connect() as conn:
            PREPARED_SELECT.rows(conn, {"b_node": 1})
    finally:
        database.dispose()


def test_listeners_see_each_statement(database: db.Database) -> None:
    seen: list[tuple[str, bool]] = []

    def record(_conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any,
               many: bool) -> None:
        seen.append((statement.split()[0], many))

    event.listen(database.engine, "before_cursor_execute", record)
    try:
        with database.engine.begin() as conn:
            node = _node(conn)
            PREPARED_SELECT.rows(conn, {"b_node": node})
            db.Prepared(insert(db.node_labels)).run(
                conn, [{"node_id": node, "key": k, "value": "v"} for k in "ab"])
    finally:
        event.remove(database.engine, "before_cursor_execute", record)
    assert seen == [
        ("INSERT", False), ("SELECT", False), ("INSERT", True)], seen
