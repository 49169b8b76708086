"""A burn-in's series records -> its report, with no verdict of its own making.

The readings become Series (core/thresholds.py), one per metric and device, in
their units; a load's end becomes the series ``burnin.load_crashed`` and
``burnin.load_stuck`` (1 when it happened, at its time; 0 at the end otherwise);
an event lends its words to the series it explains (health.EXPLAINS). The
thresholds the run carried judge them (thresholds.evaluate_series). What is not a
rule's business, a load that could not run or reported nothing, a run that was
interrupted, killed or cut short, is a CheckOutcome that the runner turns into its
verdict (runner.outcome_verdict), as it does for a check.

Live runs and series read again (a killed run, an old file) go through here alike.
"""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from bench_agent import __version__
from bench_agent.burnin.health import (
    EXPLAINS,
    GAUGES,
    Event,
    EventKind,
    Reading,
    failing_xids,
)
from bench_agent.burnin.loads import burnin_catalog, load_registry
from bench_agent.core.inventory import Inventory
from bench_agent.core.metrics import MetricInfo
from bench_agent.core.model import Measurement, NamedDigest, Report, Status, Verdict
from bench_agent.core.thresholds import Series, Threshold, evaluate_series
from bench_agent.core.units import Unit
from bench_agent.faults.assign import assign_faults
from bench_agent.run.runner import CheckOutcome, outcome_verdict

# Why a health rule had nothing to judge, by the metric's family.
_NOT_SAMPLED = {"burnin.gpu_": "no GPU was sampled on this node (no NVML, driver or GPU)",
                "burnin.nvme_": "no NVMe drive was sampled (none, or nvme-cli is missing)",
                "burnin.cpu_": "this node did not report it (no sensor, no cpufreq)"}


def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _collect(records: list[dict[str, Any]]) -> tuple[
        dict[tuple[str, str], list[tuple[float, float]]], dict[tuple[str, str], Unit],
        list[Event], dict[str, Any] | None, float]:
    points: dict[tuple[str, str], list[tuple[float, float]]] = {}
    units: dict[tuple[str, str], Unit] = {}
    events: list[Event] = []
    end = None
    last = 0.0
    for record in records[1:]:
        kind = record.get("type")
        if kind == "sample":
            elapsed = float(record["elapsed"])
            last = max(last, elapsed)
            for raw in record.get("readings") or []:
                if raw.get("value") is None:
                    continue  # NaN or an infinity when it was written: no reading
                reading = Reading.from_dict(raw)
                key = (reading.metric, reading.device)
                if units.setdefault(key, reading.unit) is not reading.unit:
                    raise ValueError(f"{reading.metric} {reading.device}: the unit changes"
                                     f" from {units[key].value} to {reading.unit.value}")
                points.setdefault(key, []).append((elapsed, reading.value))
        elif kind == "event":
            event = Event.from_dict(record)
            events.append(event)
            last = max(last, event.elapsed)
        elif kind == "end":
            end = record
    return points, units, events, end, last


def _described(threshold: Threshold, catalog: Mapping[str, MetricInfo]) -> Threshold:
    info = catalog.get(threshold.metric)
    if info is None:
        return threshold
    return replace(threshold, checks=info.checks, meaning=info.meaning)


def judge(records: list[dict[str, Any]]) -> Report:
    """The report of a burn-in from its (format 2) records; raises KeyError,
    TypeError or ValueError on a damaged record."""
    start = records[0]
    catalog = burnin_catalog()
    registry = load_registry()
    # The series keeps each rule's data; the checks and meaning of its metric come
    # from today's catalog, as a profile's do when it is loaded.
    thresholds = [_described(Threshold.from_dict(t), catalog)
                  for t in start.get("thresholds") or []]
    loads: dict[str, Any] = start.get("loads") or {}
    started = _timestamp(start["started_at"])
    points, units, events, end, last = _collect(records)

    def first(kind: EventKind) -> dict[str, Event]:
        found: dict[str, Event] = {}
        for event in events:
            if event.kind is kind:
                found.setdefault(event.device, event)
        return found

    skipped, crashed, stuck = (first(EventKind.LOAD_NOT_APPLICABLE),
                               first(EventKind.LOAD_CRASHED), first(EventKind.LOAD_STUCK))
    for name in loads:
        if name in skipped:
            continue
        for metric, ended in (("burnin.load_crashed", crashed), ("burnin.load_stuck", stuck)):
            points[(metric, name)] = [(ended[name].elapsed, 1.0) if name in ended
                                      else (last, 0.0)]
            units[(metric, name)] = Unit.COUNT
    notes: dict[tuple[str, str], list[str]] = {}
    failing = failing_xids()
    for event in events:
        if event.kind is EventKind.XID and (event.value is None or int(event.value)
                                            not in failing):
            continue  # an XID that fails nothing explains no failure
        for metric in EXPLAINS.get(event.kind, ()):
            notes.setdefault((metric, event.device), []).append(
                f"{event.detail} (+{event.elapsed:.0f} s)")
    series = [Series(catalog[metric].check if metric in catalog else "burnin", metric,
                     units[(metric, device)], tuple(values), device,
                     "; ".join(notes.get((metric, device), [])[:3]))
              for (metric, device), values in sorted(points.items())]

    unmeasured: dict[str, str] = {}
    outcomes: list[CheckOutcome] = []
    for name, load in registry.items():
        rate = load.variant.rate.name
        if name in skipped:
            unmeasured[rate] = f"not run: {skipped[name].detail}"
        elif name not in loads:
            unmeasured[rate] = f"the load {name} is not enabled in this burn-in"
        elif (rate, "") not in points:
            unmeasured[rate] = f"{name} reported no throughput"
            if name not in crashed and name not in stuck:
                outcomes.append(CheckOutcome("burnin.loads", status=Status.ERROR,
                                             message=f"{name} reported no throughput"))
    for metric in catalog:
        for prefix, why in _NOT_SAMPLED.items():
            if metric.startswith(prefix):
                unmeasured.setdefault(metric, why)
    if not loads:
        outcomes.append(CheckOutcome("burnin.loads", status=Status.ERROR,
                                     message="no load is enabled: nothing was under load"))
    elif all(name in skipped for name in loads):
        # Nothing was under load: the run burned nothing in, whatever else held.
        outcomes.append(CheckOutcome("burnin.loads", status=Status.ERROR, message=(
            "no load could run on this node: " + "; ".join(
                f"{name}: {skipped[name].detail}" for name in loads))))
    finished = _timestamp(end["finished_at"]) if end else started + last
    ran = finished - started
    aborted = str(end.get("aborted") or "") if end else ""
    interrupted = bool(end and end.get("interrupted"))
    if aborted:
        outcomes.append(CheckOutcome("burnin", status=Status.ERROR, message=(
            f"the burn-in stopped early after {ran:.0f} s: {aborted}")))
    if end is None:
        outcomes.append(CheckOutcome("burnin", status=Status.ERROR, message=(
            f"the run was killed: no end record; the series stops at +{ran:.0f} s")))
    elif interrupted:
        outcomes.append(CheckOutcome("burnin", status=Status.ERROR, message=(
            f"interrupted after {ran:.0f} s (SIGINT or SIGTERM)")))

    profile = start.get("profile") or {}
    verdicts: list[Verdict] = evaluate_series(series, thresholds,
                                              unmeasured=unmeasured,
                                              profile=str(profile.get("name", "")))
    verdicts += [outcome_verdict(outcome) for outcome in outcomes]
    inventory = Inventory.from_dict(start.get("inventory") or {})
    measurements = [_measurement(s) for s in series]
    # The fault catalog's code, component and remediation (docs/faults.md).
    verdicts = assign_faults(verdicts, measurements, inventory)
    suite = start.get("suite") or {"name": "burnin", "sha256": "0" * 64, "path": ""}
    plotted = [s for s in series if s.metric in GAUGES or (s.check == "burnin.loads"
               and s.metric not in ("burnin.load_crashed", "burnin.load_stuck"))]
    return Report(
        report_id=str(uuid.uuid4()), agent_version=__version__, host=str(start["host"]),
        inventory=inventory, suite=NamedDigest(**suite),
        profile=NamedDigest(str(profile.get("name", "burnin-thresholds")),
                            str(profile.get("sha256", suite["sha256"])),
                            str(profile.get("path", suite.get("path", "")))),
        started_at=utc(started), finished_at=utc(finished),
        measurements=measurements, verdicts=verdicts,
        interrupted=interrupted or end is None or bool(aborted),
        series={_name(s): [[round(t, 3), v] for t, v in s.points] for s in plotted},
        series_units={_name(s): s.unit.value for s in plotted},
    )


def _name(series: Series) -> str:
    return f"{series.metric}[{series.device}]" if series.device else series.metric


def _measurement(series: Series) -> Measurement:
    """What the series amounts to: a load's rate at the end (median of its last three
    readings, one noisy interval is not the end level), else its highest value."""
    values = [v for _, v in series.points]
    rate = series.check == "burnin.loads" and series.unit is not Unit.COUNT
    value = statistics.median(values[-3:]) if rate else max(values)
    return Measurement(series.check, series.metric, value, series.unit, device=series.device,
                       tool="bench-agent burnin",
                       stats={"min": min(values), "max": max(values), "n": len(values),
                              "first_s": series.points[0][0], "last_s": series.points[-1][0]})
