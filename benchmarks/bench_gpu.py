"""How close the agent's matmul timing comes to a bare torch.matmul loop of the same shape.

    python benchmarks/bench_gpu.py [--n 8192] [--precision bf16] [--iterations 20]

On a GPU (CUDA events for both): the issue's target is agent / raw >= 0.97 and,
for bf16 8192³, within 5 % of the card's bf16 figure in suites/baselines/. Without a GPU
it runs on the CPU (perf_counter, fp32, n=512) to show the overhead of the timing
path (input rotation, the Timer interface, the finiteness check outside the timed
span); CPU BLAS noise on a shared machine makes that ratio only indicative.

It reports and does not assert: the exit code is 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def raw_operands(torch: Any, device: str, precision: str, n: int) -> tuple[Any, Any]:
    """One A and one B. fp8: random normal made in fp32 and cast (torch has no
    float8 random kernel), B column-major as torch._scaled_mm takes it."""
    from bench_agent.checks.gpu.kernels import _torch_dtype

    dtype = _torch_dtype(torch, precision)
    if precision == "fp8":
        return (torch.randn(n, n, device=device).to(dtype),
                torch.randn(n, n, device=device).to(dtype).t())
    return (torch.randn(n, n, device=device, dtype=dtype),
            torch.randn(n, n, device=device, dtype=dtype))


def raw_product(torch: Any, precision: str) -> Any:
    """The plainest call of the precision: torch.matmul, or for fp8 torch._scaled_mm
    with unit scales (torch.matmul takes no float8 on a GPU)."""
    if precision != "fp8":
        return torch.matmul
    def scaled(a: Any, b: Any) -> Any:
        one = torch.ones((), device=a.device, dtype=torch.float32)
        return torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)

    return scaled


def raw_matmul(torch: Any, device: str, precision: str, n: int, iterations: int) -> list[float]:
    """The plainest loop: one A, one B, events (or perf_counter) around each product."""
    a, b = raw_operands(torch, device, precision, n)
    product = raw_product(torch, precision)
    for _ in range(5):
        product(a, b)
    out: list[float] = []
    for _ in range(iterations):
        if device.startswith("cuda"):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            product(a, b)
            end.record()
            torch.cuda.synchronize()
            out.append(start.elapsed_time(end) / 1000)
        else:
            t0 = time.perf_counter()
            product(a, b)
            out.append(time.perf_counter() - t0)
    return out


def main() -> int:
    import torch

    from bench_agent.checks.gpu.kernels import (
        CudaEventTimer,
        PerfCounterTimer,
        Timer,
        fp8_shape_reason,
        rates,
        rotation_sets,
        time_matmul,
    )

    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=8192 if cuda else 512)
    parser.add_argument("--precision", default="bf16" if cuda else "fp32")
    parser.add_argument("--iterations", type=int, default=20)
    args = parser.parse_args()
    device = "cuda:0" if cuda else "cpu"
    if args.precision == "fp8" and (why := fp8_shape_reason(args.n)):
        print(f"bench_gpu: {why}")
        return 3
    timer: Timer = CudaEventTimer(torch) if cuda else PerfCounterTimer()
    sets = 2
    if cuda:
        l2 = torch.cuda.get_device_properties(device).L2_cache_size
        sets = rotation_sets(args.n, {"fp8": 1, "tf32": 4, "fp32": 4}.get(args.precision, 2), l2)
    agent = time_matmul(torch, device, args.precision, args.n, 5, args.iterations, timer, sets)
    if args.precision == "tf32":
        torch.set_float32_matmul_precision("high")
    raw = raw_matmul(torch, device, args.precision, args.n, args.iterations)
    flop = 2 * args.n**3
    agent_rate = statistics.median(rates(flop, agent["seconds"]))
    raw_rate = statistics.median(rates(flop, raw))
    name = torch.cuda.get_device_name(device) if cuda else "CPU"
    print(f"{name}: {args.precision} {args.n}^3, {args.iterations} iterations")
    print(f"  agent {agent_rate / 1e12:.3f} TFLOP/s   raw {raw_rate / 1e12:.3f} TFLOP/s   "
          f"ratio {agent_rate / raw_rate:.3f} (target >= 0.97 on a GPU)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
