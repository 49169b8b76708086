"""The records every other module passes around: Measurement, Verdict, Report.

Small frozen records, validated when built (after pyperf's ``Run``): a
Measurement with a NaN value or an unknown unit cannot exist, so nothing
downstream has to re-check it.

Report JSON format versions (``schema_version``):
    1  first version: measurements, verdicts, inventory, suite and profile digests;
       optional "series" (burn-in time series), absent from other reports;
       optional "check_seconds" (how long each check ran) and verdict
       "threshold_id" (the profile rule that judged it), added later: a reader
       without them reads {} and "". "series_units" (the unit of each burn-in
       series) came with series named without units; a report without it named
       the unit in the series name ("gpu.gpu0.temp_c"), read by
       legacy_series_units.
       The inventory carries its own version, "inventory.schema_version"
       (core/inventory.py): absent in reports written before it was typed, 1 since;
       both are read. Each of these only adds, so this is still report
       version 1, and older readers read the new reports.
Loaders refuse a version newer than they know, and keep reading older ones.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_agent.core.errors import ReportError
from bench_agent.core.inventory import Inventory
from bench_agent.core.status import Status as Status  # re-exported: callers import it here
from bench_agent.core.units import Unit, format_value

SCHEMA_VERSION = 1

# Characters no name may hold (node, check, metric, device, series names): the
# Unicode general categories Cc (controls: NUL, tab, newline, ESC), Cf (format:
# the bidirectional embeddings, overrides and isolates U+202A-202E and
# U+2066-2069, the marks U+200E/F and U+061C, zero-width characters), Cs (lone
# surrogates, not encodable as UTF-8), Zl and Zp (line and paragraph separators).
# A bidirectional override reverses the text after it (Unicode Standard Annex #9,
# section 2; CVE-2021-42574 "Trojan Source"): "gpu0\u202etemp" would show as
# another name on the dashboard and in a terminal.
REFUSED_IN_NAMES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# The explicit directional formatting characters and marks of UAX #9 (section 2):
# refused in free text (messages, thresholds) too, where newlines are fine.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                          "\u2066\u2067\u2068\u2069")


def _describe(char: str) -> str:
    return f"U+{ord(char):04X} {unicodedata.name(char, f'({unicodedata.category(char)})')}"


def check_name(value: str, what: str) -> str:
    """``value`` unless it holds a character of REFUSED_IN_NAMES (ValueError naming
    ``what`` and the character)."""
    # Printable ASCII is letters, digits, punctuation, symbols and the space: none of
    # REFUSED_IN_NAMES (the ASCII controls are Cc, not printable). Most names are.
    if value.isascii() and value.isprintable():
        return value
    for char in value:
        if unicodedata.category(char) in REFUSED_IN_NAMES:
            raise ValueError(f"{what} {value[:80]!r} contains {_describe(char)}, a control or"
                             " format character")
    return value


def check_text(value: str, what: str) -> str:
    """``value`` unless it holds a bidirectional control (ValueError naming ``what``)."""
    if value.isascii():  # every BIDI_CONTROLS character is past U+007F
        return value
    for char in value:
        if char in BIDI_CONTROLS:
            raise ValueError(f"{what} {value[:80]!r} contains {_describe(char)}, a "
                             "bidirectional control")
    return value


def non_finite_paths(value: Any, where: str = "") -> list[str]:
    """Where ``value`` (JSON-like: dicts, lists, numbers, text) holds NaN or an
    infinity, as "gpus[0].power_w" paths. One iterative walk: no nesting can
    exhaust the interpreter's recursion limit."""
    found: list[str] = []
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            found.append(path or "the value")
        elif isinstance(item, dict):
            stack.extend((v, f"{path}.{k}" if path else str(k)) for k, v in item.items())
        elif isinstance(item, list | tuple):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(item))
    return sorted(found)


def finite_or_none(value: Any) -> Any:
    """A copy of ``value`` with every NaN and infinity replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    return value


def _check_finite(value: Any, what: str) -> None:
    paths = non_finite_paths(value, what)
    if paths:
        raise ValueError(f"{', '.join(paths[:5])}: NaN or an infinity is no figure (JSON "
                         "cannot carry it)")


@dataclass(frozen=True, slots=True)
class Measurement:
    """One measured value in its canonical unit, with how it was obtained.

    ``metric`` is a dotted name without a unit in it ("cpu.gemm_fp64_all_cores");
    ``device`` tells apart several measurements of one metric (one per drive, GPU).
    ``samples`` are the repetitions the value summarizes (same unit); ``unstable``
    is set when their spread is wide, which is noise, not failure.
    """

    check: str
    metric: str
    value: float
    unit: Unit
    samples: tuple[float, ...] = ()
    unstable: bool = False
    device: str = ""
    tool: str = ""
    tool_version: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.check or not self.metric:
            raise ValueError("a measurement needs a check and a metric name")
        _check_names(self.check, self.metric, self.device)
        if isinstance(self.value, bool) or not isinstance(self.value, int | float):
            raise ValueError(f"{self.metric}: value must be a number, got {self.value!r}")
        if not math.isfinite(self.value):
            raise ValueError(f"{self.metric}: value must be finite, got {self.value!r}")
        object.__setattr__(self, "value", float(self.value))
        object.__setattr__(self, "unit", Unit(self.unit))
        # Only a temperature can be below zero: a negative latency, rate or count is
        # a parser reading garbage, and it would pass every "<=" threshold.
        if self.value < 0 and self.unit is not Unit.CELSIUS:
            raise ValueError(f"{self.metric}: a {self.unit.value} value cannot be negative,"
                             f" got {self.value!r}")
        samples = tuple(float(s) for s in self.samples)
        if not all(math.isfinite(s) for s in samples):
            raise ValueError(f"{self.metric}: samples must be finite")
        object.__setattr__(self, "samples", samples)
        # Refused here, where the check builds them, rather than signed into a
        # report that no strict reader accepts.
        _check_finite(self.params, f"{self.metric}: params")
        _check_finite(self.stats, f"{self.metric}: stats")

    @property
    def display(self) -> str:
        return format_value(self.value, self.unit)

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "metric": self.metric,
            "value": self.value,
            "unit": self.unit.value,
            "samples": list(self.samples),
            "unstable": self.unstable,
            "device": self.device,
            "tool": self.tool,
            "tool_version": self.tool_version,
            "params": self.params,
            "stats": self.stats,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        return cls(
            check=data["check"],
            metric=data["metric"],
            value=data["value"],
            unit=Unit(data["unit"]),
            samples=tuple(data.get("samples", ())),
            unstable=bool(data.get("unstable", False)),
            device=data.get("device", ""),
            tool=data.get("tool", ""),
            tool_version=data.get("tool_version", ""),
            params=dict(data.get("params", {})),
            stats=dict(data.get("stats", {})),
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    """The judgement of one metric (or of a whole check that could not run).

    ``metric`` is empty for check-level verdicts (SKIP, ERROR). ``threshold`` is the
    human rendering of the rule ("> 100 kIOPS"), ``source`` where the rule comes
    from (the guide section or the baseline), ``threshold_id`` the id of that rule
    in the profile: two rules on one metric give two verdicts that only it tells
    apart (the exports key their testcases and series by it).
    """

    check: str
    status: Status
    metric: str = ""
    value: float | None = None
    unit: Unit | None = None
    threshold: str = ""
    source: str = ""
    message: str = ""
    device: str = ""
    threshold_id: str = ""
    fault_code: str = ""      # stable code from the fault catalog, e.g. "BA-GPU-XID-79"; "" when PASS/SKIP
    component: str = ""       # the part that broke, human-readable, e.g. "GPU 3 GPU-8f1c... serial 1652822012345 0000:1b:00.0"
    remediation: str = ""     # one of: none, re-run, reset-gpu, reboot, reseat-recable, replace, check-job, escalate
    attempts: int = 1         # confirm-before-failing: how many times the check ran
    flaky: bool = False       # FAIL on an attempt but PASS on a re-run

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))
        _check_names(self.check, self.metric, self.device)
        if self.value is not None:
            if isinstance(self.value, bool) or not isinstance(self.value, int | float) \
                    or not math.isfinite(self.value):
                raise ValueError(f"{self.check} {self.metric}: verdict value must be a finite"
                                 f" number, got {self.value!r}")
            object.__setattr__(self, "value", float(self.value))
        if self.unit is not None:
            object.__setattr__(self, "unit", Unit(self.unit))
        if self.status in (Status.PASS, Status.WARN) and self.value is None:
            # The central promise of the tool: nothing passes without a measurement.
            raise ValueError(f"{self.check} {self.metric}: {self.status} needs a measured value")

    @property
    def display_value(self) -> str:
        if self.value is None or self.unit is None:
            return ""
        return format_value(self.value, self.unit)

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "status": self.status.value,
            "metric": self.metric,
            "value": self.value,
            "unit": self.unit.value if self.unit else None,
            "threshold": self.threshold,
            "source": self.source,
            "message": self.message,
            "device": self.device,
            "threshold_id": self.threshold_id,
            "fault_code": self.fault_code,
            "component": self.component,
            "remediation": self.remediation,
            "attempts": self.attempts,
            "flaky": self.flaky,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        return cls(
            check=data["check"],
            status=Status(data["status"]),
            metric=data.get("metric", ""),
            value=data.get("value"),
            unit=Unit(data["unit"]) if data.get("unit") else None,
            threshold=data.get("threshold", ""),
            source=data.get("source", ""),
            message=data.get("message", ""),
            device=data.get("device", ""),
            threshold_id=data.get("threshold_id", ""),
            # Reports written before the fault catalog lack these: the defaults.
            fault_code=str(data.get("fault_code", "")),
            component=str(data.get("component", "")),
            remediation=str(data.get("remediation", "")),
            attempts=int(data.get("attempts", 1)),
            flaky=bool(data.get("flaky", False)),
        )


def _check_names(check: str, metric: str, device: str) -> None:
    for value, what in ((check, "check name"), (metric, "metric name"),
                        (device, "device name")):
        if not isinstance(value, str):
            raise ValueError(f"{what} {value!r:.80} is not a string")
        check_name(value, what)


_SEVERITY_ORDER = [Status.PASS, Status.SKIP, Status.WARN, Status.FAIL, Status.ERROR]


def overall_status(verdicts: list[Verdict], measured: bool = False) -> Status:
    """The worst status: ERROR > FAIL > WARN > PASS; SKIP only when all are SKIP.

    A check that does not apply here (SKIP) does not make a passing node look
    less than PASS. With no verdict at all, a run that measured something
    (metrics with no threshold in the profile) is PASS; one that measured
    nothing is ERROR. The same holds when every verdict is a SKIP: a run where
    every check was skipped (every tool missing) and nothing was measured proved
    nothing about the node, so it is not a passing exit code.
    """
    if not verdicts:
        return Status.PASS if measured else Status.ERROR
    judged = [v.status for v in verdicts if v.status is not Status.SKIP]
    if not judged:
        return Status.SKIP if measured else Status.ERROR
    return max(judged, key=_SEVERITY_ORDER.index)


@dataclass(frozen=True, slots=True)
class NamedDigest:
    """A suite or profile as it was used: its name, file and sha256 of its bytes."""

    name: str
    sha256: str
    path: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "sha256": self.sha256, "path": self.path}


@dataclass(slots=True)
class Report:
    report_id: str
    agent_version: str
    host: str
    inventory: Inventory
    suite: NamedDigest
    profile: NamedDigest
    started_at: str
    finished_at: str
    measurements: list[Measurement]
    verdicts: list[Verdict]
    interrupted: bool = False
    schema_version: int = SCHEMA_VERSION
    # Time series of a burn-in run: name -> [[seconds since start, value], ...],
    # and the unit of each (Unit values).
    series: dict[str, list[list[float]]] = field(default_factory=dict)
    series_units: dict[str, str] = field(default_factory=dict)
    # Wall-clock seconds each check's child ran (runner.CheckOutcome.seconds),
    # summed when a suite runs a check twice: the time of its JUnit testcases.
    check_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def status(self) -> Status:
        if self.interrupted:
            return Status.ERROR
        return overall_status(self.verdicts, measured=bool(self.measurements))

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "report_id": self.report_id,
            "agent_version": self.agent_version,
            "host": self.host,
            "status": self.status.value,
            "interrupted": self.interrupted,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "suite": self.suite.to_dict(),
            "profile": self.profile.to_dict(),
            "inventory": self.inventory.to_dict(),
            "measurements": [m.to_dict() for m in self.measurements],
            "verdicts": [v.to_dict() for v in self.verdicts],
            **({"series": self.series, "series_units": self.series_units}
               if self.series else {}),
            **({"check_seconds": self.check_seconds} if self.check_seconds else {}),
        }

    def to_json(self, compact: bool = False) -> str:
        """The report as JSON text; ReportError naming the place of a NaN or an
        infinity that reached it (JSON cannot carry one: RFC 8259, section 6)."""
        return dumps_finite(self.to_dict(), indent=None if compact else 2,
                            separators=(",", ":") if compact else None) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        version = data.get("schema_version")
        if not isinstance(version, int) or version < 1:
            raise ReportError(f"not a bench-agent report (schema_version={version!r})")
        if version > SCHEMA_VERSION:
            raise ReportError(
                f"report schema version {version} is newer than this agent reads"
                f" ({SCHEMA_VERSION}); upgrade bench-agent"
            )
        try:
            return cls(
                schema_version=version,
                report_id=data["report_id"],
                agent_version=data["agent_version"],
                host=data["host"],
                inventory=Inventory.from_dict(data.get("inventory", {})),
                suite=NamedDigest(**data["suite"]),
                profile=NamedDigest(**data["profile"]),
                started_at=data["started_at"],
                finished_at=data["finished_at"],
                measurements=[Measurement.from_dict(m) for m in data["measurements"]],
                verdicts=[Verdict.from_dict(v) for v in data["verdicts"]],
                interrupted=bool(data.get("interrupted", False)),
                series=dict(data.get("series", {})),
                series_units=series_units_of(data),
                check_seconds=_check_seconds(data.get("check_seconds", {})),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            # OverflowError: float() of an integer past 1e308 (a number in samples).
            raise ReportError(f"malformed report: {type(exc).__name__}: {exc}") from exc


# Burn-in reports before "series_units" named the unit in the series name; these are
# all the names that engine wrote (bench_agent/burnin, load.<name>, cpu.<key>,
# nvme.<device>.temp_c, gpu.<device>.<key>), read here only, written nowhere.
_LEGACY_LOAD_UNITS = {"cpu_matmul": Unit.FLOPS, "memory_bandwidth": Unit.BYTES_PER_SECOND,
                      "storage_fio": Unit.IOPS, "gpu_matmul": Unit.FLOPS,
                      "network_iperf3": Unit.BITS_PER_SECOND}
_LEGACY_KEY_UNITS = {"temp_c": Unit.CELSIUS, "temp_c_max": Unit.CELSIUS, "power_w": Unit.WATTS,
                     "load1": Unit.COUNT}


def legacy_series_units(names: Any) -> dict[str, str]:
    """The units of the series of an old burn-in report, from the names it used.
    Its clock series were in MHz, which no Unit is: they stay without a unit."""
    units: dict[str, str] = {}
    for name in names:
        head, _, key = str(name).rpartition(".")
        if head == "load" and key in _LEGACY_LOAD_UNITS:
            units[str(name)] = _LEGACY_LOAD_UNITS[key].value
        elif head.split(".")[0] in ("cpu", "gpu", "nvme") and key in _LEGACY_KEY_UNITS:
            units[str(name)] = _LEGACY_KEY_UNITS[key].value
    return units


def series_units_of(data: dict[str, Any]) -> dict[str, str]:
    """A report's series units: its own, or for an old report the legacy names'."""
    raw = data.get("series_units")
    if raw is None:
        return legacy_series_units(data.get("series") or {})
    if not isinstance(raw, dict):
        raise ValueError("series_units is not a mapping")
    return {str(name): Unit(unit).value for name, unit in raw.items()}


def dumps_finite(data: Any, **options: Any) -> str:
    """json.dumps that refuses NaN and infinities (ReportError naming where) instead
    of writing the ``NaN`` that is not JSON."""
    try:
        return json.dumps(data, allow_nan=False, **options)
    except ValueError as exc:
        where = ", ".join(non_finite_paths(data)[:5]) or str(exc)
        raise ReportError(f"the report holds NaN or an infinity at {where}, which JSON "
                          "cannot carry; it is not written or signed") from exc


def _check_seconds(raw: Any) -> dict[str, float]:
    """check name -> seconds, each a finite number >= 0 (else ValueError)."""
    if not isinstance(raw, dict):
        raise ValueError(f"check_seconds must be an object, got {type(raw).__name__}")
    out: dict[str, float] = {}
    for check, seconds in raw.items():
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) \
                or not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"check_seconds[{check!r}] must be a finite number >= 0,"
                             f" got {seconds!r}")
        out[str(check)] = float(seconds)
    return out


def write_atomic(path: Path, text: str) -> None:
    """Write a file so that a reader sees the old content or the new, never half.

    Temp file in the same directory, fsync, rename, then fsync the directory so
    the rename survives a power loss. On failure (ENOSPC) the temp file is
    removed and the error raised as ReportError; an existing file is untouched.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                        dir=path.parent)
    except OSError as exc:  # a folder that cannot be made (/proc/x, a file on the way)
        raise ReportError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise ReportError(f"cannot write {path}: {exc.strerror or exc}") from exc
    # The file is in place; a directory that cannot be fsynced (some network and
    # FUSE filesystems refuse it) leaves it there, so it is no failure to write.
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
