"""Exports for the systems SREs already run: JUnit XML, Prometheus textfile, CSV.

JUnit: one testcase per verdict, so a CI system shows node acceptance as a test
run (FAIL -> <failure>, ERROR -> <error>, SKIP -> <skipped>), valid against the
JUnit schema of Jenkins' xUnit plugin (junit-10.xsd, vendored in tests/data/junit).
A testcase is named by what was judged, "<metric> [<device>] (<threshold id>)",
so two rules on one metric are two testcases; its time is the time of the check
that measured it (Report.check_seconds; the testcases of one check share it).
WARN passes (JUnit has no warning state) but shows: "[WARN]" ends its name, the
one thing every reporter lists, and its <system-out> says why; the suite has a
"warnings" property with their count.

Prometheus: the textfile format of node_exporter's textfile collector
(https://github.com/prometheus/node_exporter#textfile-collector), written to a
temp file in the same folder and renamed, so the collector never reads half a
file. Names follow https://prometheus.io/docs/practices/naming/ and promtool's
lint: one prefix, base units (bits become bytes), the unit as suffix and only
once, no _count/_sum/_bucket/_total suffix on a gauge; HELP and TYPE once per
family; one sample per label set (node_exporter drops a family whose series
repeat: "was collected before with the same name and label values"). Verdicts
are keyed by threshold id. No report id or host label: node_exporter adds the
instance, and per-run labels would grow without bound.
"""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from bench_agent.core.model import Report, Status, Verdict, write_atomic
from bench_agent.core.units import Unit

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


def _verdict_key(verdict: Verdict) -> tuple[str, str, str, str]:
    return (verdict.check, verdict.metric, verdict.device, verdict.threshold_id)


def _occurrences(keys: Iterable[tuple[str, ...]]) -> list[int]:
    """1 for the first of each key, 2 for its second, ...: a report may repeat one
    (a suite that runs a check twice, a report from before threshold ids), and the
    repeat is told apart rather than dropped."""
    seen: dict[tuple[str, ...], int] = {}
    out = []
    for key in keys:
        seen[key] = seen.get(key, 0) + 1
        out.append(seen[key])
    return out


# --- JUnit XML --------------------------------------------------------------------

# XML 1.0 Char (https://www.w3.org/TR/xml/#charsets): anything else (C0 controls
# from a tool's output, lone surrogates from a JSON report) makes the file
# unreadable, and ElementTree writes it as it is.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: str) -> str:
    return _NOT_XML_CHAR.sub(lambda m: f"\\x{{{ord(m.group()):x}}}", text)


def _case_name(verdict: Verdict, occurrence: int) -> str:
    name = verdict.metric or verdict.check
    if verdict.device:
        name += f" [{verdict.device}]"
    if verdict.threshold_id:
        name += f" ({verdict.threshold_id})"
    if occurrence > 1:
        name += f" #{occurrence}"
    if verdict.status is Status.WARN:
        name += " [WARN]"
    return name


def to_junit(report: Report) -> str:
    verdicts = report.verdicts
    counts = {s: sum(1 for v in verdicts if v.status is s) for s in Status}
    duration = f"{_seconds_between(report.started_at, report.finished_at):.3f}"
    # junit-10.xsd allows no "skipped" on <testsuites>: the suite carries it.
    suites = ET.Element("testsuites", name="bench-agent", tests=str(len(verdicts)),
                        failures=str(counts[Status.FAIL]), errors=str(counts[Status.ERROR]),
                        time=duration)
    suite = ET.SubElement(
        suites, "testsuite",
        name=_xml(f"bench-agent.{report.suite.name}"),
        tests=str(len(verdicts)),
        failures=str(counts[Status.FAIL]),
        errors=str(counts[Status.ERROR]),
        skipped=str(counts[Status.SKIP]),
        time=duration,
        timestamp=_xml(report.started_at.rstrip("Z")),
        hostname=_xml(report.host),
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in (("report_id", report.report_id), ("profile", report.profile.name),
                        ("agent_version", report.agent_version),
                        ("warnings", str(counts[Status.WARN]))):
        ET.SubElement(properties, "property", name=name, value=_xml(value))
    occurrences = _occurrences(_verdict_key(v) for v in verdicts)
    for verdict, occurrence in zip(verdicts, occurrences, strict=True):
        case = ET.SubElement(suite, "testcase", classname=_xml(verdict.check),
                             name=_xml(_case_name(verdict, occurrence)))
        seconds = report.check_seconds.get(verdict.check)
        if seconds is not None:
            # Absent, not "0", when the report has no time for the check (older
            # reports, burn-in): a reader then shows no time rather than a false one.
            case.set("time", f"{seconds:.3f}")
        detail = _xml("\n".join(part for part in (
            f"value: {verdict.display_value}" if verdict.display_value else "",
            f"threshold: {verdict.threshold}" if verdict.threshold else "",
            f"threshold id: {verdict.threshold_id}" if verdict.threshold_id else "",
            f"source: {verdict.source}" if verdict.source else "",
            _fault_line(verdict),
            verdict.message,
        ) if part))
        # The fault code first: a CI system shows the message attribute as the title.
        message = _xml(f"{verdict.fault_code}: {verdict.message}" if verdict.fault_code
                       else verdict.message)
        if verdict.status is Status.FAIL:
            ET.SubElement(case, "failure", message=message, type="FAIL").text = detail
        elif verdict.status is Status.ERROR:
            ET.SubElement(case, "error", message=message, type="ERROR").text = detail
        elif verdict.status is Status.SKIP:
            ET.SubElement(case, "skipped", message=message)
        elif verdict.status is Status.WARN:
            ET.SubElement(case, "system-out").text = f"WARN: {detail}"
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, "unicode") + "\n"


def _fault_line(verdict: Verdict) -> str:
    """ "fault: BA-GPU-XID-79 (GPU 3 ...), remediation reboot, flaky after 2 attempts"."""
    if not verdict.fault_code:
        return ""
    line = f"fault: {verdict.fault_code}"
    if verdict.component:
        line += f" ({verdict.component})"
    if verdict.remediation:
        line += f", remediation {verdict.remediation}"
    if verdict.flaky:
        line += f", flaky: passed on attempt {verdict.attempts}"
    elif verdict.attempts > 1:
        line += f", {verdict.attempts} attempts"
    return line


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
    # Clocks (gpu.power_stress_sm_clock_min), as node_exporter names its own:
    # node_cpu_scaling_frequency_hertz (prometheus/node_exporter:collector/cpufreq_linux.go).
    Unit.HERTZ: ("hertz", 1.0),
}

# Suffixes the exposition format gives to histograms, summaries and counters
# (promtool check metrics: 'non-histogram and non-summary metrics should not have
# "_count" suffix', 'non-counter metrics should not have "_total" suffix').
_RESERVED_SUFFIXES = ("count", "sum", "bucket", "total")


def _plural(word: str) -> str:
    """English plural of the counted noun ("gpu" -> "gpus", "batch" -> "batches"):
    the registry's counts are nouns, and a gauge is named for what it counts."""
    if re.search(r"(s|x|z|ch|sh)$", word):
        return word + "es"
    if re.search(r"[^aeiou]y$", word):
        return word[:-1] + "ies"
    return word + "s"


def prom_name(metric: str, unit: Unit) -> str:
    """``bench_agent_<metric>_<unit>``: snake_case, the unit once and at the end.

    "storage.randread_4k_iops" is ..._randread_4k_iops (not _iops_iops), its
    per-device twin ..._randread_4k_per_device_iops; a gauge of a count ending in
    "_count" names what it counts instead ("inventory.gpu_count" ->
    bench_agent_inventory_gpus).
    """
    suffix, _ = _PROM_UNITS[unit]
    tokens = [t for t in re.sub(r"[^a-z0-9]+", "_", metric.lower()).split("_") if t]
    if suffix:
        unit_tokens = suffix.split("_")
        width = len(unit_tokens)
        for i in range(len(tokens) - width + 1):
            if tokens[i:i + width] == unit_tokens:
                del tokens[i:i + width]
                break
        tokens += unit_tokens
    elif tokens and tokens[-1] == "count" and len(tokens) > 1:
        tokens = [*tokens[:-2], _plural(tokens[-2])]
    if not tokens or tokens[-1] in _RESERVED_SUFFIXES:
        tokens.append("value")
    return "_".join([PROM_PREFIX, *tokens])


_SURROGATE = re.compile("[\ud800-\udfff]")


def _utf8(text: str) -> str:
    """The textfile must be UTF-8: a lone surrogate (a JSON report may carry one)
    becomes U+FFFD instead of failing the write."""
    return _SURROGATE.sub("\ufffd", text)


def _label(value: str) -> str:
    """A label value as the text format writes it: backslash, double quote and line
    feed escaped (https://prometheus.io/docs/instrumenting/exposition_formats/)."""
    return _utf8(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _help(text: str) -> str:
    """HELP text escapes only backslash and line feed (same document)."""
    return _utf8(text).replace("\\", "\\\\").replace("\n", "\\n")


class _Families:
    """Metric families in first-seen order; HELP and TYPE once, series unique."""

    def __init__(self) -> None:
        self._help: dict[str, str] = {}
        self._samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}

    def add(self, name: str, help_text: str, labels: dict[str, str], value: float) -> None:
        self._help.setdefault(name, help_text)
        samples = self._samples.setdefault(name, {})
        # An empty label value is the same series as no label (and node_exporter
        # fills missing labels with ""), so the key leaves them out.
        key = tuple(sorted((k, v) for k, v in labels.items() if v))
        base = tuple(kv for kv in key if kv[0] != "occurrence")
        occurrence = 1
        unique = key
        while unique in samples:
            occurrence += 1
            unique = tuple(sorted((*base, ("occurrence", str(occurrence)))))
        samples[unique] = value

    def render(self) -> str:
        lines: list[str] = []
        for name, samples in self._samples.items():
            lines.append(f"# HELP {name} {_help(self._help[name])}")
            lines.append(f"# TYPE {name} gauge")
            for key, value in samples.items():
                labels = ",".join(f'{k}="{_label(v)}"' for k, v in key)
                lines.append(f"{name}{{{labels}}} {value!r}" if labels
                             else f"{name} {value!r}")
        return "\n".join(lines) + "\n"


def previous_last_success(path: Path) -> float | None:
    """The last-success timestamp in an existing textfile, to carry it over."""
    try:
        text = path.read_text()
    except OSError:
        return None
    match = re.search(rf"^{PROM_PREFIX}_last_success_timestamp_seconds (\S+)$", text, re.M)
    return float(match.group(1)) if match else None


def to_prometheus(report: Report, last_success: float | None = None) -> str:
    families = _Families()
    measured = sorted(report.measurements, key=lambda m: prom_name(m.metric, m.unit))
    for m in measured:
        suffix, factor = _PROM_UNITS[m.unit]
        help_text = f"bench-agent {m.metric} ({m.check}) of the last run"
        if suffix:
            help_text += f", in {suffix.replace('_per_', '/')}"
        if m.unit is Unit.BITS_PER_SECOND:
            help_text += " (measured in bits/s)"
        families.add(prom_name(m.metric, m.unit), help_text, {"device": m.device},
                     m.value * factor)
    verdict_name = f"{PROM_PREFIX}_verdict"
    verdict_help = ("1 for the status of each verdict of the last run, one verdict per"
                    " check, metric, device and threshold id")
    occurrences = _occurrences(_verdict_key(v) for v in report.verdicts)
    for v, occurrence in zip(report.verdicts, occurrences, strict=True):
        labels = {"check": v.check, "metric": v.metric, "device": v.device,
                  "threshold_id": v.threshold_id,
                  "occurrence": str(occurrence) if occurrence > 1 else ""}
        for status in Status:
            families.add(verdict_name, verdict_help, {**labels, "status": status.value},
                         1.0 if v.status is status else 0.0)
    # One series per coded verdict (FAIL, ERROR, WARN): the fault catalog's code, the
    # part and the remediation, for alert rules (bench_agent_fault{code=~"BA-GPU-.*"}).
    # The codes and a node's parts are few, so the labels stay bounded.
    for v, occurrence in zip(report.verdicts, occurrences, strict=True):
        if v.fault_code:
            families.add(f"{PROM_PREFIX}_fault", "1 for each fault of the last run, by fault"
                         " code (docs/faults.md), component and remediation",
                         {"code": v.fault_code, "component": v.component,
                          "remediation": v.remediation, "check": v.check, "metric": v.metric,
                          "device": v.device, "threshold_id": v.threshold_id,
                          "flaky": "true" if v.flaky else "",
                          "occurrence": str(occurrence) if occurrence > 1 else ""}, 1.0)
    for status in Status:
        families.add(f"{PROM_PREFIX}_run_status", "1 for the overall status of the last run",
                     {"status": status.value}, 1.0 if report.status is status else 0.0)
    for check, seconds in report.check_seconds.items():
        families.add(f"{PROM_PREFIX}_check_duration_seconds",
                     "how long each check of the last run took", {"check": check}, seconds)
    families.add(f"{PROM_PREFIX}_last_run_timestamp_seconds", "end of the last run, Unix time",
                 {}, _epoch(report.finished_at))
    families.add(f"{PROM_PREFIX}_last_run_duration_seconds", "duration of the last run", {},
                 _seconds_between(report.started_at, report.finished_at))
    if report.status in (Status.PASS, Status.WARN, Status.SKIP):
        last_success = _epoch(report.finished_at)
    if last_success is not None:
        families.add(f"{PROM_PREFIX}_last_success_timestamp_seconds",
                     "end of the last run with no FAIL or ERROR, Unix time", {}, last_success)
    return families.render()


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
