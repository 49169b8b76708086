"""A GPU kernel outside bench_agent's own kernels module, as a new GPU check would add
beside itself: the child process finds it by the name in the task, with no branch
in kernels.py (tests/checks/test_gpu.py runs it)."""

from __future__ import annotations

from typing import Any

from bench_agent.checks.gpu.kernels import Device, gpu_kernel


@gpu_kernel
def sum_kernel(dev: Device, task: dict[str, Any]) -> dict[str, Any]:
    dev.barrier()
    total = dev.torch.arange(int(task["n"]), device=dev.name).sum()
    return {"sum": int(total.item())}


def not_a_kernel(dev: Device, task: dict[str, Any]) -> dict[str, Any]:
    return {"ran": True}
