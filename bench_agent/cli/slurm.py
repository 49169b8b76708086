"""`bench-agent slurm health`: Slurm's HealthCheckProgram, Prolog or Epilog.

Runs the health checks under a time budget, then drains the node (FAIL) or
resumes it (PASS, only when bench-agent drained it): bench_agent/sched/slurm.py.

Exit codes, by mode (slurm.conf(5) Prolog, Epilog, HealthCheckProgram):
    health   the report's: 0 pass, 1 fail, 2 could not measure or scontrol failed
             (slurmd ignores it; the drain is what takes the node out)
    prolog   1 when the node failed: Slurm then drains the node and requeues the
             job, which must not start on a failed node; 0 otherwise, also when
             scontrol failed on a healthy node (a control-plane blip must not
             hold every job back)
    epilog   the same as prolog: a non-zero epilog drains the node too
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from typing import TYPE_CHECKING

from bench_agent.cli.parser import EXIT_ERROR, EXIT_FAIL, EXIT_OK
from bench_agent.core.errors import CheckError, CheckTimeout, ConfigError, UsageError
from bench_agent.sched.report_source import ReportSource, default_report_source, run_within
from bench_agent.sched.summary import Fault, HealthSummary, summarize

if TYPE_CHECKING:
    from bench_agent.core.model import Report

# --budget keeps the health run and the scontrol calls inside one limit
# (prolog/epilog: slurmd's PrologEpilogTimeout, slurm.conf(5), is unlimited by
# default). Of the budget, what the scontrol calls keep for themselves (a read and an update).
SCONTROL_SHARE_S = 10.0


def node_name(explicit: str | None) -> str:
    """--node, else SLURMD_NODENAME (slurmd sets it for prolog and epilog,
    slurm.conf(5) "Prolog and Epilog Scripts"), else the short host name, which
    is Slurm's NodeName by default."""
    return explicit or os.environ.get("SLURMD_NODENAME") or socket.gethostname().split(".")[0]


def profile_argument(profile: str | None) -> str | None:
    if profile is None:
        return None
    from bench_agent.config.plans import resolve_profile_path

    try:
        return str(resolve_profile_path(profile))
    except ConfigError as exc:  # only "not found": a usage error, as for `run`
        raise UsageError(f"--profile: {exc}") from exc


def cmd_slurm(args: argparse.Namespace, source: ReportSource = default_report_source) -> int:
    from bench_agent.sched import slurm

    if args.budget <= SCONTROL_SHARE_S:
        raise UsageError(f"--budget {args.budget:g}: needs more than {SCONTROL_SHARE_S:g} s "
                         "(the scontrol calls keep that much of it)")
    started = time.monotonic()
    node = node_name(args.node)
    profile = profile_argument(args.profile)
    health_budget = args.budget - SCONTROL_SHARE_S
    summary, report_code = summarized_run(args, source, profile, health_budget)
    # The scontrol calls share what is left, at least a second each.
    deadline = max(time.monotonic() + 1.0, started + args.budget)
    said = summary_text(summary)
    try:
        decision = slurm.apply(slurm.Scontrol(), node, summary, deadline=deadline)
    except CheckError as exc:
        print(f"bench-agent slurm {args.mode}: node {node}: {said}; Slurm not updated: {exc}",
              file=sys.stderr)
        if args.mode == "health":
            return EXIT_ERROR
        return EXIT_FAIL if summary.state == "fail" else EXIT_OK
    print(f"bench-agent slurm {args.mode}: node {node}: {said}; {decision.why}")
    if args.mode == "health":
        return report_code
    return EXIT_FAIL if summary.state == "fail" else EXIT_OK


def summarized_run(args: argparse.Namespace, source: ReportSource, profile: str | None,
                   budget: float) -> tuple[HealthSummary, int]:
    """The health run within ``budget`` as the schedulers act on it (`slurm health`,
    `kube health`): its summary and `run`'s exit code; a run past its budget is a
    FAIL naming the timeout (exit 2). The report is kept with --output."""
    try:
        report = run_within(source, profile, budget)
    except CheckTimeout as exc:  # the health run as a whole, or one of its checks
        return HealthSummary("fail", (Fault("health-timeout", "", str(exc)),), "", ""), \
            EXIT_ERROR
    from bench_agent.run.runner import exit_code

    if args.output is not None:
        keep_report(args, report)
    return summarize(report), exit_code(report)


def summary_text(summary: HealthSummary) -> str:
    """ "fail (BA-GPU-XID-79: GPU 3 ...)" or "pass": what the command line says."""
    fault = summary.first
    return summary.state + (f" ({fault.code}: {fault.message})" if fault else "")


def keep_report(args: argparse.Namespace, report: Report) -> None:
    """Write the report as `run` does (signed unless --no-sign, fallbacks on a full disk)."""
    from bench_agent.cli.main import _save_report

    saved = _save_report(argparse.Namespace(
        output=args.output, no_sign=args.no_sign, key=args.key, fallback_dir=None,
        junit=None, prom=None), report)
    if saved.report is not None:
        print(f"report: {saved.report} ({saved.note})", file=sys.stderr)
