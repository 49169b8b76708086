"""Verify a posted envelope, then store it and its normalized rows in one transaction.

The order of the checks fixes which refusal a client gets:

    400 malformed_json      the body is not strict JSON (attest.loads_strict: not UTF-8,
                            NaN/Infinity, a duplicate key, nesting over 64, an integer
                            over 64 digits, a lone surrogate), unsigned fields included
    400 not_envelope        JSON, but no payloadType/signatures
    400 malformed_envelope  fields of the wrong type, payload or sig not base64
    401 unknown_key         no signature's keyid is enrolled (and no auto-enroll)
    403 key_revoked         the key was revoked
    422 bad_signature       the signature does not verify on the payload bytes
    422 invalid_report      signed, but not our statement, not strict JSON, or not a
                            report that can be stored and served (names with control
                            or bidirectional characters, series times out of range)
    403 subject_mismatch    the statement is about another node than the key's
    403 node_already_enrolled  auto-enroll of a new key for a node that has one
    409 report_conflict     the node's report id is stored with other content

Nothing is written before every check has passed, and every check runs before
the lookup of what is stored: a stored payload under a bad or unknown signature
is refused like any other, and learns nothing of what is stored.

A report is stored once. The payload digest (sha256 of the base64-decoded
payload bytes) answers retries: the same bytes again are 200 "already stored".
The same report id of the same node in other bytes (re-serialized, re-signed) is
200 "already stored" with the stored report's id and digest when its statement
is the same JSON value (attest.canonical_json), else 409 report_conflict naming
the stored digest: a report id names one report. reports.digest and
(report_uuid, node_id) are unique, so of two concurrent uploads one inserts and
the other meets a constraint, rolls back and gets the answer of a duplicate.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, insert, literal_column, select, union_all, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.selectable import CompoundSelect

from bench_agent.collector import db, enrollment, lifecycle
from bench_agent.core.errors import (
    EnrollmentError,
    Refused,
    ReportError,
    SignatureError,
    StrictJSONError,
)
from bench_agent.core.model import Report, check_name, check_text
from bench_agent.report.attest import (
    PublicKey,
    canonical_json,
    decode_base64,
    envelope_statement,
    is_envelope,
    loads_strict,
    pae,
    verify_envelope,
)

# A burn-in series point is [seconds since the start, value]. The dashboard plots
# it at started_at + seconds, which must be a datetime (years 1 to 9999) or the
# node's page fails. Ten years bounds any real burn-in (hours to days) by far.
MAX_SERIES_SECONDS = 10 * 366 * 86400


@dataclass(frozen=True, slots=True)
class Stored:
    created: bool  # False: this report was already stored (same digest, or same content)
    report_id: int
    digest: str
    node: str


@dataclass(frozen=True, slots=True)
class _Checked:
    digest: str
    key: enrollment.EnrolledKey
    new_key: bool  # auto-enrolled with this report
    report: Report
    statement: dict[str, Any]
    started_at: datetime
    finished_at: datetime
    # Per verdict, in order: the fault contract's fields (defaults for older reports).
    faults: tuple[dict[str, Any], ...] = ()
    gpu_model: str = ""


@dataclass(frozen=True, slots=True)
class Policy:
    """Which suites move a node's lifecycle how (lifecycle.py)."""

    acceptance_suites: tuple[str, ...] = ("acceptance",)
    burnin_suites: tuple[str, ...] = ("burnin",)


def ingest(database: db.Database, body: bytes, *, offered_key: str | None = None,
           auto_enroll: bool = False, policy: Policy | None = None) -> Stored:
    """Verify and store one envelope; raise Refused with the reason otherwise.

    ``offered_key`` is the X-Bench-Agent-Public-Key header (base64 of the raw
    32-byte Ed25519 key), used only when ``auto_enroll`` is on.
    """
    envelope, payload, keyids = parse_envelope(body)
    digest = hashlib.sha256(payload).hexdigest()
    # One pooled connection for the reads and the write (a checkout and its reset
    # cost about as much as a statement).
    with database.engine.connect() as conn:
        # Verified before anything stored is looked up: answering a retry first
        # would acknowledge any signature (or none) on a stored payload, with the
        # report's id and node.
        checked = _check(conn, envelope, payload, digest, keyids, offered_key, auto_enroll)
        known = _find(conn, checked)
        if known is not None:
            return known
        # End the read transaction: the write begins its own, under the write lock.
        conn.rollback()
        try:
            with database.writing(), conn.begin():
                return _store(conn, checked, body, policy or Policy())
        except IntegrityError:
            # A concurrent upload of this payload or of this report id won a unique
            # constraint (digest, or report_uuid and node_id); rolled back, and a new
            # read sees the winner.
            known = _find(conn, checked)
            if known is None:
                raise
            return known


def parse_envelope(body: bytes) -> tuple[dict[str, Any], bytes, list[str]]:
    """(envelope, payload bytes, signature keyids) or Refused(400)."""
    try:
        # Strict, unsigned fields included: the envelope is stored as received and
        # served again as JSON (GET /v1/reports/ID), which has no NaN.
        envelope = loads_strict(body)
    except StrictJSONError as exc:
        raise Refused(400, "malformed_json", f"the body is not JSON: {exc}") from exc
    if not is_envelope(envelope):
        raise Refused(400, "not_envelope",
                      "not a DSSE envelope (an object with payloadType, payload, signatures)")
    if not isinstance(envelope["payloadType"], str):
        raise Refused(400, "malformed_envelope", "payloadType is not a string")
    payload = _b64(envelope.get("payload"), "payload")
    signatures = envelope["signatures"]
    if not isinstance(signatures, list) or not signatures:
        raise Refused(400, "malformed_envelope", "signatures is not a non-empty list")
    keyids = []
    for entry in signatures:
        if not isinstance(entry, dict) or not isinstance(entry.get("keyid"), str):
            raise Refused(400, "malformed_envelope", "a signature lacks its keyid")
        _b64(entry.get("sig"), "sig")
        keyids.append(entry["keyid"])
    return envelope, payload, keyids


def _b64(value: Any, what: str) -> bytes:
    try:
        return decode_base64(value, what)
    except SignatureError as exc:
        raise Refused(400, "malformed_envelope", str(exc)) from exc


def _check(conn: Connection, envelope: dict[str, Any], payload: bytes, digest: str,
           keyids: list[str], offered_key: str | None, auto_enroll: bool) -> _Checked:
    key: enrollment.EnrolledKey | None = None
    for keyid in keyids:
        key = enrollment.lookup_in(conn, keyid)
        if key is not None:
            break
    new_key = False
    if key is None:
        if not (auto_enroll and offered_key):
            raise Refused(401, "unknown_key",
                          f"key {', '.join(k[:16] for k in keyids)} is not enrolled")
        key = _offered(offered_key, keyids, envelope)
        new_key = True
    if key.revoked_at is not None:
        raise Refused(403, "key_revoked", f"key {key.keyid[:16]} was revoked at "
                      f"{key.revoked_at.isoformat()}Z")
    statement = _verify(envelope, payload, key.public)
    subject = statement["subject"][0].get("name")
    predicate = statement["predicate"]
    try:
        enrollment.check_node_name(subject)
    except EnrollmentError as exc:
        raise Refused(422, "invalid_report", f"the subject name {subject!r:.80} is not a "
                      f"node name: {exc}") from exc
    if new_key:
        key = enrollment.EnrolledKey(key.keyid, subject, key.public, db.utcnow(), None)
        active = enrollment.active_keyid(conn, key.node_name)
        if active is not None and active != key.keyid:
            raise Refused(403, "node_already_enrolled", f"node {key.node_name!r} already has "
                          "an enrolled key; auto-enroll only accepts a node's first key")
    if subject != key.node_name or predicate.get("host") != key.node_name:
        raise Refused(403, "subject_mismatch", f"the report is about {subject!r} but key "
                      f"{key.keyid[:16]} is enrolled for node {key.node_name!r}")
    try:
        report = Report.from_dict(predicate)
        started = _timestamp(report.started_at)
        finished = _timestamp(report.finished_at)
        _check_storable(report, started)
        faults = tuple(_faults_of(raw) for raw in predicate["verdicts"])
        gpu_model = _gpu_model_of(predicate)
    except (ReportError, ValueError, TypeError, OverflowError) as exc:
        raise Refused(422, "invalid_report", f"the signed payload is not a valid report: "
                      f"{exc}") from exc
    return _Checked(digest, key, new_key, report, statement, started, finished, faults,
                    gpu_model)


# The fault contract's values (faults helper, bench_agent/faults/catalog.yaml):
# short codes and one remediation word; anything longer is not one of them.
_FAULT_TEXT = {"fault_code": 64, "component": 1000, "remediation": 32}


def _faults_of(raw: Any) -> dict[str, Any]:
    """The fault fields of one verdict as signed; ValueError when present but wrong."""
    out: dict[str, Any] = {}
    for name, length in _FAULT_TEXT.items():
        value = raw.get(name, "")
        if not isinstance(value, str) or len(value) > length:
            raise ValueError(f"verdict {name} {value!r:.60} is not a string of at most "
                             f"{length} characters")
        check_text(value, f"verdict {name}")
        out[name] = value
    attempts, flaky = raw.get("attempts", 1), raw.get("flaky", False)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 1000:
        raise ValueError(f"verdict attempts {attempts!r:.40} is not a count from 1 to 1000")
    if not isinstance(flaky, bool):
        raise ValueError(f"verdict flaky {flaky!r:.40} is not true or false")
    out["attempts"], out["flaky"] = attempts, flaky
    return out


def _gpu_model_of(predicate: dict[str, Any]) -> str:
    """The GPU model(s) the inventory names ("" without GPUs), for the fleet filter."""
    inventory = predicate.get("inventory")
    gpus = inventory.get("gpus") if isinstance(inventory, dict) else None
    names = sorted({g["name"] for g in gpus or [] if isinstance(g, dict)
                    and isinstance(g.get("name"), str) and g["name"]}) \
        if isinstance(gpus, list) else []
    model = ", ".join(names)
    _text(model, db.nodes.c.gpu_model, "GPU model")
    check_text(model, "GPU model")
    return model


def _text(value: Any, column: Any, what: str) -> None:
    """ValueError unless ``value`` fits ``column``: a str within its length, without NUL
    (PostgreSQL text cannot hold it) or lone surrogates (not encodable as UTF-8)."""
    if not isinstance(value, str):
        raise ValueError(f"{what} {value!r:.80} is not a string")
    length = getattr(column.type, "length", None)
    if length is not None and len(value) > length:
        raise ValueError(f"{what} {value[:40]!r}... is longer than {length} characters")
    if "\x00" in value:
        raise ValueError(f"{what} {value[:40]!r} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} {value[:40]!r} is not valid Unicode") from exc


def _check_storable(report: Report, started: datetime) -> None:
    """Every value that reaches a column has its type and fits, and every value the
    dashboard shows can be shown (else a 422, not a 500).

    Report.from_dict checks the structure, and the check, metric and device names
    (model.check_name), but not the types of free-text fields; SQLite would store
    a list or an overlong string, PostgreSQL raises on both.
    """
    r = db.reports.c
    for value, column, what in ((report.report_id, r.report_uuid, "report_id"),
                                (report.agent_version, r.agent_version, "agent_version"),
                                (report.suite.name, r.suite, "suite name"),
                                (report.profile.name, r.profile, "profile name")):
        _text(value, column, what)
        check_name(value, what)
    m = db.measurements.c
    for measurement in report.measurements:
        for value, column, what in ((measurement.check, m.check_name, "check"),
                                    (measurement.metric, m.metric, "metric"),
                                    (measurement.device, m.device, "device")):
            _text(value, column, what)
    v = db.verdicts.c
    for verdict in report.verdicts:
        for value, column, what in ((verdict.check, v.check_name, "check"),
                                    (verdict.metric, v.metric, "metric"),
                                    (verdict.device, v.device, "device"),
                                    (verdict.threshold, v.threshold, "threshold"),
                                    (verdict.source, v.source, "source"),
                                    (verdict.message, v.message, "message")):
            _text(value, column, what)
            check_text(value, f"verdict {what}")
        # The read API serves the payload as strict JSON, which has no Infinity/NaN.
        if verdict.value is not None and not math.isfinite(verdict.value):
            raise ValueError(f"verdict {verdict.check} {verdict.metric}: value "
                             f"{verdict.value} is not finite")
    # The dashboard plots the series: name -> [[seconds since start, value], ...].
    for name, points in report.series.items():
        check_name(name, "series name")
        if not isinstance(points, list) or not all(
                isinstance(p, list) and len(p) == 2
                and all(isinstance(x, int | float) and not isinstance(x, bool)
                        and math.isfinite(x) for x in p)
                for p in points):
            raise ValueError(f"series {name!r:.40} is not a list of [seconds, value] pairs "
                             "of finite numbers")
        # Values are any finite number (a GPU matmul load runs at 1e15 FLOP/s);
        # times must place the point on a calendar.
        for t, _ in points:
            if abs(t) > MAX_SERIES_SECONDS:
                raise ValueError(f"series {name!r:.40}: a point at {t:g} s is more than "
                                 f"{MAX_SERIES_SECONDS} s (ten years) from the start")
        if points:
            times = [t for t, _ in points]
            try:
                started + timedelta(seconds=min(times))
                started + timedelta(seconds=max(times))
            except OverflowError as exc:
                raise ValueError(f"series {name!r:.40}: a point at {max(times):g} s after "
                                 f"{started.isoformat()} is past year 9999") from exc


def _offered(offered_key: str, keyids: list[str], envelope: dict[str, Any]
             ) -> enrollment.EnrolledKey:
    try:
        public = PublicKey(decode_base64(offered_key, "X-Bench-Agent-Public-Key"))
    except SignatureError as exc:
        raise Refused(400, "malformed_envelope",
                      "X-Bench-Agent-Public-Key is not base64") from exc
    if len(public.raw) != 32 or public.keyid not in keyids:
        raise Refused(401, "unknown_key",
                      "the offered public key is not the key that signed the envelope")
    return enrollment.EnrolledKey(public.keyid, "", public, db.utcnow(), None)


def _verify(envelope: dict[str, Any], payload: bytes, public: PublicKey) -> dict[str, Any]:
    try:
        return verify_envelope(envelope, public)
    except SignatureError as exc:
        # verify_envelope also refuses well-signed payloads that are not our
        # statement; tell the two apart so the reason code says which.
        reason = "invalid_report" if _signature_holds(envelope, payload, public) \
            else "bad_signature"
        raise Refused(422, reason, str(exc)) from exc


def _signature_holds(envelope: dict[str, Any], payload: bytes, public: PublicKey) -> bool:
    message = pae(str(envelope["payloadType"]), payload)
    for entry in envelope["signatures"]:
        if entry.get("keyid") == public.keyid and public.verify(
                decode_base64(entry["sig"], "sig"), message):
            return True
    return False


def _timestamp(text: str) -> datetime:
    if not isinstance(text, str):
        raise ValueError(f"timestamp {text!r} is not a string")
    value = datetime.fromisoformat(text)
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


# Statements built once: building a statement per call (.values(), .where()) costs
# more CPU than executing it on SQLite (profiled: about a third of an ingest).
# A stored report with this payload digest, and one with this report id of this node,
# in one round trip: each branch is one unique-index lookup (tests/collector asserts
# the plan). The envelope is read only when such a row exists, i.e. for a retry.
def _find_statement() -> CompoundSelect[Any]:
    columns = (db.reports.c.id, db.reports.c.digest, db.reports.c.envelope, db.nodes.c.name)
    joined = db.reports.join(db.nodes, db.nodes.c.id == db.reports.c.node_id)
    return union_all(
        select(literal_column("1").label("same_digest"), *columns).select_from(joined)
        .where(db.reports.c.digest == bindparam("b_digest")),
        select(literal_column("0").label("same_digest"), *columns).select_from(joined)
        .where(db.reports.c.report_uuid == bindparam("b_uuid"),
               db.nodes.c.name == bindparam("b_name")))


_FIND = db.Prepared(_find_statement())
# The node's id and lifecycle state, its row locked for the move, in one statement.
# FOR NO KEY UPDATE, taken before the report row is inserted: that row's foreign key
# takes KEY SHARE on the node row, which FOR UPDATE would wait for, and two ingests
# holding KEY SHARE and both asking FOR UPDATE deadlock (seen in the race test).
# NO KEY UPDATE does not conflict with KEY SHARE and does with itself, so moves are
# still serialized (postgresql.org/docs/current/explicit-locking.html#LOCKING-ROWS).
# last_finished_at is read under that lock too: ingest decides in Python whether this
# report is the node's newest and sets it, with the new state, in one UPDATE.
_NODE_ID = db.Prepared(
    select(db.nodes.c.id, db.nodes.c.state, db.nodes.c.state_changed_at,
           db.nodes.c.last_finished_at)
    .where(db.nodes.c.name == bindparam("b_name")).with_for_update(key_share=True))
_KEY_REVOKED = db.Prepared(
    select(db.keys.c.revoked_at).where(db.keys.c.keyid == bindparam("b_keyid"))
    .with_for_update(read=True))
_INSERT_REPORT = db.Prepared(insert(db.reports).returning(db.reports.c.id))
_INSERT_MEASUREMENTS = db.Prepared(insert(db.measurements))
_INSERT_VERDICTS = db.Prepared(insert(db.verdicts))
_INSERT_TRANSITIONS = db.Prepared(insert(db.node_transitions))
# The columns set are the parameters' keys (the newest report's, the new state's, or
# both): one UPDATE of the node row per report.
_UPDATE_NODE = db.Prepared(update(db.nodes).where(db.nodes.c.id == bindparam("b_node")))
# ON CONFLICT DO NOTHING: two first reports of one node may race on PostgreSQL. The
# inserted row comes back with its defaults, and is this transaction's (locked on
# PostgreSQL until commit) without reading it again; no row back: another
# transaction inserted it, read it with its lock (_NODE_ID).
_NEW_NODE_COLUMNS = (db.nodes.c.id, db.nodes.c.state, db.nodes.c.state_changed_at,
                     db.nodes.c.last_finished_at)
_INSERT_NODE = {
    "postgresql": db.Prepared(
        pg_insert(db.nodes).on_conflict_do_nothing().returning(*_NEW_NODE_COLUMNS)),
    "sqlite": db.Prepared(
        sqlite_insert(db.nodes).on_conflict_do_nothing().returning(*_NEW_NODE_COLUMNS)),
}


def _upsert_result(dialect: str) -> Any:
    """The newest report of a (node, suite, profile): kept when a newer one arrives, not
    replaced by an older one uploaded late (the WHERE of ON CONFLICT DO UPDATE)."""
    maker = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = maker(db.node_results)
    return statement.on_conflict_do_update(
        index_elements=["node_id", "suite", "profile"],
        set_={"report_id": statement.excluded.report_id, "status": statement.excluded.status,
              "finished_at": statement.excluded.finished_at},
        where=db.node_results.c.finished_at <= statement.excluded.finished_at)


_UPSERT_RESULT = {name: db.Prepared(_upsert_result(name)) for name in ("postgresql", "sqlite")}


def _find(conn: Connection, checked: _Checked) -> Stored | None:
    """The stored report this one repeats; None if new; Refused(409) if its report id
    is stored with other content."""
    report_id, node = checked.report.report_id, checked.key.node_name
    rows = _FIND.rows(conn, {"b_digest": checked.digest, "b_uuid": report_id,
                             "b_name": node})
    same = next((r for r in rows if r.same_digest), None)
    if same is not None:
        return Stored(False, same.id, checked.digest, same.name)
    row = next(iter(rows), None)
    if row is None:
        return None
    if _statement_of(bytes(row.envelope)) == canonical_json(checked.statement):
        # Re-serialized (or re-signed) but the same report: the stored one answers.
        return Stored(False, row.id, row.digest, row.name)
    raise Refused(409, "report_conflict", f"report {report_id} of node {node!r:.80} is "
                  f"already stored with other content (payload digest {row.digest}); a "
                  "report id names one report")


def _statement_of(envelope: bytes) -> bytes | None:
    """The canonical JSON of a stored envelope's statement; None if it cannot be read
    strictly (stored before ingest read strictly): then it is not the same."""
    try:
        return canonical_json(envelope_statement(loads_strict(envelope)))
    except (StrictJSONError, SignatureError):
        return None


def _store(conn: Connection, checked: _Checked, body: bytes, policy: Policy) -> Stored:
    report = checked.report
    node_name = checked.key.node_name
    if checked.new_key:
        # Checked again inside the write transaction: another first key of this
        # node may have been enrolled since _check (exact on SQLite, whose writers
        # are serialized by Database.writing()).
        # The same key enrolled meanwhile (another first report of this node
        # signed by it, racing this one) is this node's first key: enroll_in
        # answers it as already enrolled.
        active = enrollment.active_keyid(conn, node_name)
        if active is not None and active != checked.key.keyid:
            raise Refused(403, "node_already_enrolled", f"node {node_name!r} already has "
                          "an enrolled key; auto-enroll only accepts a node's first key")
        enrollment.enroll_in(conn, node_name, checked.key.public)
    else:
        # A revocation that committed after _check must still refuse the report.
        # FOR SHARE (PostgreSQL) makes a concurrent revocation wait for this
        # transaction, or this one read the revoked row; SQLite serializes writers.
        # Only revoked_at is read: the key itself was loaded and used in _check.
        key = _KEY_REVOKED.first(conn, {"b_keyid": checked.key.keyid})
        if key is None or key.revoked_at is not None:
            raise Refused(403, "key_revoked", f"key {checked.key.keyid[:16]} was revoked "
                          "while the report was being verified")
    node = _locked_node(conn, node_name)
    node_id = int(node.id)
    status = report.status.value
    report_id = _INSERT_REPORT.first(conn, {
        "digest": checked.digest, "report_uuid": report.report_id, "node_id": node_id,
        "keyid": checked.key.keyid, "status": status, "suite": report.suite.name,
        "profile": report.profile.name, "agent_version": report.agent_version,
        "interrupted": report.interrupted, "started_at": checked.started_at,
        "finished_at": checked.finished_at, "received_at": db.utcnow(), "envelope": body,
        "gpu_model": checked.gpu_model,
    }).id
    if report.measurements:
        _INSERT_MEASUREMENTS.run(conn, [
            {"report_id": report_id, "check_name": m.check, "metric": m.metric,
             "device": m.device, "value": m.value, "unit": m.unit.value,
             "unstable": m.unstable} for m in report.measurements])
    if report.verdicts:
        _INSERT_VERDICTS.run(conn, [
            {"report_id": report_id, "check_name": v.check, "metric": v.metric,
             "device": v.device, "status": v.status.value, "value": v.value,
             "unit": v.unit.value if v.unit else None, "threshold": v.threshold,
             "source": v.source, "message": v.message, **faults}
            for v, faults in zip(report.verdicts, checked.faults, strict=True)])
    _UPSERT_RESULT[conn.dialect.name].run(conn, {
        "node_id": node_id, "suite": report.suite.name, "profile": report.profile.name,
        "report_id": report_id, "status": status, "finished_at": checked.finished_at})
    edges = lifecycle.report_moves((node.state, node.state_changed_at), report.suite.name,
                                   status, checked.finished_at,
                                   acceptance=policy.acceptance_suites,
                                   burnin=policy.burnin_suites)
    changes: dict[str, Any] = {}
    # The node's newest report is the one that finished last, whatever the order of
    # arrival; the row is locked since _locked_node, so what was read there holds.
    if node.last_finished_at is None or node.last_finished_at <= checked.finished_at:
        changes.update(last_report_id=report_id, last_finished_at=checked.finished_at,
                       last_status=status, gpu_model=checked.gpu_model)
    if edges:
        # state_changed_at is the evidence's time (lifecycle.record's as_of).
        changes.update(state=edges[-1][1].to_state, state_changed_at=checked.finished_at)
        _INSERT_TRANSITIONS.run(conn, lifecycle.transition_rows(node_id, edges, report_id,
                                                              db.utcnow()))
    if changes:
        _UPDATE_NODE.run(conn, {"b_node": node_id, **changes})
    return Stored(True, report_id, checked.digest, node_name)


def _locked_node(conn: Connection, name: str) -> Any:
    """The node's row (id, state, state_changed_at, last_finished_at), locked for this
    transaction on PostgreSQL, inserting the node if new."""
    found = _NODE_ID.first(conn, {"b_name": name})
    if found is None:
        found = _INSERT_NODE[conn.dialect.name].first(
            conn, {"name": name, "first_seen_at": db.utcnow()})
    if found is None:
        found = _NODE_ID.first(conn, {"b_name": name})
        assert found is not None  # inserted by the transaction that won ON CONFLICT
    return found
