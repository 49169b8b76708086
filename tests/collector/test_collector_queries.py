"""The read side unwraps stored envelopes through report.attest, as strictly as ingest."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

pytest.importorskip("sqlalchemy")

from sqlalchemy import update

from bench_agent.collector import db, enrollment, queries
from bench_agent.collector.ingest import ingest
from bench_agent.core.errors import SignatureError
from bench_agent.report.attest import NodeKey, sign_payload
from tests.collector_support import envelope_bytes, make_report


@pytest.fixture
def database(tmp_path: Path) -> Iterator[db.Database]:
    database = db.Database(f"sqlite:///{tmp_path / 'collector.db'}")
    database.migrate()
    yield database
    database.dispose()


def _store(database: db.Database, key: NodeKey, hours: int, temp: float) -> int:
    report = {**make_report("node-a", when=datetime(2026, 3, 1, tzinfo=UTC)
                            + timedelta(hours=hours)),
              "series": {"gpu.gpu0.temp_c": [[0, temp], [60, temp + 1]]}}
    return ingest(database, envelope_bytes(report, key)).report_id


def _overwrite(database: db.Database, report_id: int, envelope: bytes) -> None:
    """What a row stored before ingest read strictly may hold."""
    with database.engine.begin() as conn:
        conn.execute(update(db.reports).where(db.reports.c.id == report_id)
                     .values(envelope=envelope))


def test_the_newest_readable_series_is_plotted(database: db.Database) -> None:
    key = NodeKey.generate()
    enrollment.enroll(database, "node-a", key.public.pem())
    older = _store(database, key, 0, 40.0)
    newer = _store(database, key, 1, 50.0)
    with database.engine.connect() as conn:
        found = queries.latest_burnin_series(conn, "node-a")
        assert found is not None and found.report_id == newer
        assert queries.get_report(conn, newer)["report"]["series"] == {  # type: ignore[index]
            "gpu.gpu0.temp_c": [[0, 50.0], [60, 51.0]]}
    payload = json.dumps({"predicate": {"series": {"gpu.gpu0.temp_c": [[0, float("nan")]]}}})
    _overwrite(database, newer, json.dumps(sign_payload(payload.encode(), key)).encode())
    with database.engine.connect() as conn:
        found = queries.latest_burnin_series(conn, "node-a")
        # The unreadable newer row gives no plot; the older one still does.
        assert found is not None and found.report_id == older
        assert [v for _, v in found.series["gpu.gpu0.temp_c"]] == [40.0, 41.0]
        with pytest.raises(SignatureError, match="the payload is not JSON: NaN"):
            queries.get_report(conn, newer)
