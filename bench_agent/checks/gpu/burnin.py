"""Burn-in loop of the GPU matmul check: its kernel on every GPU, back to back.

The kernel is the check's own (kernels.make_matmul: random inputs in rotating sets,
the same seed); one reading per interval, the FLOP/s of the slowest GPU (a node is
judged by its slowest GPU, as gpu.matmul judges it). Products are queued on every
GPU in turn and each GPU is synchronized at the end of the interval, so the time
covers the work really done.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bench_agent.checks.base import CheckContext, Emit, Stopping, burnin_interval
from bench_agent.core.errors import CheckError, NotApplicable, ToolMissing


class MatmulBurninParams(BaseModel):
    """`gpu_matmul` in burnin.yaml."""

    model_config = ConfigDict(extra="forbid")
    dtype: Literal["bf16", "fp16", "tf32", "fp32"] = "bf16"
    # 8192: the shape of the H200 bf16 baseline's measurement (gpu.matmul's reference).
    size: int = Field(default=8192, ge=256)


def matmul_loop(ctx: CheckContext, params: BaseModel, emit: Emit, stopping: Stopping) -> None:
    from bench_agent.checks.gpu.kernels import make_matmul, matmul_flop

    if not isinstance(p := params, MatmulBurninParams):
        raise TypeError(f"expected MatmulBurninParams, got {type(params).__name__}")
    try:
        import torch
    except ImportError:
        raise ToolMissing("torch", "pip install 'bench-agent[gpu]'") from None
    if not torch.cuda.is_available():
        raise NotApplicable("gpu load: no CUDA device (torch.cuda.is_available() is False)")
    interval = burnin_interval(ctx)
    devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    torch.set_float32_matmul_precision("high" if p.dtype == "tf32" else "highest")
    kernels = [make_matmul(torch, device, p.dtype, p.size) for device in devices]
    flop = matmul_flop(p.size, p.size, p.size)
    while not stopping():
        counts = [0 for _ in devices]
        started = time.perf_counter()
        while not stopping() and time.perf_counter() - started < interval:
            for index, (run, _) in enumerate(kernels):
                with torch.cuda.device(devices[index]):
                    run(counts[index])
                counts[index] += 1
        for device in devices:
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - started
        if stopping():
            break
        for device, (_, finite) in zip(devices, kernels, strict=True):
            if not finite():
                raise CheckError(f"{device}: {p.dtype} matmul produced non-finite values")
        emit(min(counts) * flop / elapsed)
