"""What the node and report pages show beyond the API's node: key metrics per domain with
their threshold lines, fleet outliers, the inventory, a report's measurements.

A metric's domain is the part of its name before the first dot (cpu, memory,
storage, network, gpu, nccl...), as the checks name their metrics (the metric
catalog, `bench-agent list --metrics`). The inventory domain is shown as the
inventory table, not plotted: counts that never change make flat lines.
"""

from __future__ import annotations

import re
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from bench_agent.collector import db
from bench_agent.core.errors import BenchAgentError, SignatureError, StrictJSONError
from bench_agent.core.units import Unit, parse_quantity
from bench_agent.report.attest import envelope_report, loads_strict

NOT_PLOTTED = ("inventory",)
PER_DOMAIN = 4
# A value this many median absolute deviations from the fleet's median is an
# outlier: the modified z-score of Iglewicz and Hoaglin (1993), "How to Detect and
# Handle Outliers", which recommends 3.5 (the 0.6745 makes the MAD comparable to
# a standard deviation for normal data).
OUTLIER_Z = 3.5
MAD_SCALE = 0.6745
# Fewer nodes than this give no meaningful median to stand out from.
MIN_FLEET = 5
_LIMIT = re.compile(r"^(>=|<=|>|<|exactly)\s+(.+)$")
_BETWEEN = re.compile(r"^between\s+(.+?)\s+and\s+(.+)$")


def limits_of(threshold: str, unit: str) -> list[float]:
    """The numbers of a threshold's text (">= 1 TFLOP/s", "between 1 and 2 GB/s") in the
    metric's unit; [] for a rule relative to the run ("of the first 2 min") or unreadable."""
    text = threshold.split(" for at least ", 1)[0].strip()
    if " of the first " in text:
        return []
    try:
        expected = Unit(unit)
    except ValueError:
        return []
    between = _BETWEEN.match(text)
    parts = [between.group(1), between.group(2)] if between else []
    if not parts and (match := _LIMIT.match(text)):
        parts = [match.group(2)]
    try:
        return [parse_quantity(p, expected).value for p in parts]
    except (BenchAgentError, ValueError):
        return []


@dataclass(slots=True)
class KeySeries:
    domain: str
    metric: str
    device: str
    unit: str
    points: list[tuple[datetime, float]] = field(default_factory=list)
    limits: list[float] = field(default_factory=list)
    threshold: str = ""


def key_series(conn: Connection, node_id: int, *, reports: int = 200,
               per_domain: int = PER_DOMAIN) -> list[KeySeries]:
    """Per domain, the ``per_domain`` series measured in most of the node's newest
    ``reports`` reports, with the threshold of the newest verdict on each."""
    r, m, v = db.reports.c, db.measurements.c, db.verdicts.c
    recent = (select(r.id, r.finished_at).where(r.node_id == node_id)
              .order_by(r.finished_at.desc()).limit(reports).subquery())
    rows = conn.execute(select(m.metric, m.device, m.unit, m.value, recent.c.finished_at)
                        .join(recent, recent.c.id == m.report_id)
                        .order_by(recent.c.finished_at)).all()
    series: dict[tuple[str, str, str], KeySeries] = {}
    for row in rows:
        domain = row.metric.split(".", 1)[0]
        if domain in NOT_PLOTTED:
            continue
        key = (row.metric, row.device, row.unit)
        if key not in series:
            series[key] = KeySeries(domain, row.metric, row.device, row.unit)
        series[key].points.append((row.finished_at, row.value))
    thresholds = conn.execute(
        select(v.metric, v.device, v.threshold).join(recent, recent.c.id == v.report_id)
        .where(v.threshold != "").order_by(recent.c.finished_at)).all()
    for t in thresholds:  # oldest first: the newest threshold of each wins
        for key, s in series.items():
            if key[0] == t.metric and key[1] == t.device:
                s.threshold, s.limits = t.threshold, limits_of(t.threshold, s.unit)
    by_domain: dict[str, list[KeySeries]] = defaultdict(list)
    for s in series.values():
        by_domain[s.domain].append(s)
    chosen = []
    for domain in sorted(by_domain):
        ranked = sorted(by_domain[domain], key=lambda s: (-len(s.points), s.metric, s.device))
        chosen += ranked[:per_domain]
    return chosen


def outliers(conn: Connection, node_id: int, metrics: list[tuple[str, str]]
             ) -> list[dict[str, Any]]:
    """The node's current values of ``metrics`` (metric, device) far from the fleet's.

    Compared over every node's newest results (node_results): the median of the
    fleet and the modified z-score of this node's value (OUTLIER_Z).
    """
    res, m = db.node_results.c, db.measurements.c
    found = []
    for metric, device in metrics:
        rows = conn.execute(select(res.node_id, res.suite, m.value, m.unit)
                            .join(db.measurements, m.report_id == res.report_id)
                            .where(m.metric == metric, m.device == device)).all()
        # Every current result of every node is a sample of the fleet: a node's
        # acceptance, burn-in and quick runs each measure it.
        fleet = [row.value for row in rows]
        mine = [(row.value, row.suite, row.unit) for row in rows if row.node_id == node_id]
        nodes = len({row.node_id for row in rows})
        if not mine or nodes < MIN_FLEET:
            continue
        median = statistics.median(fleet)
        mad = statistics.median(abs(x - median) for x in fleet)
        if mad == 0:
            continue
        value, suite, unit = max(mine, key=lambda v: abs(v[0] - median))
        z = MAD_SCALE * (value - median) / mad
        if abs(z) >= OUTLIER_Z:
            found.append({"metric": metric, "device": device, "value": value, "unit": unit,
                          "suite": suite, "median": median, "z": z, "fleet": nodes})
    return found


def signed_report(conn: Connection, report_id: int) -> dict[str, Any] | None:
    """The report as signed (the payload's predicate), None if unreadable."""
    envelope = conn.execute(select(db.reports.c.envelope)
                            .where(db.reports.c.id == report_id)).scalar()
    if envelope is None:
        return None
    try:
        return envelope_report(loads_strict(bytes(envelope)))
    except (StrictJSONError, SignatureError):
        return None


def envelope_bytes(conn: Connection, report_id: int) -> tuple[bytes, str] | None:
    """The envelope exactly as received, and its node's name."""
    row = conn.execute(select(db.reports.c.envelope, db.nodes.c.name)
                       .join(db.nodes, db.nodes.c.id == db.reports.c.node_id)
                       .where(db.reports.c.id == report_id)).first()
    return None if row is None else (bytes(row.envelope), row.name)


def inventory_sections(inventory: Any) -> list[tuple[str, list[dict[str, str]]]]:
    """The inventory as (section, rows of name -> text) for tables; scalars as one row."""
    if not isinstance(inventory, dict):
        return []
    sections: list[tuple[str, list[dict[str, str]]]] = []
    for name, value in inventory.items():
        if isinstance(value, list):
            rows = [{k: _cell(x) for k, x in item.items()} for item in value
                    if isinstance(item, dict)]
            if rows:
                sections.append((name, rows))
        elif isinstance(value, dict):
            sections.append((name, [{k: _cell(x) for k, x in value.items()}]))
        elif value is not None:
            sections.append((name, [{name: _cell(value)}]))
    return sections


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items())
    return "" if value is None else str(value)
