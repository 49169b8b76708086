"""The repair bundle: one tar.gz about a failing node, to attach to a vendor's ticket.

    <node>-repair/
      README.txt                 what is inside and how to verify it
      summary.json               node, state and its history, status, the failing
                                 verdicts with fault codes, components, remediation
      inventory.json             the newest report's inventory (serials, UUIDs, MACs)
      verdicts.json              every verdict of the bundled reports, by report
      reports/<id>.envelope.json each signed report exactly as received (DSSE)
      burnin/<id>.series.json    the time series of each burn-in report
      keys/<keyid>.pub.pem       the node's public keys, to verify the envelopes

The bundled reports are the node's current results (newest per suite and profile)
and its newest MAX_REPORTS reports otherwise: enough for a vendor to see the
failure, what preceded it and the burn-in around it, and a bounded download.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import time
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from bench_agent.collector import db, enrollment, queries
from bench_agent.core.errors import SignatureError, StrictJSONError
from bench_agent.report.attest import envelope_report, loads_strict

MAX_REPORTS = 50

README = """Repair bundle of node {node}, made {made} UTC by the bench-agent collector.

reports/*.envelope.json are the node's signed reports exactly as the collector
received them (in-toto Statements in DSSE envelopes, Ed25519). Verify one with
    bench-agent verify reports/ID.envelope.json --pubkey keys/KEYID.pub.pem
summary.json lists the failing verdicts with their fault codes; inventory.json
holds the serial numbers and UUIDs of the node's parts.
"""


def filename(name: str) -> str:
    """A safe file name for ``name``'s bundle (names may hold any printable text)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:100] + "-repair.tar.gz"


def _add(tar: tarfile.TarFile, path: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(path)
    info.size, info.mtime, info.mode = len(data), int(mtime), 0o644
    tar.addfile(info, io.BytesIO(data))


def _json(value: Any) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).encode() + b"\n"


def build(conn: Connection, name: str, now: datetime, validity_s: float) -> bytes | None:
    """The bundle's bytes, None when there is no such node."""
    node = queries.get_node(conn, name, now, limit=MAX_REPORTS, validity_s=validity_s)
    if node is None:
        return None
    wanted = {r["report_id"] for r in node["suites"]} | {r["id"] for r in node["reports"]}
    rows = conn.execute(select(db.reports.c.id, db.reports.c.envelope)
                        .where(db.reports.c.id.in_(wanted)).order_by(db.reports.c.id)).all()
    root = filename(name).removesuffix(".tar.gz")
    made = time.time()
    buffer = io.BytesIO()
    verdicts: dict[str, Any] = {}
    inventory: Any = None
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for row in rows:
            envelope = bytes(row.envelope)
            _add(tar, f"{root}/reports/{row.id}.envelope.json", envelope, made)
            verdicts[str(row.id)] = queries.report_verdicts(conn, row.id)
            try:
                report = envelope_report(loads_strict(envelope))
            except (StrictJSONError, SignatureError):
                continue
            if row.id == node["last_report_id"]:
                inventory = report.get("inventory")
            if report.get("series"):
                _add(tar, f"{root}/burnin/{row.id}.series.json", _json({
                    "report": row.id, "started_at": report.get("started_at"),
                    "series": report["series"], "series_units": report.get("series_units",
                                                                           {})}), made)
        for key in enrollment.keys_of(conn, name):
            _add(tar, f"{root}/keys/{key.keyid}.pub.pem", key.public.pem().encode(), made)
        summary = {k: node[k] for k in ("name", "state", "state_changed_at", "status",
                                        "stale", "gpu_model", "labels", "suites",
                                        "failing", "history", "last_report_id")}
        summary["made_at"] = now.isoformat() + "Z"
        _add(tar, f"{root}/summary.json", _json(summary), made)
        _add(tar, f"{root}/inventory.json", _json(inventory), made)
        _add(tar, f"{root}/verdicts.json", _json(verdicts), made)
        _add(tar, f"{root}/README.txt", README.format(
            node=name, made=now.strftime("%Y-%m-%d %H:%M")).encode(), made)
    return buffer.getvalue()
