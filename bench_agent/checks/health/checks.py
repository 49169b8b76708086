"""The passive health checks, registered as the "health" domain (checks/__init__.py).

`bench-agent health` runs them in-process under a time limit each
(bench_agent/health/runner.py); `bench-agent run health.ib` runs one in a worker
child like any check.
"""

from __future__ import annotations

from bench_agent.checks.base import Check
from bench_agent.checks.health.gpu import GpuHealthCheck, GpuXidCheck
from bench_agent.checks.health.node import (
    ClockHealthCheck,
    FilesystemHealthCheck,
    IbHealthCheck,
    NvmeHealthCheck,
    ServiceHealthCheck,
)

CHECKS: tuple[type[Check], ...] = (GpuHealthCheck, GpuXidCheck, IbHealthCheck,
                                   NvmeHealthCheck, FilesystemHealthCheck, ServiceHealthCheck,
                                   ClockHealthCheck)
