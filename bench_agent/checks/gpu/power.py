"""gpu.power_stress: a sustained load near the power limit, sampled as it runs.

DCGM's targeted power test (NVIDIA/DCGM:nvvs/plugin_src/targeted_power/
TargetedPower_wrapper.cpp) loads every GPU with GEMMs and fails a GPU whose power
stays below target_power_min_ratio (0.75 by default) of its target. Here the target
is the enforced power limit (nvmlDeviceGetEnforcedPowerLimit) and the load is the
gpu.matmul kernel (kernels.make_matmul, bf16, all GPUs at once). DCGM takes the
highest sample; we take the median after the warm-up, so a GPU that touches the
target once and then sags is caught ("sustained").

While the load runs, NVML is read every ``sample_interval``: power, SM clock,
clock event reasons (throttling), temperature. The kernel reports its own rate
per interval, so the performance of each GPU over time is in the report, and a
GPU whose rate falls under load (it throttles, its clocks drop) fails
gpu.power_stress_perf_held.

The burn-in variant (load ``gpu_power``) runs the same products in a loop and
reports, each interval, the power fraction of the GPU farthest below its limit.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from bench_agent.checks.base import BurninVariant, CheckContext, Emit, MetricSpec, Stopping
from bench_agent.checks.gpu.diag import DiagCheck, gpu_label
from bench_agent.checks.gpu.kernels import Device, gpu_kernel, make_matmul, matmul_flop
from bench_agent.core.errors import CheckError, NotApplicable, ToolMissing
from bench_agent.core.model import Measurement
from bench_agent.core.units import Unit
from bench_agent.tools import nvml

# Products queued between two synchronizations: enough to keep the GPU busy
# (8192³ bf16 is ~1.4 ms on an H100), few enough that an interval ends on time.
GROUP = 8
# Points of the per-interval series kept in the report (a 10-minute run at 1 s).
SERIES_POINTS = 600


@gpu_kernel
def power_kernel(dev: Device, task: dict[str, Any]) -> dict[str, Any]:
    """Products back to back for ``seconds``; the FLOP/s of each ``interval``."""
    torch = dev.torch
    n = int(task.get("n", 8192))
    precision = str(task.get("precision", "bf16")) if dev.cuda else "fp32"
    run, finite = make_matmul(torch, dev.name, precision, n, sets=2)
    flop = matmul_flop(n, n, n)
    interval = float(task.get("interval", 1.0))
    sync = (lambda: torch.cuda.synchronize()) if dev.cuda else (lambda: None)
    dev.barrier()
    series: list[list[float]] = []
    start = time.monotonic()
    count = 0
    while time.monotonic() - start < float(task.get("seconds", 60)):
        begun, done = time.perf_counter(), 0
        while time.perf_counter() - begun < interval:
            for _ in range(GROUP):
                run(count)
                count += 1
                done += 1
            sync()
        elapsed = time.perf_counter() - begun
        series.append([round(time.monotonic() - start, 3), done * flop / elapsed])
    if not finite():
        raise RuntimeError(f"{precision} matmul produced non-finite values under load")
    return {"power_series": series, "precision": precision, "n": n}


class PowerParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # DCGM's targeted power runs 120 s at diag level 3 (test_duration); 90 s here.
    seconds: float = Field(default=90.0, gt=0)
    # Samples of the first seconds are left out of the judgement: clocks and
    # power ramp up and the fans catch up.
    warmup_seconds: float = Field(default=15.0, ge=0)
    interval: float = Field(default=1.0, gt=0)
    sample_interval: float = Field(default=1.0, gt=0)
    n: int = Field(default=8192, ge=64)
    precision: Literal["bf16", "fp16"] = "bf16"


class PowerBurninParams(BaseModel):
    """`gpu_power` in burnin.yaml."""

    model_config = ConfigDict(extra="forbid")
    n: int = Field(default=8192, ge=64)
    precision: Literal["bf16", "fp16"] = "bf16"


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


class PowerStressCheck(DiagCheck):
    name: ClassVar[str] = "gpu.power_stress"
    description: ClassVar[str] = ("sustained matmul near the power limit: power, clocks, "
                                  "throttling and FLOP/s over time per GPU")
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("gpu.power_stress_power_fraction", Unit.COUNT,
                   "median power after the warm-up / enforced power limit", per_device=True),
        MetricSpec("gpu.power_stress_power", Unit.WATTS, "median power after the warm-up",
                   per_device=True),
        MetricSpec("gpu.power_stress_perf_held", Unit.COUNT,
                   "lowest interval FLOP/s / the GPU's median after the warm-up",
                   per_device=True),
        MetricSpec("gpu.power_stress_flops", Unit.FLOPS, "median FLOP/s after the warm-up",
                   per_device=True),
        MetricSpec("gpu.power_stress_sm_clock_min", Unit.HERTZ,
                   "lowest SM clock sampled after the warm-up", per_device=True),
        MetricSpec("gpu.power_stress_temperature_max", Unit.CELSIUS, "hottest sample",
                   higher_is_better=False, per_device=True),
        MetricSpec("gpu.power_stress_hw_slowdown", Unit.COUNT,
                   "samples with a hardware slowdown clock event", higher_is_better=False,
                   per_device=True),
        MetricSpec("gpu.power_stress_thermal", Unit.COUNT,
                   "samples with a thermal slowdown clock event", higher_is_better=False,
                   per_device=True),
    )
    params_model: ClassVar[type[BaseModel]] = PowerParams
    kernel: ClassVar[str] = "bench_agent.checks.gpu.power:power_kernel"
    burnin: ClassVar[BurninVariant | None] = BurninVariant(
        load="gpu_power",
        rate=MetricSpec("burnin.gpu_power_fraction", Unit.COUNT,
                        "power / enforced limit of the GPU farthest below its limit"),
        params_model=PowerBurninParams,
        loop="bench_agent.checks.gpu.power:power_loop",
    )

    def run(self, ctx: CheckContext, params: BaseModel) -> list[Measurement]:
        if not isinstance(p := params, PowerParams):
            raise TypeError(f"expected PowerParams, got {type(params).__name__}")
        return self.failing_on_gpus(ctx, lambda: self._run(ctx, p))

    def _run(self, ctx: CheckContext, p: PowerParams) -> list[Measurement]:
        seconds = min(p.seconds, ctx.timeout * 0.6)
        gpus = self.gpus()
        indices = [index for index, _ in gpus]
        task = {"seconds": seconds, "interval": p.interval, "n": p.n,
                "precision": p.precision}
        with nvml.session() as nv:
            handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in indices]
            facts = [nvml.device_facts(nv, h, i) for i, h in zip(indices, handles, strict=True)]
            limits = [nvml.power_limit_w(nv, h) for h in handles]
            samples: list[list[tuple[float, nvml.GpuSample, float | None]]] = [
                [] for _ in indices]
            outcome: dict[str, Any] = {}

            def load() -> None:
                try:
                    outcome["results"] = self.run_kernel(ctx, task, "gpu power stress",
                                                         gpus)[1]
                except Exception as exc:  # re-raised below, in this thread
                    outcome["error"] = exc

            worker = threading.Thread(target=load, daemon=True)
            started = time.monotonic()
            worker.start()
            while worker.is_alive():
                now = time.monotonic() - started
                for i, h in enumerate(handles):
                    clock = nvml.optional(nv, "nvmlDeviceGetClockInfo", h, nvml.NVML_CLOCK_SM)
                    samples[i].append((now, nvml.sample(nv, h),
                                       float(clock) if clock is not None else None))
                worker.join(timeout=p.sample_interval)
        if "error" in outcome:
            raise outcome["error"]
        out: list[Measurement] = []
        for slot, index in enumerate(indices):
            out += self._per_gpu(index, facts[slot], limits[slot], samples[slot],
                                 outcome["results"][slot], p)
        return out

    def _per_gpu(self, index: int, facts: nvml.GpuFacts, limit: float | None,
                 samples: list[tuple[float, nvml.GpuSample, float | None]],
                 result: dict[str, Any], p: PowerParams) -> list[Measurement]:
        dev = f"gpu{index}"
        ident = {"uuid": facts.uuid, "serial": facts.serial, "name": facts.name,
                 "gpu": gpu_label(index, {"uuid": facts.uuid, "serial": facts.serial})}
        steady = [s for s in samples if s[0] >= p.warmup_seconds] or samples
        note = None if len(steady) < len(samples) or not p.warmup_seconds else (
            "the run was shorter than the warm-up: every sample is judged")
        series = result["power_series"]
        rates = [r for t, r in series if t >= p.warmup_seconds] or [r for _, r in series]
        out: list[Measurement] = []

        def add(metric: str, value: float | None, unit: Unit = Unit.COUNT,
                **extra: Any) -> None:
            if value is not None:
                out.append(self.m(metric, value, unit, device=dev, tool="nvml+torch",
                                  **ident, **extra))

        powers = [s.power_w for _, s, _ in steady if s.power_w is not None]
        power = _median(powers)
        add("gpu.power_stress_power", power, Unit.WATTS, samples=len(powers), note=note)
        if power is not None and limit:
            add("gpu.power_stress_power_fraction", power / limit, power_w=power,
                limit_w=limit, samples=len(powers), note=note,
                max_w=max(powers))
        median_rate = _median(rates)
        add("gpu.power_stress_flops", median_rate, Unit.FLOPS, precision=result["precision"],
            n=result["n"], series=series[-SERIES_POINTS:])
        if median_rate:
            low = min(rates)
            add("gpu.power_stress_perf_held", low / median_rate, lowest_flops=low,
                median_flops=median_rate, intervals=len(rates), interval_s=p.interval)
        clocks = [c for _, _, c in steady if c is not None]
        add("gpu.power_stress_sm_clock_min", min(clocks) * 1e6 if clocks else None, Unit.HERTZ,
            median_mhz=_median(clocks))
        temps = [float(s.temperature) for _, s, _ in samples if s.temperature is not None]
        add("gpu.power_stress_temperature_max", max(temps) if temps else None, Unit.CELSIUS)
        masks = [s.clock_event_reasons for _, s, _ in steady
                 if s.clock_event_reasons is not None]
        if masks:
            seen = sorted({name for m in masks for name in nvml.reason_names(m)})
            add("gpu.power_stress_hw_slowdown",
                sum(bool(m & nvml.HW_SLOWDOWN_MASK) for m in masks), samples=len(masks),
                reasons_seen=seen)
            add("gpu.power_stress_thermal", sum(bool(m & nvml.THERMAL_MASK) for m in masks),
                samples=len(masks), reasons_seen=seen)
        return out


def power_loop(ctx: CheckContext, params: BaseModel, emit: Emit, stopping: Stopping) -> None:
    """Burn-in: the power stress products on every GPU; each interval, the lowest
    power / enforced limit over the GPUs (NVML read at the interval's end)."""
    from bench_agent.checks.base import burnin_interval

    if not isinstance(p := params, PowerBurninParams):
        raise TypeError(f"expected PowerBurninParams, got {type(params).__name__}")
    try:
        import torch
    except ImportError:
        raise ToolMissing("torch", "pip install 'bench-agent[gpu]'") from None
    if not torch.cuda.is_available():
        raise NotApplicable("gpu power load: no CUDA device (torch.cuda.is_available() is "
                            "False)")
    interval = burnin_interval(ctx)
    devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    kernels = [make_matmul(torch, d, p.precision, p.n) for d in devices]
    with nvml.session() as nv:
        handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in range(len(devices))]
        limits = [nvml.power_limit_w(nv, h) for h in handles]
        if not all(limits):
            raise NotApplicable("NVML gives no enforced power limit for every GPU")
        while not stopping():
            started, count = time.perf_counter(), 0
            while not stopping() and time.perf_counter() - started < interval:
                for index, (run, _) in enumerate(kernels):
                    with torch.cuda.device(devices[index]):
                        run(count)
                count += 1
                if count % GROUP == 0:
                    for device in devices:
                        torch.cuda.synchronize(device)
            if stopping():
                break
            fractions = []
            for handle, limit in zip(handles, limits, strict=True):
                power = nvml.sample(nv, handle).power_w
                if power is None or not limit:
                    raise CheckError("NVML stopped reporting power during the burn-in")
                fractions.append(power / limit)
            for device, (_, finite) in zip(devices, kernels, strict=True):
                if not finite():
                    raise CheckError(f"{device}: {p.precision} matmul produced non-finite "
                                     "values")
            emit(min(fractions))
