"""GPU matmul throughput and memory bandwidth with torch, one process per device.

Every GPU runs its own process (``python -m bench_agent.checks.gpu.kernels``), all at once,
so a node is measured as training uses it (all GPUs hot, sharing power and
cooling) and judged by its slowest GPU. Processes meet at a file barrier before
their first timed work (before it allocates its inputs and warms up), so the
timed phases overlap. A child that ends, fails or never reaches the barrier
releases it (FileBarrier), and the barrier waits at most half the check's time
limit: one bad GPU must not make its siblings time out.

Each child sees one GPU, named by its UUID in CUDA_VISIBLE_DEVICES: an index would
be read against the child's own view, not the parent's, which Slurm and
Kubernetes restrict (CUDA_VISIBLE_DEVICES=4,5,6,7 or a list of UUIDs).

Matmul: C = A @ B, square n x n, FLOP = 2·n³ (n³ multiply-adds of 2 FLOPs), random
normal inputs (never zeros: zeros take less power and can hit fast paths), warm-up
iterations untimed, several input sets used in turn so L2 never holds the next
operands, each iteration timed by the injected ``Timer`` (CUDA events on a GPU,
perf_counter on the CPU in tests). tf32 is asked for explicitly with
torch.set_float32_matmul_precision("high"), fp32 with "highest" (PyTorch docs,
"TensorFloat-32 (TF32) on Ampere (and later) devices").

Copies: device-to-device ``dst.copy_(src)`` of a buffer far larger than L2,
counted as read + write (2 x bytes per copy, as the H100/H200 copy baselines in
suites/baselines/ count them); host-to-device and device-to-host from pinned memory,
counted once, with the child bound to the CPUs of its GPU's NUMA node so the pinned
buffer is local to the GPU's PCIe root (bench_agent.checks.gpu.numa).

torch is imported inside functions only: `bench-agent --help` must not load it.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

# The parent's side lives in launch.py; named here too, where GPU checks import it.
from bench_agent.checks.gpu.launch import (
    BARRIER_SHARE,
    FileBarrier,
    child_cuda_env,
    cuda_uuids,
    run_on_devices,
)

MIB = 1 << 20
GIB = 1 << 30
# Bytes per element of each matmul input precision.
ELEMENT_BYTES = {"bf16": 2, "fp16": 2, "tf32": 4, "fp32": 4, "fp8": 1}
# Share of free device memory a benchmark may allocate: leaves room for the CUDA
# context, cuBLAS workspaces and the allocator's fragmentation.
MEMORY_SHARE = 0.5


class Timer(Protocol):
    """Seconds of each of ``iterations`` calls of ``fn(i)``."""

    def measure(self, fn: Callable[[int], None], iterations: int) -> list[float]: ...


class PerfCounterTimer:
    """Wall clock around each call: right on the CPU, where torch ops are synchronous."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock

    def measure(self, fn: Callable[[int], None], iterations: int) -> list[float]:
        out: list[float] = []
        for i in range(iterations):
            start = self.clock()
            fn(i)
            out.append(self.clock() - start)
        return out


class CudaEventTimer:
    """CUDA events around each call, one synchronize at the end.

    Events time the GPU's work, not the host's launch; synchronizing only once
    keeps the launch queue full, as a training step does (CUDA C++ Best Practices
    Guide, "Using CUDA GPU Timers").
    """

    def __init__(self, torch: Any) -> None:
        self.torch = torch

    def measure(self, fn: Callable[[int], None], iterations: int) -> list[float]:
        cuda = self.torch.cuda
        pairs = [(cuda.Event(enable_timing=True), cuda.Event(enable_timing=True))
                 for _ in range(iterations)]
        for i, (start, end) in enumerate(pairs):
            start.record()
            fn(i)
            end.record()
        cuda.synchronize()
        return [start.elapsed_time(end) / 1000.0 for start, end in pairs]  # ms -> s


def matmul_flop(m: int, n: int, k: int) -> int:
    """2·M·N·K: one multiply and one add per inner-product term."""
    return 2 * m * n * k


def rates(work: float, seconds: Sequence[float]) -> list[float]:
    if any(s <= 0 for s in seconds):
        raise ValueError(f"the timer returned a non-positive duration: {list(seconds)!r}")
    return [work / s for s in seconds]


def rotation_sets(n: int, element_bytes: int, l2_bytes: int, cap: int = 16) -> int:
    """Input sets to cycle through so the operands of one iteration are not in L2.

    Two sets whose combined size is at least twice L2 evict each other (an LRU-like
    cache holds at most L2 bytes of the previous iteration's inputs).
    """
    per_set = 2 * n * n * element_bytes
    return max(2, min(cap, math.ceil(2 * l2_bytes / per_set)))


def _torch_dtype(torch: Any, precision: str) -> Any:
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "tf32": torch.float32,
            "fp32": torch.float32, "fp8": getattr(torch, "float8_e4m3fn", None)}[precision]


def fp8_supported(torch: Any, device: str) -> str | None:
    """None when fp8 matmul can run, else why not (Ada/Hopper, sm_89+, needed)."""
    if not device.startswith("cuda"):
        return "fp8 matmul needs a CUDA GPU"
    if getattr(torch, "float8_e4m3fn", None) is None or not hasattr(torch, "_scaled_mm"):
        return "this torch has no float8 matmul"
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < (8, 9):
        return f"compute capability {major}.{minor} < 8.9 has no fp8 tensor cores"
    return None


def fp8_shape_reason(n: int) -> str | None:
    """None when torch._scaled_mm takes an n x n x n fp8 product, else why not.

    cuBLASLt's fp8 GEMM needs every dimension divisible by 16: torch checks it and
    raises ("Expected trailing dimension of mat1 to be divisible by 16",
    aten/src/ATen/native/cuda/Blas.cpp, _scaled_mm_out_cuda), which would end the
    child and lose every other precision's result.
    """
    if n % 16:
        return f"fp8 needs sizes divisible by 16 (torch._scaled_mm / cuBLASLt); {n} is not"
    return None


def make_matmul(torch: Any, device: str, precision: str, n: int, sets: int = 2
                ) -> tuple[Callable[[int], None], Callable[[], bool]]:
    """The matmul kernel on ``device``: ``run(i)`` computes one n x n x n product
    from input set i (mod ``sets``); ``finite()`` says whether the last output holds
    finite values only (always True for fp8, whose output is not kept). Shared by
    the check (time_matmul) and its burn-in loop."""
    dtype = _torch_dtype(torch, precision)
    gen = torch.Generator(device=device).manual_seed(1234 + n)
    if precision == "fp8":
        # torch._scaled_mm takes e4m3 inputs, B column-major, per-tensor scales.
        make = [(torch.randn(n, n, device=device, generator=gen).to(dtype),
                 torch.randn(n, n, device=device, generator=gen).to(dtype).t())
                for _ in range(sets)]
        one = torch.ones((), device=device, dtype=torch.float32)

        def run(i: int) -> None:
            a, b = make[i % sets]
            torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)

        return run, lambda: True
    make = [(torch.randn(n, n, device=device, dtype=dtype, generator=gen),
             torch.randn(n, n, device=device, dtype=dtype, generator=gen))
            for _ in range(sets)]
    out = torch.empty(n, n, device=device, dtype=dtype)

    def run_matmul(i: int) -> None:
        a, b = make[i % sets]
        torch.matmul(a, b, out=out)

    return run_matmul, lambda: bool(torch.isfinite(out).all())


def time_matmul(torch: Any, device: str, precision: str, n: int, warmup: int,
                iterations: int, timer: Timer, sets: int = 2) -> dict[str, Any]:
    """Seconds per n x n x n product; the caller turns them into FLOP/s."""
    run, finite = make_matmul(torch, device, precision, n, sets)
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high" if precision == "tf32" else "highest")
    try:
        for i in range(warmup):
            run(i)
        seconds = timer.measure(run, iterations)
        if not finite():
            raise RuntimeError(f"{precision} matmul produced non-finite values")
    finally:
        torch.set_float32_matmul_precision(previous)
    return {"n": n, "seconds": seconds, "flop": matmul_flop(n, n, n), "sets": sets}


def time_copies(torch: Any, device: str, size: int, warmup: int, iterations: int,
                timer: Timer, host: bool) -> dict[str, Any]:
    """Device-to-device copy (read+write counted), and pinned H2D/D2H when ``host``."""
    src = torch.empty(size, dtype=torch.uint8, device=device).random_(0, 255)
    dst = torch.empty_like(src)
    results: dict[str, Any] = {}

    def d2d(_: int) -> None:
        dst.copy_(src)

    for i in range(warmup):
        d2d(i)
    seconds = timer.measure(d2d, iterations)
    results["hbm_copy"] = {"bytes": size, "bytes_counted": 2 * size,
                           "counted": "read+write (2 x buffer per copy)", "seconds": seconds}
    if host:
        pinned = torch.empty(size, dtype=torch.uint8, pin_memory=True)

        def h2d(_: int) -> None:
            dst.copy_(pinned, non_blocking=True)

        def d2h(_: int) -> None:
            pinned.copy_(src, non_blocking=True)

        for name, fn in (("h2d", h2d), ("d2h", d2h)):
            for i in range(warmup):
                fn(i)
            results[name] = {"bytes": size, "bytes_counted": size, "counted": "once, pinned",
                             "seconds": timer.measure(fn, iterations)}
    return results


def _device_memory(torch: Any, device: str) -> tuple[int | None, int]:
    """(free bytes or None on the CPU, L2 bytes) of a device."""
    if not device.startswith("cuda"):
        return None, 0
    free, _total = torch.cuda.mem_get_info(device)
    props = torch.cuda.get_device_properties(device)
    return int(free), int(getattr(props, "L2_cache_size", 0) or 0)


# --- the kernels: each GPU check names its own ("module:function") --------------------


@dataclass(frozen=True)
class Device:
    """What a kernel gets in its child process: torch, the one device it runs on, the
    timer, the memory it may plan with, and the barrier every GPU starts at."""

    torch: Any
    name: str  # "cuda:0" in the child (it sees one GPU), or "cpu" in tests
    cuda: bool
    timer: Timer
    free: int | None  # free bytes; None on the CPU
    l2: int
    barrier: Callable[[], None]


# A kernel: (device, task) -> its part of the result (a JSON-able mapping).
Kernel = Callable[[Device, dict[str, Any]], dict[str, Any]]
_KERNEL_MARK = "__bench_agent_gpu_kernel__"


def gpu_kernel(fn: Kernel) -> Kernel:
    """Mark ``fn`` as a GPU kernel that a check may name in its task ("module:fn").

    Only marked functions run: the child imports the function the task names, and
    the mark keeps any other function of any module from being called that way.
    Adding a GPU check adds its kernel beside it, with this mark, and no branch here.
    """
    setattr(fn, _KERNEL_MARK, True)
    return fn


def resolve_kernel(target: str) -> Kernel:
    """The kernel a task names as "module:function"; ValueError naming it otherwise."""
    import importlib

    module_name, _, function_name = target.partition(":")
    if not module_name or not function_name:
        raise ValueError(f"a GPU kernel is named 'module:function', not {target!r}")
    try:
        found = getattr(importlib.import_module(module_name), function_name, None)
    except ImportError as exc:
        raise ValueError(f"GPU kernel {target!r}: {exc}") from exc
    if found is None or not getattr(found, _KERNEL_MARK, False):
        raise ValueError(f"{target!r} is not a GPU kernel (no @gpu_kernel function of that "
                         "name)")
    kernel: Kernel = found
    return kernel


@gpu_kernel
def load_kernel(dev: Device, task: dict[str, Any]) -> dict[str, Any]:
    """gpu.health's load: bf16 products for a set time, keeping the PCIe link and
    clocks at their working state while NVML samples them."""
    dev.barrier()
    n = int(task.get("n", 8192))
    deadline = time.monotonic() + float(task.get("seconds", 10))
    loops = 0
    while time.monotonic() < deadline:
        time_matmul(dev.torch, dev.name, "bf16" if dev.cuda else "fp32", n, 0, 5, dev.timer)
        loops += 1
    return {"loops": loops}


@gpu_kernel
def copy_kernel(dev: Device, task: dict[str, Any]) -> dict[str, Any]:
    """gpu.hbm: device-to-device copies, and pinned host copies on a GPU."""
    size = int(task.get("bytes", GIB))
    size = max(size, 8 * dev.l2)  # "much larger than L2"
    if dev.free is not None:
        size = min(size, int(dev.free * MEMORY_SHARE / 2))
    from bench_agent.checks.gpu.numa import bind_to_gpu_numa

    numa = bind_to_gpu_numa(dev.torch, dev.name) if dev.cuda else {"numa": "not a GPU"}
    dev.barrier()
    copy = time_copies(dev.torch, dev.name, size, int(task.get("warmup", 3)),
                       int(task.get("iterations", 20)), dev.timer, host=dev.cuda)
    for kind in ("h2d", "d2h"):
        if kind in copy:
            copy[kind].update(numa)
    return {"copy": copy}


@gpu_kernel
def matmul_kernel(dev: Device, task: dict[str, Any]) -> dict[str, Any]:
    """gpu.matmul: each precision at each size that fits; what cannot run is in
    "skipped" with the reason."""
    matmul: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    first = True
    for precision in task.get("precisions", ["bf16"]):
        if precision == "fp8" and (why := fp8_supported(dev.torch, dev.name)):
            skipped["fp8"] = why
            continue
        per_size: list[dict[str, Any]] = []
        for n in task.get("sizes", [8192]):
            if precision == "fp8" and (why := fp8_shape_reason(n)):
                skipped[f"fp8@{n}"] = why
                continue
            element = ELEMENT_BYTES[precision]
            sets = rotation_sets(n, element, dev.l2) if dev.cuda else int(task.get("sets", 2))
            need = (2 * sets + 2) * n * n * max(element, 2)
            if dev.free is not None and need > dev.free * MEMORY_SHARE:
                skipped[f"{precision}@{n}"] = (
                    f"needs {need / GIB:.1f} GiB, more than {MEMORY_SHARE:.0%} of free memory")
                continue
            if first:
                dev.barrier()  # every GPU starts its timed work together
                first = False
            per_size.append(time_matmul(dev.torch, dev.name, precision, n,
                                        int(task.get("warmup", 5)),
                                        int(task.get("iterations", 20)), dev.timer, sets))
        matmul[precision] = per_size
    return {"matmul": matmul, "skipped": skipped}


def bench_device(task: dict[str, Any], barrier: Callable[[], None] = lambda: None,
                 timer: Timer | None = None) -> dict[str, Any]:
    """One device's results: task = {device, kernel: "module:function", ...}; the
    kernel's own keys are merged over the device's facts."""
    kernel = resolve_kernel(str(task.get("kernel", "")))
    import torch

    device = task.get("device", "cuda:0")
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(device)
    timer = timer or (CudaEventTimer(torch) if cuda else PerfCounterTimer())
    free, l2 = _device_memory(torch, device)
    result: dict[str, Any] = {"device": device, "torch": torch.__version__, "skipped": {}}
    if cuda:
        result["name"] = torch.cuda.get_device_name(device)
        result["l2_bytes"] = l2
        result["free_bytes"] = free
    result.update(kernel(Device(torch, device, cuda, timer, free, l2, barrier), task))
    return result


__all__ = ["BARRIER_SHARE", "Device", "FileBarrier", "child_cuda_env", "cuda_uuids",
           "gpu_kernel", "run_on_devices"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one device's GPU benchmark (internal)")
    parser.add_argument("--task", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--barrier", type=Path)
    parser.add_argument("--rank", type=int, default=0)
    parser.add_argument("--parties", type=int, default=1)
    parser.add_argument("--barrier-timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    if args.barrier is None:
        result = bench_device(json.loads(args.task))
    else:
        barrier = FileBarrier(args.barrier, args.rank, args.parties, args.barrier_timeout)
        try:
            result = bench_device(json.loads(args.task), barrier)
        finally:
            barrier.leave()  # done, failed or skipped everything: release the others
        result["barrier"] = barrier.report()
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
