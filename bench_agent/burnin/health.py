"""Burn-in health: what is sampled every interval, and the rules that judge it.

Samplers read the node (CPU frequency, temperature and load; NVMe SMART; GPUs
through NVML); ``HealthRules`` turns a stream of samples into timed events
(FAIL or WARN, each with the moment it happened) and, at the end, into
measurements and verdicts. The rules are pure: they see only samples, so a
killed run's time series can be judged again from its JSON-lines file.
"""

from __future__ import annotations

import math
import shutil
import statistics
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_agent.core.model import Measurement, Status, Verdict
from bench_agent.core.sysfs import read_line
from bench_agent.core.units import Unit, format_value
from bench_agent.inventory.devices import nvme_devices

# XIDs that fail a GPU (Azure/azurehpc-health-checks customTests/azure_gpu_xid.nhc, XID_EC).
FAILING_XIDS = frozenset({48, 56, 57, 58, 62, 63, 64, 65, 68, 69, 73, 74, 79, 80, 81, 92,
                          119, 120})
# Throttle reasons that mean the hardware protects itself (NVML clocksEventReasons):
# software power capping and idle are normal under load, these are not.
BAD_THROTTLE = frozenset({"hw_slowdown", "hw_thermal_slowdown", "sw_thermal_slowdown",
                          "hw_power_brake_slowdown"})

LOAD_UNITS = {
    "cpu_matmul": Unit.FLOPS,
    "memory_bandwidth": Unit.BYTES_PER_SECOND,
    "storage_fio": Unit.IOPS,
    "gpu_matmul": Unit.FLOPS,
    "network_iperf3": Unit.BITS_PER_SECOND,
}


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


def sample_nvme(devices: list[str]) -> dict[str, dict[str, Any]]:
    if not devices or shutil.which("nvme") is None:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for device in devices:
        try:
            proc = subprocess.run(["nvme", "smart-log", device, "-o", "json"],
                                  capture_output=True, text=True, timeout=10)
            if proc.returncode == 0:
                out[device] = parse_smart_log(proc.stdout)
            else:
                why = (proc.stderr or proc.stdout).strip()[-200:]
                out[device] = {"unreadable": why or f"exit code {proc.returncode}"}
        except subprocess.TimeoutExpired:
            out[device] = {"unreadable": "nvme smart-log did not answer in 10 s"}
        except (OSError, ValueError) as exc:
            out[device] = {"unreadable": str(exc)}
    return out


# --- rules -------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    throughput_drop: float = 0.10  # fraction below the first minutes' level
    baseline_seconds: float = 120.0
    throttle_seconds: float = 30.0
    gpu_temperature: float = 87.0
    cpu_temperature: float = 95.0
    nvme_temperature: float = 70.0


@dataclass
class Event:
    elapsed: float
    status: Status
    check: str
    metric: str
    message: str
    device: str = ""
    value: float | None = None
    unit: Unit | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"type": "event", "elapsed": self.elapsed, "status": self.status.value,
                "check": self.check, "metric": self.metric, "message": self.message,
                "device": self.device, "value": self.value,
                "unit": self.unit.value if self.unit else None}


@dataclass
class HealthRules:
    """Stateful judge of the sample stream; ``feed`` returns the new events."""

    limits: Limits
    loads: list[str]
    events: list[Event] = field(default_factory=list)
    series: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    _fired: set[tuple[str, str]] = field(default_factory=set)
    _throttle_since: dict[tuple[str, str], float] = field(default_factory=dict)
    _first: dict[str, dict[str, float]] = field(default_factory=dict)
    _crashed: dict[str, str] = field(default_factory=dict)
    _skipped: dict[str, str] = field(default_factory=dict)
    _readable: set[str] = field(default_factory=set)

    def _fire(self, key: tuple[str, str], event: Event, out: list[Event]) -> None:
        if key in self._fired:
            return
        self._fired.add(key)
        self.events.append(event)
        out.append(event)

    def _track(self, name: str, elapsed: float, value: float) -> None:
        # NaN or an infinity is no reading (SeriesWriter writes it as null); kept,
        # it would make the report one that JSON cannot carry.
        if math.isfinite(value) and math.isfinite(elapsed):
            self.series.setdefault(name, []).append((elapsed, value))

    def settled(self, load: str) -> bool:
        """The load's end has been judged already (crashed, stuck, or not applicable)."""
        return load in self._crashed or load in self._skipped

    def stuck(self, load: str, elapsed: float) -> list[Event]:
        """The load outlived SIGKILL: a process stuck in the kernel (a hung driver)."""
        out: list[Event] = []
        self._crashed[load] = "did not exit after SIGKILL"
        self._fire(("stuck", load), Event(
            elapsed, Status.FAIL, "burnin.loads", f"burnin.{load}",
            f"load {load} did not exit after SIGKILL at +{elapsed:.0f} s: stuck in the "
            "kernel (a hung GPU driver or I/O)"), out)
        return out

    def not_applicable(self, load: str, why: str) -> None:
        """The load cannot run on this node: SKIP, not a crash (no event in the series)."""
        self._skipped[load] = why

    def crashed(self, load: str, elapsed: float, why: str) -> list[Event]:
        out: list[Event] = []
        self._crashed[load] = why
        self._fire(("crash", load), Event(elapsed, Status.FAIL, "burnin.loads",
                                          f"burnin.{load}", f"load {load} crashed at "
                                          f"+{elapsed:.0f} s: {why}"), out)
        return out

    def feed(self, sample: dict[str, Any]) -> list[Event]:
        out: list[Event] = []
        t = float(sample["elapsed"])
        for load, value in sample.get("loads", {}).items():
            self._track(f"load.{load}", t, float(value))
            self._check_drop(load, t, out)
        cpu = sample.get("cpu", {})
        for key in ("temp_c_max", "freq_mhz_avg", "load1"):
            if key in cpu:
                self._track(f"cpu.{key}", t, float(cpu[key]))
        self._check_temp("cpu", "", cpu.get("temp_c_max"), self.limits.cpu_temperature, t, out)
        for device, smart in sample.get("nvme", {}).items():
            self._check_readable(device, smart, t, out)
            if "temp_c" in smart:
                self._track(f"nvme.{device}.temp_c", t, smart["temp_c"])
            self._check_temp("nvme", device, smart.get("temp_c"), self.limits.nvme_temperature,
                             t, out)
            self._check_counter("nvme", device, "media_errors", smart, t, out, Status.FAIL)
        for gpu in sample.get("gpus", []):
            self._check_gpu(gpu, t, out)
        if sample.get("gpu_error"):
            self._fire(("gpu_error", ""), Event(
                t, Status.FAIL, "burnin.gpu", "burnin.gpu_readable",
                f"GPUs could not be read at +{t:.0f} s: {sample['gpu_error']}"), out)
        return out

    def _check_readable(self, device: str, smart: dict[str, Any], t: float,
                        out: list[Event]) -> None:
        """A drive whose SMART log stops answering mid-run has likely dropped off the
        bus (FAIL); one never readable (no permission, old nvme-cli) is a WARN."""
        if "unreadable" not in smart:
            self._readable.add(device)
            return
        if device in self._readable:
            self._fire(("nvme_lost", device), Event(
                t, Status.FAIL, "burnin.nvme", "burnin.nvme_readable",
                f"nvme {device} stopped answering at +{t:.0f} s: {smart['unreadable']}",
                device), out)
        else:
            self._fire(("nvme_unreadable", device), Event(
                t, Status.WARN, "burnin.nvme", "burnin.nvme_readable",
                f"cannot read the SMART log of {device}: {smart['unreadable']}", device), out)

    def _check_drop(self, load: str, t: float, out: list[Event]) -> None:
        points = self.series.get(f"load.{load}", [])  # none yet if every reading was NaN
        early = [v for (when, v) in points if when <= self.limits.baseline_seconds]
        if t <= self.limits.baseline_seconds or not early or len(points) < 3:
            return
        level = statistics.median(early)
        recent = statistics.median(v for _, v in points[-3:])  # one noisy tick is not a drop
        if recent < level * (1 - self.limits.throughput_drop):
            unit = LOAD_UNITS.get(load, Unit.COUNT)
            self._fire(("drop", load), Event(
                t, Status.FAIL, "burnin.loads", f"burnin.{load}",
                f"{load} fell to {format_value(recent, unit)} at +{t:.0f} s, more than "
                f"{self.limits.throughput_drop:.0%} below its first-minutes level "
                f"{format_value(level, unit)}", value=recent, unit=unit), out)

    def _check_temp(self, what: str, device: str, value: float | None, limit: float, t: float,
                    out: list[Event]) -> None:
        if value is None:
            return
        if value > limit:
            self._fire((f"{what}_temp", device), Event(
                t, Status.FAIL, f"burnin.{what}", f"burnin.{what}_temperature_max",
                f"{what} {device} temperature {value:.0f} °C above {limit:.0f} °C at "
                f"+{t:.0f} s".replace("  ", " "), device, value, Unit.CELSIUS), out)

    def _check_counter(self, what: str, device: str, key: str, reading: dict[str, Any],
                       t: float, out: list[Event], status: Status) -> None:
        value = reading.get(key)
        if value is None:
            return
        first = self._first.setdefault(f"{what}.{device}", {})
        first.setdefault(key, float(value))
        if float(value) > first[key]:
            self._fire((f"{what}.{key}", device), Event(
                t, status, f"burnin.{what}", f"burnin.{what}_{key}_new",
                f"{what} {device}: {key} grew from {first[key]:g} to {value:g} at +{t:.0f} s",
                device, float(value) - first[key], Unit.COUNT), out)

    def _check_gpu(self, gpu: dict[str, Any], t: float, out: list[Event]) -> None:
        device = f"gpu{gpu.get('index', '?')}"
        for key in ("temp_c", "power_w", "sm_clock_mhz"):
            if key in gpu:
                self._track(f"gpu.{device}.{key}", t, float(gpu[key]))
        self._check_temp("gpu", device, gpu.get("temp_c"), self.limits.gpu_temperature, t, out)
        self._check_counter("gpu", device, "ecc_uncorrected", gpu, t, out, Status.FAIL)
        self._check_counter("gpu", device, "ecc_corrected", gpu, t, out, Status.WARN)
        for xid in gpu.get("xids", []):
            if int(xid) in FAILING_XIDS:
                self._fire(("xid", f"{device}.{xid}"), Event(
                    t, Status.FAIL, "burnin.gpu", "burnin.gpu_xid",
                    f"{device}: XID {xid} at +{t:.0f} s", device, float(xid), Unit.COUNT), out)
        active = set(gpu.get("throttle", [])) & BAD_THROTTLE
        for reason in BAD_THROTTLE:
            span = (device, reason)
            if reason in active:
                since = self._throttle_since.setdefault(span, t)
                if t - since > self.limits.throttle_seconds:
                    self._fire(("throttle", f"{device}.{reason}"), Event(
                        t, Status.FAIL, "burnin.gpu", "burnin.gpu_throttle",
                        f"{device}: {reason} for {t - since:.0f} s (limit "
                        f"{self.limits.throttle_seconds:.0f} s), since +{since:.0f} s",
                        device, t - since, Unit.SECONDS), out)
            else:
                self._throttle_since.pop(span, None)

    # --- the end of a run: measurements and verdicts ------------------------------

    def summary(self) -> tuple[list[Measurement], list[Verdict]]:
        measurements: list[Measurement] = []
        verdicts = [Verdict(check=e.check, status=e.status, metric=e.metric, value=e.value,
                            unit=e.unit, device=e.device, message=e.message,
                            source="burn-in rule (suites/burnin.yaml limits)")
                    for e in self.events]
        fired_metrics = {(e.metric, e.device) for e in self.events}
        if self.loads and all(load in self._skipped for load in self.loads):
            # Nothing was under load: the run burned nothing in, whatever else held.
            verdicts.append(Verdict("burnin.loads", Status.ERROR, message=(
                "no load could run on this node: " + "; ".join(
                    f"{load}: {self._skipped[load]}" for load in self.loads))))
        for load in self.loads:
            points = self.series.get(f"load.{load}", [])
            unit = LOAD_UNITS.get(load, Unit.COUNT)
            metric = f"burnin.{load}"
            if load in self._skipped:
                verdicts.append(Verdict("burnin.loads", Status.SKIP, metric,
                                        message=self._skipped[load]))
                continue
            if not points:
                if load not in self._crashed:
                    verdicts.append(Verdict("burnin.loads", Status.ERROR, metric,
                                            message=f"{load} reported no throughput"))
                continue
            values = [v for _, v in points]
            early = [v for when, v in points if when <= self.limits.baseline_seconds] or values
            final = statistics.median(values[-3:])
            measurements.append(Measurement(
                "burnin.loads", metric, final, unit, samples=tuple(values), tool="bench-agent",
                params={"level_first_minutes": statistics.median(early),
                        "baseline_seconds": self.limits.baseline_seconds},
                stats={"min": min(values), "max": max(values), "n": len(values)}))
            if (metric, "") not in fired_metrics:
                floor = statistics.median(early) * (1 - self.limits.throughput_drop)
                verdicts.append(Verdict(
                    "burnin.loads", Status.PASS, metric, final, unit,
                    threshold=f">= {format_value(floor, unit)} "
                              f"({1 - self.limits.throughput_drop:.0%} of the first minutes)",
                    source="burn-in rule (suites/burnin.yaml limits)",
                    message=f"held for {points[-1][0]:.0f} s"))
        for name, points in sorted(self.series.items()):
            if name.endswith("temp_c") or name.endswith("temp_c_max"):
                parts = name.split(".")
                what, device = parts[0], (parts[1] if len(parts) == 3 else "")
                peak = max(v for _, v in points)
                metric = f"burnin.{what}_temperature_max"
                measurements.append(Measurement(f"burnin.{what}", metric, peak, Unit.CELSIUS,
                                                device=device))
                limit = getattr(self.limits, f"{what}_temperature")
                if (metric, device) not in fired_metrics:
                    verdicts.append(Verdict(f"burnin.{what}", Status.PASS, metric, peak,
                                            Unit.CELSIUS, threshold=f"<= {limit:g} °C",
                                            source="burn-in rule (suites/burnin.yaml limits)",
                                            device=device))
        return measurements, verdicts


def gpu_sampler_from_nvml() -> Callable[[], list[dict[str, Any]]] | None:
    """A GPU sampler over NVML, or None where there is no NVML or no GPU."""
    from bench_agent.core.errors import NotApplicable, ToolMissing
    from bench_agent.tools import nvml

    try:
        sampler: Callable[[], list[dict[str, Any]]] = nvml.burnin_sampler()
    except (ToolMissing, NotApplicable):  # no library, no driver, no GPU: nothing to watch
        return None
    except Exception as exc:
        # NVML is there but broken: every sample says so (a FAIL), never a quiet PASS.
        failure = f"NVML failed at the start of the burn-in: {exc}"

        def broken() -> list[dict[str, Any]]:
            raise RuntimeError(failure)

        return broken
    return sampler


def nvme_devices_from_inventory(root: Path = Path("/")) -> list[str]:
    """Namespaces of NVMe controllers for `nvme smart-log` (e.g. /dev/nvme0n1)."""
    return nvme_devices(root)
