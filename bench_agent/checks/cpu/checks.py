"""CPU and memory checks: dense GEMM throughput (FLOP/s) and STREAM bandwidth (bytes/s).

Both run in-process on numpy (a dependency: ``available()`` is the base's None); numpy is
imported inside functions only, so that ``bench-agent --help`` stays fast.

GEMM: C = A @ B on square n x n matrices, counted as 2·n³ floating-point operations
(n³ multiplies and n³ adds; the convention of LAPACK Working Note 41 and of HPL's
GFLOP/s report, which counts the leading term of the operation count).

STREAM: McCalpin's four kernels on float64 arrays, bytes counted as stream.c counts
them, each array at least 4x the sum of all last-level caches (STREAM FAQ, "Adjust
the Problem Size", https://www.cs.virginia.edu/stream/ref.html) so caches cannot
hold it.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from bench_agent.checks.base import BurninVariant, Check, CheckContext, MetricSpec
from bench_agent.checks.cpu.burnin import GemmBurninParams, StreamBurninParams
from bench_agent.core.errors import CheckError
from bench_agent.core.model import Measurement
from bench_agent.core.stats import summarize
from bench_agent.core.sysfs import parse_cache_size, read_line
from bench_agent.core.units import Unit

if TYPE_CHECKING:
    from numpy.typing import NDArray

Timer = Callable[[], float]

MIB = 1024 * 1024
# Floor on a STREAM array, and the size used when sysfs hides the caches (some VMs
# and containers). 256 MiB is not enough for big server L3s (that is what the sysfs
# sum is for), but makes a kernel last ~10 ms at 50 GB/s, so thread dispatch and
# timer overhead (microseconds) stay under 1 %.
STREAM_MIN_ARRAY_BYTES = 256 * MIB
# STREAM's scalar (stream.c: "scalar = 3.0").
STREAM_SCALAR = 3.0
# STREAM counts 8-byte words read + written per element (stream.c, bytes[] array).
STREAM_WORDS = {"copy": 2, "scale": 2, "add": 3, "triad": 3}
STREAM_KERNELS = tuple(STREAM_WORDS)  # in stream.c's order


# --- GEMM ---------------------------------------------------------------------------


class GemmParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # 2048: 17 GFLOP per fp64 product, long enough (> 0.1 s on a few cores) that
    # timer resolution and BLAS thread wake-up are noise, short enough for CI.
    size: int = Field(default=2048, ge=64)
    repetitions: int = Field(default=5, ge=1)
    warmup: int = Field(default=1, ge=0)
    # pydantic copies mutable defaults per instance, so a list default is safe here.
    dtypes: list[Literal["fp64", "fp32"]] = ["fp64", "fp32"]
    modes: list[Literal["all_cores", "one_core"]] = ["all_cores", "one_core"]


def gemm_flop(n: int) -> int:
    """Operations of an n x n by n x n product: 2·n³ (LAWN 41; HPL counts the same)."""
    return 2 * n**3


def time_gemm(
    a: NDArray[Any],
    b: NDArray[Any],
    out: NDArray[Any],
    repetitions: int,
    warmup: int = 0,
    timer: Timer = time.perf_counter,
) -> list[float]:
    """Seconds of each timed ``out = a @ b`` (warm-up not timed), by an injectable
    clock (tests use a fake one); ``out=`` keeps allocation out of the timed span."""
    import numpy as np

    for _ in range(warmup):
        np.matmul(a, b, out=out)
    durations: list[float] = []
    for _ in range(repetitions):
        start = timer()
        np.matmul(a, b, out=out)
        durations.append(timer() - start)
    return durations


def rates(work: float, durations: list[float], what: str) -> list[float]:
    """Work per second of each repetition; a zero or negative time is a broken clock."""
    if any(d <= 0 for d in durations):
        raise CheckError(f"{what}: the timer returned a non-positive duration {durations!r}")
    return [work / d for d in durations]


def blas_info() -> dict[str, Any] | None:
    """numpy's BLAS as threadpoolctl sees it now: library, version, threads."""
    import numpy as np
    from threadpoolctl import threadpool_info

    libs = [lib for lib in threadpool_info() if lib.get("user_api") == "blas"]
    if not libs:
        return None
    # Another wheel may load its own BLAS too; numpy's wheels keep theirs in
    # site-packages/numpy.libs (or numpy/.libs), which starts with numpy's path.
    numpy_prefix = os.path.dirname(np.__file__)
    libs.sort(key=lambda lib: not str(lib.get("filepath", "")).startswith(numpy_prefix))
    lib = libs[0]
    return {
        "library": lib.get("internal_api"),
        "version": lib.get("version"),
        "threading_layer": lib.get("threading_layer"),
        "architecture": lib.get("architecture"),
        "num_threads": lib.get("num_threads"),
    }


@contextmanager
def one_core() -> Iterator[int]:
    """One BLAS thread, and this thread pinned to one CPU; both restored after.

    Limiting BLAS threads alone lets the scheduler move the thread between cores
    (and lets a hyperthread sibling share it); pinning alone leaves BLAS spawning
    threads that then fight over one CPU. Linux's sched_setaffinity(0) applies to
    the calling thread, which is the one OpenBLAS/MKL compute on with 1 thread.
    """
    from threadpoolctl import threadpool_limits

    previous = os.sched_getaffinity(0)
    cpu = min(previous)
    with threadpool_limits(limits=1):
        os.sched_setaffinity(0, {cpu})
        try:
            yield cpu
        finally:
            os.sched_setaffinity(0, previous)


def _verify_gemm(a: NDArray[Any], b: NDArray[Any], c: NDArray[Any], dtype: str) -> None:
    """Freivalds' check (1977): C·x == A·(B·x) for a random x, in O(n²).

    A BLAS that is fast because it computes garbage (a broken build, a bad core)
    must not pass; a full reference product would cost as much as the benchmark.
    """
    import numpy as np

    x = np.random.default_rng(7).uniform(0.5, 1.5, size=(a.shape[1],)).astype(a.dtype)
    lhs = c @ x
    rhs = a @ (b @ x)
    # Relative error of a length-n dot product grows like n·eps (Higham, Accuracy
    # and Stability of Numerical Algorithms, 2nd ed., §3.1); 10·n·eps is a generous
    # bound that still catches wrong results, which are off by O(1).
    tolerance = 10 * a.shape[0] * float(np.finfo(a.dtype).eps)
    error = float(np.max(np.abs(lhs - rhs) / np.abs(rhs)))
    if not error <= tolerance:
        raise CheckError(
            f"GEMM {dtype} result is wrong: relative error {error:.3g} > {tolerance:.3g}"
        )


class GemmCheck(Check):
    name: ClassVar[str] = "cpu.gemm"
    domain: ClassVar[str] = "cpu"
    description: ClassVar[str] = "dense matrix multiply throughput (numpy BLAS)"
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("cpu.gemm_fp64_all_cores", Unit.FLOPS, "fp64 GEMM, all cores"),
        MetricSpec("cpu.gemm_fp32_all_cores", Unit.FLOPS, "fp32 GEMM, all cores"),
        MetricSpec("cpu.gemm_fp64_one_core", Unit.FLOPS, "fp64 GEMM, one core"),
        MetricSpec("cpu.gemm_fp32_one_core", Unit.FLOPS, "fp32 GEMM, one core"),
    )
    params_model: ClassVar[type[BaseModel]] = GemmParams
    burnin: ClassVar[BurninVariant | None] = BurninVariant(
        load="cpu_matmul",
        rate=MetricSpec("burnin.cpu_matmul", Unit.FLOPS, "GEMM on all cores, sustained"),
        params_model=GemmBurninParams,
        loop="bench_agent.checks.cpu.burnin:gemm_loop",
    )

    def __init__(self, timer: Timer = time.perf_counter) -> None:
        self.timer = timer

    def run(self, ctx: CheckContext, params: BaseModel) -> list[Measurement]:
        import numpy as np

        if not isinstance(p := params, GemmParams):  # the runner validated it already
            raise TypeError(f"expected GemmParams, got {type(params).__name__}")
        n = p.size
        out: list[Measurement] = []
        for dtype in p.dtypes:
            np_dtype = np.float64 if dtype == "fp64" else np.float32
            # Random, never-zero inputs: zeros or denormals could take fast paths
            # or draw less power than real data. Fixed seed: same work every run.
            rng = np.random.default_rng(20240611)
            a = rng.uniform(0.5, 1.5, size=(n, n)).astype(np_dtype)
            b = rng.uniform(0.5, 1.5, size=(n, n)).astype(np_dtype)
            c = np.empty((n, n), dtype=np_dtype)
            for mode in p.modes:
                extra: dict[str, Any] = {}
                if mode == "one_core":
                    with one_core() as cpu:
                        blas = blas_info()
                        durations = time_gemm(a, b, c, p.repetitions, p.warmup, self.timer)
                    extra["cpu"] = cpu
                else:
                    blas = blas_info()
                    durations = time_gemm(a, b, c, p.repetitions, p.warmup, self.timer)
                _verify_gemm(a, b, c, dtype)
                params_out: dict[str, Any] = {
                    "size": n,
                    "dtype": dtype,
                    "mode": mode,
                    "repetitions": p.repetitions,
                    "warmup": p.warmup,
                    "threads": blas["num_threads"] if blas else None,
                    "blas": blas,
                    "flop_per_product": gemm_flop(n),
                    **extra,
                }
                metric = f"cpu.gemm_{dtype}_{mode}"
                samples = rates(gemm_flop(n), durations, f"GEMM {dtype} {mode}")
                out.append(_measurement(self.name, metric, Unit.FLOPS, samples, params_out))
        return out


def _measurement(
    check: str, metric: str, unit: Unit, samples: list[float], params: dict[str, Any]
) -> Measurement:
    """Value = median of the repetitions; spread summarized, noise flagged."""
    import numpy as np

    summary = summarize(samples)
    return Measurement(
        check=check,
        metric=metric,
        value=summary.median,
        unit=unit,
        samples=tuple(samples),
        unstable=summary.unstable,
        tool="numpy",
        tool_version=np.__version__,
        params=params,
        stats=summary.to_dict(),
    )


# --- STREAM -------------------------------------------------------------------------


class StreamParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Bytes per array (three arrays are allocated); None = the STREAM sizing rule.
    array_bytes: int | None = Field(default=None, ge=64 * 1024)
    # At most 100: the values grow 15x per iteration (a -> 15a, see
    # expected_stream_values) and 15**(100 + warmup) must stay finite in float64.
    repetitions: int = Field(default=5, ge=1, le=100)
    warmup: int = Field(default=1, ge=0, le=10)
    threads: int | None = Field(default=None, ge=1)


def last_level_cache_bytes(root: Path) -> int | None:
    """Sum of the last-level caches of the node, read from sysfs under ``root``.

    cpu0's cache list names the last level (highest index level that holds data);
    each CPU's instance of that level is counted once (by its id, or else by the
    CPUs sharing it), so two sockets, or an AMD part with one L3 per CCD, sum up
    as STREAM's rule asks. None when sysfs does not say.
    """
    cpu_dir = root / "sys/devices/system/cpu"
    cpu0 = cpu_dir / "cpu0/cache"
    levels: list[tuple[int, str]] = []
    for index in sorted(cpu0.glob("index*")):
        level, kind = read_line(index / "level"), read_line(index / "type")
        if level and level.isdigit() and kind in ("Unified", "Data"):
            levels.append((int(level), index.name))
    if not levels:
        return None
    llc_level, llc_index = max(levels)
    seen: dict[str, int] = {}
    for cpu in cpu_dir.glob("cpu[0-9]*"):
        cache = cpu / "cache" / llc_index
        size = parse_cache_size(read_line(cache / "size"))
        if size is None or read_line(cache / "level") != str(llc_level):
            continue
        key = read_line(cache / "id") or read_line(cache / "shared_cpu_list") or cpu.name
        seen[key] = size
    return sum(seen.values()) or None


def stream_array_bytes(root: Path) -> int:
    """STREAM FAQ: each array >= 4x the sum of last-level caches; floor 256 MiB."""
    llc = last_level_cache_bytes(root)
    return max(4 * llc if llc else 0, STREAM_MIN_ARRAY_BYTES)


def _available_memory(root: Path) -> int | None:
    text = read_line(root / "proc/meminfo")
    if not text:
        return None
    match = re.search(r"^MemAvailable:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


def check_stream_memory(root: Path, n: int) -> None:
    """Refuse rather than let the kernel's OOM killer pick a victim on a node that
    is also running jobs; 80 % of MemAvailable leaves room for the rest of the agent."""
    available = _available_memory(root)
    if available is not None and 3 * n * 8 > 0.8 * available:
        raise CheckError(
            f"STREAM needs 3 x {n * 8} bytes, more than 80 % of MemAvailable"
            f" ({available} bytes); set array_bytes lower"
        )


def expected_stream_values(iterations: int) -> tuple[float, float, float]:
    """a, b, c after ``iterations`` rounds of the four kernels (checkSTREAMresults).

    Starts as stream.c does: a=1, b=2, c=0, then a=2a before the timed loop.
    """
    a, b, c = 2.0, 2.0, 0.0
    q = STREAM_SCALAR
    for _ in range(iterations):
        c = a
        b = q * c
        c = a + b
        a = b + q * c
    return a, b, c


def _chunks(n: int, parts: int) -> list[slice]:
    """``parts`` contiguous slices covering range(n), sizes differing by at most 1."""
    bounds = [n * i // parts for i in range(parts + 1)]
    return [slice(bounds[i], bounds[i + 1]) for i in range(parts) if bounds[i] < bounds[i + 1]]


class StreamArrays:
    """The three arrays, split into per-thread chunks, and the four kernels."""

    def __init__(self, n: int, threads: int) -> None:
        import numpy as np

        self.n = n
        self.slices = _chunks(n, threads)
        self.a = np.empty(n, dtype=np.float64)
        self.b = np.empty(n, dtype=np.float64)
        self.c = np.empty(n, dtype=np.float64)

    def _kernel(self, name: str, s: slice) -> None:
        import numpy as np

        a, b, c, q = self.a[s], self.b[s], self.c[s], STREAM_SCALAR
        if name == "init":
            # stream.c's initialisation, done by the thread that will use the chunk
            # so that first-touch places its pages on that thread's NUMA node.
            a.fill(1.0)
            b.fill(2.0)
            c.fill(0.0)
            np.multiply(a, 2.0, out=a)
        elif name == "copy":
            np.copyto(c, a)
        elif name == "scale":
            np.multiply(c, q, out=b)
        elif name == "add":
            np.add(a, b, out=c)
        elif name == "triad":
            # numpy has no fused a = b + q*c ufunc: this is two passes, c*q into a,
            # then a + b into a. The memory traffic is 5 words per element (read c,
            # write a; read a, read b, write a), while STREAM counts 3 and so do we
            # (bytes_counted in the params): the figure understates the bandwidth
            # the memory really moved, as a lower bound should.
            np.multiply(c, q, out=a)
            np.add(a, b, out=a)
        else:
            raise ValueError(f"unknown STREAM kernel {name!r}")

    def run_kernel(self, name: str, pool: ThreadPoolExecutor | None) -> None:
        """One kernel over the whole arrays; numpy releases the GIL in ufunc loops."""
        if pool is None:
            self._kernel(name, slice(0, self.n))
            return
        futures = [pool.submit(self._kernel, name, s) for s in self.slices]
        for future in futures:
            future.result()

    def check(self, iterations: int) -> None:
        """Compare sampled elements against the scalar replay (STREAM's check).

        Samples spread over the arrays plus both ends of every chunk, where an
        off-by-one in the split would show.
        """
        import numpy as np

        expected = expected_stream_values(iterations)
        points = {0, self.n - 1, *np.linspace(0, self.n - 1, 1024, dtype=np.int64).tolist()}
        for s in self.slices:
            points.update((s.start, s.stop - 1))
        index = np.fromiter(sorted(points), dtype=np.int64)
        for label, array, want in zip("abc", (self.a, self.b, self.c), expected, strict=True):
            got = array[index]
            # stream.c accepts a relative error up to 1e-13 for double.
            bad = np.abs(got - want) > 1e-13 * abs(want)
            if bool(bad.any()):
                first = int(index[np.argmax(bad)])
                raise CheckError(
                    f"STREAM validation failed: {label}[{first}] = {float(array[first])!r},"
                    f" expected {want!r} after {iterations} iterations"
                )


def run_stream(
    n: int,
    threads: int,
    repetitions: int,
    warmup: int,
    timer: Timer = time.perf_counter,
) -> dict[str, list[float]]:
    """Seconds of each timed kernel, by kernel name; results validated after."""
    arrays = StreamArrays(n, threads)
    durations: dict[str, list[float]] = {name: [] for name in STREAM_KERNELS}
    pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None
    try:
        arrays.run_kernel("init", pool)
        for iteration in range(warmup + repetitions):
            for name in STREAM_KERNELS:
                # The timer brackets the whole parallel kernel, dispatch and join
                # included, like STREAM's mysecond() around an OpenMP loop.
                start = timer()
                arrays.run_kernel(name, pool)
                elapsed = timer() - start
                if iteration >= warmup:
                    durations[name].append(elapsed)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    arrays.check(warmup + repetitions)
    return durations


class StreamCheck(Check):
    name: ClassVar[str] = "memory.stream"
    domain: ClassVar[str] = "cpu"
    description: ClassVar[str] = "memory bandwidth, STREAM kernels on numpy"
    metrics: ClassVar[tuple[MetricSpec, ...]] = tuple(
        MetricSpec(f"memory.stream_{k}", Unit.BYTES_PER_SECOND, f"STREAM {k}")
        for k in STREAM_KERNELS)
    params_model: ClassVar[type[BaseModel]] = StreamParams
    burnin: ClassVar[BurninVariant | None] = BurninVariant(
        load="memory_bandwidth",
        rate=MetricSpec("burnin.memory_bandwidth", Unit.BYTES_PER_SECOND,
                        "STREAM triad, sustained"),
        params_model=StreamBurninParams,
        loop="bench_agent.checks.cpu.burnin:stream_loop",
    )

    def __init__(self, timer: Timer = time.perf_counter) -> None:
        self.timer = timer

    def run(self, ctx: CheckContext, params: BaseModel) -> list[Measurement]:

        if not isinstance(p := params, StreamParams):  # the runner validated it already
            raise TypeError(f"expected StreamParams, got {type(params).__name__}")
        array_bytes = p.array_bytes if p.array_bytes is not None else stream_array_bytes(ctx.root)
        threads = p.threads or len(os.sched_getaffinity(0)) or os.cpu_count() or 1
        n = array_bytes // 8
        check_stream_memory(ctx.root, n)
        threads = min(threads, n)
        durations = run_stream(n, threads, p.repetitions, p.warmup, self.timer)
        params_out: dict[str, Any] = {
            "array_bytes": n * 8,
            "elements": n,
            "dtype": "fp64",
            "threads": threads,
            "repetitions": p.repetitions,
            "warmup": p.warmup,
            "scalar": STREAM_SCALAR,
            "bytes_counted": (
                "STREAM convention: copy/scale 16 B, add/triad 24 B per element;"
                " write-allocate not counted"
            ),
            "triad_implementation": (
                "two numpy passes (a=c*q; a+=b): 5 words/element moved, 3 counted"
            ),
        }
        out: list[Measurement] = []
        for name in STREAM_KERNELS:
            samples = rates(STREAM_WORDS[name] * 8 * n, durations[name], f"STREAM {name}")
            params_k = {**params_out, "bytes_per_element": STREAM_WORDS[name] * 8}
            metric = f"memory.stream_{name}"
            out.append(_measurement(self.name, metric, Unit.BYTES_PER_SECOND, samples, params_k))
        return out


# The checks of this module, in `bench-agent list` order (checks/__init__.py finds them).
CHECKS: tuple[type[Check], ...] = (GemmCheck, StreamCheck)
