"""`bench-agent health`: the passive checks, a signed report in the spool, the table.

The report goes where `run`'s go (--output, default results/), signed with the
node key, so `bench-agent upload`, the collector, Slurm and Kubernetes read it
like any other; the exit code is `run`'s (0 pass/warn, 1 fail, 2 error).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction,  # type: ignore[type-arg]
               parser_class: type[argparse.ArgumentParser], fallback_help: str) -> None:
    health = sub.add_parser("health", help="fast passive health checks (no load)",
                            description="GPU count, ECC, row remaps, XIDs since the last run, "
                            "throttling, PCIe, NVLink, IB ports, NVMe, mounts and free space, "
                            "services and modules, clock sync and the node's counts against "
                            "the profile; in-process, each check under its own time limit.")
    health.add_argument("--profile", help="profile name or YAML path (default: health)")
    health.add_argument("--suite-file", type=Path, metavar="FILE",
                        help="a health suite of your own (default: the shipped health suite)")
    health.add_argument("--state", type=Path, metavar="FILE",
                        help="the state file of the previous run (default: /var/lib/"
                        "bench-agent/health-state.json as root, else ~/.local/state/"
                        "bench-agent/health-state.json)")
    health.add_argument("--json", action="store_true", help="print the report as JSON")
    health.add_argument("--output", type=Path, default=Path("results"),
                        help="report folder (default: results/)")
    health.add_argument("--fallback-dir", type=Path, metavar="DIR", help=fallback_help)
    health.add_argument("--key", type=Path, help="node signing key")
    health.add_argument("--no-sign", action="store_true", help="write the report unsigned")
    health.add_argument("--junit", type=Path, metavar="FILE", help="also write JUnit XML")
    health.add_argument("--prom", type=Path, metavar="FILE",
                        help="also write a Prometheus textfile")
    health.add_argument("--sysroot", type=Path, default=Path("/"), help=argparse.SUPPRESS)


def cmd_health(args: argparse.Namespace) -> int:
    from bench_agent.cli.main import _keep_and_show
    from bench_agent.core.errors import ReportError
    from bench_agent.health.runner import run_health_full
    from bench_agent.health.state import save_state

    if args.suite_file is not None and not args.suite_file.is_file():
        from bench_agent.core.errors import UsageError

        raise UsageError(f"--suite-file {args.suite_file}: no such file")
    from bench_agent.health.plan_cache import cache_path
    from bench_agent.health.state import default_state_path

    state = args.state or default_state_path()
    run = run_health_full(args.profile, state, suite=args.suite_file, root=args.sysroot,
                          save=False, plan_cache=cache_path(state))
    kept = _keep_and_show(args, run.report)
    # The state after the report: a run whose report was lost judges its events
    # again next time rather than never.
    if kept.report is not None:
        try:
            save_state(state, run.readings)
        except ReportError as exc:
            import sys

            print(f"bench-agent: the health state was not kept: {exc}", file=sys.stderr)
            return max(kept.exit_code, 5)
    if run.state.note:
        import sys

        print(f"bench-agent: {run.state.note}", file=sys.stderr)
    return kept.exit_code
