"""GET /metrics in the Prometheus text exposition format, written by hand.

prometheus_client would bring a global registry for five series; the format is
small (prometheus.io/docs/instrumenting/exposition_formats/). Counters of
accepted and refused posts live in this process (they restart at zero, which
rate() handles); fleet gauges are read from the database at scrape time.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime

from sqlalchemy import Connection

from bench_agent.collector import queries
from bench_agent.collector.lifecycle import STATES
from bench_agent.collector.settings import DEFAULT_VALIDITY_S
from bench_agent.collector.status import STATUSES

PREFIX = "bench_agent_collector"


# The refusal reasons of ingest.py and api.py, written at 0 from the start: a counter
# that appears only at its first refusal has no increase() at that refusal, so an
# alert on it would miss the first burst ("Avoid missing metrics",
# prometheus.io/docs/practices/instrumentation/#avoid-missing-metrics).
KNOWN_REFUSALS = (
    "malformed_json", "not_envelope", "malformed_envelope", "unknown_key", "key_revoked",
    "bad_signature", "invalid_report", "subject_mismatch", "node_already_enrolled",
    "report_conflict", "body_timeout", "body_too_large", "overloaded", "database_unavailable",
)


class Counters:
    """Thread-safe: ingest runs in uvicorn's thread pool."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._accepted: Counter[str] = Counter()  # "created" / "duplicate"
        self._refused: Counter[str] = Counter({reason: 0 for reason in KNOWN_REFUSALS})

    def accepted(self, outcome: str) -> None:
        with self._lock:
            self._accepted[outcome] += 1

    def refused(self, reason: str) -> None:
        with self._lock:
            self._refused[reason] += 1

    def snapshot(self) -> tuple[dict[str, int], dict[str, int]]:
        with self._lock:
            return dict(self._accepted), dict(self._refused)


def escape_label(value: str) -> str:
    """Label values escape backslash, double quote and line feed, nothing else."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(conn: Connection, counters: Counters, now: datetime,
           validity_s: float = DEFAULT_VALIDITY_S) -> str:
    accepted, refused = counters.snapshot()
    by_status = queries.nodes_by_status(conn, now, validity_s)
    by_state = queries.nodes_by_state(conn)
    lines = [
        f"# HELP {PREFIX}_nodes Nodes by their status: the worst newest result of each "
        "suite and profile within the validity window (STALE: passed, but too long ago).",
        f"# TYPE {PREFIX}_nodes gauge",
    ]
    # Every status is written, zeros included, so alerts on a series never see it vanish.
    for name in STATUSES:
        lines.append(f'{PREFIX}_nodes{{verdict="{name}"}} {by_status.get(name, 0)}')
    lines += [
        f"# HELP {PREFIX}_nodes_by_state Nodes by lifecycle state.",
        f"# TYPE {PREFIX}_nodes_by_state gauge",
    ]
    for state in STATES:
        lines.append(f'{PREFIX}_nodes_by_state{{state="{state}"}} {by_state.get(state, 0)}')
    lines += [
        f"# HELP {PREFIX}_reports_accepted_total Reports accepted by this process "
        "(created: stored now; duplicate: already stored).",
        f"# TYPE {PREFIX}_reports_accepted_total counter",
    ]
    for outcome in ("created", "duplicate"):
        lines.append(f'{PREFIX}_reports_accepted_total{{outcome="{outcome}"}} '
                     f"{accepted.get(outcome, 0)}")
    lines += [
        f"# HELP {PREFIX}_reports_refused_total Reports refused by this process, by reason.",
        f"# TYPE {PREFIX}_reports_refused_total counter",
    ]
    for reason in sorted(refused):
        lines.append(f'{PREFIX}_reports_refused_total{{reason="{escape_label(reason)}"}} '
                     f"{refused[reason]}")
    lines += [
        f"# HELP {PREFIX}_reports_stored Reports in the database.",
        f"# TYPE {PREFIX}_reports_stored gauge",
        f"{PREFIX}_reports_stored {queries.stored_reports(conn)}",
        f"# HELP {PREFIX}_node_last_report_age_seconds Seconds since each node's newest "
        "report finished.",
        f"# TYPE {PREFIX}_node_last_report_age_seconds gauge",
    ]
    for name, finished in queries.node_last_finished(conn):
        age = queries.age_seconds(finished, now) or 0.0
        lines.append(f'{PREFIX}_node_last_report_age_seconds{{node="{escape_label(name)}"}} '
                     f"{age:.3f}")
    health = queries.node_health(conn, now, validity_s)
    lines += [
        f"# HELP {PREFIX}_node_failing 1 when the node's status is FAIL or ERROR.",
        f"# TYPE {PREFIX}_node_failing gauge",
    ]
    for name, state, judged, _ in health:
        lines.append(f'{PREFIX}_node_failing{{node="{escape_label(name)}",state="{state}",'
                     f'status="{judged}"}} {1 if judged in ("FAIL", "ERROR") else 0}')
    lines += [
        f"# HELP {PREFIX}_node_last_pass_age_seconds Seconds since the newest PASS among "
        "the node's current results finished (absent: no PASS).",
        f"# TYPE {PREFIX}_node_last_pass_age_seconds gauge",
    ]
    for name, _, _, passed in health:
        if passed is not None:
            lines.append(f'{PREFIX}_node_last_pass_age_seconds{{node="{escape_label(name)}"}} '
                         f"{queries.age_seconds(passed, now) or 0.0:.3f}")
    lines += [
        f"# HELP {PREFIX}_measurement The value of each measurement of each node's newest "
        "result per suite (in the unit label, canonical).",
        f"# TYPE {PREFIX}_measurement gauge",
    ]
    seen: set[tuple[str, ...]] = set()
    for row in queries.current_measurements(conn):
        labels = (row.name, row.suite, row.profile, row.metric, row.device, row.unit)
        if labels in seen:  # one sample per series: the first of a repeated measurement
            continue
        seen.add(labels)
        lines.append(f'{PREFIX}_measurement{{node="{escape_label(row.name)}",'
                     f'suite="{escape_label(row.suite)}",profile="{escape_label(row.profile)}",'
                     f'metric="{escape_label(row.metric)}",'
                     f'device="{escape_label(row.device)}",unit="{escape_label(row.unit)}"}} '
                     f"{row.value!r}")
    return "\n".join(lines) + "\n"
