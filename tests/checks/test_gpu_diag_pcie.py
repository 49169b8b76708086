"""gpu.pcie_bandwidth: the copy kernel on CPU torch with a fake copy timer (no PCIe link
here), links read through the fake NVML, NUMA-local CPUs from a sysfs tree."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench_agent.checks.base import CheckContext
from bench_agent.checks.gpu.kernels import Timer
from bench_agent.checks.gpu.pcie import (
    LANE_BYTES_PER_S,
    PcieBandwidthCheck,
    PcieParams,
    link_peak,
    numa_cpus,
    parse_cpulist,
)
from bench_agent.config.loader import load_profile_named
from bench_agent.core.model import Measurement, Status
from bench_agent.core.thresholds import evaluate
from bench_agent.tools import nvml
from tests.checks.gpu_diag_support import RateTimer, cpu_runner, gpu_list
from tests.fake_nvml import FakeNvml

pytest.importorskip("torch")

SIZE = 1 << 20
GEN5_X16 = 16 * 32e9 * 128 / 130 / 8  # 63.0 GB/s


def test_link_peaks_follow_the_pcie_per_lane_rates() -> None:
    assert link_peak(4, 16) == pytest.approx(31.51e9, rel=1e-3)
    assert link_peak(5, 16) == pytest.approx(63.02e9, rel=1e-3)
    assert link_peak(5, 16) == pytest.approx(GEN5_X16)
    assert link_peak(3, 8) == pytest.approx(7.877e9, rel=1e-3)
    assert LANE_BYTES_PER_S[1] == 250e6 and LANE_BYTES_PER_S[2] == 500e6
    assert link_peak(6, 16) == pytest.approx(121e9, rel=1e-3)
    assert link_peak(None, 16) is None and link_peak(7, 16) is None


def test_numa_local_cpus_from_sysfs(tmp_path: Path) -> None:
    folder = tmp_path / "sys/bus/pci/devices/0000:18:00.0"
    folder.mkdir(parents=True)
    (folder / "numa_node").write_text("1\n")
    (folder / "local_cpulist").write_text("48-50,144\n")
    assert numa_cpus(tmp_path, "0000:18:00.0") == (1, [48, 49, 50, 144])
    (folder / "numa_node").write_text("-1\n")
    assert numa_cpus(tmp_path, "0000:18:00.0")[0] is None
    assert numa_cpus(tmp_path, "0000:99:00.0") == (None, [])
    assert parse_cpulist("0-3,8") == [0, 1, 2, 3, 8]


def timers(alone: dict[str, float], shared: float) -> object:
    """Alone each GPU copies at its rate; all at once at ``shared``."""
    def timer(device: str, parties: int) -> Timer:
        return RateTimer(alone[device] if parties == 1 else shared, SIZE)
    return timer


def run(nv: FakeNvml, timer: object, before: object = lambda devices: None,
        gpus: int = 4) -> list[Measurement]:
    check = PcieBandwidthCheck(runner=cpu_runner(timer=timer, before=before),  # type: ignore[arg-type]
                               gpus=gpu_list(gpus))
    with nvml.use_loader(lambda: nv):
        return check.run(CheckContext(timeout=120),
                         PcieParams(bytes=SIZE, warmup=1, iterations=3, sample_interval=0.01))


def statuses(out: list[Measurement], metric: str) -> dict[str, Status]:
    profile = load_profile_named("gpu-node")
    return {v.device: v.status for v in evaluate(out, profile.thresholds,
                                                 {"gpu.pcie_bandwidth"})
            if v.metric == metric}


def test_gen5_x16_gpus_at_54_gbs_pass_and_one_at_40_fails() -> None:
    alone = {f"cuda:{i}": 54e9 for i in range(4)}
    alone["cuda:3"] = 40e9  # 0.63 of the Gen5 x16 peak
    out = run(FakeNvml(), timers(alone, shared=27e9))
    h2d = {m.device: m for m in out if m.metric == "gpu.pcie_h2d_alone"}
    assert h2d["gpu0"].value == pytest.approx(54e9) and h2d["gpu0"].samples == (
        pytest.approx(54e9),) * 3
    assert h2d["gpu0"].params["gen_max"] == 5 and h2d["gpu0"].params["width_max"] == 16
    assert h2d["gpu0"].params["numa"] == "not bound: no GPU (CPU run)"
    frac = {m.device: m.value for m in out if m.metric == "gpu.pcie_peak_fraction_alone"}
    assert frac["gpu0"] == pytest.approx(54e9 / GEN5_X16)
    assert statuses(out, "gpu.pcie_peak_fraction_alone") == {
        "gpu0": Status.PASS, "gpu1": Status.PASS, "gpu2": Status.PASS, "gpu3": Status.FAIL}
    # Two GPUs per switch uplink: all at once at half rate is a WARN only.
    assert set(statuses(out, "gpu.pcie_peak_fraction_all").values()) == {Status.WARN}
    assert {m.device: m.value for m in out if m.metric == "gpu.pcie_d2h_all"} == {
        f"gpu{i}": pytest.approx(27e9) for i in range(4)}


def test_a_link_that_trains_down_under_load_fails() -> None:
    nv = FakeNvml()

    def before(devices: list[str]) -> None:
        if len(devices) == 4:  # the all-at-once phase: gpu1 drops to Gen3 x8
            nv.gpus[1].pcie_gen, nv.gpus[1].pcie_width = 3, 8
            time.sleep(0.1)  # the sampler sees it while the copies run

    out = run(nv, timers({f"cuda:{i}": 54e9 for i in range(4)}, 54e9), before)
    assert {m.device: m.value for m in out if m.metric == "gpu.pcie_link_width_drop"} == {
        "gpu0": 0, "gpu1": 8, "gpu2": 0, "gpu3": 0}
    assert statuses(out, "gpu.pcie_link_width_drop")["gpu1"] is Status.FAIL
    assert statuses(out, "gpu.pcie_link_width_drop")["gpu0"] is Status.PASS
    assert statuses(out, "gpu.pcie_link_gen_drop")["gpu2"] is Status.PASS


def test_a_link_whose_generation_nvml_cannot_tell_is_unjudged_not_passed() -> None:
    nv = FakeNvml(gpus=None)
    for gpu in nv.gpus:
        gpu.pcie_gen_max = 0  # NVML answered nothing usable: no peak to compare
    out = run(nv, timers({f"cuda:{i}": 54e9 for i in range(2)}, 54e9), gpus=2)
    assert not [m for m in out if m.metric.startswith("gpu.pcie_peak_fraction")]
    assert set(statuses(out, "gpu.pcie_peak_fraction_alone").values()) == {Status.SKIP}


@pytest.mark.parametrize("with_gpus", [True, False])
def test_nvml_missing_fails_on_a_gpu_node_and_skips_elsewhere(tmp_path: Path,
                                                             with_gpus: bool) -> None:
    # Not injected (the real runner): NVML that cannot start is a broken stack on a
    # node whose PCI bus holds NVIDIA GPUs, never a quiet SKIP; elsewhere it is one.
    from bench_agent.core.errors import NotApplicable, ToolFailed

    device = tmp_path / "sys/bus/pci/devices/0000:18:00.0"
    device.mkdir(parents=True)
    (device / "vendor").write_text("0x10de\n" if with_gpus else "0x8086\n")
    (device / "class").write_text("0x030200\n")
    check = PcieBandwidthCheck(gpus=gpu_list(2))
    fake = FakeNvml(init_error=12)  # NVML Shared Library Not Found
    with nvml.use_loader(lambda: fake):
        if with_gpus:
            with pytest.raises(ToolFailed, match=r"1 NVIDIA GPU\(s\) on the PCI bus "
                                                 r"\(0000:18:00.0\) but"):
                check.run(CheckContext(root=tmp_path), PcieParams())
        else:
            with pytest.raises(NotApplicable, match="NVML cannot start: NVML Shared Library"):
                check.run(CheckContext(root=tmp_path), PcieParams())
