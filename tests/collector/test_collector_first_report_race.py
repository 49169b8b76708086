"""Two first reports of one node under auto-enroll, at once, on real SQLite and PostgreSQL.

The race (issue 17): a node's first reports, signed by its one key, arrive together
(an upload of a spool that holds several). Each transaction looked the key up
before another enrolled it, then met that key as "the node's active key" and was
refused as a second key (node_already_enrolled), or, over HTTP, answered 500. The
partial unique index keys(node_name) WHERE revoked_at IS NULL (migration 0002)
decides the race; the loser must then see the winner's key as its own.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from sqlalchemy import func, select

from bench_agent.collector import db
from bench_agent.collector.ingest import Stored, ingest
from bench_agent.report.attest import NodeKey
from tests.collector.test_collector_enrollment import race
from tests.collector_support import (
    Collector,
    Reply,
    envelope_bytes,
    make_report,
    postgres_available,
    postgres_database,
)

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not postgres_available(), reason="PostgreSQL is not reachable at 127.0.0.1:5432"))]
RACERS = 8
ROUNDS = 6


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    sqlite = contextlib.nullcontext(f"sqlite:///{tmp_path / 'collector.db'}")
    with postgres_database() if request.param == "postgresql" else sqlite as url:
        yield url


def test_first_reports_of_one_node_racing_are_all_stored_under_one_key(db_url: str) -> None:
    setup = db.Database(db_url)
    setup.migrate()
    # One Database per racer: as separate collector processes would, so SQLite's
    # in-process write lock does not serialize them away.
    racers = [db.Database(db_url) for _ in range(RACERS)]
    try:
        for round_ in range(ROUNDS):
            node, key = f"first-{round_}", NodeKey.generate()
            offered = base64.b64encode(key.public.raw).decode()
            bodies = [envelope_bytes(make_report(node), key) for _ in range(RACERS)]
            results = race(RACERS, lambda i, b=bodies, o=offered: ingest(
                racers[i], b[i], offered_key=o, auto_enroll=True))
            assert all(isinstance(r, Stored) and r.created for r in results), results
            with setup.engine.connect() as conn:
                keys = conn.execute(select(db.keys.c.keyid).where(
                    db.keys.c.node_name == node)).scalars().all()
                stored = conn.execute(select(func.count()).select_from(db.reports).join(
                    db.nodes).where(db.nodes.c.name == node)).scalar_one()
                node_rows = conn.execute(select(func.count()).select_from(db.nodes).where(
                    db.nodes.c.name == node)).scalar_one()
            assert keys == [key.public.keyid]
            assert (stored, node_rows) == (RACERS, 1)
    finally:
        for database in racers:
            database.dispose()
        setup.dispose()


@pytest.mark.e2e
def test_first_reports_racing_over_http_get_201_never_500(db_url: str, tmp_path: Path
                                                           ) -> None:
    server = Collector(db_url, tmp_path / "collector.log", "--auto-enroll").start()
    try:
        for round_ in range(3):
            node, key = f"http-first-{round_}", NodeKey.generate()
            headers = {"X-Bench-Agent-Public-Key": base64.b64encode(key.public.raw).decode()}
            bodies = [envelope_bytes(make_report(node), key) for _ in range(RACERS)]
            replies = race(RACERS, lambda i, b=bodies, h=headers: server.post(b[i], h))
            assert [r.status if isinstance(r, Reply) else repr(r) for r in replies] == \
                [201] * RACERS
            assert len(server.get(f"/v1/nodes/{node}").json()["keys"]) == 1
        assert " 500 " not in server.log()
    finally:
        server.stop()
