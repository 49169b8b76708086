"""Burn-in loads: the checks' own kernels in a loop, each in a worker child.

A load is a check's ``burnin`` variant (checks/base.py BurninVariant): its name in
burnin.yaml, the rate it reports, its params model and its loop. The registry is
derived from the checks (bench_agent.checks.check_names()), so a load exists exactly when
a check declares one. Each load runs in the one worker (run/worker.py, burn-in
mode), started through the one subprocess seam (core/process.py): its own session,
SIGTERM when the supervisor dies (the loop stops and removes its files), stopped
with everything it started. The worker prints one reading per interval and, when
it ends, the worker protocol's response; the runner reads that response
(runner.outcome_from_output) as it reads a check's.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from bench_agent.checks.base import BurninVariant, RunOptions
from bench_agent.core.errors import StrictJSONError
from bench_agent.core.metrics import MetricInfo
from bench_agent.core.process import PIPE, Child, spawn
from bench_agent.core.strict_json import loads_strict
from bench_agent.run.runner import CheckOutcome, default_worker_command, outcome_from_output
from bench_agent.run.worker import PROTOCOL


@dataclass(frozen=True)
class Load:
    name: str  # as burnin.yaml names it
    check: str  # the check whose kernel it runs
    variant: BurninVariant


def load_registry() -> dict[str, Load]:
    """Every check's burn-in variant, by its load name, in the checks' order."""
    from bench_agent.checks import check_class, check_names

    loads: dict[str, Load] = {}
    for name in check_names():
        variant = check_class(name).burnin
        if variant is not None:
            loads[variant.load] = Load(variant.load, name, variant)
    return loads


def burnin_catalog() -> dict[str, MetricInfo]:
    """The metrics a burn-in's thresholds may name: the health readings and each
    load's rate (checked "burnin.loads", as their verdicts are)."""
    from bench_agent.burnin.health import HEALTH_METRICS

    catalog = dict(HEALTH_METRICS)
    for load in load_registry().values():
        rate = load.variant.rate
        catalog[rate.name] = MetricInfo(rate.name, rate.unit, rate.meaning, ("burnin.loads",),
                                        rate.higher_is_better)
    return catalog


@dataclass
class RunningLoad:
    """A load's worker child, its latest reading and its last words."""

    load: Load
    child: Child
    started: float = field(default_factory=time.monotonic)
    stopped: bool = False  # stopped by us: its exit is not a crash
    _latest: float | None = None
    _response: str = ""
    _stderr: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _readers: list[threading.Thread] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.load.name

    def start_readers(self) -> None:
        for target in (self._read_stdout, self._read_stderr):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._readers.append(thread)

    def _read_stdout(self) -> None:
        stdout = self.child.popen.stdout
        assert stdout is not None
        for line in stdout:
            try:
                message = loads_strict(line)
            except StrictJSONError:
                message = None
            reading = message.get("reading") if isinstance(message, dict) else None
            if isinstance(reading, dict):
                value = reading.get("value")
                if isinstance(value, int | float) and not isinstance(value, bool):
                    with self._lock:
                        self._latest = float(value)
                continue  # null: NaN or an infinity, no reading
            # Anything else is the response (or garbage, which the runner names).
            self._response = line.decode("utf-8", errors="replace")

    def _read_stderr(self) -> None:
        stderr = self.child.popen.stderr
        assert stderr is not None
        for line in stderr:
            text = line.decode("utf-8", errors="replace").rstrip()
            self._stderr = [*self._stderr[-19:], text]

    def take(self) -> float | None:
        """The latest reading since the last take (None: none came)."""
        with self._lock:
            value, self._latest = self._latest, None
        return value

    def exit_code(self) -> int | None:
        return self.child.poll()

    def outcome(self) -> CheckOutcome:
        """Why an exited load ended: its response, read as the runner reads a check's
        (SKIP: it cannot run here; ERROR: it failed, with its words)."""
        for reader in self._readers:
            reader.join(timeout=5)  # drain the pipes first
        code = self.exit_code()
        assert code is not None, "outcome() of a load that is still running"
        return outcome_from_output(self.name, code, self._response, "\n".join(self._stderr),
                                   time.monotonic() - self.started)


def start_load(load: Load, params: dict[str, Any], interval: float, duration: float,
               options: RunOptions, output_dir: str) -> RunningLoad:
    """Start ``load``'s worker in burn-in mode; OSError if it cannot start."""
    request = {"protocol": PROTOCOL, "burnin": True, "check": load.check, "params": params,
               "root": "/", "output_dir": output_dir,
               # The loop stops by itself a minute after the run should have ended.
               "timeout": duration + 60.0, "options": options.to_dict(),
               "interval": interval}
    # SIGTERM, not SIGKILL, when the supervisor dies: the loop returns and removes
    # its files (the storage load's test file).
    child = spawn(default_worker_command(), stdin=PIPE, death_signal=signal.SIGTERM)
    running = RunningLoad(load, child)
    try:
        assert child.popen.stdin is not None
        child.popen.stdin.write(json.dumps(request).encode())
        child.popen.stdin.close()
    except OSError:
        child.stop()
        raise
    running.start_readers()
    return running
