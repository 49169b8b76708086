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


@gpu_kernel
def one_rank_fails_kernel(dev: Device, task: dict[str, Any]) -> dict[str, Any]:
    """Rank ``bad_rank`` fails before the barrier ("raise") or returns without ever
    reaching it ("skip", as a child whose every size was skipped); the others wait
    at the barrier and report how long (tests/checks/test_gpu.py)."""
    import sys
    import time

    rank = int(sys.argv[sys.argv.index("--rank") + 1])  # the child's command line
    if rank == task["bad_rank"]:
        if task["how"] == "raise":
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return {"skipped_everything": True}
    started = time.monotonic()
    dev.barrier()
    return {"waited_s": time.monotonic() - started}
