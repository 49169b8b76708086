"""Burn-in loops of the CPU and memory checks: their own kernels, back to back.

Each loop runs in the one worker child (run/worker.py, burn-in mode) and reports
one rate per interval through ``emit`` until ``stopping()``. The kernels and their
validation are the checks' own (checks.py): time_gemm with Freivalds' check, the
STREAM arrays split per thread. The checks' module is imported inside the loops,
since it imports the params models from here.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bench_agent.checks.base import CheckContext, Emit, Stopping, burnin_interval
from bench_agent.checks.byte_size import ByteSize
from bench_agent.core.errors import CheckError

# STREAM_MIN_ARRAY_BYTES of checks.py: three arrays of 256 MiB.
DEFAULT_ARRAY_BYTES = 256 * 1024 * 1024


class GemmBurninParams(BaseModel):
    """`cpu_matmul` in burnin.yaml: one product size and precision, on all cores."""

    model_config = ConfigDict(extra="forbid")
    # 1024: ~2 GFLOP per fp64 product, many products per interval on any node.
    size: int = Field(default=1024, ge=64)
    dtype: Literal["fp64", "fp32"] = "fp64"


class StreamBurninParams(BaseModel):
    """`memory_bandwidth` in burnin.yaml: the triad on arrays of this size."""

    model_config = ConfigDict(extra="forbid")
    array_bytes: ByteSize = Field(default=DEFAULT_ARRAY_BYTES, ge=64 * 1024)
    threads: int | None = Field(default=None, ge=1)


def gemm_loop(ctx: CheckContext, params: BaseModel, emit: Emit, stopping: Stopping) -> None:
    """The GEMM check's kernel back to back on all cores (numpy's BLAS threads); one
    FLOP/s reading per interval from the time spent inside the products, each
    interval's last product verified (a core that computes garbage when hot is a
    finding, not a fast node)."""
    import numpy as np

    from bench_agent.checks.cpu.checks import _verify_gemm, gemm_flop, rates, time_gemm

    if not isinstance(p := params, GemmBurninParams):
        raise TypeError(f"expected GemmBurninParams, got {type(params).__name__}")
    interval = burnin_interval(ctx)
    np_dtype = np.float64 if p.dtype == "fp64" else np.float32
    rng = np.random.default_rng(20240611)  # the check's seed: the same work
    a = rng.uniform(0.5, 1.5, size=(p.size, p.size)).astype(np_dtype)
    b = rng.uniform(0.5, 1.5, size=(p.size, p.size)).astype(np_dtype)
    c = np.empty((p.size, p.size), dtype=np_dtype)
    while not stopping():
        started = time.monotonic()
        busy, products = 0.0, 0
        while not stopping() and time.monotonic() - started < interval:
            busy += sum(time_gemm(a, b, c, 1))
            products += 1
        if products and not stopping():
            _verify_gemm(a, b, c, p.dtype)
            emit(rates(gemm_flop(p.size) * products, [busy], f"GEMM {p.dtype}")[0])


def stream_loop(ctx: CheckContext, params: BaseModel, emit: Emit, stopping: Stopping) -> None:
    """The STREAM check's triad (StreamArrays, one chunk per thread) back to back; one
    bytes/s reading per interval, counted as STREAM counts the triad (24 B per
    element). After STREAM's initialisation (a=2, b=2, c=0) the triad a = b + q·c
    leaves every value as it was, so each interval checks sampled elements."""
    import numpy as np

    from bench_agent.checks.cpu.checks import (
        STREAM_SCALAR,
        STREAM_WORDS,
        StreamArrays,
        check_stream_memory,
        rates,
    )

    if not isinstance(p := params, StreamBurninParams):
        raise TypeError(f"expected StreamBurninParams, got {type(params).__name__}")
    interval = burnin_interval(ctx)
    n = p.array_bytes // 8
    check_stream_memory(ctx.root, n)
    threads = min(p.threads or len(os.sched_getaffinity(0)) or 1, n)
    arrays = StreamArrays(n, threads)
    index = np.unique(np.linspace(0, n - 1, 4096, dtype=np.int64))
    pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None
    try:
        arrays.run_kernel("init", pool)
        while not stopping():
            started = time.monotonic()
            busy, passes = 0.0, 0
            while not stopping() and time.monotonic() - started < interval:
                begin = time.perf_counter()
                arrays.run_kernel("triad", pool)
                busy += time.perf_counter() - begin
                passes += 1
            if passes and not stopping():
                got = arrays.a[index]
                want = arrays.b[index] + STREAM_SCALAR * arrays.c[index]
                if not bool(np.array_equal(got, want)):
                    first = int(index[np.argmax(got != want)])
                    raise CheckError(f"STREAM triad result is wrong: a[{first}] ="
                                     f" {float(arrays.a[first])!r}, expected"
                                     f" {float(want[np.argmax(got != want)])!r}")
                emit(rates(STREAM_WORDS["triad"] * 8 * n * passes, [busy], "STREAM triad")[0])
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
