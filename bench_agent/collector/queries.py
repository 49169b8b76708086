"""The read side, shared by the JSON API and the dashboard: plain dicts, ready for JSON.

Times are stored as naive UTC and leave here as ISO 8601 strings with a "Z".

A node's status is the worst of the newest report of each suite and profile it
ran, within the validity window (status.py), not that of its newest report: a
quick run that passes after an acceptance run that failed does not make the node
PASS. ``last_status`` stays the newest report's; ``state`` is its lifecycle state
(lifecycle.py).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from bench_agent.collector import db, enrollment, lifecycle, status
from bench_agent.collector.settings import DEFAULT_VALIDITY_S
from bench_agent.core.errors import EnrollmentError, SignatureError, StrictJSONError
from bench_agent.core.model import Status, series_units_of
from bench_agent.report.attest import envelope_report, loads_strict

FAILING = (Status.FAIL.value, Status.ERROR.value)


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat() + "Z"


def age_seconds(value: datetime | None, now: datetime) -> float | None:
    return None if value is None else max(0.0, (now - value).total_seconds())


def failing_verdicts(conn: Connection, report_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """report id -> its FAIL and ERROR verdicts (metric, value, threshold, fault code)."""
    if not report_ids:
        return {}
    v = db.verdicts.c
    rows = conn.execute(
        select(v.report_id, v.check_name, v.metric, v.device, v.status, v.value, v.unit,
               v.threshold, v.fault_code, v.component, v.remediation, v.message)
        .where(v.report_id.in_(report_ids), v.status.in_(FAILING)).order_by(v.id)).all()
    failing: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        failing[r.report_id].append({
            "check": r.check_name, "metric": r.metric, "device": r.device,
            "status": r.status, "value": r.value, "unit": r.unit, "threshold": r.threshold,
            "fault_code": r.fault_code, "component": r.component,
            "remediation": r.remediation, "message": r.message, "report_id": r.report_id})
    return failing


def worst_status(statuses: list[str]) -> str | None:
    """The worst of ``statuses`` (status.RANKS; None: no report yet)."""
    return status.worst(statuses) if statuses else None


def _results(conn: Connection, node_ids: list[int]) -> dict[int, list[Any]]:
    rows = conn.execute(select(db.node_results).where(
        db.node_results.c.node_id.in_(node_ids))).all() if node_ids else []
    by_node: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        by_node[row.node_id].append(row)
    return by_node


def _labels(conn: Connection, node_ids: list[int]) -> dict[int, dict[str, str]]:
    rows = conn.execute(select(db.node_labels).where(
        db.node_labels.c.node_id.in_(node_ids)).order_by(db.node_labels.c.key)).all() \
        if node_ids else []
    labels: dict[int, dict[str, str]] = defaultdict(dict)
    for row in rows:
        labels[row.node_id][row.key] = row.value
    return labels


def node_dicts(conn: Connection, rows: list[Any], now: datetime,
               validity_s: float = DEFAULT_VALIDITY_S) -> list[dict[str, Any]]:
    """The nodes of ``rows`` (nodes table rows) with their status, results and failures."""
    cutoff = now - timedelta(seconds=validity_s)
    ids = [row.id for row in rows]
    results, labels = _results(conn, ids), _labels(conn, ids)
    failing = failing_verdicts(conn, [r.report_id for rs in results.values() for r in rs])
    nodes = []
    for row in rows:
        judged, newest = status.results_of(results.get(row.id, []), cutoff)
        failures = [f for r in newest for f in failing.get(r["report_id"], [])]
        nodes.append({
            "name": row.name,
            "first_seen_at": iso(row.first_seen_at),
            "status": judged if newest else None,
            "stale": any(r["stale"] for r in newest),
            "state": row.state,
            "state_changed_at": iso(row.state_changed_at),
            "gpu_model": row.gpu_model,
            "labels": labels.get(row.id, {}),
            "suites": newest,
            "last_report_id": row.last_report_id,
            "last_finished_at": iso(row.last_finished_at),
            "last_status": row.last_status,
            "age_seconds": age_seconds(row.last_finished_at, now),
            # Of the newest result of each suite and profile: what makes the status.
            "failing_checks": sorted({f["check"] for f in failures}),
            "failing": failures,
        })
    return nodes


# GET /v1/nodes pages: each node costs its results, labels and failures (node_dicts),
# so an unpaged list of 10,000 nodes is one answer of several MB built in one request.
NODES_PAGE = 1000
MAX_NODES_PAGE = 10_000


def list_nodes(conn: Connection, now: datetime,
               validity_s: float = DEFAULT_VALIDITY_S) -> list[dict[str, Any]]:
    """Every node, by name."""
    return nodes_page(conn, now, validity_s)[0]


def nodes_page(conn: Connection, now: datetime, validity_s: float = DEFAULT_VALIDITY_S, *,
               limit: int | None = None, after: str | None = None
               ) -> tuple[list[dict[str, Any]], str | None]:
    """Up to ``limit`` nodes by name (all without one), those after the name ``after``,
    and the name to ask after for the next page (None on the last page).

    Keyset paging on the unique name index, not an offset: a page costs the same at
    any depth, and a node enrolled meanwhile neither shifts nor repeats a later page
    (use-the-index-luke.com/no-offset).
    """
    statement = select(db.nodes).order_by(db.nodes.c.name)
    if after is not None:
        statement = statement.where(db.nodes.c.name > after)
    if limit is not None:
        statement = statement.limit(limit + 1)  # one more: is there a next page?
    rows = list(conn.execute(statement).all())
    following = None
    if limit is not None and len(rows) > limit:
        rows = rows[:limit]
        following = rows[-1].name
    return node_dicts(conn, rows, now, validity_s), following


# reports.id is an INTEGER: PostgreSQL raises on a larger bound parameter, SQLite's
# driver past 2**63. An id from a URL beyond it names no report.
MAX_ID = 2**31 - 1


def valid_name(name: str) -> bool:
    """Whether ``name`` could name a node; a URL or query may carry any text (a NUL,
    which PostgreSQL refuses in a parameter), and such a name names no node."""
    try:
        enrollment.check_node_name(name)
    except EnrollmentError:
        return False
    return True


def get_node(conn: Connection, name: str, now: datetime, limit: int = 100,
             validity_s: float = DEFAULT_VALIDITY_S) -> dict[str, Any] | None:
    if not valid_name(name):
        return None
    row = conn.execute(select(db.nodes).where(db.nodes.c.name == name)).first()
    if row is None:
        return None
    node = node_dicts(conn, [row], now, validity_s)[0]
    node["history"] = lifecycle.history(conn, row.id)
    node["keys"] = [
        {"keyid": k.keyid, "enrolled_at": iso(k.enrolled_at), "revoked_at": iso(k.revoked_at)}
        for k in enrollment.keys_of(conn, name)
    ]
    node["reports"] = list_reports(conn, node=name, limit=limit)
    return node


_REPORT_COLUMNS = (
    db.reports.c.id, db.reports.c.digest, db.reports.c.report_uuid, db.nodes.c.name,
    db.reports.c.keyid, db.reports.c.status, db.reports.c.suite, db.reports.c.profile,
    db.reports.c.agent_version, db.reports.c.interrupted, db.reports.c.started_at,
    db.reports.c.finished_at, db.reports.c.received_at,
)


def _report_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id, "digest": row.digest, "report_id": row.report_uuid, "node": row.name,
        "keyid": row.keyid, "status": row.status, "suite": row.suite, "profile": row.profile,
        "agent_version": row.agent_version, "interrupted": row.interrupted,
        "started_at": iso(row.started_at), "finished_at": iso(row.finished_at),
        "received_at": iso(row.received_at),
    }


def list_reports(conn: Connection, *, node: str | None = None, since: datetime | None = None,
                 status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Newest first (by finish time); ``since`` keeps reports finished at or after it."""
    if node is not None and not valid_name(node):
        return []
    query = (select(*_REPORT_COLUMNS)
             .join(db.nodes, db.nodes.c.id == db.reports.c.node_id)
             .order_by(db.reports.c.finished_at.desc(), db.reports.c.id.desc()).limit(limit))
    if node is not None:
        query = query.where(db.nodes.c.name == node)
    if since is not None:
        query = query.where(db.reports.c.finished_at >= since)
    if status is not None:
        query = query.where(db.reports.c.status == status)
    return [_report_dict(row) for row in conn.execute(query).all()]


def get_report(conn: Connection, report_id: int) -> dict[str, Any] | None:
    if not 0 < report_id <= MAX_ID:
        return None
    row = conn.execute(
        select(*_REPORT_COLUMNS, db.reports.c.envelope)
        .join(db.nodes, db.nodes.c.id == db.reports.c.node_id)
        .where(db.reports.c.id == report_id)
    ).first()
    if row is None:
        return None
    result = _report_dict(row)
    # The envelope exactly as the node sent it, so anyone can re-verify it.
    # Stored only after ingest read it strictly (attest.loads_strict).
    envelope = loads_strict(bytes(row.envelope))
    result["envelope"] = envelope
    result["report"] = envelope_report(envelope)
    return result


@dataclass(slots=True)
class Series:
    """One metric of one device over a node's reports, for a plot."""

    metric: str
    device: str
    unit: str
    points: list[tuple[datetime, float]] = field(default_factory=list)


def node_series(conn: Connection, name: str, *, reports: int = 200, limit: int = 6
                ) -> list[Series]:
    """The node's key metrics: the ``limit`` series measured in the most reports."""
    recent = (select(db.reports.c.id, db.reports.c.finished_at)
              .join(db.nodes, db.nodes.c.id == db.reports.c.node_id)
              .where(db.nodes.c.name == name)
              .order_by(db.reports.c.finished_at.desc()).limit(reports).subquery())
    rows = conn.execute(
        select(db.measurements.c.metric, db.measurements.c.device, db.measurements.c.unit,
               db.measurements.c.value, recent.c.finished_at)
        .join(recent, recent.c.id == db.measurements.c.report_id)
        .order_by(recent.c.finished_at)
    ).all()
    series: dict[tuple[str, str, str], Series] = {}
    for row in rows:
        key = (row.metric, row.device, row.unit)
        if key not in series:
            series[key] = Series(row.metric, row.device, row.unit)
        series[key].points.append((row.finished_at, row.value))
    ranked = sorted(series.values(), key=lambda s: (-len(s.points), s.metric, s.device))
    return ranked[:limit]


def report_verdicts(conn: Connection, report_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(select(db.verdicts).where(db.verdicts.c.report_id == report_id)
                        .order_by(db.verdicts.c.id)).all()
    return [{"check": r.check_name, "metric": r.metric, "device": r.device,
             "status": r.status, "value": r.value, "unit": r.unit, "threshold": r.threshold,
             "source": r.source, "message": r.message, "fault_code": r.fault_code,
             "component": r.component, "remediation": r.remediation,
             "attempts": r.attempts, "flaky": r.flaky} for r in rows]


def nodes_by_status(conn: Connection, now: datetime | None = None,
                    validity_s: float = DEFAULT_VALIDITY_S) -> dict[str, int]:
    """Nodes by their status (status.py) at ``now``; NONE: no report yet."""
    now = now or db.utcnow()
    ranks = status.node_ranks(now - timedelta(seconds=validity_s))
    rows = conn.execute(select(ranks.c.rank, func.count()).group_by(ranks.c.rank)).all()
    counts = {status.RANKS[int(rank)]: int(count) for rank, count in rows}
    total = int(conn.execute(select(func.count()).select_from(db.nodes)).scalar_one())
    none = total - sum(counts.values())
    return counts | ({status.NONE: none} if none else {})


def nodes_by_state(conn: Connection) -> dict[str, int]:
    rows = conn.execute(select(db.nodes.c.state, func.count())
                        .group_by(db.nodes.c.state)).all()
    return {str(state): int(count) for state, count in rows}


def node_last_finished(conn: Connection) -> list[tuple[str, datetime]]:
    rows = conn.execute(select(db.nodes.c.name, db.nodes.c.last_finished_at)
                        .where(db.nodes.c.last_finished_at.is_not(None))
                        .order_by(db.nodes.c.name)).all()
    return [(row.name, row.last_finished_at) for row in rows]


def stored_reports(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(db.reports)).scalar_one())


@dataclass(slots=True)
class BurninSeries:
    """The time series of a node's newest burn-in report (report.series)."""

    report_id: int
    started_at: datetime
    series: dict[str, list[tuple[datetime, float]]]
    # The unit of each series, as the report records it ("" where it has none).
    units: dict[str, str] = field(default_factory=dict)


def latest_burnin_series(conn: Connection, name: str, *, look_back: int = 20
                         ) -> BurninSeries | None:
    """The newest of the node's last ``look_back`` reports that carries a series.

    The series lives only in the signed payload (the envelope as received), so it
    is read from there: the plots show exactly what the node signed.
    """
    rows = conn.execute(
        select(db.reports.c.id, db.reports.c.started_at, db.reports.c.envelope)
        .join(db.nodes, db.nodes.c.id == db.reports.c.node_id)
        .where(db.nodes.c.name == name)
        .order_by(db.reports.c.finished_at.desc()).limit(look_back)
    ).all()
    for row in rows:
        try:
            report = envelope_report(loads_strict(bytes(row.envelope)))
        except (StrictJSONError, SignatureError):
            continue  # stored before ingest read strictly: no plot rather than no page
        raw = report.get("series")
        if not isinstance(raw, dict) or not raw:
            continue
        start = row.started_at
        series = {str(key): [(start + timedelta(seconds=float(t)), float(v))
                             for t, v in points]
                  for key, points in sorted(raw.items()) if isinstance(points, list)}
        try:
            units = series_units_of(report)
        except ValueError:  # a unit this collector does not know: show the values bare
            units = {}
        return BurninSeries(row.id, start, series, units)
    return None


def node_health(conn: Connection, now: datetime, validity_s: float = DEFAULT_VALIDITY_S
                ) -> list[tuple[str, str, str, datetime | None]]:
    """(name, state, status, newest PASS finish time among its current results) per node."""
    ranks = status.node_ranks(now - timedelta(seconds=validity_s))
    r = db.node_results.c
    passed = (select(r.node_id, func.max(r.finished_at).label("at"))
              .where(r.status == "PASS").group_by(r.node_id).subquery())
    rows = conn.execute(
        select(db.nodes.c.name, db.nodes.c.state, ranks.c.rank, passed.c.at)
        .select_from(db.nodes.outerjoin(ranks, ranks.c.node_id == db.nodes.c.id)
                     .outerjoin(passed, passed.c.node_id == db.nodes.c.id))
        .order_by(db.nodes.c.name)).all()
    return [(row.name, row.state, status.NONE if row.rank is None
             else status.RANKS[int(row.rank)], row.at) for row in rows]


def current_measurements(conn: Connection) -> list[Any]:
    """Every measurement of every node's current results: node, suite, metric, device,
    unit, value (for /metrics: Grafana's distributions and trends)."""
    r, m = db.node_results.c, db.measurements.c
    return list(conn.execute(
        select(db.nodes.c.name, r.suite, r.profile, m.metric, m.device, m.unit, m.value)
        .select_from(db.node_results.join(db.measurements, m.report_id == r.report_id)
                     .join(db.nodes, db.nodes.c.id == r.node_id))
        .order_by(db.nodes.c.name, r.suite, r.profile, m.metric, m.device, m.id)).all())
