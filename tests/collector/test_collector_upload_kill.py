"""The collector killed with SIGKILL in the middle of an upload of 200 reports from 4
nodes, then restarted: after `upload` again, every report is stored exactly once."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from bench_agent.collector import db, enrollment
from bench_agent.report.attest import NodeKey
from bench_agent.report.upload import Backoff, UploadResult, upload_spool
from tests.collector_support import (
    Collector,
    envelope_bytes,
    make_report,
    postgres_available,
    postgres_database,
)

NODES, PER_NODE = 4, 50
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not postgres_available(), reason="PostgreSQL is not reachable at 127.0.0.1:5432"))]


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'collector.db'}"
        return
    with postgres_database() as url:
        yield url


def write_spool(spool: Path, database: db.Database) -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    for n in range(NODES):
        host = f"kill-node-{n}"
        key = NodeKey.generate()
        enrollment.enroll(database, host, key.public.pem())
        folder = spool / host
        folder.mkdir(parents=True)
        for i in range(PER_NODE):
            when = start + timedelta(hours=i, minutes=n)
            report = make_report(host, when=when, gemm=1e12 + i)
            stamp = when.strftime("%Y%m%dT%H%M%SZ")
            (folder / f"{stamp}-quick.json").write_bytes(envelope_bytes(report, key))


def sent(spool: Path) -> int:
    return sum(1 for _ in spool.glob("*/sent/*.json"))


@pytest.mark.e2e
def test_sigkill_during_upload_loses_nothing_and_stores_nothing_twice(
        db_url: str, tmp_path: Path) -> None:
    spool = tmp_path / "results"
    database = db.Database(db_url)
    database.migrate()
    write_spool(spool, database)
    database.dispose()
    total = NODES * PER_NODE
    # Short waits: the collector stays down until the second upload.
    backoff = Backoff(base=0.05, cap=0.2, attempts=3)

    first = Collector(db_url, tmp_path / "first.log", "--no-access-log").start()
    result: list[UploadResult] = []
    uploader = threading.Thread(target=lambda: result.append(
        upload_spool(spool, first.url, backoff=backoff, timeout=5)))
    try:
        uploader.start()
        deadline = time.monotonic() + 60
        while sent(spool) < total // 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        first.kill()  # SIGKILL: no shutdown, no flush, mid-request
        uploader.join(timeout=60)
    finally:
        with contextlib.suppress(Exception):
            first.kill()
    assert not uploader.is_alive()
    interrupted = result[0]
    assert interrupted.pending, "the kill came too late to interrupt the upload"
    assert not interrupted.rejected

    second = Collector(db_url, tmp_path / "second.log", "--no-access-log").start()
    try:
        resumed = upload_spool(spool, second.url, backoff=backoff, timeout=10)
        assert resumed.exit_code == 0, resumed
        assert not resumed.pending and not resumed.rejected
        stored = second.get("/v1/reports?limit=1000").json()["reports"]
        nodes = second.get("/v1/nodes").json()["nodes"]
    finally:
        second.stop()
    assert sent(spool) == total
    assert len(stored) == total
    assert len({r["digest"] for r in stored}) == total
    assert len({r["report_id"] for r in stored}) == total
    assert {n["name"]: n["last_status"] for n in nodes} == {
        f"kill-node-{n}": "PASS" for n in range(NODES)}
    # Each node's newest report is the last one it wrote.
    last = {n["name"]: n["last_finished_at"] for n in nodes}
    assert last["kill-node-0"] == "2026-11-03T01:00:00Z"
