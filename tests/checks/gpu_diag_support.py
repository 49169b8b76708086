"""Support for the GPU diagnostics' tests: their kernels run in this process on CPU
torch, one call of kernels.bench_device per "GPU", in place of run_on_devices (no
CUDA here). The kernel code is the real one; only the device is the CPU."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench_agent.checks.gpu.kernels import Timer, bench_device


def cpu_runner(timer: Callable[[str, int], Timer | None] = lambda device, parties: None,
               around: Callable[[int], Any] | None = None,
               before: Callable[[list[str]], None] = lambda devices: None,
               ) -> Callable[[list[str], dict[str, Any], float], list[dict[str, Any]]]:
    """A DeviceRunner that runs each device's kernel here on the CPU.

    ``timer(device, parties)`` gives the timer of that device when ``parties``
    devices run at once (None: the real perf counter); ``around(rank)`` a context
    manager its kernel runs inside (a corruption hook for one rank); ``before``
    sees the device list of each call first (a test changes the fake NVML there)."""
    import contextlib

    def run(devices: list[str], task: dict[str, Any], timeout: float
            ) -> list[dict[str, Any]]:
        before(devices)
        results = []
        for rank, device in enumerate(devices):
            context = around(rank) if around is not None else contextlib.nullcontext()
            with context:
                result = bench_device({**task, "device": "cpu"}, timer=timer(device, len(devices)))
            result["device"] = device
            results.append(result)
        return results

    return run


class RateTimer:
    """A copy timer that reports each call as moving ``bytes_per_call`` at ``rate``
    bytes/s: the fake copy timer of the PCIe and P2P tests (the copies themselves
    run for real on the CPU; only their duration is made up, since no PCIe or
    NVLink link exists here)."""

    def __init__(self, rate: float, bytes_per_call: int) -> None:
        self.rate = rate
        self.bytes_per_call = bytes_per_call
        self.calls = 0

    def measure(self, fn: Callable[[int], None], iterations: int) -> list[float]:
        out = []
        for i in range(iterations):
            fn(i)
            self.calls += 1
            out.append(self.bytes_per_call / self.rate)
        return out


def gpu_list(count: int) -> Callable[[], list[tuple[int, str]]]:
    """The GPU lister of a node with ``count`` GPUs, labelled as torch counts them."""
    return lambda: [(i, f"cuda:{i}") for i in range(count)]
