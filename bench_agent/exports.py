"""Exports for the systems SREs already run: JUnit XML, Prometheus textfile, CSV.

JUnit: one testcase per verdict, so a CI system shows node acceptance as a test
run (FAIL -> <failure>, ERROR -> <error>, SKIP -> <skipped>), in the shape that
Jenkins, GitLab and GitHub reporters read (the de-facto schema of Ant's JUnit
task: testsuites > testsuite[name tests failures errors skipped time] >
testcase[classname name time]).

Prometheus: the textfile format of node_exporter's textfile collector
(https://github.com/prometheus/node_exporter#textfile-collector), written to a
temp file in the same folder and renamed, so the collector never reads half a
file. Names follow https://prometheus.io/docs/practices/naming/: one prefix,
base units (bits become bytes), the unit as suffix. No report id or host label:
node_exporter adds the instance, and per-run labels would grow without bound.
"""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

from bench_agent.model import Report, Status, write_atomic
from bench_agent.units import Unit

PROM_PREFIX = "bench_agent"


def _seconds_between(start: str, end: str) -> float:
    try:
        a = datetime.fromisoformat(start.replace("Z", "+00:00"))
        b = datetime.fromisoformat(end.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return max((b - a).total_seconds(), 0.0)


def _epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


# --- JUnit XML --------------------------------------------------------------------


def to_junit(report: Report) -> str:
    verdicts = report.verdicts
    counts = {s: sum(1 for v in verdicts if v.status is s) for s in Status}
    suites = ET.Element("testsuites", name="bench-agent", tests=str(len(verdicts)),
                        failures=str(counts[Status.FAIL]), errors=str(counts[Status.ERROR]),
                        skipped=str(counts[Status.SKIP]))
    suite = ET.SubElement(
        suites, "testsuite",
        name=f"bench-agent.{report.suite.name}",
        tests=str(len(verdicts)),
        failures=str(counts[Status.FAIL]),
        errors=str(counts[Status.ERROR]),
        skipped=str(counts[Status.SKIP]),
        time=f"{_seconds_between(report.started_at, report.finished_at):.3f}",
        timestamp=report.started_at.rstrip("Z"),
        hostname=report.host,
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in (("report_id", report.report_id), ("profile", report.profile.name),
                        ("agent_version", report.agent_version)):
        ET.SubElement(properties, "property", name=name, value=value)
    for verdict in verdicts:
        name = verdict.metric or verdict.check
        if verdict.device:
            name += f" [{verdict.device}]"
        case = ET.SubElement(suite, "testcase", classname=verdict.check, name=name, time="0")
        detail = "\n".join(part for part in (
            f"value: {verdict.display_value}" if verdict.display_value else "",
            f"threshold: {verdict.threshold}" if verdict.threshold else "",
            f"source: {verdict.source}" if verdict.source else "",
            verdict.message,
        ) if part)
        if verdict.status is Status.FAIL:
            ET.SubElement(case, "failure", message=verdict.message, type="FAIL").text = detail
        elif verdict.status is Status.ERROR:
            ET.SubElement(case, "error", message=verdict.message, type="ERROR").text = detail
        elif verdict.status is Status.SKIP:
            ET.SubElement(case, "skipped", message=verdict.message)
        elif verdict.status is Status.WARN:
            ET.SubElement(case, "system-out").text = f"WARN: {detail}"
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, "unicode") + "\n"


# --- Prometheus textfile -----------------------------------------------------------

# canonical unit -> (name suffix, factor to the Prometheus base unit)
_PROM_UNITS: dict[Unit, tuple[str, float]] = {
    Unit.BYTES_PER_SECOND: ("bytes_per_second", 1.0),
    Unit.BITS_PER_SECOND: ("bytes_per_second", 1 / 8),  # base unit is the byte
    Unit.SECONDS: ("seconds", 1.0),
    Unit.FLOPS: ("flops", 1.0),
    Unit.IOPS: ("iops", 1.0),
    Unit.BYTES: ("bytes", 1.0),
    Unit.COUNT: ("", 1.0),
    Unit.CELSIUS: ("celsius", 1.0),
    Unit.WATTS: ("watts", 1.0),
}


def prom_name(metric: str, unit: Unit) -> str:
    suffix, _ = _PROM_UNITS[unit]
    base = re.sub(r"[^a-zA-Z0-9_]", "_", metric)
    return f"{PROM_PREFIX}_{base}" + (f"_{suffix}" if suffix else "")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def previous_last_success(path: Path) -> float | None:
    """The last-success timestamp in an existing textfile, to carry it over."""
    try:
        text = path.read_text()
    except OSError:
        return None
    match = re.search(rf"^{PROM_PREFIX}_last_success_timestamp_seconds (\S+)$", text, re.M)
    return float(match.group(1)) if match else None


def to_prometheus(report: Report, last_success: float | None = None) -> str:
    lines: list[str] = []

    def family(name: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} gauge")
        for labels, value in samples:
            lines.append(f"{name}{labels} {value!r}")

    by_name: dict[str, list[tuple[str, float]]] = {}
    helps: dict[str, str] = {}
    for m in report.measurements:
        name = prom_name(m.metric, m.unit)
        factor = _PROM_UNITS[m.unit][1]
        labels = f'{{device="{_label(m.device)}"}}' if m.device else ""
        by_name.setdefault(name, []).append((labels, m.value * factor))
        helps[name] = f"bench-agent {m.metric} ({m.check}), last run"
    for name in sorted(by_name):
        family(name, helps[name], by_name[name])
    verdict_samples = []
    for v in report.verdicts:
        for status in Status:
            labels = (f'{{check="{_label(v.check)}",metric="{_label(v.metric)}",'
                      f'device="{_label(v.device)}",status="{status.value}"}}')
            verdict_samples.append((labels, 1.0 if v.status is status else 0.0))
    family(f"{PROM_PREFIX}_verdict", "1 for the status of each verdict of the last run",
           verdict_samples)
    family(f"{PROM_PREFIX}_run_status", "1 for the overall status of the last run",
           [(f'{{status="{s.value}"}}', 1.0 if report.status is s else 0.0) for s in Status])
    family(f"{PROM_PREFIX}_last_run_timestamp_seconds", "end of the last run, Unix time",
           [("", _epoch(report.finished_at))])
    family(f"{PROM_PREFIX}_last_run_duration_seconds", "duration of the last run",
           [("", _seconds_between(report.started_at, report.finished_at))])
    if report.status in (Status.PASS, Status.WARN, Status.SKIP):
        last_success = _epoch(report.finished_at)
    if last_success is not None:
        family(f"{PROM_PREFIX}_last_success_timestamp_seconds",
               "end of the last run with no FAIL or ERROR, Unix time", [("", last_success)])
    return "\n".join(lines) + "\n"


def write_prometheus(report: Report, path: Path) -> None:
    """Write atomically, keeping the previous last-success time when this run failed."""
    write_atomic(path, to_prometheus(report, previous_last_success(path)))


# --- CSV -----------------------------------------------------------------------------

CSV_COLUMNS = ("check", "metric", "device", "status", "value", "unit", "threshold", "source",
               "message")


def to_csv(report: Report) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    judged = set()
    for v in report.verdicts:
        judged.add((v.metric, v.device))
        writer.writerow([v.check, v.metric, v.device, v.status.value,
                         "" if v.value is None else repr(v.value),
                         v.unit.value if v.unit else "", v.threshold, v.source, v.message])
    for m in report.measurements:
        if (m.metric, m.device) not in judged:
            writer.writerow([m.check, m.metric, m.device, "", repr(m.value), m.unit.value,
                             "", "", "measured; no threshold in this profile"])
    return buffer.getvalue()
