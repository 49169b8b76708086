"""Burn-in health: what is sampled every interval, as readings with units and events.

Samplers read the node (CPU frequency, temperature and load; NVMe SMART; GPUs
through NVML, tools/nvml.py). ``HealthReader`` turns each raw sample into
``Reading``s (a metric of HEALTH_METRICS, a device, a value in its unit) and
``Event``s (a kind from the closed set EventKind, with the tool's words): facts
only. Verdicts come from the burn-in's thresholds (core/thresholds.py) over the
series of readings; nothing here says PASS or FAIL.

The raw sample is the samplers' own shape ({"cpu": {...}, "nvme": {...}, "gpus":
[...]}); ``_CPU``, ``_NVME`` and ``_GPU`` map each of its keys to a metric and a
unit, explicitly. Series files written before readings existed hold raw samples,
read by the same reader (burnin/series.py).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from bench_agent.core.metrics import MetricInfo
from bench_agent.core.sysfs import read_line
from bench_agent.core.units import Unit
from bench_agent.inventory.devices import nvme_devices


class EventKind(StrEnum):
    """What can happen to a burn-in besides its readings (a closed set)."""

    LOAD_NOT_APPLICABLE = "LOAD_NOT_APPLICABLE"  # the load cannot run here (no GPU, no peer)
    LOAD_CRASHED = "LOAD_CRASHED"  # it ended on its own, with its words
    LOAD_STUCK = "LOAD_STUCK"  # it outlived SIGKILL: stuck in the kernel
    XID = "XID"  # NVML reported an XID (value: its number)
    THROTTLE = "THROTTLE"  # a hardware or thermal slowdown began (detail: its reasons)
    GPU_UNREADABLE = "GPU_UNREADABLE"  # NVML failed at a sample
    NVME_UNREADABLE = "NVME_UNREADABLE"  # a drive's SMART log did not answer


@dataclass(frozen=True, slots=True)
class Reading:
    metric: str
    value: float
    unit: Unit
    device: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "device": self.device, "value": self.value,
                "unit": self.unit.value}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reading:
        value = data["value"]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"reading {data.get('metric')!r}: value {value!r} is not a number")
        return cls(str(data["metric"]), float(value), Unit(data["unit"]),
                   str(data.get("device", "")))


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    elapsed: float
    device: str = ""  # a GPU, a drive, or the load's name
    value: float | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"type": "event", "kind": self.kind.value, "elapsed": self.elapsed,
                "device": self.device, "value": self.value, "detail": self.detail}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        value = data.get("value")
        return cls(EventKind(data["kind"]), float(data["elapsed"]), str(data.get("device", "")),
                   None if value is None else float(value), str(data.get("detail", "")))


def _info(name: str, unit: Unit, check: str, meaning: str,
          higher: bool = False) -> tuple[str, MetricInfo]:
    return name, MetricInfo(name, unit, meaning, (check,), higher)


# What the burn-in samples besides the loads' rates (burnin/loads.py adds those).
HEALTH_METRICS: dict[str, MetricInfo] = dict([
    _info("burnin.cpu_temperature", Unit.CELSIUS, "burnin.cpu", "hottest CPU sensor (psutil)"),
    _info("burnin.cpu_frequency", Unit.HERTZ, "burnin.cpu", "mean current CPU frequency",
          True),
    _info("burnin.cpu_load", Unit.COUNT, "burnin.cpu", "1-minute load average"),
    _info("burnin.nvme_temperature", Unit.CELSIUS, "burnin.nvme", "NVMe composite temperature"),
    _info("burnin.nvme_media_errors_new", Unit.COUNT, "burnin.nvme",
          "NVMe media errors since the start"),
    _info("burnin.nvme_lost", Unit.COUNT, "burnin.nvme",
          "1 when a drive that answered stops answering (off the bus)"),
    _info("burnin.nvme_unreadable", Unit.COUNT, "burnin.nvme",
          "1 when a drive's SMART log was never readable (permissions, old nvme-cli)"),
    _info("burnin.gpu_temperature", Unit.CELSIUS, "burnin.gpu", "GPU temperature (NVML)"),
    _info("burnin.gpu_power", Unit.WATTS, "burnin.gpu", "GPU power draw (NVML)"),
    _info("burnin.gpu_sm_clock", Unit.HERTZ, "burnin.gpu", "GPU SM clock (NVML)", True),
    _info("burnin.gpu_slowdown", Unit.COUNT, "burnin.gpu",
          "hardware or thermal slowdown reasons active (NVML clock event reasons)"),
    _info("burnin.gpu_ecc_uncorrected_new", Unit.COUNT, "burnin.gpu",
          "uncorrectable ECC errors since the start"),
    _info("burnin.gpu_ecc_corrected_new", Unit.COUNT, "burnin.gpu",
          "corrected ECC errors since the start"),
    _info("burnin.gpu_failing_xids", Unit.COUNT, "burnin.gpu",
          "failing XIDs since the start (tools/nvml.py FAILING_XIDS)"),
    _info("burnin.gpu_unreadable", Unit.COUNT, "burnin.gpu", "1 when NVML failed at a sample"),
    _info("burnin.load_crashed", Unit.COUNT, "burnin.loads", "1 when the load crashed"),
    _info("burnin.load_stuck", Unit.COUNT, "burnin.loads",
          "1 when the load outlived SIGKILL (stuck in the kernel)"),
])
# Readings worth a plot (gauges); the rest are counters and flags, judged only.
GAUGES = frozenset({"burnin.cpu_temperature", "burnin.cpu_frequency", "burnin.cpu_load",
                    "burnin.nvme_temperature", "burnin.gpu_temperature", "burnin.gpu_power",
                    "burnin.gpu_sm_clock"})
# The series an event tells more about: a verdict on it carries the event's words.
EXPLAINS: dict[EventKind, tuple[str, ...]] = {
    EventKind.LOAD_CRASHED: ("burnin.load_crashed",),
    EventKind.LOAD_STUCK: ("burnin.load_stuck",),
    EventKind.XID: ("burnin.gpu_failing_xids",),
    EventKind.THROTTLE: ("burnin.gpu_slowdown",),
    EventKind.GPU_UNREADABLE: ("burnin.gpu_unreadable",),
    EventKind.NVME_UNREADABLE: ("burnin.nvme_lost", "burnin.nvme_unreadable"),
}

# Raw sample keys -> (metric, unit, factor to the unit). MHz: cpufreq's kHz / 1000
# in sample_cpu; NVML's clock in MHz (nvmlDeviceGetClockInfo).
_CPU = {"temp_c_max": ("burnin.cpu_temperature", Unit.CELSIUS, 1.0),
        "freq_mhz_avg": ("burnin.cpu_frequency", Unit.HERTZ, 1e6),
        "load1": ("burnin.cpu_load", Unit.COUNT, 1.0)}
_NVME = {"temp_c": ("burnin.nvme_temperature", Unit.CELSIUS, 1.0)}
_GPU = {"temp_c": ("burnin.gpu_temperature", Unit.CELSIUS, 1.0),
        "power_w": ("burnin.gpu_power", Unit.WATTS, 1.0),
        "sm_clock_mhz": ("burnin.gpu_sm_clock", Unit.HERTZ, 1e6)}
# Cumulative counters, judged by their growth since the first sample.
_GPU_COUNTERS = {"ecc_uncorrected": "burnin.gpu_ecc_uncorrected_new",
                 "ecc_corrected": "burnin.gpu_ecc_corrected_new"}
_NVME_COUNTERS = {"media_errors": "burnin.nvme_media_errors_new"}


def slowdown_reasons() -> frozenset[str]:
    """The clock event reasons that mean the hardware protects itself (tools/nvml.py
    masks): software power capping and idle are normal under load, these are not."""
    from bench_agent.tools import nvml

    mask = nvml.HW_SLOWDOWN_MASK | nvml.THERMAL_MASK
    return frozenset(name for bit, name in nvml.CLOCK_EVENT_REASONS.items() if bit & mask)


def failing_xids() -> frozenset[int]:
    from bench_agent.tools import nvml

    return nvml.FAILING_XIDS


def _number(value: Any) -> float | None:
    """A finite reading, or None: NaN or an infinity is no reading."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


@dataclass
class HealthReader:
    """Raw samples in, readings and events out; remembers what the next sample is
    compared with (first counter values, drives seen answering, XIDs, slowdowns)."""

    _first: dict[tuple[str, str], float] = field(default_factory=dict)
    _readable: set[str] = field(default_factory=set)
    _told: set[tuple[EventKind, str]] = field(default_factory=set)
    _xids: dict[str, int] = field(default_factory=dict)
    _slowdown: dict[str, frozenset[str]] = field(default_factory=dict)

    def feed(self, raw: dict[str, Any], elapsed: float) -> tuple[list[Reading], list[Event]]:
        readings: list[Reading] = []
        events: list[Event] = []
        cpu = raw.get("cpu") or {}
        readings += self._gauges(cpu, _CPU, "")
        for device, smart in (raw.get("nvme") or {}).items():
            self._nvme(str(device), smart, elapsed, readings, events)
        if raw.get("gpu_error"):
            readings.append(Reading("burnin.gpu_unreadable", 1.0, Unit.COUNT))
            events.append(Event(EventKind.GPU_UNREADABLE, elapsed, detail=str(raw["gpu_error"])))
        elif "gpus" in raw:
            readings.append(Reading("burnin.gpu_unreadable", 0.0, Unit.COUNT))
            for gpu in raw["gpus"] or []:
                self._gpu(gpu, elapsed, readings, events)
        return readings, events

    @staticmethod
    def _gauges(values: dict[str, Any], table: dict[str, tuple[str, Unit, float]],
                device: str) -> list[Reading]:
        out = []
        for key, (metric, unit, factor) in table.items():
            value = _number(values.get(key))
            if value is not None:
                out.append(Reading(metric, value * factor, unit, device))
        return out

    def _growth(self, metric: str, device: str, value: Any) -> Reading | None:
        total = _number(value)
        if total is None:
            return None
        first = self._first.setdefault((metric, device), total)
        if total < first:  # the counter was reset (a driver reload): count from here
            self._first[(metric, device)] = first = total
        return Reading(metric, total - first, Unit.COUNT, device)

    def _once(self, kind: EventKind, device: str) -> bool:
        if (kind, device) in self._told:
            return False
        self._told.add((kind, device))
        return True

    def _nvme(self, device: str, smart: Any, elapsed: float, readings: list[Reading],
              events: list[Event]) -> None:
        smart = smart if isinstance(smart, dict) else {"unreadable": "not a SMART reading"}
        if "unreadable" in smart:
            # A drive that answered and then stops has likely dropped off the bus; one
            # that never answered is a permission or an old nvme-cli.
            lost = device in self._readable
            readings.append(Reading("burnin.nvme_lost", float(lost), Unit.COUNT, device))
            readings.append(Reading("burnin.nvme_unreadable", float(not lost), Unit.COUNT,
                                    device))
            if self._once(EventKind.NVME_UNREADABLE, f"{device}:{lost}"):
                events.append(Event(EventKind.NVME_UNREADABLE, elapsed, device,
                                    detail=("stopped answering: " if lost else
                                            "cannot read the SMART log: ")
                                    + str(smart["unreadable"])))
            return
        self._readable.add(device)
        readings.append(Reading("burnin.nvme_lost", 0.0, Unit.COUNT, device))
        readings.append(Reading("burnin.nvme_unreadable", 0.0, Unit.COUNT, device))
        readings += self._gauges(smart, _NVME, device)
        for key, metric in _NVME_COUNTERS.items():
            if (reading := self._growth(metric, device, smart.get(key))) is not None:
                readings.append(reading)

    def _gpu(self, gpu: dict[str, Any], elapsed: float, readings: list[Reading],
             events: list[Event]) -> None:
        device = f"gpu{gpu.get('index', '?')}"
        readings += self._gauges(gpu, _GPU, device)
        for key, metric in _GPU_COUNTERS.items():
            if (reading := self._growth(metric, device, gpu.get(key))) is not None:
                readings.append(reading)
        failing = failing_xids()
        for xid in gpu.get("xids") or []:
            number = _number(xid)
            if number is None:
                continue
            bad = int(number) in failing
            self._xids[device] = self._xids.get(device, 0) + int(bad)
            events.append(Event(EventKind.XID, elapsed, device, number,
                                f"XID {int(number)}" + (" (a failing XID)" if bad else "")))
        readings.append(Reading("burnin.gpu_failing_xids", float(self._xids.get(device, 0)),
                                Unit.COUNT, device))
        if "throttle" in gpu:
            active = frozenset(gpu["throttle"] or ()) & slowdown_reasons()
            if active and active != self._slowdown.get(device):
                events.append(Event(EventKind.THROTTLE, elapsed, device, float(len(active)),
                                    ", ".join(sorted(active))))
            self._slowdown[device] = active
            readings.append(Reading("burnin.gpu_slowdown", float(len(active)), Unit.COUNT,
                                    device))


# --- samplers ---------------------------------------------------------------------


def sample_cpu(root: Path = Path("/")) -> dict[str, Any]:
    """Load average, mean current frequency (cpufreq), hottest sensor (psutil)."""
    sample: dict[str, Any] = {}
    loadavg = read_line(root / "proc/loadavg")
    if loadavg:
        sample["load1"] = float(loadavg.split()[0])
    freqs = []
    cpus = root / "sys/devices/system/cpu"
    for path in sorted(cpus.glob("cpu[0-9]*/cpufreq/scaling_cur_freq")):
        text = read_line(path)
        if text and text.isdigit():
            freqs.append(int(text) / 1000)  # kHz in sysfs (kernel cpufreq docs)
    if freqs:
        sample["freq_mhz_avg"] = statistics.fmean(freqs)
    if root == Path("/"):
        try:
            import psutil

            temps = psutil.sensors_temperatures()
        except (ImportError, AttributeError, OSError):
            temps = {}
        readings = [t.current for entries in temps.values() for t in entries
                    if t.current is not None and 0 < t.current < 150]
        if readings:
            sample["temp_c_max"] = max(readings)
    return sample


def parse_smart_log(text: str) -> dict[str, float]:
    """nvme-cli `smart-log -o json`: temperature (Kelvin in nvme-cli's JSON, as in
    the NVMe spec's SMART log), media errors, percentage used."""
    from bench_agent.core.errors import StrictJSONError
    from bench_agent.report.attest import loads_strict

    try:
        # Strict: "temperature": Infinity (or 1e400) would be a reading of +inf °C.
        data = loads_strict(text)
    except StrictJSONError as exc:
        raise ValueError(f"nvme smart-log printed no readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"nvme smart-log printed a JSON {type(data).__name__}, not an object")
    out: dict[str, float] = {}
    temperature = data.get("temperature")
    if isinstance(temperature, int | float) and temperature > 0:
        out["temp_c"] = float(temperature) - 273.15
    for key, name in (("media_errors", "media_errors"), ("percent_used", "percent_used"),
                      ("percentage_used", "percent_used")):
        if isinstance(data.get(key), int | float):
            out[name] = float(data[key])
    return out


SMART_TIMEOUT_S = 10.0


def sample_nvme(devices: Iterable[str]) -> dict[str, dict[str, Any]]:
    """`nvme smart-log` of each drive, through the subprocess seam; a drive that does
    not answer is {"unreadable": why}."""
    import shutil

    from bench_agent.core.process import run_child, tail

    devices = list(devices)
    if not devices or shutil.which("nvme") is None:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for device in devices:
        try:
            done = run_child(["nvme", "smart-log", device, "-o", "json"],
                             timeout=SMART_TIMEOUT_S)
        except OSError as exc:
            out[device] = {"unreadable": str(exc)}
            continue
        if done.timed_out:
            out[device] = {"unreadable": f"nvme smart-log did not answer in {SMART_TIMEOUT_S:g} s"}
        elif done.returncode != 0:
            why = tail(done.stderr or done.stdout, 200)
            out[device] = {"unreadable": why or f"exit code {done.returncode}"}
        else:
            try:
                out[device] = parse_smart_log(done.stdout)
            except ValueError as exc:
                out[device] = {"unreadable": str(exc)}
    return out


def gpu_sampler_from_nvml() -> Callable[[], list[dict[str, Any]]] | None:
    """A GPU sampler over NVML, or None where there is no NVML or no GPU."""
    from bench_agent.core.errors import NotApplicable, ToolMissing
    from bench_agent.tools import nvml

    try:
        sampler: Callable[[], list[dict[str, Any]]] = nvml.burnin_sampler()
    except (ToolMissing, NotApplicable):  # no library, no driver, no GPU: nothing to watch
        return None
    except Exception as exc:
        # NVML is there but broken: every sample says so (GPU_UNREADABLE), never a
        # quiet pass.
        failure = f"NVML failed at the start of the burn-in: {exc}"

        def broken() -> list[dict[str, Any]]:
            raise RuntimeError(failure)

        return broken
    return sampler


def nvme_devices_from_inventory(root: Path = Path("/")) -> list[str]:
    """Namespaces of NVMe controllers for `nvme smart-log` (e.g. /dev/nvme0n1)."""
    return nvme_devices(root)
