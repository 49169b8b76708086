"""Burn-in: keep the node under sustained load and watch it degrade.

    bench-agent burnin --duration 4h [--suite burnin] [--output DIR]

The loads of suites/burnin.yaml are checks' own kernels in a loop (burnin/loads.py),
all at once, each in a worker child. Every ``interval`` the supervisor samples
health (burnin/health.py) and the loads' rates, and appends the readings (each
with its unit) and any event (a kind from a closed set) to
``<output>/<host>/<stamp>-<name>.jsonl`` (burnin/series.py), flushed and fsynced
per line, so a crash or a power cut keeps everything up to the last sample. At
the end (or on SIGINT/SIGTERM) the loads are stopped and the series is judged
(burnin/judge.py): the file's thresholds, time-window rules included, by
core/thresholds.py. A killed run leaves only its .jsonl; ``report_from_series``
judges it the same way, which `bench-agent report show FILE.jsonl` prints.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

from bench_agent.burnin.health import (
    Event,
    EventKind,
    HealthReader,
    Reading,
    nvme_devices_from_inventory,
    sample_cpu,
    sample_nvme,
)
from bench_agent.burnin.judge import judge
from bench_agent.burnin.judge import utc as _utc
from bench_agent.burnin.loads import Load, RunningLoad, burnin_catalog, load_registry, start_load
from bench_agent.burnin.series import SERIES_VERSION, SeriesWriter, read_series, upgrade
from bench_agent.checks.base import RunOptions
from bench_agent.config.loader import (
    WindowThresholdEntry,
    data_dir,
    load_model,
    params_error,
    threshold_from_entry,
)
from bench_agent.core.errors import ConfigError, ReportError, UnitError
from bench_agent.core.model import NamedDigest, Report, Status
from bench_agent.core.process import stop_all
from bench_agent.core.thresholds import Threshold
from bench_agent.core.units import parse_duration

# After SIGTERM, how long the loads get to end their loop and remove their files.
STOP_GRACE_S = 15.0


class BurninFile(BaseModel):
    """A burn-in YAML file (suites/burnin.yaml): loads by name with their params
    (each load's own params model checks them), and thresholds as in a profile,
    time-window fields allowed."""

    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    interval: StrictStr | StrictFloat | StrictInt = "10s"
    loads: dict[str, dict[str, Any]] = Field(default_factory=dict)
    thresholds: list[WindowThresholdEntry] = Field(default_factory=list)


@dataclass(frozen=True)
class BurninConfig:
    name: str
    path: str
    sha256: str
    interval: float
    loads: dict[str, dict[str, Any]]  # enabled loads -> validated params
    thresholds: list[Threshold] = field(default_factory=list)
    # Where the thresholds come from: the shipped file's, then this file's.
    profile: NamedDigest = field(default_factory=lambda: NamedDigest("burnin-thresholds",
                                                                     "0" * 64))


def default_burnin_path() -> Path:
    return data_dir() / "burnin.yaml"


def load_burnin_config(path: Path) -> BurninConfig:
    """Read and check a burn-in file; every problem is a ConfigError naming the file
    and the key (an unknown load, a typo in a load's params, a bad threshold).

    Its thresholds are those of the shipped suites/burnin.yaml, each replaced by the
    file's own of the same id, plus the file's new ones."""
    parsed, digest = load_model(path, BurninFile)
    registry = load_registry()
    loads: dict[str, dict[str, Any]] = {}
    for name, raw in parsed.loads.items():
        key = f"loads.{name}"
        if name not in registry:
            raise ConfigError(f"unknown load {name!r}; expected one of {', '.join(registry)}",
                              file=str(path), key=key)
        params = dict(raw)
        enabled = params.pop("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"expected true or false, got {enabled!r}", file=str(path),
                              key=f"{key}.enabled")
        try:
            model = registry[name].variant.params_model.model_validate(params)
        except ValidationError as exc:
            raise params_error(exc, path, key) from exc
        if enabled:
            loads[name] = model.model_dump(mode="json")
    try:
        interval = parse_duration(parsed.interval)
    except UnitError as exc:
        raise ConfigError(str(exc), file=str(path), key="interval") from exc
    if interval <= 0:
        raise ConfigError("must be longer than 0 s", file=str(path), key="interval")
    by_id: dict[str, Threshold] = {}
    profile_digest = digest
    shipped = default_burnin_path()
    if path.resolve() != shipped.resolve():
        base = load_burnin_config(shipped)
        by_id = {t.id: t for t in base.thresholds}
        profile_digest = hashlib.sha256((base.sha256 + digest).encode()).hexdigest()
    catalog = burnin_catalog()
    seen: set[str] = set()
    for index, entry in enumerate(parsed.thresholds):
        key = f"thresholds[{index}]"
        if entry.id in seen:
            raise ConfigError(f"duplicate threshold id {entry.id!r}", file=str(path), key=key)
        seen.add(entry.id)
        by_id[entry.id] = threshold_from_entry(entry, path, key, catalog)
    if not by_id:
        raise ConfigError("a burn-in needs thresholds: without them nothing is judged",
                          file=str(path), key="thresholds")
    return BurninConfig(parsed.name, str(path), digest, interval, loads, list(by_id.values()),
                        NamedDigest("burnin-thresholds", profile_digest, str(path)))


# --- running ---------------------------------------------------------------------------


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
    # Told every record as it is written (the command line's live view); a fault
    # of the view must not stop the burn-in, so its errors are dropped.
    on_record: Callable[[dict[str, Any]], None] | None = None
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

    def _start_loads(self, registry: dict[str, Load], loads: dict[str, RunningLoad]) -> None:
        """Start every load into ``loads``, which holds those started when one fails."""
        options = RunOptions(target=Path(self.target) if self.target else None,
                             peer=self.peer or None)
        for name, params in self.config.loads.items():
            loads[name] = start_load(registry[name], params, self.config.interval,
                                     self.duration, options, str(self.output_dir))

    def run(self) -> tuple[Report, Path]:
        started = self.clock()
        stamp = _utc(started).replace("-", "").replace(":", "")
        series_path = self.output_dir / self.host / f"{stamp}-{self.config.name}.jsonl"
        writer = SeriesWriter(series_path)
        records: list[dict[str, Any]] = []

        def append(record: dict[str, Any]) -> None:
            records.append(record)
            writer.write(record)
            if self.on_record is not None:
                with contextlib.suppress(Exception):  # the display never costs the run
                    self.on_record(record)

        registry = load_registry()
        from bench_agent.run.runner import collect_inventory_in_child

        inventory = collect_inventory_in_child()
        append({"type": "start", "series_version": SERIES_VERSION, "host": self.host,
                "started_at": _utc(started), "inventory": inventory.to_dict(),
                "duration": self.duration, "interval": self.config.interval,
                "suite": {"name": self.config.name, "sha256": self.config.sha256,
                          "path": self.config.path},
                "profile": self.config.profile.to_dict(),
                "loads": {name: {"check": registry[name].check, "params": params}
                          for name, params in self.config.loads.items()},
                "thresholds": [t.to_dict() for t in self.config.thresholds]})
        nvme = nvme_devices_from_inventory()
        reader = HealthReader()
        loads: dict[str, RunningLoad] = {}
        interrupted = False
        aborted = ""
        try:
            self._start_loads(registry, loads)
            while not (interrupted := self._wait(self.config.interval)):
                elapsed = self._tick(started, loads, reader, nvme, append)
                if elapsed >= self.duration:
                    break
        except Exception as exc:  # a load that cannot start, a full disk: keep what we have
            aborted = f"{type(exc).__name__}: {exc}"
        finally:
            stuck = self._stop_loads(loads)
            close = getattr(self.gpu_sampler, "close", None)
            if close is not None:
                close()
        elapsed = self.clock() - started
        tail = [Event(EventKind.LOAD_STUCK, elapsed, name,
                      detail=f"did not exit after SIGKILL at +{elapsed:.0f} s: stuck in the "
                             "kernel (a hung GPU driver or I/O)").to_dict() for name in stuck]
        for name, load in loads.items():
            if name not in stuck:
                tail += self._exit_events(load, elapsed)
        end = {"type": "end", "finished_at": _utc(self.clock()), "interrupted": interrupted,
               "aborted": aborted}
        report = judge([*records, *tail, end])
        try:
            for record in tail:
                append(record)
            append({**end, "status": report.status.value})
            writer.close()
        except OSError:
            pass  # the series keeps every sample up to the failure; the report says why
        return report, series_path

    def _stop_loads(self, loads: dict[str, RunningLoad]) -> list[str]:
        """Stop every load at once (one grace for all); the names of those that
        outlived SIGKILL (stuck in the kernel: we stop waiting for them)."""
        for load in loads.values():
            if load.exit_code() is None:
                load.stopped = True
        stop_all([load.child for load in loads.values()], STOP_GRACE_S)
        return [name for name, load in loads.items() if load.child.popen.returncode is None]

    def _tick(self, started: float, loads: dict[str, RunningLoad], reader: HealthReader,
              nvme: list[str], append: Callable[[dict[str, Any]], None]) -> float:
        """One sample: read, append (fsynced). Returns the elapsed time."""
        now = self.clock()
        elapsed = now - started
        raw: dict[str, Any] = {"cpu": sample_cpu(), "nvme": sample_nvme(nvme)}
        if self.gpu_sampler is not None:
            try:
                raw["gpus"] = self.gpu_sampler()
            except Exception as exc:  # a GPU off the bus: a finding, not a crash
                raw["gpu_error"] = f"{type(exc).__name__}: {exc}"
        readings, events = reader.feed(raw, elapsed)
        for load in loads.values():
            value = load.take()
            if value is not None:
                rate = load.load.variant.rate
                readings.append(Reading(rate.name, value, rate.unit))
        append({"type": "sample", "t": now, "elapsed": elapsed,
                "readings": [r.to_dict() for r in readings]})
        for event in events:
            append(event.to_dict())
        for load in loads.values():
            for record in self._exit_events(load, elapsed):
                append(record)
        return elapsed

    @staticmethod
    def _exit_events(load: RunningLoad, elapsed: float) -> list[dict[str, Any]]:
        """A load that ended on its own (once): not applicable here, or a crash."""
        if load.stopped or load.exit_code() is None:
            return []
        load.stopped = True  # told once
        outcome = load.outcome()
        if outcome.status is Status.SKIP:
            return [Event(EventKind.LOAD_NOT_APPLICABLE, elapsed, load.name,
                          detail=outcome.message).to_dict()]
        why = (outcome.message if outcome.status is not None
               else "it ended on its own before the burn-in did")
        return [Event(EventKind.LOAD_CRASHED, elapsed, load.name,
                      detail=f"load {load.name} crashed at +{elapsed:.0f} s: {why}").to_dict()]


def report_from_series(path: Path) -> Report:
    """Judge a series file again: a finished, an interrupted or a killed run, in this
    format or the one before it (burnin/series.py)."""
    records = read_series(path)
    try:
        return judge(upgrade(records))
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise ReportError(f"{path}: a record of the series cannot be read: "
                          f"{type(exc).__name__}: {exc}") from exc


def _axis_label(report: Report, series: str) -> str:
    return report.series_units.get(series, "")


def draw_plots(report: Report, folder: Path, stem: str) -> list[Path]:
    """One SVG per series next to the report (report/plots.py: the collector's plots,
    no plotting library on the node)."""
    from bench_agent.report.plots import series_plot, svg_file

    paths = []
    for name, points in sorted(report.series.items()):
        svg = series_plot(points, _axis_label(report, name), f"{report.host}: {name}")
        if not svg:
            continue  # no finite point: nothing to draw
        path = folder / f"{stem}.{name.replace('/', '_')}.svg"
        path.write_text(svg_file(svg), encoding="utf-8")
        paths.append(path)
    return paths
