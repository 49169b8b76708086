"""gpu.power_stress: the real load kernel on CPU torch while the fake NVML is sampled;
power below 0.75 of the limit, throttling and a falling rate fail the GPU."""

from __future__ import annotations

import pytest

from bench_agent.checks.base import CheckContext
from bench_agent.checks.gpu.power import PowerParams, PowerStressCheck
from bench_agent.config.loader import load_profile_named
from bench_agent.core.model import Measurement, Status
from bench_agent.core.thresholds import evaluate
from bench_agent.tools import nvml
from tests.checks.gpu_diag_support import cpu_runner, gpu_list
from tests.fake_nvml import FakeNvml

pytest.importorskip("torch")

FAST = PowerParams(seconds=0.3, warmup_seconds=0, interval=0.05, sample_interval=0.02, n=64)


def run(nv: FakeNvml, params: PowerParams = FAST, gpus: int = 3) -> list[Measurement]:
    check = PowerStressCheck(runner=cpu_runner(), gpus=gpu_list(gpus))
    with nvml.use_loader(lambda: nv):
        return check.run(CheckContext(timeout=120), params)


def value(out: list[Measurement], metric: str) -> dict[str, float]:
    return {m.device: m.value for m in out if m.metric == metric}


def statuses(out: list[Measurement], metric: str) -> dict[str, Status]:
    profile = load_profile_named("gpu-node")
    return {v.device: v.status for v in evaluate(out, profile.thresholds, {"gpu.power_stress"})
            if v.metric == metric}


def test_healthy_gpus_near_their_limit_pass() -> None:
    nv = FakeNvml(gpus=None)
    for gpu in nv.gpus:
        gpu.power_mw = 620_000  # of 700 W: 0.886
    out = run(nv)
    assert value(out, "gpu.power_stress_power_fraction") == {
        f"gpu{i}": pytest.approx(620 / 700) for i in range(3)}
    assert value(out, "gpu.power_stress_sm_clock_min") == {f"gpu{i}": 1.98e9 for i in range(3)}
    assert value(out, "gpu.power_stress_hw_slowdown") == {f"gpu{i}": 0 for i in range(3)}
    flops = {m.device: m for m in out if m.metric == "gpu.power_stress_flops"}
    assert all(m.value > 0 and len(m.params["series"]) >= 2 for m in flops.values())
    held = value(out, "gpu.power_stress_perf_held")
    assert set(held) == {"gpu0", "gpu1", "gpu2"} and all(0 < h <= 1 for h in held.values())
    assert set(statuses(out, "gpu.power_stress_power_fraction").values()) == {Status.PASS}
    frac = next(m for m in out if m.metric == "gpu.power_stress_power_fraction")
    assert frac.params["limit_w"] == 700 and frac.params["serial"] == "1654321000"


def test_a_gpu_that_cannot_reach_the_power_target_or_throttles_fails() -> None:
    nv = FakeNvml()
    for gpu in nv.gpus:
        gpu.power_mw = 620_000
    nv.gpus[2].power_mw = 400_000  # 0.57 of 700 W
    nv.gpus[1].reasons = 0x40  # nvmlClocksEventReasonHwThermalSlowdown
    out = run(nv)
    assert statuses(out, "gpu.power_stress_power_fraction") == {
        "gpu0": Status.PASS, "gpu1": Status.PASS, "gpu2": Status.FAIL}
    assert statuses(out, "gpu.power_stress_thermal")["gpu1"] is Status.FAIL
    assert statuses(out, "gpu.power_stress_hw_slowdown")["gpu1"] is Status.FAIL
    assert statuses(out, "gpu.power_stress_hw_slowdown")["gpu0"] is Status.PASS
    slow = next(m for m in out if m.metric == "gpu.power_stress_thermal" and m.device == "gpu1")
    assert slow.params["reasons_seen"] == ["hw_thermal_slowdown"]


def test_a_rate_that_falls_under_load_fails() -> None:
    check = PowerStressCheck(runner=cpu_runner(), gpus=gpu_list(1))
    nv = FakeNvml(gpus=None)
    handle = nv.nvmlDeviceGetHandleByIndex(0)
    facts = nvml.device_facts(nv, handle, 0)
    samples = [(float(t), nvml.sample(nv, handle), 1980.0) for t in range(30)]
    # 30 intervals at 800 TFLOP/s, then the GPU throttles to 640 for the last 5.
    series = [[float(t), 800e12 if t < 25 else 640e12] for t in range(30)]
    out = check._per_gpu(0, facts, 700.0, samples,
                         {"power_series": series, "precision": "bf16", "n": 8192},
                         PowerParams(warmup_seconds=10))
    held = next(m for m in out if m.metric == "gpu.power_stress_perf_held")
    assert held.value == pytest.approx(0.8) and held.params["intervals"] == 20
    assert statuses(out, "gpu.power_stress_perf_held") == {"gpu0": Status.FAIL}


def test_without_nvml_it_skips() -> None:
    from bench_agent.core.errors import NotApplicable

    with pytest.raises(NotApplicable, match="Driver Not Loaded"):
        run(FakeNvml(init_error=9))


def test_the_burn_in_load_is_registered_with_its_rate() -> None:
    from bench_agent.burnin.loads import burnin_catalog, load_registry

    assert load_registry()["gpu_power"].check == "gpu.power_stress"
    assert burnin_catalog()["burnin.gpu_power_fraction"].unit.value == "count"


def test_shipped_burnin_file_loads_with_the_power_load_off() -> None:
    from bench_agent.burnin.engine import default_burnin_path, load_burnin_config

    config = load_burnin_config(default_burnin_path())
    assert "gpu_power" not in config.loads  # disabled: gpu_matmul holds the GPUs
    assert any(t.metric == "burnin.gpu_power_fraction" for t in config.thresholds)
