"""What a scheduler needs to know from a Report: pass, warn or fail, and why.

A FAIL or an ERROR verdict takes the node out: ERROR too, because on a health
run a check that cannot measure (a tool that hangs, a device that does not
answer) is itself a sign of a sick node. NHC does the same: the first check
that does not succeed calls its die(), which marks the node offline through
node-mark-offline (https://github.com/mej/nhc, scripts/nhc and
scripts/lbnl_nhc.nhc die()). WARN and a flaky result keep the node in service,
labelled warn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bench_agent.core.model import Report, Status, Verdict

HealthState = Literal["pass", "warn", "fail"]


@dataclass(frozen=True, slots=True)
class Fault:
    """One reason the node is unhealthy: the catalog's code (or, for a verdict
    that carries none, its status and metric), the component and the message."""

    code: str
    component: str
    message: str


@dataclass(frozen=True, slots=True)
class HealthSummary:
    state: HealthState
    faults: tuple[Fault, ...]
    report_id: str
    finished_at: str

    @property
    def first(self) -> Fault | None:
        return self.faults[0] if self.faults else None


def fault_of(verdict: Verdict) -> Fault:
    # A verdict without a catalog code (a report written before the fault catalog,
    # or a check the catalog does not cover yet) is named by what it judged.
    code = verdict.fault_code or f"{verdict.status.value}-{verdict.metric or verdict.check}"
    return Fault(code, verdict.component or verdict.device, verdict.message)


def summarize(report: Report) -> HealthSummary:
    failed = [v for v in report.verdicts if v.status is Status.FAIL]
    errored = [v for v in report.verdicts if v.status is Status.ERROR]
    status = report.status
    faults = tuple(fault_of(v) for v in failed + errored)
    if status in (Status.FAIL, Status.ERROR):
        if not faults:  # an ERROR report without an ERROR verdict: nothing measured
            faults = (Fault(f"{status.value}-report", "",
                            "the health run judged nothing (every check skipped)"),)
        state: HealthState = "fail"
    elif status is Status.WARN:
        state = "warn"
    else:
        state = "pass"
    return HealthSummary(state, faults, report.report_id, report.finished_at)
