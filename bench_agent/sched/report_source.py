"""The health Report that Slurm and Kubernetes act on, produced under a time budget.

``default_report_source`` calls ``bench_agent.health.run_health`` (the fast,
passive health checks) when that module is installed; without it, it runs the
runner on the `quick` suite's inventory check against the profile, which judges
the node's counts (vCPUs, memory, GPUs, drives) the way NHC's hardware checks do.

The source runs in a daemon thread that the caller waits for at most ``budget``
seconds (Slurm's prolog and epilog have a time limit: PrologEpilogTimeout in
slurm.conf(5)). A source that runs past it gives a CheckTimeout: the caller
reports the node as failed with that reason rather than hang, and the
thread dies with the process (the runner's children die with it too: they carry
a parent-death signal, core/process.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from bench_agent.core.errors import CheckTimeout
from bench_agent.core.model import Report

# (profile name or path or None for the default, budget in seconds) -> Report
ReportSource = Callable[[str | None, float], Report]


def default_report_source(profile: str | None, budget: float) -> Report:
    try:
        from bench_agent.health import run_health  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        return inventory_report(profile, budget)
    report: Report = run_health(profile, None)
    return report


def inventory_report(profile: str | None, budget: float) -> Report:
    """The runner on the quick suite's inventory check, its time limit within ``budget``."""
    from bench_agent.config.loader import (
        DEFAULT_PROFILE,
        Suite,
        load_profile,
        load_suite,
        resolve_profile_path,
        suite_path,
    )
    from bench_agent.run.runner import Runner

    quick = load_suite(suite_path("quick"))
    plans = [replace(p, timeout=min(p.timeout, budget))
             for p in quick.checks if p.check == "inventory"]
    suite = Suite("quick-inventory", "the quick suite's inventory check", plans,
                  quick.path, quick.sha256, quick.profile)
    path = resolve_profile_path(profile or quick.profile or DEFAULT_PROFILE)
    return Runner(suite, load_profile(Path(path))).run()


def run_within(source: ReportSource, profile: str | None, budget: float) -> Report:
    """``source(profile, budget)``, waited for at most ``budget`` seconds.

    Its own errors (a profile that does not exist, an invalid one) are raised here.
    """
    result: list[Report] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(source(profile, budget))
        except BaseException as exc:  # handed to the caller's thread as it is
            error.append(exc)

    worker = threading.Thread(target=target, name="bench-agent-health", daemon=True)
    worker.start()
    worker.join(budget)
    if error:
        raise error[0]
    if not result:
        raise CheckTimeout(f"the health run did not finish within its budget of "
                             f"{budget:g} s")
    return result[0]
