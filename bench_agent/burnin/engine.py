"""Burn-in: keep the node under sustained load and watch it degrade.

    bench-agent burnin --duration 4h [--suite burnin] [--output DIR]

The loads of suites/burnin.yaml run at the same time, each in its own process
(burnin_loads.py). Every ``interval`` the supervisor samples health and the
loads' throughput, judges it (burnin_health.HealthRules) and appends the sample
and any event to ``<output>/<host>/<stamp>-burnin.jsonl``, flushed and fsynced
per line, so a crash or a power cut keeps everything up to the last sample.
At the end (or on SIGINT/SIGTERM) the loads are stopped, plots are drawn next to
the report, and a signed report is written (marked interrupted when stopped).
A killed run leaves only its .jsonl; ``report_from_series`` rebuilds a report
from it, which `bench-agent report show FILE.jsonl` prints.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bench_agent import __version__
from bench_agent.burnin.health import (
    HealthRules,
    Limits,
    nvme_devices_from_inventory,
    sample_cpu,
    sample_nvme,
)
from bench_agent.burnin.loads import NOT_APPLICABLE
from bench_agent.config.loader import _read_yaml, _validation_error, data_dir
from bench_agent.core.errors import ConfigError, ReportError, StrictJSONError, UnitError
from bench_agent.core.inventory import Inventory
from bench_agent.core.model import NamedDigest, Report, Status, Verdict, finite_or_none
from bench_agent.core.process import Child, spawn
from bench_agent.core.units import parse_duration
from bench_agent.report.attest import loads_strict


class _Load(BaseModel):
    model_config = ConfigDict(extra="allow")
    enabled: bool = True


class _Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")
    throughput_drop: str | float = "10%"
    baseline_window: str | float = "2m"
    throttle_time: str | float = "30s"
    gpu_temperature_c: float = 87.0
    cpu_temperature_c: float = 95.0
    nvme_temperature_c: float = 70.0


class _BurninFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    interval: str | float = "10s"
    loads: dict[str, _Load] = Field(default_factory=dict)
    limits: _Limits = Field(default_factory=_Limits)


@dataclass(frozen=True)
class BurninConfig:
    name: str
    path: str
    sha256: str
    interval: float
    loads: dict[str, dict[str, Any]]
    limits: Limits


def load_burnin_config(path: Path) -> BurninConfig:
    from bench_agent.burnin.loads import LOADS

    data, digest = _read_yaml(path)
    try:
        parsed = _BurninFile.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(exc, path, _BurninFile) from exc
    for name in parsed.loads:
        if name not in LOADS:
            raise ConfigError(f"unknown load {name!r}; expected one of {', '.join(LOADS)}",
                              file=str(path), key=f"loads.{name}")
    try:
        interval = parse_duration(parsed.interval)
        window = parse_duration(parsed.limits.baseline_window)
        throttle = parse_duration(parsed.limits.throttle_time)
    except UnitError as exc:
        raise ConfigError(str(exc), file=str(path)) from exc
    drop = parsed.limits.throughput_drop
    fraction = float(drop.rstrip("%")) / 100 if isinstance(drop, str) else float(drop)
    if not 0 < fraction < 1:
        raise ConfigError("must be a fraction or a percentage between 0 and 100 %",
                          file=str(path), key="limits.throughput_drop")
    loads = {name: {k: v for k, v in load.model_dump().items() if k != "enabled"}
             for name, load in parsed.loads.items() if load.enabled}
    limits = Limits(throughput_drop=fraction, baseline_seconds=window, throttle_seconds=throttle,
                    gpu_temperature=parsed.limits.gpu_temperature_c,
                    cpu_temperature=parsed.limits.cpu_temperature_c,
                    nvme_temperature=parsed.limits.nvme_temperature_c)
    return BurninConfig(parsed.name, str(path), digest, interval, loads, limits)


def default_burnin_path() -> Path:
    return data_dir() / "burnin.yaml"


# --- the series file ------------------------------------------------------------------


class SeriesWriter:
    """Appends JSON lines, flushed and fsynced each one (the durability promise)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._handle: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, record: dict[str, Any]) -> None:
        # A reading that is NaN or infinite is written as null (not known): a NaN
        # in the file would make every later line unreadable to read_series.
        self._handle.write(json.dumps(finite_or_none(record), allow_nan=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

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


# --- running ---------------------------------------------------------------------------


@dataclass
class RunningLoad:
    name: str
    child: Child
    latest: float | None = None
    stderr_tail: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopped: bool = False  # stopped by us: its exit is not a crash
    _stderr_reader: threading.Thread = field(default_factory=threading.Thread)

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.child.popen

    def start_readers(self) -> None:
        threading.Thread(target=self._read_stdout, daemon=True).start()
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_reader.start()

    def last_words(self) -> str:
        """The end of stderr of an exited load (waits for the reader to drain the pipe)."""
        self._stderr_reader.join(timeout=5)
        return " ".join(self.stderr_tail[-3:])

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                value = float(loads_strict(line)["value"])
            except (StrictJSONError, ValueError, KeyError, TypeError):
                continue  # not a reading (a load prints one JSON line per reading)
            if not math.isfinite(value):
                continue
            with self.lock:
                self.latest = value

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            text = line.decode("utf-8", errors="replace").rstrip()
            self.stderr_tail = [*self.stderr_tail[-9:], text]

    def take(self) -> float | None:
        with self.lock:
            value, self.latest = self.latest, None
        return value

    def stop(self, grace: float = 15.0) -> bool:
        """SIGTERM the load and what it started, then SIGKILL (the seam's stop);
        False when the load outlives even SIGKILL (a process stuck in the kernel,
        as a hung GPU driver leaves it): we stop waiting."""
        if self.proc.poll() is None:
            self.stopped = True
        return self.child.stop(grace)


def start_load(name: str, params: dict[str, Any]) -> RunningLoad:
    # SIGTERM when the supervisor dies: the load's handler ends its loop and
    # removes its files (the storage load's fio test file); burnin_loads sets the
    # same itself, for a load started by other means.
    child = spawn([sys.executable, "-m", "bench_agent.burnin.loads", name, json.dumps(params)],
                  death_signal=signal.SIGTERM)
    load = RunningLoad(name, child)
    load.start_readers()
    return load


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class Burnin:
    config: BurninConfig
    duration: float
    output_dir: Path
    host: str
    target: str | None = None
    peer: str | None = None
    gpu_sampler: Callable[[], list[dict[str, Any]]] | None = None
    clock: Callable[[], float] = time.time
    # Set by the SIGINT/SIGTERM handler: a plain store, no lock (a lock taken in a
    # signal handler deadlocks when a second signal lands inside it; see peer.py).
    _stop_requested: bool = False

    def request_stop(self, signum: int = 0, frame: object = None) -> None:
        self._stop_requested = True

    def _wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` in short slices; True as soon as a stop is asked."""
        deadline = time.monotonic() + seconds
        while not self._stop_requested:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(0.2, remaining))
        return True

    def run(self) -> tuple[Report, Path]:
        started = self.clock()
        stamp = _utc(started).replace("-", "").replace(":", "")
        series_path = self.output_dir / self.host / f"{stamp}-{self.config.name}.jsonl"
        writer = SeriesWriter(series_path)
        rules = HealthRules(self.config.limits, list(self.config.loads))
        from bench_agent.run.runner import collect_inventory_in_child

        inventory = collect_inventory_in_child()
        writer.write({"type": "start", "host": self.host, "started_at": _utc(started),
                      "inventory": inventory.to_dict(),
                      "duration": self.duration, "interval": self.config.interval,
                      "suite": {"name": self.config.name, "sha256": self.config.sha256,
                                "path": self.config.path},
                      "loads": self.config.loads, "limits": self.config.limits.__dict__})
        nvme = nvme_devices_from_inventory()
        loads: dict[str, RunningLoad] = {}
        interrupted = False
        aborted = ""
        try:
            for name, params in self.config.loads.items():
                loads[name] = start_load(name, {
                    **params, "interval": self.config.interval, "duration": self.duration + 60,
                    "owner": os.getpid(),  # the supervisor's pid: lets one find its loads
                    **({"target": self.target} if self.target and name == "storage_fio"
                       else {}),
                    **({"peer": self.peer} if self.peer and name == "network_iperf3"
                       else {})})
            while not (interrupted := self._wait(self.config.interval)):
                elapsed = self._tick(started, loads, rules, writer, nvme)
                if elapsed >= self.duration:
                    break
        except Exception as exc:  # a load that cannot start, a full disk: keep what we have
            aborted = f"{type(exc).__name__}: {exc}"
        finally:
            stuck = [name for name, load in loads.items() if not load.stop()]
            close = getattr(self.gpu_sampler, "close", None)
            if close is not None:
                close()
        elapsed = self.clock() - started
        events = [e.to_dict() for name in stuck for e in rules.stuck(name, elapsed)]
        for name, load in loads.items():
            if name not in stuck:
                events += self._check_exit(name, load, rules, elapsed)
        finished = self.clock()
        report = build_report(rules, self.host, started, finished, interrupted, self.config,
                              aborted=aborted, inventory=inventory)
        try:
            for event in events:
                writer.write(event)
            writer.write({"type": "end", "finished_at": _utc(finished),
                          "interrupted": interrupted, "aborted": aborted,
                          "status": report.status.value})
            writer.close()
        except OSError:
            pass  # the series keeps every sample up to the failure; the report says why
        return report, series_path

    def _tick(self, started: float, loads: dict[str, RunningLoad], rules: HealthRules,
              writer: SeriesWriter, nvme: list[str]) -> float:
        """One sample: read, judge, append (fsynced). Returns the elapsed time."""
        now = self.clock()
        elapsed = now - started
        sample: dict[str, Any] = {"type": "sample", "t": now, "elapsed": elapsed,
                                  "cpu": sample_cpu(), "nvme": sample_nvme(nvme), "loads": {}}
        if self.gpu_sampler is not None:
            try:
                sample["gpus"] = self.gpu_sampler()
            except Exception as exc:  # a GPU off the bus: a finding, not a crash
                sample["gpu_error"] = f"{type(exc).__name__}: {exc}"
        for name, load in loads.items():
            value = load.take()
            if value is not None:
                sample["loads"][name] = value
        writer.write(sample)
        for event in rules.feed(sample):
            writer.write(event.to_dict())
        for name, load in loads.items():
            for record in self._check_exit(name, load, rules, elapsed):
                writer.write(record)
        return elapsed

    def _check_exit(self, name: str, load: RunningLoad, rules: HealthRules,
                    elapsed: float) -> list[dict[str, Any]]:
        """A load that ended on its own: SKIP if it cannot run here, else a crash.
        Returns the series records to append."""
        code = load.proc.poll()
        if code is None or rules.settled(name) or load.stopped:
            return []
        why = load.last_words() or f"exit code {code}"
        if code == NOT_APPLICABLE:
            rules.not_applicable(name, why)
            return [{"type": "skip", "load": name, "message": why}]
        return [event.to_dict() for event in rules.crashed(name, elapsed, why)]


def build_report(rules: HealthRules, host: str, started: float, finished: float,
                 interrupted: bool, config: BurninConfig | None,
                 suite: dict[str, str] | None = None, killed: bool = False,
                 aborted: str = "", inventory: Inventory | None = None) -> Report:
    """The report of a run; ``inventory`` is the one read at its start (the series
    keeps it), so a killed run judged later still names the node as it was."""
    measurements, verdicts = rules.summary()
    if aborted:
        verdicts.append(Verdict("burnin", Status.ERROR, message=(
            f"the burn-in stopped early after {finished - started:.0f} s: {aborted}")))
    if killed:
        verdicts.append(Verdict("burnin", Status.ERROR, message=(
            f"the run was killed: no end record; the series stops at +{finished - started:.0f} s")))
    elif interrupted:
        verdicts.append(Verdict("burnin", Status.ERROR, message=(
            f"interrupted after {finished - started:.0f} s (SIGINT or SIGTERM)")))
    suite_info = suite or {"name": config.name if config else "burnin",
                           "sha256": config.sha256 if config else "0" * 64,
                           "path": config.path if config else ""}
    return Report(
        report_id=str(uuid.uuid4()), agent_version=__version__, host=host,
        inventory=inventory or Inventory(), suite=NamedDigest(**suite_info),
        profile=NamedDigest("burnin-limits", suite_info["sha256"], suite_info.get("path", "")),
        started_at=_utc(started), finished_at=_utc(finished), measurements=measurements,
        verdicts=verdicts, interrupted=interrupted or killed or bool(aborted),
        series={name: [[round(t, 3), v] for t, v in points]
                for name, points in rules.series.items()},
    )


def report_from_series(path: Path) -> Report:
    """Judge a series file again: a finished, an interrupted or a killed run."""
    records = read_series(path)
    try:
        return _judge_series(records)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ReportError(f"{path}: a record of the series cannot be read: "
                          f"{type(exc).__name__}: {exc}") from exc


def _judge_series(records: list[dict[str, Any]]) -> Report:
    start = records[0]
    limits = Limits(**start.get("limits", {}))
    rules = HealthRules(limits, list(start.get("loads", {})))
    started = datetime.fromisoformat(start["started_at"].replace("Z", "+00:00")).timestamp()
    last = started
    end = None
    for record in records[1:]:
        if record.get("type") == "sample":
            rules.feed(record)
            last = float(record.get("t", last))
        elif record.get("type") == "event" and "crashed" in record.get("message", ""):
            load = record["metric"].removeprefix("burnin.")
            rules.crashed(load, float(record["elapsed"]), record["message"].split(": ", 1)[-1])
        elif record.get("type") == "skip":
            rules.not_applicable(record["load"], record.get("message", ""))
        elif record.get("type") == "event" and "did not exit" in record.get("message", ""):
            rules.stuck(record["metric"].removeprefix("burnin."), float(record["elapsed"]))
        elif record.get("type") == "end":
            end = record
    finished = (datetime.fromisoformat(end["finished_at"].replace("Z", "+00:00")).timestamp()
                if end else last)
    return build_report(rules, start["host"], started, finished,
                        bool(end and end.get("interrupted")), None, suite=start.get("suite"),
                        killed=end is None, aborted=str(end.get("aborted", "")) if end else "",
                        inventory=Inventory.from_dict(start.get("inventory") or {}))


def _axis_label(series: str) -> str:
    from bench_agent.burnin.health import LOAD_UNITS

    if series.startswith("load."):
        unit = LOAD_UNITS.get(series.removeprefix("load."))
        return unit.value if unit else ""
    for suffix, label in (("temp_c", "°C"), ("temp_c_max", "°C"), ("power_w", "W"),
                          ("sm_clock_mhz", "MHz"), ("freq_mhz_avg", "MHz"),
                          ("load1", "load average")):
        if series.endswith(suffix):
            return label
    return ""


def draw_plots(report: Report, folder: Path, stem: str) -> list[Path]:
    """One SVG per series next to the report (report/plots.py: the collector's plots,
    no plotting library on the node)."""
    from bench_agent.report.plots import series_plot, svg_file

    paths = []
    for name, points in sorted(report.series.items()):
        svg = series_plot(points, _axis_label(name), f"{report.host}: {name}")
        if not svg:
            continue  # no finite point: nothing to draw
        path = folder / f"{stem}.{name.replace('/', '_')}.svg"
        path.write_text(svg_file(svg), encoding="utf-8")
        paths.append(path)
    return paths
