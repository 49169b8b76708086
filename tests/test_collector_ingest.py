"""Ingest without HTTP: every refusal stores nothing; duplicates, even concurrent, once."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("alembic")

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select

from bench_agent.attest import NodeKey, sign_payload
from bench_agent.collector import db, enrollment
from bench_agent.collector import ingest as ingest_module
from bench_agent.collector.ingest import Refused, ingest
from tests.collector_support import (
    envelope_bytes,
    make_report,
    postgres_available,
    postgres_database,
)

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not postgres_available(), reason="PostgreSQL is not reachable at 127.0.0.1:5432"))]


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[db.Database]:
    if request.param == "sqlite":
        database = db.Database(f"sqlite:///{tmp_path / 'collector.db'}")
        database.migrate()
        yield database
        database.dispose()
        return
    with postgres_database() as url:
        database = db.Database(url)
        database.migrate()
        yield database
        database.dispose()


@pytest.fixture
def node_key(database: db.Database) -> NodeKey:
    key = NodeKey.generate()
    enrollment.enroll(database, "node-a", key.public.pem())
    return key


def count(database: db.Database, table: str) -> int:
    with database.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(
            db.metadata.tables[table])).scalar_one())


def nothing_stored(database: db.Database) -> bool:
    return all(count(database, t) == 0 for t in ("reports", "nodes", "measurements",
                                                   "verdicts"))


def refusal(database: db.Database, body: bytes, **kwargs: object) -> tuple[int, str]:
    with pytest.raises(Refused) as caught:
        ingest(database, body, **kwargs)  # type: ignore[arg-type]
    assert nothing_stored(database)
    return caught.value.status, caught.value.reason


def test_migrations_create_exactly_the_tables_the_code_uses(database: db.Database) -> None:
    with database.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
    assert diff == []
    database.migrate()  # idempotent: a restart migrates nothing


def test_a_valid_report_is_stored_with_its_normalized_rows(database: db.Database,
                                                           node_key: NodeKey) -> None:
    body = envelope_bytes(make_report("node-a", n_extra=3), node_key)
    stored = ingest(database, body)
    assert stored.created and stored.node == "node-a"
    envelope = json.loads(body)
    assert stored.digest == __import__("hashlib").sha256(
        base64.b64decode(envelope["payload"])).hexdigest()
    assert (count(database, "reports"), count(database, "measurements"),
            count(database, "verdicts"), count(database, "nodes")) == (1, 5, 2, 1)
    with database.engine.connect() as conn:
        kept = conn.execute(select(db.reports.c.envelope)).scalar_one()
    assert bytes(kept) == body  # the envelope exactly as received


def test_a_duplicate_is_acknowledged_and_stored_once(database: db.Database,
                                                     node_key: NodeKey) -> None:
    body = envelope_bytes(make_report("node-a"), node_key)
    first, second = ingest(database, body), ingest(database, body)
    assert first.created and not second.created
    assert (second.report_id, second.digest) == (first.report_id, first.digest)
    # The same payload with its JSON re-spaced is the same report: the digest is of
    # the payload bytes, not of the envelope.
    respaced = json.dumps(json.loads(body), indent=4).encode()
    assert not ingest(database, respaced).created
    assert count(database, "reports") == 1


def test_concurrent_duplicates_are_stored_exactly_once(database: db.Database,
                                                       node_key: NodeKey) -> None:
    bodies = [envelope_bytes(make_report("node-a", when=datetime(2026, 1, 1, tzinfo=UTC)
                                         + timedelta(hours=i)), node_key) for i in range(4)]
    results: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(16)

    def send(body: bytes) -> None:
        barrier.wait()
        outcome = ingest(database, body)
        with lock:
            results.append(outcome.created)

    threads = [threading.Thread(target=send, args=(bodies[i % 4],)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 12 + [True] * 4
    assert count(database, "reports") == 4
    assert count(database, "measurements") == 8
    assert count(database, "nodes") == 1


def test_every_refusal_has_its_status_and_reason_and_stores_nothing(
        database: db.Database, node_key: NodeKey) -> None:
    report = make_report("node-a")
    good = json.loads(envelope_bytes(report, node_key))

    assert refusal(database, b"{not json") == (400, "malformed_json")
    assert refusal(database, b"\xff\xfe") == (400, "malformed_json")
    assert refusal(database, json.dumps(report).encode()) == (400, "not_envelope")
    assert refusal(database, b"[1, 2]") == (400, "not_envelope")
    bad_b64 = {**good, "payload": "!!not base64!!"}
    assert refusal(database, json.dumps(bad_b64).encode()) == (400, "malformed_envelope")
    no_sigs = {**good, "signatures": []}
    assert refusal(database, json.dumps(no_sigs).encode()) == (400, "malformed_envelope")

    stranger = NodeKey.generate()
    assert refusal(database, envelope_bytes(report, stranger)) == (401, "unknown_key")

    # One byte of the payload changed after signing.
    payload = base64.b64decode(good["payload"]).replace(b'"PASS"', b'"FAIL"', 1)
    tampered = {**good, "payload": base64.b64encode(payload).decode()}
    assert refusal(database, json.dumps(tampered).encode()) == (422, "bad_signature")
    changed_type = {**good, "payloadType": "application/json"}
    assert refusal(database, json.dumps(changed_type).encode()) == (422, "bad_signature")

    # Well signed, but the payload is not a report: the signature holds, the content not.
    not_statement = sign_payload(b'{"hello": "world"}', node_key)
    assert refusal(database, json.dumps(not_statement).encode()) == (422, "invalid_report")
    broken = {**report, "measurements": [{"check": "x", "metric": "y", "value": "fast",
                                          "unit": "FLOP/s"}]}
    assert refusal(database, envelope_bytes(broken, node_key)) == (422, "invalid_report")
    bad_time = {**report, "finished_at": "yesterday"}
    assert refusal(database, envelope_bytes(bad_time, node_key)) == (422, "invalid_report")

    # node-a's key signing a report about node-b.
    other = make_report("node-b")
    assert refusal(database, envelope_bytes(other, node_key)) == (403, "subject_mismatch")

    assert enrollment.revoke(database, node_key.public.keyid) is not None
    assert refusal(database, envelope_bytes(report, node_key)) == (403, "key_revoked")


def test_the_newest_report_by_finish_time_wins_whatever_the_arrival_order(
        database: db.Database, node_key: NodeKey) -> None:
    base = datetime(2026, 3, 1, tzinfo=UTC)
    newer = envelope_bytes(make_report("node-a", when=base + timedelta(days=1),
                                       status="FAIL", gemm=1e11), node_key)
    older = envelope_bytes(make_report("node-a", when=base), node_key)
    ingest(database, newer)
    ingest(database, older)
    with database.engine.connect() as conn:
        node = conn.execute(select(db.nodes)).one()
    assert node.last_status == "FAIL"
    assert node.last_finished_at == datetime(2026, 3, 2)


def test_auto_enroll_trusts_a_first_key_only(database: db.Database) -> None:
    key = NodeKey.generate()
    offered = base64.b64encode(key.public.raw).decode()
    body = envelope_bytes(make_report("lab-1"), key)
    assert refusal(database, body, offered_key=offered) == (401, "unknown_key")  # off
    assert ingest(database, body, offered_key=offered, auto_enroll=True).created
    # A second key for the same node is not trusted on first use: a takeover.
    intruder = NodeKey.generate()
    body2 = envelope_bytes(make_report("lab-1"), intruder)
    with pytest.raises(Refused) as caught:
        ingest(database, body2, auto_enroll=True,
               offered_key=base64.b64encode(intruder.public.raw).decode())
    assert (caught.value.status, caught.value.reason) == (403, "node_already_enrolled")
    # Offering another key than the one that signed is refused.
    with pytest.raises(Refused) as caught:
        ingest(database, envelope_bytes(make_report("lab-2"), intruder), auto_enroll=True,
               offered_key=offered)
    assert caught.value.status == 401
    assert count(database, "reports") == 1


def test_enrollment_conflicts(database: db.Database) -> None:
    key = NodeKey.generate()
    assert enrollment.enroll(database, "n1", key.public.pem())[1] is True
    assert enrollment.enroll(database, "n1", key.public.pem())[1] is False
    with pytest.raises(enrollment.EnrollmentError) as caught:
        enrollment.enroll(database, "n2", key.public.pem())
    assert caught.value.reason == "key_conflict"
    with pytest.raises(enrollment.EnrollmentError) as caught:
        enrollment.enroll(database, "n1", "not a pem")
    assert caught.value.reason == "invalid_key"
    first = enrollment.revoke(database, key.public.keyid)
    assert first is not None and enrollment.revoke(database, key.public.keyid) == first
    with pytest.raises(enrollment.EnrollmentError) as caught:
        enrollment.enroll(database, "n1", key.public.pem())
    assert caught.value.reason == "key_revoked"
    assert enrollment.revoke(database, "0" * 64) is None


DATA = Path(__file__).parent / "data" / "collector"


def test_the_signature_and_digest_are_of_the_payload_bytes_as_received(
        database: db.Database) -> None:
    # A payload signed as indented, unsorted, non-ASCII JSON with a trailing
    # newline: re-serializing it anywhere would break the signature and the digest.
    enrollment.enroll(database, "nœud-7", (DATA / "node-7.pub").read_bytes())
    body = (DATA / "non-canonical.envelope.json").read_bytes()
    stored = ingest(database, body)
    assert stored.created and stored.node == "nœud-7"
    assert stored.digest == "875a01137fab7960df8f53d25ba2c8647d7f391193104cc7956b88b047780fa9"
    with database.engine.connect() as conn:
        assert bytes(conn.execute(select(db.reports.c.envelope)).scalar_one()) == body


def _with(report: dict[str, object], key: str, index: int, **fields: object
          ) -> dict[str, object]:
    """``report`` with fields of its ``key`` list's entry ``index`` replaced."""
    entries = [dict(e) for e in report[key]]  # type: ignore[attr-defined]
    entries[index].update(fields)
    return {**report, key: entries}


def test_hostile_bodies_and_unstorable_reports_are_refused_not_crashed(
        database: db.Database, node_key: NodeKey) -> None:
    # Each of these raised out of ingest() (a 500) or, on PostgreSQL only, failed
    # in the INSERT: a 422 or 400 is the answer, and nothing is stored.
    assert refusal(database, b"[" * 100_000) == (400, "malformed_json")
    assert refusal(database, b'{"payload": ' + b"1" * 5000 + b"}") == (400, "malformed_json")
    report = make_report("node-a")
    unstorable = [
        {**report, "report_id": "x" * 37},
        {**report, "report_id": 12345},
        {**report, "agent_version": "9" * 65},
        {**report, "suite": {"name": 5, "sha256": "a" * 64}},
        _with(report, "measurements", 0, check="c" * 129),
        _with(report, "measurements", 0, device={"a": 1}),
        _with(report, "verdicts", 0, threshold=[">= 1"]),
        _with(report, "verdicts", 0, message="nul \x00 inside"),
        _with(report, "verdicts", 0, message="lone \ud800 surrogate"),
        _with(report, "verdicts", 0, value=float("inf")),
        {**report, "series": {"gpu0.temp_c": [1, 2]}},
        {**report, "finished_at": "0001-01-01T00:00:00+01:00"},
    ]
    for bad in unstorable:
        assert refusal(database, envelope_bytes(bad, node_key)) == (422, "invalid_report"), bad
    # A keyid that is no sha256 hex (NUL) is unknown, not a database error.
    good = json.loads(envelope_bytes(report, node_key))
    for keyid in ("\x00", "f" * 65):
        odd = {**good, "signatures": [{**good["signatures"][0], "keyid": keyid}]}
        assert refusal(database, json.dumps(odd).encode()) == (401, "unknown_key")
    # A lone surrogate is not text anywhere in the body: no JSON encoder can serve it.
    odd = {**good, "signatures": [{**good["signatures"][0], "keyid": "\ud800"}]}
    assert refusal(database, json.dumps(odd).encode()) == (400, "malformed_json")


def test_node_names_may_be_unicode_but_not_control_characters(database: db.Database) -> None:
    lab = NodeKey.generate()
    # Auto-enroll takes the node name from the report: the same rule holds.
    assert refusal(database, envelope_bytes(make_report("lab\x00"), lab), auto_enroll=True,
                   offered_key=base64.b64encode(lab.public.raw).decode()
                   ) == (422, "invalid_report")
    key = NodeKey.generate()
    enrollment.enroll(database, "узел-1.例え", key.public.pem())
    stored = ingest(database, envelope_bytes(make_report("узел-1.例え"), key))
    assert stored.created and stored.node == "узел-1.例え"
    for name in ("a\x00b", "tab\there", "lone\ud800"):
        with pytest.raises(enrollment.EnrollmentError) as caught:
            enrollment.enroll(database, name, NodeKey.generate().public.pem())
        assert caught.value.reason == "invalid_node"


def test_a_key_revoked_while_its_report_is_verified_stores_nothing(
        database: db.Database, node_key: NodeKey, monkeypatch: pytest.MonkeyPatch) -> None:
    original = ingest_module._check

    def check_then_revoke(*args: object, **kwargs: object) -> object:
        checked = original(*args, **kwargs)  # type: ignore[arg-type]
        assert enrollment.revoke(database, node_key.public.keyid) is not None
        return checked

    monkeypatch.setattr(ingest_module, "_check", check_then_revoke)
    assert refusal(database, envelope_bytes(make_report("node-a"), node_key)) == (
        403, "key_revoked")


def test_auto_enroll_of_two_first_keys_at_once_trusts_one(
        database: db.Database, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = NodeKey.generate(), NodeKey.generate()
    original = ingest_module._check

    def check_then_enroll_another(*args: object, **kwargs: object) -> object:
        checked = original(*args, **kwargs)  # type: ignore[arg-type]
        enrollment.enroll(database, "lab-1", first.public.pem())
        return checked

    monkeypatch.setattr(ingest_module, "_check", check_then_enroll_another)
    with pytest.raises(Refused) as caught:
        ingest(database, envelope_bytes(make_report("lab-1"), second), auto_enroll=True,
               offered_key=base64.b64encode(second.public.raw).decode())
    assert (caught.value.status, caught.value.reason) == (403, "node_already_enrolled")
    with database.engine.connect() as conn:
        assert [k.keyid for k in enrollment.keys_of(conn, "lab-1")] == [first.public.keyid]
