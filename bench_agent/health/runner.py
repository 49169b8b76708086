"""`bench-agent health`: the passive checks in-process, each under its own deadline.

Why not one child per check, as `run` does (docs/ARCHITECTURE.md)? A child costs
an interpreter start and the imports again, about 0.1 s each here, and eight of
them would take the whole budget: health must stay under 0.3 s, beside LBNL
NHC's 0.13 s for comparable checks (issue 16, benchmarks/bench_health.py). These
checks only read files and NVML counters, start no tool, and put no load on the
node. All start at once, each in a daemon thread; the runner waits for each up
to its own `timeout` from the suite (from its start), so the run takes as long
as its slowest check, and a check that has not answered by then is an ERROR
naming the check ("health.gpu timed out after 5 s"), NHC issue 161's complaint.
A thread cannot be killed: a hung NVML call stays hung in its thread until the
process exits, which it does right after the report (threads are daemons), so
the hang costs the time limit, never the report.

The result is a normal Report (suite "health"), judged by the same thresholds,
confirm-less, coded by the fault catalog, signed and written to the spool by the
CLI like `run`'s, so Slurm, Kubernetes and the collector read it as any other.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_agent.checks import DomainCatalog, get_check
from bench_agent.checks.base import CheckContext
from bench_agent.checks.config.checks import ConfigConsistencyCheck
from bench_agent.config.plans import CheckPlan, Profile, Suite, suite_path
from bench_agent.core.config_rules import Expectation
from bench_agent.core.errors import BenchAgentError, NotApplicable, verdict_status
from bench_agent.core.inventory import Inventory
from bench_agent.core.model import Measurement, Report, Status
from bench_agent.health.state import HealthState, default_state_path, load_state, save_state
from bench_agent.inventory.collect import collect_inventory, inventory_measurements
from bench_agent.run.runner import CheckOutcome, Runner

HEALTH_SUITE = "health"
INVENTORY = "inventory"
CONFIG = "config.consistency"


@dataclass
class HealthRun:
    """A health run's report, the state it read and the readings to keep."""

    report: Report
    state: HealthState
    readings: dict[str, dict[str, float]] = field(default_factory=dict)


class SharedInventory:
    """The node's inventory, collected once per health run by whichever check asks
    first (the inventory check or config.consistency, in their own threads); the
    other waits for it and gets the same object, or the same exception. Collecting
    it twice read /proc and /sys twice and, on a GPU node, started NVML twice
    more (nvmlInit is the slowest call of the run)."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._lock = threading.Lock()
        self._done = False
        self._inventory: Inventory | None = None
        self._error: BaseException | None = None

    def get(self) -> Inventory:
        with self._lock:
            if not self._done:
                try:
                    self._inventory = collect_inventory(self._root)
                except BaseException as exc:  # both checks report it
                    self._error = exc
                self._done = True
        if self._error is not None:
            raise self._error
        assert self._inventory is not None
        return self._inventory


def _run_check(plan: CheckPlan, root: Path, since: dict[str, float],
               expected: tuple[Expectation, ...] = (),
               shared: SharedInventory | None = None) -> Any:
    """One check's measurements, or the CheckOutcome of its failure."""
    shared = shared if shared is not None else SharedInventory(root)
    if plan.check == INVENTORY:
        # The inventory once, in-process: the report's facts and the node's counts.
        inventory = shared.get()
        return inventory, inventory_measurements(inventory)
    check = get_check(plan.check)
    ctx = CheckContext(root=root, timeout=plan.timeout, expected_config=expected)
    if plan.check == CONFIG:
        # Configuration facts are read, not counted since the last run: no "since".
        reason = check.available(ctx)
        if reason is not None:
            return CheckOutcome(plan.check, status=Status.SKIP, message=reason,
                                error=NotApplicable.__name__)
        check.params_model.model_validate(plan.params)  # refuses unknown keys as `run` does
        assert isinstance(check, ConfigConsistencyCheck)
        return None, check.judge(shared.get(), ctx)
    reason = check.available(ctx)
    if reason is not None:
        return CheckOutcome(plan.check, status=Status.SKIP, message=reason,
                            error=NotApplicable.__name__)
    params = check.params_model.model_validate({**plan.params, "since": since})
    return None, check.run(ctx, params)


@dataclass
class _Running:
    """One check running in its daemon thread, with its deadline."""

    plan: CheckPlan
    thread: threading.Thread
    started: float
    box: dict[str, Any] = field(default_factory=dict)


def start_check(plan: CheckPlan, work: Callable[[], Any]) -> _Running:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = work()
        except BaseException as exc:  # every failure becomes a verdict
            box["error"] = exc
        finally:
            box["finished"] = time.monotonic()

    thread = threading.Thread(target=target, name=f"health:{plan.check}", daemon=True)
    running = _Running(plan, thread, time.monotonic(), box)
    thread.start()
    return running


def finish_check(running: _Running) -> tuple[Any, float]:
    """Wait for a started check up to its own deadline (its start + the suite's
    timeout). Its result, or a CheckOutcome (ERROR) for a timeout or an exception;
    and the seconds it ran."""
    plan, box = running.plan, running.box
    running.thread.join(max(0.0, running.started + plan.timeout - time.monotonic()))
    if running.thread.is_alive():
        seconds = time.monotonic() - running.started
        return CheckOutcome(plan.check, status=Status.ERROR, error="timeout", seconds=seconds,
                            message=f"{plan.check} timed out after {plan.timeout:g} s (left "
                            "running in its thread; the report does not wait for it)"), seconds
    seconds = box["finished"] - running.started
    if "error" in box:
        exc = box["error"]
        status = verdict_status(exc)
        text = str(exc) if isinstance(exc, BenchAgentError) else f"{type(exc).__name__}: {exc}"
        return CheckOutcome(plan.check, status=status, message=text, seconds=seconds,
                            error=type(exc).__name__), seconds
    return box["result"], seconds


def run_with_deadline(plan: CheckPlan, work: Callable[[], Any]) -> tuple[Any, float]:
    """``work()`` in a daemon thread, waited for up to ``plan.timeout``."""
    return finish_check(start_check(plan, work))


def _bound(plan: CheckPlan, root: Path, since: dict[str, float],
           expected: tuple[Expectation, ...] = (),
           shared: SharedInventory | None = None) -> Callable[[], Any]:
    return lambda: _run_check(plan, root, since, expected, shared)


def _readings(measurements: Sequence[Measurement]) -> dict[str, dict[str, float]]:
    """The counters' readings now, by check (each measurement's params["state"])."""
    out: dict[str, dict[str, float]] = {}
    for m in measurements:
        state = m.params.get("state")
        if isinstance(state, dict):
            out.setdefault(m.check, {}).update(
                {str(k): float(v) for k, v in state.items() if isinstance(v, int | float)})
    return out


def health_report(suite: Suite, profile: Profile, state: HealthState,
                  root: Path = Path("/"), host: str | None = None) -> HealthRun:
    """Run the suite's checks in-process against ``state`` and judge them."""
    started_at = _utc_now()
    outcomes: list[CheckOutcome] = []
    inventory = Inventory(error="the inventory was not collected (not in the health suite)")
    # All at once, each under its own deadline: the run takes as long as its
    # slowest check, not their sum (NVML and file reads release the GIL; NVML is
    # thread-safe, NVML API reference "Thread Safety").
    shared = SharedInventory(root)
    running = [start_check(plan, _bound(plan, root, state.readings.get(plan.check, {}),
                                        profile.configuration, shared))
               for plan in suite.checks]
    for plan, started in zip(suite.checks, running, strict=True):
        result, seconds = finish_check(started)
        if isinstance(result, CheckOutcome):
            # A required check's SKIP becomes ERROR in build_report (outcome_verdict).
            outcomes.append(result)
            continue
        found_inventory, measurements = result
        if found_inventory is not None:
            inventory = found_inventory
        if not measurements:
            outcomes.append(CheckOutcome(plan.check, status=Status.ERROR, seconds=seconds,
                                         error="protocol",
                                         message="the check returned no measurement"))
            continue
        outcomes.append(CheckOutcome(plan.check, measurements=measurements, seconds=seconds))
    runner = Runner(suite, profile, root=root)
    if host:
        runner.host = host
    report = runner.build_report(outcomes, inventory, started_at, False)
    readings = {**state.readings, **_readings(report.measurements)}
    return HealthRun(report, state, readings)


def _utc_now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def run_health(profile: str | Path | None = None, state: Path | None = None, *,
               suite: Path | None = None, root: Path = Path("/"), save: bool = True,
               host: str | None = None) -> Report:
    """The health Report of this node (the API Slurm and Kubernetes code call).

    ``profile``: a name or a YAML path (default: the suite's, `health`); ``state``:
    the state file (default: default_state_path()), read before and, with
    ``save``, written after; ``suite``: another health suite file. Raises
    ConfigError for a suite or profile that does not load, ReportError when the
    state cannot be written. With ``save`` the loaded suite and profile are also
    kept beside the state file (health/plan_cache.py), as `bench-agent health`
    keeps them, so that `slurm health` and `kube health` start as fast.
    """
    cache = None
    if save:
        from bench_agent.health.plan_cache import cache_path

        cache = cache_path(state or default_state_path())
    return run_health_full(profile, state, suite=suite, root=root, save=save,
                           host=host, plan_cache=cache).report


def run_health_full(profile: str | Path | None = None, state: Path | None = None, *,
                    suite: Path | None = None, root: Path = Path("/"), save: bool = True,
                    host: str | None = None, plan_cache: Path | None = None) -> HealthRun:
    """run_health's run, with the state it read and the readings to keep.
    ``plan_cache``: where the loaded suite and profile are kept between runs
    (health/plan_cache.py; `bench-agent health` keeps them beside the state file),
    None to load them in full."""
    loaded_suite, loaded_profile = load_plan(suite or suite_path(HEALTH_SUITE),
                                             None if profile is None else str(profile),
                                             plan_cache)
    state_path = state or default_state_path()
    previous = load_state(state_path)
    run = health_report(loaded_suite, loaded_profile, previous, root, host)
    if save:
        save_state(state_path, run.readings)
    return run


def load_plan(suite: Path, profile: str | None, cache: Path | None = None
              ) -> tuple[Suite, Profile]:
    """The suite and its profile (``profile``, else the suite's, else `health`):
    from ``cache`` while their files are unchanged, else loaded in full (and kept
    there). Raises ConfigError for a suite or profile that does not load."""
    if cache is not None:
        from bench_agent.health import plan_cache

        key, fingerprint = plan_cache.request_key(suite, profile), plan_cache.agent_fingerprint()
        cached = plan_cache.lookup(cache, key, fingerprint)
        if cached is not None:
            return cached
    # The loader brings YAML and pydantic (about 0.1 s): only on a miss.
    from bench_agent.config.loader import load_profile_named, load_suite

    loaded_suite = load_suite(suite)
    asked = profile or loaded_suite.profile or HEALTH_SUITE
    loaded_profile = load_profile_named(asked, DomainCatalog())
    if cache is not None:
        plan_cache.store(cache, key, fingerprint, loaded_suite, loaded_profile, asked)
    return loaded_suite, loaded_profile
