"""Rows as the collector stored them before migration 0004 (schema 0001 to 0003).

Written with plain statements naming only the columns those revisions had, so a
test can build the database an existing collector holds today, with data, and
migrate it: the current ingest writes columns (lifecycle, fault codes) that the old
schema lacks.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime

import sqlalchemy as sa

from bench_agent.report.attest import NodeKey

# Typed where the type changes what is bound or read (times, bytes, booleans).
_TYPES: dict[str, sa.types.TypeEngine[object]] = {
    name: sa.DateTime() for name in ("enrolled_at", "revoked_at", "first_seen_at",
                                     "last_finished_at", "started_at", "finished_at",
                                     "received_at")} | {
    "public_raw": sa.LargeBinary(), "envelope": sa.LargeBinary(),
    "interrupted": sa.Boolean(), "unstable": sa.Boolean()}


def _table(name: str, *columns: str) -> sa.TableClause:
    return sa.table(name, *(sa.column(c, _TYPES.get(c)) for c in columns))


_keys = _table("keys", "keyid", "node_name", "public_raw", "enrolled_at", "revoked_at")
_nodes = _table("nodes", "id", "name", "first_seen_at", "last_report_id", "last_finished_at",
                "last_status")
_reports = _table("reports", "id", "digest", "report_uuid", "node_id", "keyid", "status",
                  "suite", "profile", "agent_version", "interrupted", "started_at",
                  "finished_at", "received_at", "envelope")
_measurements = _table("measurements", "report_id", "check_name", "metric", "device", "value",
                       "unit", "unstable")
_verdicts = _table("verdicts", "report_id", "check_name", "metric", "device", "status",
                   "value", "unit", "threshold", "source", "message")


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC).replace(tzinfo=None)


def store_old(conn: sa.Connection, body: bytes, key: NodeKey) -> int:
    """Store one signed envelope as revisions 0001-0003 did; the report row's id."""
    envelope = json.loads(body)
    payload = base64.b64decode(envelope["payload"])
    report = json.loads(payload)["predicate"]
    node = report["host"]
    now = datetime.now(UTC).replace(tzinfo=None)
    if conn.execute(sa.select(_keys.c.keyid).where(_keys.c.keyid == key.public.keyid)
                    ).first() is None:
        conn.execute(sa.insert(_keys).values(keyid=key.public.keyid, node_name=node,
                                             public_raw=key.public.raw, enrolled_at=now))
    node_id = conn.execute(sa.select(_nodes.c.id).where(_nodes.c.name == node)).scalar()
    if node_id is None:
        node_id = conn.execute(sa.insert(_nodes).values(name=node, first_seen_at=now)
                               .returning(_nodes.c.id)).scalar_one()
    finished = _time(report["finished_at"])
    report_id: int = conn.execute(sa.insert(_reports).values(
        digest=hashlib.sha256(payload).hexdigest(), report_uuid=report["report_id"],
        node_id=node_id, keyid=key.public.keyid, status=report["status"],
        suite=report["suite"]["name"], profile=report["profile"]["name"],
        agent_version=report["agent_version"], interrupted=report["interrupted"],
        started_at=_time(report["started_at"]), finished_at=finished, received_at=now,
        envelope=body).returning(_reports.c.id)).scalar_one()
    for m in report["measurements"]:
        conn.execute(sa.insert(_measurements).values(
            report_id=report_id, check_name=m["check"], metric=m["metric"],
            device=m.get("device", ""), value=m["value"], unit=m["unit"],
            unstable=m.get("unstable", False)))
    for v in report["verdicts"]:
        conn.execute(sa.insert(_verdicts).values(
            report_id=report_id, check_name=v["check"], metric=v.get("metric", ""),
            device=v.get("device", ""), status=v["status"], value=v.get("value"),
            unit=v.get("unit"), threshold=v.get("threshold", ""),
            source=v.get("source", ""), message=v.get("message", "")))
    last = conn.execute(sa.select(_nodes.c.last_finished_at).where(_nodes.c.id == node_id)
                        ).scalar()
    if last is None or last <= finished:
        conn.execute(sa.update(_nodes).where(_nodes.c.id == node_id).values(
            last_report_id=report_id, last_finished_at=finished,
            last_status=report["status"]))
    return report_id
