"""How close the agent's CPU checks come to plain numpy doing the same work.

    python benchmarks/bench_cpu.py

GEMM: the agent's cpu.gemm (all cores) against a bare ``a @ b`` of the same size,
median of the same number of repetitions. The agent adds threadpoolctl look-ups,
a preallocated output and a result check outside the timed span; the target is
that none of it costs more than 10 % (ratio >= 0.9).

STREAM triad: the agent's memory.stream triad on one thread against the textbook
numpy triad ``a[:] = b + q*c`` on arrays of the same size, both counted as STREAM
counts triad (24 bytes per element). No target: the two do different amounts of
real traffic (the agent makes two passes, numpy's expression makes temporaries),
so the ratio is reported, not judged.

It reports and does not assert: the exit code is 0 whatever the figures.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402  (after the sys.path insert, on purpose)
from numpy.typing import NDArray  # noqa: E402

from bench_agent.checks.base import CheckContext  # noqa: E402
from bench_agent.checks.cpu.checks import (  # noqa: E402
    STREAM_SCALAR,
    GemmCheck,
    GemmParams,
    StreamCheck,
    StreamParams,
    stream_array_bytes,
)
from bench_agent.core.units import Unit, format_value  # noqa: E402

SIZE = 2048
REPETITIONS = 5
WARMUP = 1
GEMM_TARGET = 0.9


def reference_gemm(dtype: str) -> float:
    """Median FLOP/s of a bare ``a @ b``: fresh output each time, no extras."""
    np_dtype = np.float64 if dtype == "fp64" else np.float32
    rng = np.random.default_rng(1)
    a: NDArray[np.floating[Any]] = rng.uniform(0.5, 1.5, size=(SIZE, SIZE)).astype(np_dtype)
    b: NDArray[np.floating[Any]] = rng.uniform(0.5, 1.5, size=(SIZE, SIZE)).astype(np_dtype)
    for _ in range(WARMUP):
        a @ b
    times = []
    for _ in range(REPETITIONS):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * SIZE**3 / statistics.median(times)


def reference_triad(array_bytes: int) -> float:
    """Median bytes/s of ``a[:] = b + q*c``, counted as STREAM counts triad (24 B)."""
    n = array_bytes // 8
    a = np.zeros(n)
    b = np.full(n, 2.0)
    c = np.full(n, 1.0)
    times = []
    for i in range(WARMUP + REPETITIONS):
        start = time.perf_counter()
        a[:] = b + STREAM_SCALAR * c
        elapsed = time.perf_counter() - start
        if i >= WARMUP:
            times.append(elapsed)
    return 24 * n / statistics.median(times)


def main() -> int:
    ctx = CheckContext()
    rows: list[tuple[str, float, float | None, Unit, float | None]] = []

    for dtype in ("fp64", "fp32"):
        params = GemmParams(
            size=SIZE, repetitions=REPETITIONS, warmup=WARMUP, dtypes=[dtype], modes=["all_cores"]
        )
        [agent] = GemmCheck().run(ctx, params)
        reference = reference_gemm(dtype)
        threads = agent.params["threads"]
        rows.append(
            (
                f"GEMM {dtype} n={SIZE}, {threads} threads",
                agent.value,
                reference,
                Unit.FLOPS,
                GEMM_TARGET,
            )
        )

    array_bytes = stream_array_bytes(ctx.root)
    stream = StreamParams(
        array_bytes=array_bytes, repetitions=REPETITIONS, warmup=WARMUP, threads=1
    )
    triad = next(m for m in StreamCheck().run(ctx, stream) if m.metric.endswith("triad"))
    reference = reference_triad(array_bytes)
    label = f"STREAM triad 1 thread, {array_bytes // 2**20} MiB/array"
    rows.append((label, triad.value, reference, Unit.BYTES_PER_SECOND, None))

    # For information: the agent's default (all threads) triad, nothing to compare.
    all_threads = StreamParams(array_bytes=array_bytes, repetitions=REPETITIONS, warmup=WARMUP)
    measured = StreamCheck().run(ctx, all_threads)
    triad_all = next(m for m in measured if m.metric.endswith("triad"))
    label = f"STREAM triad {triad_all.params['threads']} threads (info)"
    rows.append((label, triad_all.value, None, Unit.BYTES_PER_SECOND, None))

    header = f"{'what':<42} | {'agent':>14} | {'reference':>14} | {'ratio':>6} | target"
    print(f"numpy {np.__version__}, BLAS {agent_blas()}")
    print(header)
    print("-" * len(header))
    for what, value, ref, unit, target in rows:
        ref_text = format_value(ref, unit) if ref is not None else "-"
        ratio = value / ref if ref else None
        ratio_text = f"{ratio:.3f}" if ratio is not None else "-"
        if target is None or ratio is None:
            verdict = "none (reported)" if ref is not None else "-"
        else:
            verdict = f">= {target} {'MEETS' if ratio >= target else 'MISSES'}"
        print(
            f"{what:<42} | {format_value(value, unit):>14} | {ref_text:>14}"
            f" | {ratio_text:>6} | {verdict}"
        )
    return 0


def agent_blas() -> str:
    from bench_agent.checks.cpu.checks import blas_info

    info = blas_info()
    if not info:
        return "none found"
    return f"{info['library']} {info['version']} ({info['num_threads']} threads)"


if __name__ == "__main__":
    sys.exit(main())
