"""The burn-in series file: JSON lines, fsynced one by one, and its reader.

Format version 2 (``series_version`` in the start record):

    {"type": "start", "series_version": 2, "host", "started_at", "inventory",
     "duration", "interval", "suite": {name, sha256, path}, "profile": {...},
     "loads": {LOAD: {"check": CHECK, "params": {...}}}, "thresholds": [rule, ...]}
    {"type": "sample", "t": UNIX TIME, "elapsed": S,
     "readings": [{"metric", "device", "value", "unit"}, ...]}
    {"type": "event", "kind": EventKind, "elapsed": S, "device", "value", "detail"}
    {"type": "end", "finished_at", "interrupted", "aborted", "status"}

Version 1 (no ``series_version``, bench-agent before readings had units) kept the
samplers' raw dictionaries, the load throughputs by load name, "limits" instead of
thresholds, and events that were verdicts with a message. ``upgrade`` turns such a
file into version 2 records with the same HealthReader the live run uses, so an
old run is judged by today's code: its load-crash events are told from the others
by their fields (a "burnin.loads" event without a value), never by their words;
every other old event is recomputed from the samples it came from.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

from bench_agent.burnin.health import Event, EventKind, HealthReader, Reading
from bench_agent.core.errors import ReportError, StrictJSONError
from bench_agent.core.model import finite_or_none
from bench_agent.core.thresholds import Comparator, Severity, Threshold
from bench_agent.core.units import Unit
from bench_agent.report.attest import loads_strict

SERIES_VERSION = 2


class SeriesWriter:
    """Appends JSON lines, flushed and fsynced each one (the durability promise)."""

    def __init__(self, path: Path):
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._handle: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:  # before any load starts: say so, exit 5, nothing lost
            raise ReportError(f"cannot write the burn-in series {path}: "
                              f"{exc.strerror or exc}") from exc

    def write(self, record: dict[str, Any]) -> None:
        # A reading that is NaN or infinite is written as null (not known): a NaN
        # in the file would make every later line unreadable to read_series.
        try:
            self._handle.write(json.dumps(finite_or_none(record), allow_nan=False) + "\n")
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as exc:  # a full disk: the run stops and judges what it has
            raise ReportError(f"cannot append to the burn-in series {self.path}: "
                              f"{exc.strerror or exc}") from exc

    def close(self) -> None:
        self._handle.close()


def read_series(path: Path) -> list[dict[str, Any]]:
    """Every line, read strictly (attest.loads_strict, as a report is); a last line
    cut by a crash is ignored. Any other line that is not a JSON object is a
    ReportError naming it: SeriesWriter writes whole, fsynced lines, so a damaged
    line before the last is not a crash's doing, and skipping it would hide it."""
    records = []
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise ReportError(f"{path}: cannot read: {exc.strerror}") from exc
    for number, line in enumerate(lines, start=1):
        try:
            record = loads_strict(line)
        except StrictJSONError as exc:
            if number == len(lines):
                continue  # cut short by a crash mid-write
            raise ReportError(f"{path}: line {number} is not a readable record: {exc}"
                              ) from exc
        if not isinstance(record, dict):
            raise ReportError(f"{path}: line {number} is not a JSON object")
        records.append(record)
    if not records or records[0].get("type") != "start":
        raise ReportError(f"{path}: not a bench-agent burn-in series")
    return records


def upgrade(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records in format version 2 (see the module docstring); ValueError for a
    version newer than this agent reads."""
    version = records[0].get("series_version", 1)
    if version == SERIES_VERSION:
        return records
    if version != 1:
        raise ValueError(f"series format {version!r} is not one this agent reads"
                         f" (1 or {SERIES_VERSION}); upgrade bench-agent")
    from bench_agent.burnin.loads import load_registry

    registry = load_registry()
    start = dict(records[0])
    old_loads: dict[str, Any] = start.pop("loads", {}) or {}
    start["series_version"] = SERIES_VERSION
    start["loads"] = {name: {"check": registry[name].check if name in registry else "",
                             "params": params} for name, params in old_loads.items()}
    start["thresholds"] = [t.to_dict() for t in legacy_thresholds(
        start.pop("limits", {}) or {}, list(old_loads), float(start.get("interval", 10.0)))]
    start.setdefault("profile", {"name": "burnin-limits",
                                 **{k: v for k, v in (start.get("suite") or {}).items()
                                    if k in ("sha256", "path")}})
    reader = HealthReader()
    out = [start]
    for record in records[1:]:
        kind = record.get("type")
        if kind == "sample":
            elapsed = float(record["elapsed"])
            readings, events = reader.feed(record, elapsed)
            for name, value in (record.get("loads") or {}).items():
                if name in registry and value is not None:
                    rate = registry[name].variant.rate
                    readings.append(Reading(rate.name, float(value), rate.unit))
            out.append({"type": "sample", "t": record.get("t"), "elapsed": elapsed,
                        "readings": [r.to_dict() for r in readings]})
            out += [e.to_dict() for e in events]
        elif kind == "event" and record.get("check") == "burnin.loads" \
                and record.get("value") is None:
            out.append(Event(EventKind.LOAD_CRASHED, float(record["elapsed"]),
                             str(record["metric"]).removeprefix("burnin."),
                             detail=str(record.get("message", ""))).to_dict())
        elif kind == "skip":
            out.append(Event(EventKind.LOAD_NOT_APPLICABLE, 0.0, str(record["load"]),
                             detail=str(record.get("message", ""))).to_dict())
        elif kind == "end":
            out.append(record)
    return out


def legacy_thresholds(limits: dict[str, Any], loads: list[str],
                      interval: float) -> list[Threshold]:
    """The rules a version 1 series was judged by, from its "limits" (defaults of
    that engine where absent). Its throughput rule compared the median of the last
    three samples: a drop for two intervals, here ``for_at_least``."""
    from bench_agent.burnin.loads import load_registry

    registry = load_registry()
    source = "burn-in limits of the series (a version 1 series file)"

    def rule(name: str, metric: str, unit: Unit, value: float, **extra: Any) -> Threshold:
        comparator = extra.pop("comparator", Comparator.LE)
        return Threshold(f"burnin-{name}", metric, comparator, value, unit, source, **extra)

    drop = float(limits.get("throughput_drop", 0.10))
    rules = [rule(f"{name}-held", registry[name].variant.rate.name,
                  registry[name].variant.rate.unit, 1 - drop, comparator=Comparator.GE,
                  of_first=float(limits.get("baseline_seconds", 120.0)),
                  for_at_least=2 * interval)
             for name in loads if name in registry]
    rules += [
        rule("load-crashed", "burnin.load_crashed", Unit.COUNT, 0),
        rule("load-stuck", "burnin.load_stuck", Unit.COUNT, 0),
        rule("gpu-temperature", "burnin.gpu_temperature", Unit.CELSIUS,
             float(limits.get("gpu_temperature", 87.0))),
        rule("cpu-temperature", "burnin.cpu_temperature", Unit.CELSIUS,
             float(limits.get("cpu_temperature", 95.0))),
        rule("nvme-temperature", "burnin.nvme_temperature", Unit.CELSIUS,
             float(limits.get("nvme_temperature", 70.0))),
        rule("gpu-slowdown", "burnin.gpu_slowdown", Unit.COUNT, 0,
             for_at_least=float(limits.get("throttle_seconds", 30.0))),
        rule("gpu-ecc-uncorrected", "burnin.gpu_ecc_uncorrected_new", Unit.COUNT, 0),
        rule("gpu-ecc-corrected", "burnin.gpu_ecc_corrected_new", Unit.COUNT, 0,
             severity=Severity.WARN),
        rule("gpu-xid", "burnin.gpu_failing_xids", Unit.COUNT, 0),
        rule("gpu-readable", "burnin.gpu_unreadable", Unit.COUNT, 0),
        rule("nvme-media-errors", "burnin.nvme_media_errors_new", Unit.COUNT, 0),
        rule("nvme-lost", "burnin.nvme_lost", Unit.COUNT, 0),
        rule("nvme-readable", "burnin.nvme_unreadable", Unit.COUNT, 0, severity=Severity.WARN),
    ]
    return rules
