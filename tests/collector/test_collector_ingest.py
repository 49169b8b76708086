"""Ingest without HTTP: every refusal stores nothing; duplicates, even concurrent, once.
The last test sends hostile and duplicate reports to a real collector over HTTP."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.paths import DATA

pytest.importorskip("sqlalchemy")
pytest.importorskip("alembic")

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select

from bench_agent.collector import db, enrollment
from bench_agent.collector import ingest as ingest_module
from bench_agent.collector.ingest import ingest
from bench_agent.core.errors import EnrollmentError, Refused
from bench_agent.report.attest import NodeKey, make_statement, sign_payload
from tests.collector.old_schema import store_old
from tests.collector_support import (
    Collector,
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
    return caught.value.http_status, caught.value.reason


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
    assert (caught.value.http_status, caught.value.reason) == (403, "node_already_enrolled")
    # Offering another key than the one that signed is refused.
    with pytest.raises(Refused) as caught:
        ingest(database, envelope_bytes(make_report("lab-2"), intruder), auto_enroll=True,
               offered_key=offered)
    assert caught.value.http_status == 401
    assert count(database, "reports") == 1


def test_enrollment_conflicts(database: db.Database) -> None:
    key = NodeKey.generate()
    assert enrollment.enroll(database, "n1", key.public.pem())[1] is True
    assert enrollment.enroll(database, "n1", key.public.pem())[1] is False
    with pytest.raises(EnrollmentError) as caught:
        enrollment.enroll(database, "n2", key.public.pem())
    assert caught.value.reason == "key_conflict"
    with pytest.raises(EnrollmentError) as caught:
        enrollment.enroll(database, "n1", "not a pem")
    assert caught.value.reason == "invalid_key"
    first = enrollment.revoke(database, key.public.keyid)
    assert first is not None and enrollment.revoke(database, key.public.keyid) == first
    with pytest.raises(EnrollmentError) as caught:
        enrollment.enroll(database, "n1", key.public.pem())
    assert caught.value.reason == "key_revoked"
    assert enrollment.revoke(database, "0" * 64) is None


DATA = DATA / "collector"


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
        with pytest.raises(EnrollmentError) as caught:
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
    assert (caught.value.http_status, caught.value.reason) == (403, "node_already_enrolled")
    with database.engine.connect() as conn:
        assert [k.keyid for k in enrollment.keys_of(conn, "lab-1")] == [first.public.keyid]


def offered(key: NodeKey) -> str:
    return base64.b64encode(key.public.raw).decode()


def hostile_signed_payloads(key: NodeKey) -> list[tuple[bytes, str]]:
    """Well-signed payloads that each raised out of ingest (a 500), with --auto-enroll
    from any key: the detail each refusal must carry."""
    report = make_report("lab-1")
    statement = make_statement(report)
    string_digest = {**statement, "subject": [{"name": "lab-1", "digest": "abc"}]}
    return [
        (json.dumps(sign_payload(b"[" * 100_000, key)).encode(), "nested 100000 deep"),
        (json.dumps(sign_payload(b"1" * 5000, key)).encode(), "a number of more than 64 digits"),
        (json.dumps(sign_payload(json.dumps(string_digest).encode(), key)).encode(),
         "a subject is not"),
        (json.dumps(sign_payload(b'{"_type": 1, "_type": 2}', key)).encode(),
         "duplicate key '_type'"),
    ]


def test_hostile_signed_payloads_are_refused_even_with_auto_enroll(database: db.Database
                                                                   ) -> None:
    for _ in range(2):
        key = NodeKey.generate()
        for body, detail in hostile_signed_payloads(key):
            with pytest.raises(Refused) as caught:
                ingest(database, body, offered_key=offered(key), auto_enroll=True)
            assert (caught.value.http_status, caught.value.reason) == (422, "invalid_report")
            assert detail in caught.value.detail
            assert nothing_stored(database) and count(database, "keys") == 0


def _nan_at(report: dict[str, Any], where: str) -> dict[str, Any]:
    bad = json.loads(json.dumps(report))
    if where == "params":
        bad["measurements"][0]["params"]["n"] = float("nan")
    elif where == "stats":
        bad["measurements"][0]["stats"] = {"stdev": float("inf")}
    elif where == "inventory":
        bad["inventory"]["cpu"]["bogomips"] = float("-inf")
    return bad


@pytest.mark.parametrize("where", ["params", "stats", "inventory"])
def test_a_non_finite_number_anywhere_in_the_payload_is_refused(
        database: db.Database, node_key: NodeKey, where: str) -> None:
    body = envelope_bytes(_nan_at(make_report("node-a"), where), node_key)
    with pytest.raises(Refused) as caught:
        ingest(database, body)
    assert (caught.value.http_status, caught.value.reason) == (422, "invalid_report")
    assert "is not a JSON number" in caught.value.detail
    assert nothing_stored(database)


def test_a_non_finite_number_in_an_unsigned_field_is_refused(database: db.Database,
                                                             node_key: NodeKey) -> None:
    envelope = json.loads(envelope_bytes(make_report("node-a"), node_key))
    for extra in (float("nan"), float("inf"), {"deep": [float("-inf")]}):
        body = json.dumps({**envelope, "extra": extra}).encode()
        with pytest.raises(Refused) as caught:
            ingest(database, body)
        assert (caught.value.http_status, caught.value.reason) == (400, "malformed_json")
        assert "is not a JSON number" in caught.value.detail
        assert nothing_stored(database)
    duplicate = json.dumps(envelope)[:-1] + ', "payloadType": "x"}'
    assert refusal(database, duplicate.encode()) == (400, "malformed_json")


def test_burn_in_series_times_must_place_their_points_on_a_calendar(
        database: db.Database, node_key: NodeKey) -> None:
    report = make_report("node-a")
    for points, detail in (
            ([[0, 40.0], [9e11, 41.0]], "a point at 9e+11 s is more than 316224000 s"),
            ([[-9e11, 40.0]], "a point at -9e+11 s is more than"),
    ):
        body = envelope_bytes({**report, "series": {"gpu.gpu0.temp_c": points}}, node_key)
        with pytest.raises(Refused) as caught:
            ingest(database, body)
        assert (caught.value.http_status, caught.value.reason) == (422, "invalid_report")
        assert detail in caught.value.detail
    late = {**make_report("node-a", when=datetime(9999, 12, 31, 12, tzinfo=UTC)),
            "series": {"gpu.gpu0.temp_c": [[0, 40.0], [86400.0, 41.0]]}}
    with pytest.raises(Refused) as caught:
        ingest(database, envelope_bytes(late, node_key))
    assert "a point at 86400 s after 9999-12-31T11:59:00 is past year 9999" in \
        caught.value.detail
    assert nothing_stored(database)
    # Values are any finite number: a GPU matmul load runs at about 1e15 FLOP/s.
    fast = {**report, "series": {"load.gpu_matmul": [[0.0, 7.2e14], [14400.0, 7.1e14]]}}
    assert ingest(database, envelope_bytes(fast, node_key)).created


@pytest.mark.parametrize(("field", "value", "detail"), [
    ("metric", "gpu.\u202etemp", "metric name 'gpu.\\u202etemp' contains U+202E"),
    ("check", "gpu\u2066x", "check name 'gpu\\u2066x' contains U+2066"),
    ("device", "nvme\u200f0", "device name 'nvme\\u200f0' contains U+200F"),
    ("message", "ok \u202e!", "verdict message 'ok \\u202e!' contains U+202E"),
    ("suite", "quick\u2028", "suite name 'quick\\u2028' contains U+2028"),
    ("series", "gpu.\u202egpu0", "series name 'gpu.\\u202egpu0' contains U+202E"),
])
def test_names_with_bidirectional_or_control_characters_are_refused(
        database: db.Database, node_key: NodeKey, field: str, value: str, detail: str
        ) -> None:
    report = make_report("node-a")
    if field in ("metric", "check", "device"):
        bad = _with(report, "measurements", 0, **{field: value})
    elif field == "message":
        bad = _with(report, "verdicts", 0, message=value)
    elif field == "suite":
        bad = {**report, "suite": {**report["suite"], "name": value}}
    else:
        bad = {**report, "series": {value: [[0, 1.0]]}}
    with pytest.raises(Refused) as caught:
        ingest(database, envelope_bytes(bad, node_key))
    assert (caught.value.http_status, caught.value.reason) == (422, "invalid_report")
    assert detail in caught.value.detail
    assert nothing_stored(database)


def test_node_names_with_bidirectional_controls_are_refused(database: db.Database) -> None:
    key = NodeKey.generate()
    assert refusal(database, envelope_bytes(make_report("gpu\u202e71-edon"), key),
                   auto_enroll=True, offered_key=offered(key)) == (422, "invalid_report")
    for name in ("gpu\u202e71", "a\u2066b", "lrm\u200e", "line\u2028sep", "zw\u200bsp"):
        with pytest.raises(EnrollmentError) as caught:
            enrollment.enroll(database, name, NodeKey.generate().public.pem())
        assert caught.value.reason == "invalid_node"
    assert count(database, "keys") == 0


def _resign(body: bytes, key: NodeKey, **dump: Any) -> bytes:
    """The same statement in other payload bytes, signed again."""
    statement = json.loads(base64.b64decode(json.loads(body)["payload"]))
    return json.dumps(sign_payload(json.dumps(statement, **dump).encode(), key)).encode()


def test_a_stored_payload_is_verified_again_before_it_is_acknowledged(
        database: db.Database, node_key: NodeKey) -> None:
    body = envelope_bytes(make_report("node-a"), node_key)
    stored = ingest(database, body)
    good = json.loads(body)
    signature = good["signatures"][0]
    flipped = bytearray(base64.b64decode(signature["sig"]))
    flipped[0] ^= 1
    stranger = NodeKey.generate()
    replays = [
        ({**good, "signatures": [{**signature, "sig": base64.b64encode(flipped).decode()}]},
         (422, "bad_signature")),
        ({**good, "signatures": [{"keyid": stranger.public.keyid, "sig": signature["sig"]}]},
         (401, "unknown_key")),
        ({**good, "payloadType": "application/json"}, (422, "bad_signature")),
    ]
    for replay, expected in replays:
        with pytest.raises(Refused) as caught:
            ingest(database, json.dumps(replay).encode())
        assert (caught.value.http_status, caught.value.reason) == expected
        # Nothing of the stored report is told to whoever sent it.
        assert str(stored.report_id) not in caught.value.detail.split()
    # The stranger's own signature on the stored payload, offered for auto-enroll:
    # the node has a key, so it is a takeover, not a duplicate.
    resigned = sign_payload(base64.b64decode(good["payload"]), stranger)
    with pytest.raises(Refused) as caught:
        ingest(database, json.dumps(resigned).encode(), offered_key=offered(stranger),
               auto_enroll=True)
    assert (caught.value.http_status, caught.value.reason) == (403, "node_already_enrolled")
    assert count(database, "reports") == 1
    assert enrollment.revoke(database, node_key.public.keyid) is not None
    with pytest.raises(Refused) as caught:
        ingest(database, body)
    assert (caught.value.http_status, caught.value.reason) == (403, "key_revoked")


def test_a_report_id_is_stored_once(database: db.Database, node_key: NodeKey) -> None:
    body = envelope_bytes(make_report("node-a"), node_key)
    first = ingest(database, body)
    # Re-serialized (indented, sorted otherwise) and signed again: the same report.
    for dump in ({"indent": 2}, {"sort_keys": False, "separators": (",", ":")}):
        again = ingest(database, _resign(body, node_key, **dump))
        assert not again.created
        assert (again.report_id, again.digest, again.node) == (first.report_id, first.digest,
                                                               "node-a")
    # The same report id with other content is a conflict, naming what is stored.
    statement = json.loads(base64.b64decode(json.loads(body)["payload"]))
    changed = _with(statement["predicate"], "measurements", 0, value=9.9e11)
    with pytest.raises(Refused) as caught:
        ingest(database, envelope_bytes(changed, node_key))
    assert (caught.value.http_status, caught.value.reason) == (409, "report_conflict")
    assert caught.value.detail == (
        f"report {statement['predicate']['report_id']} of node 'node-a' is already stored "
        f"with other content (payload digest {first.digest}); a report id names one report")
    assert (count(database, "reports"), count(database, "measurements")) == (1, 2)
    # Report ids are the node's: another node's report with the same id is its own.
    other = NodeKey.generate()
    enrollment.enroll(database, "node-b", other.public.pem())
    theirs = {**statement["predicate"], "host": "node-b",
              "inventory": {"host": {"hostname": "node-b"}}}
    assert ingest(database, envelope_bytes(theirs, other)).created


def test_concurrent_uploads_of_one_report_in_other_bytes_store_it_once(
        database: db.Database, node_key: NodeKey) -> None:
    body = envelope_bytes(make_report("node-a"), node_key)
    bodies = [_resign(body, node_key, indent=i) for i in range(8)]
    assert len({hashlib.sha256(b).digest() for b in bodies}) == 8
    outcomes: list[tuple[bool, int]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(bodies))

    def send(one: bytes) -> None:
        barrier.wait()
        stored = ingest(database, one)
        with lock:
            outcomes.append((stored.created, stored.report_id))

    threads = [threading.Thread(target=send, args=(b,)) for b in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(created for created, _ in outcomes) == [False] * 7 + [True]
    assert len({report_id for _, report_id in outcomes}) == 1
    assert (count(database, "reports"), count(database, "measurements")) == (1, 2)


def _at_revision(database: db.Database, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(db.MIGRATIONS))
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def test_the_migration_merges_reports_stored_twice_and_stops_on_conflicts(
        database: db.Database, node_key: NodeKey) -> None:
    _at_revision(database, "0001")
    # Stored as the collector stored them before: each new payload digest a new row.
    body = envelope_bytes(make_report("node-a"), node_key)
    with database.engine.begin() as conn:
        first = store_old(conn, body, node_key)
        twice = store_old(conn, _resign(body, node_key, indent=1), node_key)
    assert count(database, "reports") == 2
    with database.engine.begin() as conn:
        conn.execute(db.nodes.update().values(last_report_id=twice))
    database.migrate("0003_report_uuid_unique")
    with database.engine.connect() as conn:
        assert conn.execute(select(db.reports.c.id)).scalars().all() == [first]
        assert conn.execute(select(db.nodes.c.last_report_id)).scalar_one() == first
    assert count(database, "measurements") == 2 and count(database, "verdicts") == 2

    _at_revision(database, "0001")
    report = json.loads(base64.b64decode(json.loads(body)["payload"]))["predicate"]
    with database.engine.begin() as conn:
        other = store_old(conn, envelope_bytes(_with(report, "measurements", 0, value=1.0),
                                               node_key), node_key)
    with pytest.raises(RuntimeError, match=re.escape(
            f"report id {report['report_id']} (rows {first}, {other})")):
        database.migrate()
    assert count(database, "reports") == 2  # nothing deleted: an operator decides


# --- the same through a real collector (uvicorn on loopback) -----------------------------


@pytest.fixture(params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Collector]:
    pytest.importorskip("uvicorn")
    sqlite = contextlib.nullcontext(f"sqlite:///{tmp_path / 'collector.db'}")
    with postgres_database() if request.param == "postgresql" else sqlite as url:
        collector = Collector(url, tmp_path / "server.log", "--auto-enroll")
        try:
            yield collector.start()
        finally:
            collector.stop()


def test_over_http_what_cannot_be_served_is_refused_and_what_is_stored_is_served(
        server: Collector) -> None:
    def post(body: bytes, key: NodeKey | None = None) -> tuple[int, dict[str, Any]]:
        reply = server.post(body, {"X-Bench-Agent-Public-Key": offered(key)} if key else None)
        return reply.status, reply.json()

    stranger = NodeKey.generate()
    for body, detail in hostile_signed_payloads(stranger):
        status, answer = post(body, stranger)
        assert (status, answer["error"]) == (422, "invalid_report") and detail in answer["detail"]
    key = NodeKey.generate()
    report = make_report("lab-1")
    status, answer = post(envelope_bytes(_nan_at(report, "params"), key), key)
    assert (status, answer["error"]) == (422, "invalid_report")
    unsigned_nan = json.dumps({**json.loads(envelope_bytes(report, key)),
                               "extra": float("nan")}).encode()
    assert post(unsigned_nan, key)[0] == 400
    late = {**report, "series": {"gpu.gpu0.temp_c": [[0, 40.0], [9e11, 41.0]]}}
    assert post(envelope_bytes(late, key), key)[0] == 422
    reversed_name = make_report("lab\u202e1-bal")
    status, answer = post(envelope_bytes(reversed_name, stranger), stranger)
    assert (status, answer["error"]) == (422, "invalid_report")
    assert "is not a node name" in answer["detail"]
    assert server.get("/healthz").json()["reports"] == 0

    body = envelope_bytes({**report, "series": {"gpu.gpu0.temp_c": [[0, 40.0], [60, 41.0]]}},
                          key)
    status, created = post(body, key)
    assert (status, created["status"]) == (201, "stored")
    served = server.get(f"/v1/reports/{created['id']}")
    assert served.status == 200 and served.json()["report"]["report_id"] == report["report_id"]
    assert server.get("/nodes/lab-1").status == 200
    status, again = post(_resign(body, key, indent=2), key)
    assert (status, again["status"], again["id"], again["digest"]) == (
        200, "already stored", created["id"], created["digest"])
    status, conflict = post(envelope_bytes(_with(report, "measurements", 0, value=1.0), key))
    assert (status, conflict["error"]) == (409, "report_conflict")
    assert created["digest"] in conflict["detail"]
    replay = json.loads(body)
    replay["signatures"][0]["sig"] = base64.b64encode(b"\x00" * 64).decode()
    status, answer = post(json.dumps(replay).encode())
    assert (status, answer["error"]) == (422, "bad_signature")
    assert server.get("/healthz").json()["reports"] == 1
    assert "Traceback" not in server.log()


def test_a_report_signed_before_the_typed_inventory_is_stored_as_it_was(
        database: db.Database) -> None:
    """tests/data/reports/: written and signed by the agent before the inventory was
    typed (no inventory.schema_version). Stored, byte for byte the envelope it was."""
    from bench_agent.report.attest import PublicKey

    old = DATA.parent / "reports"  # DATA is tests/data/collector here
    body = (old / "v1-untyped-inventory.signed.json").read_bytes()
    public = PublicKey.from_pem((old / "v1-untyped-inventory.pub.pem").read_bytes())
    enrollment.enroll(database, "vm", public.pem())
    stored = ingest(database, body)
    assert stored.created and stored.node == "vm"
    assert (count(database, "reports"), count(database, "measurements"),
            count(database, "verdicts")) == (1, 6, 15)
    with database.engine.connect() as conn:
        kept = conn.execute(select(db.reports.c.envelope)).scalar_one()
    assert bytes(kept) == body


@pytest.mark.parametrize(("inventory", "detail"), [
    ({"schema_version": 1, "cpu": {"logical_cpus": 64}},
     "inventory: missing field 'host'"),
    ({"schema_version": 3},
     "inventory schema version 3 is newer than this agent reads (2); upgrade bench-agent"),
    ({"cpu": {"logical_cpus": "64"}},
     "inventory.cpu.logical_cpus: expected an integer or null, got str '64'"),
])
def test_an_inventory_that_is_not_the_records_is_refused_with_where(
        database: db.Database, node_key: NodeKey, inventory: dict[str, Any],
        detail: str) -> None:
    """A well-signed report whose inventory lies about its shape: a 422 naming the
    field, nothing stored (before: any object was stored as the node's facts)."""
    report = {**make_report("node-a"), "inventory": inventory}
    with pytest.raises(Refused) as caught:
        ingest(database, envelope_bytes(report, node_key))
    assert (caught.value.http_status, caught.value.reason) == (422, "invalid_report")
    assert detail in caught.value.detail
    assert nothing_stored(database)
