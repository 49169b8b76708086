"""plan -> child processes -> measurements -> verdicts -> report.

This is the one place where failures become verdicts. Each check runs in its own
child process (``python -m bench_agent.run.worker``) under the suite's time limit,
started through the subprocess seam (core/process.py): a hung driver call or
tool is stopped with everything it started, the worker dies with the agent, and
the agent carries on with the next check (pyperf's manager does the same with
its workers).

    child said status SKIP (ToolMissing, NotApplicable)     -> SKIP (ERROR if required)
    child said status ERROR (ToolFailed, ParseError, ...)    -> ERROR, with its words
    child said another status, or none                       -> ERROR
    child crashed, was killed, printed garbage, timed out    -> ERROR, with stderr
    child returned measurements                              -> thresholds.evaluate

A check that brackets the run (Check.brackets_run: network.ib_port_health) is
called twice: its snapshot in a child right after the inventory, before any
other check, and its run at its place in the suite (last, in suites/network.yaml)
with that snapshot, so it judges what changed under the traffic in between. A
snapshot that failed is handed on as the reason (``before_error``), never dropped.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import socket
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from bench_agent import __version__
from bench_agent.checks.base import RunOptions
from bench_agent.config.plans import CheckPlan, Profile, Suite
from bench_agent.core import process
from bench_agent.core.inventory import Inventory
from bench_agent.core.model import Measurement, NamedDigest, Report, Status, Verdict
from bench_agent.core.process import run_child
from bench_agent.core.thresholds import evaluate
from bench_agent.faults.assign import assign_faults
from bench_agent.run.worker import PROTOCOL

INVENTORY_TIMEOUT_S = 60.0
# After SIGTERM, how long a child gets to clean up (remove fio's test file, stop
# its servers) before SIGKILL; longer than a tool's own grace inside the worker
# (process.TOOL_GRACE_S), so the worker can still stop its tool and answer.
KILL_GRACE_S = process.KILL_GRACE_S
# What a child may answer for a check that did not measure: the status its error's
# class declares (core/errors.py). Decided by that value, never by the class's name.
_FAILURE_STATUSES = (Status.SKIP, Status.ERROR)


def default_worker_command() -> list[str]:
    return [sys.executable, "-m", "bench_agent.run.worker"]


@dataclass
class CheckOutcome:
    """What came back from one child: measurements, or the status and the why."""

    check: str
    measurements: list[Measurement] = field(default_factory=list)
    status: Status | None = None  # None: measured; SKIP or ERROR otherwise
    message: str = ""
    seconds: float = 0.0
    payload: dict[str, Any] = field(default_factory=dict)
    # Why it did not measure, for the fault catalog (faults/catalog.yaml mappings):
    # the worker's error class (ToolMissing, ParseError, ...) or the runner's own
    # "timeout", "crash", "protocol", "interrupted".
    error: str = ""
    # confirm-before-failing (suite `confirm: N`): how many times the check ran,
    # and the FAILs of an earlier attempt that a later one passed, by
    # (threshold id, device) -> the earlier verdict's message.
    attempts: int = 1
    flaky: dict[tuple[str, str], str] = field(default_factory=dict)


class Progress(Protocol):
    def check_started(self, check: str, index: int, total: int) -> None: ...

    def check_finished(self, outcome: CheckOutcome) -> None: ...


class SilentProgress:
    def check_started(self, check: str, index: int, total: int) -> None:
        pass

    def check_finished(self, outcome: CheckOutcome) -> None:
        pass


def _tail(text: str, limit: int = 600) -> str:
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


def run_in_child(
    request: dict[str, Any],
    timeout: float,
    worker_command: Sequence[str] | None = None,
) -> CheckOutcome:
    """Run one worker request in a child process; never raises but KeyboardInterrupt.

    The worker runs through the one subprocess seam (core/process.py): its own
    session, a parent-death signal (it dies with the agent, even by SIGKILL), and
    on a timeout or Ctrl-C/SIGTERM in the agent its whole tree is stopped: the
    group, the tools it started in their own sessions, and escapees.
    """
    name = str(request.get("check", "inventory"))
    command = list(worker_command or default_worker_command())
    started = time.monotonic()
    payload = json.dumps({"protocol": PROTOCOL, **request}).encode()
    try:
        # A KeyboardInterrupt inside stops the worker's tree before it propagates.
        done = run_child(command, data=payload, timeout=timeout, grace=KILL_GRACE_S)
    except OSError as exc:
        return CheckOutcome(name, status=Status.ERROR, message=f"cannot start worker: {exc}",
                            error="crash")
    seconds = time.monotonic() - started
    if done.timed_out:
        stderr = done.stderr
        if done.pipes_held:
            # Something we could not stop (stuck in the kernel, or it left our
            # session and its token behind) still holds the pipes: we stopped
            # waiting for its output rather than hang the agent.
            stderr += "\n(its output pipes stayed open after it was killed)"
        return CheckOutcome(
            name,
            status=Status.ERROR,
            message=f"timed out after {timeout:g} s and was stopped"
            + (f"; last output: {_tail(stderr, 300)}" if stderr.strip() else ""),
            seconds=seconds, error="timeout",
        )
    if done.returncode is None:  # it outlived SIGKILL: stuck in the kernel
        return CheckOutcome(name, status=Status.ERROR, seconds=seconds, error="timeout",
                            message="its process could not be stopped (stuck in the kernel)")
    return outcome_from_output(name, done.returncode, done.stdout, done.stderr, seconds)


def _signal_name(number: int) -> str:
    """SIGKILL for 9; real-time signals (SIGRTMIN+1...) have no enum member."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"{number}"


def outcome_from_output(
    name: str, returncode: int, stdout: str, stderr: str, seconds: float
) -> CheckOutcome:
    """What a worker's exit code and output say (the last line is its response)."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    response: Any = None
    if lines:
        try:
            response = json.loads(lines[-1])
        except json.JSONDecodeError:
            response = None
    if not isinstance(response, dict) or "ok" not in response:
        if returncode < 0:
            why = f"killed by signal {_signal_name(-returncode)}"
        elif returncode > 0:
            why = f"crashed with exit code {returncode}"
        else:
            why = "returned unreadable output"
        detail = _tail(stderr) or _tail(stdout, 300) or "no output"
        return CheckOutcome(name, status=Status.ERROR, message=f"{why}: {detail}",
                            seconds=seconds, error="crash")
    if not response["ok"]:
        error = str(response.get("error", "Error"))
        message = str(response.get("message", "")) or error
        said = response.get("status")
        status = next((s for s in _FAILURE_STATUSES if s.value == said), None)
        if status is None:
            return CheckOutcome(name, status=Status.ERROR, seconds=seconds, error="protocol",
                                message=f"the worker gave no verdict status ({said!r}) for "
                                f"{error}: {message}")
        return CheckOutcome(name, status=status, message=message, seconds=seconds,
                            error=error)
    if "snapshot" in response:
        if not isinstance(response["snapshot"], dict):
            return CheckOutcome(name, status=Status.ERROR, seconds=seconds,
                                message="the worker's snapshot is not a JSON object")
        return CheckOutcome(name, seconds=seconds, payload={"snapshot": response["snapshot"]})
    if "inventory" in response:
        try:
            inventory = Inventory.from_dict(response["inventory"])
        except ValueError as exc:
            return CheckOutcome(name, status=Status.ERROR, seconds=seconds,
                                message=f"invalid inventory from the worker: {exc}")
        return CheckOutcome(name, seconds=seconds, payload={"inventory": inventory})
    try:
        measurements = [Measurement.from_dict(m) for m in response.get("measurements", [])]
    except (KeyError, TypeError, ValueError) as exc:
        return CheckOutcome(name, status=Status.ERROR, seconds=seconds, error="protocol",
                            message=f"invalid measurement from check: {exc}")
    if not measurements:
        return CheckOutcome(name, status=Status.ERROR, seconds=seconds, error="protocol",
                            message="the check returned no measurement")
    return CheckOutcome(name, measurements=measurements, seconds=seconds)


def collect_inventory_in_child(
    root: Path = Path("/"), worker_command: Sequence[str] | None = None
) -> Inventory:
    """The inventory, read in a child under a time limit: NVML on a sick driver can
    hang, and a hang here must not cost the report. If it failed, every fact is
    unknown and ``error`` says why."""
    outcome = run_in_child({"inventory": True, "root": str(root)}, INVENTORY_TIMEOUT_S,
                           worker_command)
    if outcome.status is not None:
        return Inventory(error=outcome.message)
    inventory: Inventory = outcome.payload["inventory"]
    return inventory


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def host_identity() -> str:
    return socket.gethostname()


@dataclass
class Runner:
    """Runs a suite against a profile. ``worker_command`` and ``root`` are the seams."""

    suite: Suite
    profile: Profile
    output_dir: Path = Path("results")
    root: Path = Path("/")
    progress: Progress = field(default_factory=SilentProgress)
    worker_command: Sequence[str] | None = None
    host: str = field(default_factory=host_identity)
    # Run-wide options from the command line that checks read from their
    # context (storage --target/--device/--destructive, network --peer, nccl).
    options: RunOptions = field(default_factory=RunOptions)

    def _request(self, plan: CheckPlan, before: CheckOutcome | None = None) -> dict[str, Any]:
        if before is not None:
            extra: dict[str, Any] = ({"before": before.payload["snapshot"]}
                                     if before.status is None else
                                     {"before_error": f"{before.status}: {before.message}"})
            return {**self._request(plan), **extra}
        return {
            "check": plan.check,
            "params": plan.params,
            "root": str(self.root),
            "output_dir": str(self.output_dir),
            "timeout": plan.timeout,
            "options": self.options.to_dict(),
            "expected_config": [e.to_dict() for e in self.profile.configuration],
        }

    def collect_inventory(self) -> Inventory:
        return collect_inventory_in_child(self.root, self.worker_command)

    def take_snapshots(self) -> dict[int, CheckOutcome]:
        """The start snapshot of every check that brackets the run, by plan index."""
        from bench_agent.checks import check_class

        out: dict[int, CheckOutcome] = {}
        for index, plan in enumerate(self.suite.checks):
            if check_class(plan.check).brackets_run:
                out[index] = run_in_child({**self._request(plan), "phase": "before"},
                                          plan.timeout, self.worker_command)
        return out

    def run(self) -> Report:
        started = _utc_now()
        outcomes: list[CheckOutcome] = []
        try:
            inventory = self.collect_inventory()
        except KeyboardInterrupt:
            # Stopped before any check ran: still a report, marked interrupted.
            skipped = [CheckOutcome(p.check, status=Status.SKIP,
                                    message="not run: the run was interrupted")
                       for p in self.suite.checks]
            return self.build_report(skipped, Inventory(error="interrupted while collecting"),
                                     started, True)
        interrupted = False
        total = len(self.suite.checks)
        try:
            snapshots = self.take_snapshots()
        except KeyboardInterrupt:
            skipped = [CheckOutcome(p.check, status=Status.SKIP,
                                    message="not run: the run was interrupted")
                       for p in self.suite.checks]
            return self.build_report(skipped, inventory, started, True)
        for index, plan in enumerate(self.suite.checks):
            self.progress.check_started(plan.check, index, total)
            try:
                outcome = self._run_confirmed(plan, snapshots.get(index))
            except KeyboardInterrupt:
                interrupted = True
                outcome = CheckOutcome(plan.check, status=Status.ERROR, error="interrupted",
                                       message="interrupted while running (Ctrl-C or SIGTERM)")
                self.progress.check_finished(outcome)
                outcomes.append(outcome)
                for rest in self.suite.checks[index + 1 :]:
                    outcomes.append(CheckOutcome(rest.check, status=Status.SKIP,
                                                 message="not run: the run was interrupted"))
                break
            self.progress.check_finished(outcome)
            outcomes.append(outcome)
        return self.build_report(outcomes, inventory, started, interrupted)

    def _failing(self, outcome: CheckOutcome) -> dict[tuple[str, str], Verdict]:
        """The FAIL verdicts the profile gives this outcome's measurements alone."""
        if outcome.status is not None:
            return {}
        judged = evaluate(outcome.measurements, self.profile.thresholds, [outcome.check])
        return {(v.threshold_id, v.device): v for v in judged if v.status is Status.FAIL}

    def _run_confirmed(self, plan: CheckPlan, before: CheckOutcome | None = None
                       ) -> CheckOutcome:
        """Run a check; with ``confirm: N`` a FAIL is re-run up to N times before it
        stands. The first attempt without a FAIL is kept, and the FAILs the earlier
        attempts had are recorded (build_report makes them WARN, flaky): a transient
        fault is neither hidden as a PASS nor reported as a broken part."""
        outcome = run_in_child(self._request(plan, before), plan.timeout, self.worker_command)
        failing = self._failing(outcome)
        earlier: dict[tuple[str, str], str] = {}
        attempts = 1
        seconds = outcome.seconds
        while failing and attempts <= plan.confirm:
            for key, verdict in failing.items():
                earlier.setdefault(key, f"FAIL on attempt {attempts}: {verdict.message}")
            attempts += 1
            outcome = run_in_child(self._request(plan, before), plan.timeout,
                                   self.worker_command)
            seconds += outcome.seconds
            failing = self._failing(outcome)
        outcome.attempts = attempts
        outcome.seconds = seconds
        # Only a FAIL that a later attempt measured and passed is flaky; one that
        # still fails, or a re-run that errored, stands as it is.
        if outcome.status is None:
            outcome.flaky = {k: why for k, why in earlier.items() if k not in failing}
        return outcome

    def build_report(
        self,
        outcomes: list[CheckOutcome],
        inventory: Inventory,
        started: str,
        interrupted: bool,
    ) -> Report:
        required = {p.check for p in self.suite.checks if p.required}
        verdicts: list[Verdict] = []
        measurements: list[Measurement] = []
        ok_checks: list[str] = []
        check_seconds: dict[str, float] = {}
        # Why each check that ran measured nothing: the reason every threshold
        # on its metrics carries (SKIP, or FAIL when the profile requires it).
        unmeasured: dict[str, str] = {}
        for outcome in outcomes:
            check_seconds[outcome.check] = check_seconds.get(outcome.check, 0.0) + outcome.seconds
            if outcome.status is None:
                measurements.extend(outcome.measurements)
                ok_checks.append(outcome.check)
                continue
            verdict = outcome_verdict(outcome, outcome.check in required)
            verdicts.append(verdict)
            unmeasured[outcome.check] = (f"not measured: {outcome.check} {verdict.status}:"
                                         f" {verdict.message}")
        # Every threshold of the profile gets a verdict, also those whose check is
        # not in this suite: a report never looks complete while a rule of its
        # profile went unjudged (a GPU profile run without gpu.health).
        for plan in self.suite.checks:
            if plan.check not in ok_checks:
                unmeasured.setdefault(plan.check, f"not measured: {plan.check} did not run")
        verdicts.extend(evaluate(measurements, self.profile.thresholds, ok_checks,
                                 unmeasured=unmeasured, profile=self.profile.name))
        verdicts = confirmed(verdicts, outcomes)
        verdicts = assign_faults(verdicts, measurements, inventory,
                                 {o.check: o.error for o in outcomes if o.error})
        return Report(
            report_id=str(uuid.uuid4()),
            agent_version=__version__,
            host=self.host,
            inventory=inventory,
            suite=NamedDigest(self.suite.name, self.suite.sha256, self.suite.path),
            profile=NamedDigest(self.profile.name, self.profile.sha256, self.profile.path),
            started_at=started,
            finished_at=_utc_now(),
            measurements=measurements,
            verdicts=verdicts,
            interrupted=interrupted,
            check_seconds=check_seconds,
        )


def confirmed(verdicts: list[Verdict], outcomes: Sequence[CheckOutcome]) -> list[Verdict]:
    """``verdicts`` with each check's attempt count, and the PASS of a FAIL that a
    re-run passed turned into WARN with ``flaky`` (docs/faults.md, "Confirm before
    failing")."""
    by_check = {o.check: o for o in outcomes}
    out: list[Verdict] = []
    for verdict in verdicts:
        outcome = by_check.get(verdict.check)
        if outcome is None or outcome.attempts == 1:
            out.append(verdict)
            continue
        earlier = outcome.flaky.get((verdict.threshold_id, verdict.device))
        if earlier is not None and verdict.status is Status.PASS:
            verdict = dataclasses.replace(
                verdict, status=Status.WARN, flaky=True,
                message=f"flaky: {earlier}; PASS on attempt {outcome.attempts}")
        out.append(dataclasses.replace(verdict, attempts=outcome.attempts))
    return out


def outcome_verdict(outcome: CheckOutcome, required: bool = False) -> Verdict:
    """The verdict of a check (or a burn-in load, or a whole run) that did not
    measure: its SKIP or ERROR with the why; a required check's SKIP is ERROR."""
    assert outcome.status is not None, "a measured outcome is judged by its thresholds"
    status, message = outcome.status, outcome.message
    if status is Status.SKIP and required:
        status = Status.ERROR
        message = f"required check could not run: {message}"
    return Verdict(check=outcome.check, status=status, message=message)


def report_path(output_dir: Path, report: Report) -> Path:
    """<output>/<host>/<UTC timestamp>-<suite>.json, names made safe for a path."""
    stamp = report.started_at.replace("-", "").replace(":", "")
    safe_suite = "".join(c if c.isalnum() or c in "-_+." else "_" for c in report.suite.name)
    safe_host = "".join(c if c.isalnum() or c in "-_." else "_" for c in report.host) or "host"
    return output_dir / safe_host / f"{stamp}-{safe_suite}.json"


def exit_code(report: Report) -> int:
    """0 all PASS (WARN and SKIP allowed), 1 a FAIL, 2 an ERROR or an incomplete run.

    When a run has both, the higher code wins: a node we could not fully measure
    is reported as such even when something else failed too.
    """
    status = report.status
    if status is Status.ERROR:
        return 2
    if status is Status.FAIL:
        return 1
    return 0
