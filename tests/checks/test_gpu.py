"""GPU checks: NVML health through the fake NVML, matmul and copy timing on the CPU,
per-model baselines, and `bench-agent run gpu` on this GPU-less machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench_agent.checks.base import CheckContext
from bench_agent.checks.gpu.checks import (
    HbmCheck,
    HealthCheck,
    HealthParams,
    MatmulCheck,
    node_measurements,
)
from bench_agent.checks.gpu.kernels import (
    PerfCounterTimer,
    matmul_flop,
    rates,
    resolve_kernel,
    rotation_sets,
)
from bench_agent.config import baselines
from bench_agent.config.loader import load_profile_named
from bench_agent.core.errors import NotApplicable, ToolMissing
from bench_agent.core.model import Measurement, Status
from bench_agent.core.thresholds import evaluate
from bench_agent.core.units import Unit
from bench_agent.tools import nvml
from tests.fake_nvml import FakeGpu, FakeNvml
from tests.paths import REPO

REPO = REPO


def no_load(indices: list[int], seconds: float) -> dict[str, Any]:
    return {"ran": True}


def no_log(root: Path) -> tuple[str, str | None]:
    return "", None


def health(nv: FakeNvml, load: Any = no_load, log: Any = no_log) -> list[Measurement]:
    check = HealthCheck(load=load, kernel_log=log)
    with nvml.use_loader(lambda: nv):
        return check.run(CheckContext(), HealthParams(load_seconds=1, sample_interval=0.01))


def verdicts(measurements: list[Measurement]) -> dict[tuple[str, str], Status]:
    profile = load_profile_named("gpu-node")
    return {(v.metric, v.device): v.status
            for v in evaluate(measurements, profile.thresholds, {"gpu.health"})}


def by(measurements: list[Measurement], metric: str) -> dict[str, float]:
    return {m.device: m.value for m in measurements if m.metric == metric}


# --- health ------------------------------------------------------------------------


def test_health_without_library_or_gpu_skips() -> None:
    def missing() -> None:
        raise ImportError("no pynvml")

    check = HealthCheck(load=no_load, kernel_log=no_log)
    with nvml.use_loader(missing), pytest.raises(ToolMissing):
        check.run(CheckContext(), HealthParams())
    with pytest.raises(NotApplicable, match="no GPU"):
        health(FakeNvml(gpus=[]))
    with pytest.raises(NotApplicable, match="Driver Not Loaded"):
        health(FakeNvml(init_error=9))


def test_healthy_eight_gpus_pass() -> None:
    out = health(FakeNvml())
    assert by(out, "gpu.count") == {"": 8}
    count = next(m for m in out if m.metric == "gpu.count")
    assert count.params["driver_version"] == "550.54.15"
    assert count.params["cuda_driver_version"] == "12.4"
    assert count.params["gpus"][7]["serial"] == "1654321007"
    assert set(by(out, "gpu.pcie_width_below_max")) == {f"gpu{i}" for i in range(8)}
    statuses = verdicts(out)
    bad = {k: s for k, s in statuses.items() if s is not Status.PASS}
    # Readings an H100 does not have (retired pages are pre-Ampere) are SKIP, not FAIL.
    assert bad == {("gpu.retired_pages_pending", ""): Status.SKIP}, bad


def test_one_gpu_in_hardware_slowdown_fails_it() -> None:
    nv = FakeNvml()

    def load(indices: list[int], seconds: float) -> dict[str, Any]:
        nv.gpus[5].reasons = 0x8  # nvmlClocksEventReasonHwSlowdown under load
        import time

        time.sleep(0.1)
        return {"ran": True}

    out = health(nv, load=load)
    slow = next(m for m in out if m.metric == "gpu.throttle_hw_slowdown" and m.device == "gpu5")
    assert slow.value >= 1 and "hw_slowdown" in slow.params["reasons_seen"]
    statuses = verdicts(out)
    assert statuses[("gpu.throttle_hw_slowdown", "gpu5")] is Status.FAIL
    assert statuses[("gpu.throttle_hw_slowdown", "gpu4")] is Status.PASS


def test_pending_row_remap_fails() -> None:
    nv = FakeNvml()
    nv.gpus[2].remap = (0, 1, 1, 0)  # one uncorrectable row, remap pending a reset
    statuses = verdicts(health(nv))
    assert statuses[("gpu.row_remap_pending", "gpu2")] is Status.FAIL
    assert statuses[("gpu.row_remap_failure", "gpu2")] is Status.PASS


def test_xid_79_event_and_kernel_line_fail() -> None:
    nv = FakeNvml(xids=[(6, 79), (1, 13)])

    def load(indices: list[int], seconds: float) -> dict[str, Any]:
        import time

        time.sleep(0.3)  # the watcher thread drains the events meanwhile
        return {"ran": True}

    def log(root: Path) -> tuple[str, str | None]:
        # GPU 6's bus id in the fake is 0x18 + 0x60 = 0x78
        return "[ 10.0] NVRM: Xid (PCI:0000:78:00): 79, pid=1, GPU has fallen off the bus.\n", None

    out = health(nv, load=load, log=log)
    assert by(out, "gpu.xid_events")["gpu6"] == 1
    assert by(out, "gpu.xid_events")["gpu1"] == 0  # XID 13 is an application error
    assert by(out, "gpu.xid_kernel_log")["gpu6"] == 1
    statuses = verdicts(out)
    assert statuses[("gpu.xid_events", "gpu6")] is Status.FAIL
    assert statuses[("gpu.xid_kernel_log", "gpu6")] is Status.FAIL
    assert statuses[("gpu.xid_events", "gpu1")] is Status.PASS


def test_pcie_x8_of_x16_under_load_fails() -> None:
    nv = FakeNvml()
    nv.gpus[3].pcie_width = 8
    nv.gpus[3].pcie_gen = 1  # idle downtraining is no finding ...
    out = health(nv, load=lambda i, s: {"ran": False, "why": "torch absent"})
    assert by(out, "gpu.pcie_width_below_max")["gpu3"] == 8
    assert "gpu.pcie_gen_below_max" not in {m.metric for m in out}  # ... without load
    assert verdicts(out)[("gpu.pcie_width_below_max", "gpu3")] is Status.FAIL


def test_ecc_limits_follow_aznhc() -> None:
    nv = FakeNvml()
    nv.gpus[0].ecc = {(0, 1, 2): 20_000_001}  # > 2e7 correctable DRAM
    nv.gpus[1].ecc = {(0, 1, 2): 19_000_000}  # below
    nv.gpus[4].ecc = {(1, 1, 7): 1}  # any uncorrectable SRAM
    statuses = verdicts(health(nv))
    assert statuses[("gpu.ecc_dram_correctable", "gpu0")] is Status.FAIL
    assert statuses[("gpu.ecc_dram_correctable", "gpu1")] is Status.PASS
    assert statuses[("gpu.ecc_sram_uncorrectable", "gpu4")] is Status.FAIL


def test_nvlink_down_fails() -> None:
    nv = FakeNvml()
    nv.gpus[7].nvlink = [1] * 17 + [0]
    out = health(nv)
    assert by(out, "gpu.nvlink_down")["gpu7"] == 1
    assert verdicts(out)[("gpu.nvlink_down", "gpu7")] is Status.FAIL


# --- matmul and copies on the CPU ----------------------------------------------------


class FakeClock:
    """Each call advances 0.5 s: every timed span lasts exactly 0.5 s."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.25
        return self.now


@pytest.mark.slow
def test_matmul_timing_with_known_flop_count() -> None:
    torch = pytest.importorskip("torch")
    from bench_agent.checks.gpu.kernels import time_matmul

    run = time_matmul(torch, "cpu", "fp32", 64, warmup=1, iterations=3,
                      timer=PerfCounterTimer(FakeClock()), sets=2)
    assert run["flop"] == 2 * 64**3 == matmul_flop(64, 64, 64)
    assert run["seconds"] == [0.25, 0.25, 0.25]
    assert rates(run["flop"], run["seconds"]) == [2 * 64**3 / 0.25] * 3
    # real clock, real product: a plausible positive rate
    real = time_matmul(torch, "cpu", "bf16", 128, warmup=1, iterations=2,
                       timer=PerfCounterTimer(), sets=2)
    assert all(r > 1e6 for r in rates(real["flop"], real["seconds"]))


def test_bench_device_on_cpu_matmul_and_copy() -> None:
    pytest.importorskip("torch")
    from bench_agent.checks.gpu.kernels import bench_device

    result = bench_device({"device": "cpu", "kernel": MatmulCheck.kernel,
                           "precisions": ["fp32", "fp8"], "sizes": [32, 64], "warmup": 0,
                           "iterations": 2})
    assert [r["n"] for r in result["matmul"]["fp32"]] == [32, 64]
    assert "CUDA" in result["skipped"]["fp8"]
    copy = bench_device({"device": "cpu", "kernel": HbmCheck.kernel, "bytes": 1 << 20,
                         "iterations": 2})
    assert copy["copy"]["hbm_copy"]["bytes_counted"] == 2 * (1 << 20)
    assert "read+write" in copy["copy"]["hbm_copy"]["counted"]


def test_rotation_sets_exceed_l2() -> None:
    # H100: 50 MiB L2; 4096² bf16 = 32 MiB per matrix, 64 MiB per set -> 2 sets
    assert rotation_sets(4096, 2, 50 << 20) == 2
    # 1024² fp32 = 8 MiB per set: 13 sets cover 2 x L2
    assert rotation_sets(1024, 4, 50 << 20) == 13


def test_node_is_judged_by_its_slowest_gpu() -> None:
    per_gpu = {0: ([800e12, 790e12, 810e12], {}), 1: ([700e12, 705e12, 702e12], {}),
               2: ([795e12, 796e12, 797e12], {})}
    out = node_measurements("gpu.matmul", "gpu.matmul_bf16", Unit.FLOPS, per_gpu, "2.13")
    node = out[-1]
    assert node.metric == "gpu.matmul_bf16" and node.value == 702e12
    assert node.params["slowest"] == "gpu1"
    assert node.stats["max"] == 705e12
    assert [m.device for m in out[:-1]] == ["gpu0", "gpu1", "gpu2"]


@pytest.mark.slow
def test_run_on_devices_one_process_each() -> None:
    pytest.importorskip("torch")
    from bench_agent.checks.gpu.kernels import run_on_devices

    results = run_on_devices(["cpu", "cpu"], {"kernel": HbmCheck.kernel, "bytes": 1 << 20,
                                              "iterations": 2, "warmup": 0}, timeout=120)
    assert [r["device"] for r in results] == ["cpu", "cpu"]
    assert all("copy" in r for r in results), results


def test_each_gpu_check_names_its_own_kernel() -> None:
    from bench_agent.checks.gpu import kernels

    assert [resolve_kernel(c.kernel) for c in (HealthCheck, MatmulCheck, HbmCheck)] == [
        kernels.load_kernel, kernels.matmul_kernel, kernels.copy_kernel]


# slow: two real children importing torch, as test_run_on_devices_one_process_each;
# resolve_kernel's naming rules are tested in-process below.
@pytest.mark.slow
def test_a_kernel_beside_its_check_runs_in_the_child_by_name() -> None:
    """A new GPU check's kernel lives in its own module: the child finds it by the
    task's name, and kernels.py has no branch to add."""
    pytest.importorskip("torch")
    from bench_agent.checks.gpu.kernels import run_on_devices

    task = {"kernel": "tests.checks.example_gpu_kernel:sum_kernel", "n": 10}
    results = run_on_devices(["cpu", "cpu"], task, timeout=120)
    assert [(r["device"], r["sum"]) for r in results] == [("cpu", 45), ("cpu", 45)]


@pytest.mark.parametrize(("target", "says"), [
    ("tests.checks.example_gpu_kernel:not_a_kernel",
     "'tests.checks.example_gpu_kernel:not_a_kernel' is not a GPU kernel (no @gpu_kernel "
     "function of that name)"),
    ("bench_agent.checks.gpu.kernels:rates",
     "'bench_agent.checks.gpu.kernels:rates' is not a GPU kernel (no @gpu_kernel function of"
     " that name)"),
    ("os:system", "'os:system' is not a GPU kernel (no @gpu_kernel function of that name)"),
    ("matmul", "a GPU kernel is named 'module:function', not 'matmul'"),
    ("", "a GPU kernel is named 'module:function', not ''"),
    ("bench_agent.no_such_module:k",
     "GPU kernel 'bench_agent.no_such_module:k': No module named 'bench_agent.no_such_module'"),
])
def test_only_marked_kernels_run(target: str, says: str) -> None:
    from bench_agent.checks.gpu.kernels import run_on_devices

    with pytest.raises(ValueError) as exc:
        resolve_kernel(target)
    assert str(exc.value) == says
    # Refused in the parent, before any child starts.
    with pytest.raises(ValueError) as exc:
        run_on_devices(["cpu"], {"kernel": target}, timeout=5)
    assert str(exc.value) == says


# --- baselines ------------------------------------------------------------------------


def test_baselines_match_exact_nvml_names() -> None:
    assert baselines.baseline_for("NVIDIA H100 80GB HBM3").model == "H100 SXM5 80GB"  # type: ignore[union-attr]
    assert baselines.baseline_for("nvidia a100-sxm4-40gb").model == "A100 SXM4 40GB"  # type: ignore[union-attr]
    assert baselines.baseline_for("NVIDIA A100-SXM4-80GB").model == "A100 SXM4 80GB"  # type: ignore[union-attr]
    assert baselines.baseline_for("NVIDIA H200").model == "H200 141GB"  # type: ignore[union-attr]
    assert baselines.baseline_for("NVIDIA H100 PCIe").model == "H100 PCIe 80GB"  # type: ignore[union-attr]
    assert baselines.baseline_for("NVIDIA H100 NVL").model == "H100 NVL 94GB"  # type: ignore[union-attr]
    assert baselines.baseline_for("NVIDIA H100") is None  # no prefix match
    assert baselines.baseline_for("NVIDIA RTX 6000 Ada Generation") is None
    for baseline in baselines.load_baselines():
        for figure in baseline.figures.values():
            # Cited in the repository itself (tests/test_citations.py checks the form).
            assert figure.source.strip(), (baseline.model, figure.metric)
            assert "THRESHOLDS.md" not in figure.source, (baseline.model, figure.metric)


def test_baseline_fraction_fails_below_ninety_percent() -> None:
    h100 = baselines.baseline_for("NVIDIA H100 80GB HBM3")
    profile = load_profile_named("gpu-node")

    def status(value: float) -> Status:
        m = Measurement(check="gpu.matmul", metric="gpu.matmul_bf16", value=value,
                        unit=Unit.FLOPS)
        frac = baselines.fraction(m, h100)
        assert frac is not None and frac.params["baseline"] == "652 TFLOP/s"
        assert frac.params["kind"] == "measured" and "8192x8192x8192" in frac.params["method"]
        [v] = evaluate([frac], [t for t in profile.thresholds if t.metric == frac.metric],
                       {"gpu.matmul"})
        return v.status

    assert status(660e12) is Status.PASS
    assert status(0.92 * 651.8e12) is Status.WARN
    assert status(0.85 * 651.8e12) is Status.FAIL


def test_unknown_model_says_so() -> None:
    m = baselines.baseline_known("gpu.matmul", "NVIDIA RTX 6000 Ada Generation", None)
    assert m.value == 0 and "memory-class" in m.params["note"]
    profile = load_profile_named("gpu-node")
    [v] = evaluate([m], [t for t in profile.thresholds if t.metric == m.metric], {"gpu.matmul"})
    assert v.status is Status.WARN
    busbw = Measurement(check="nccl.all_reduce", metric="nccl.all_reduce_busbw", value=4.7e11,
                        unit=Unit.BYTES_PER_SECOND)
    h100 = baselines.baseline_for("NVIDIA H100 80GB HBM3")
    assert baselines.fraction(busbw, h100, ranks=4, size_bytes=8 << 30) is None  # not 8 GPUs
    assert baselines.fraction(busbw, h100, ranks=8, size_bytes=1 << 30) is None  # too small
    frac = baselines.fraction(busbw, h100, ranks=8, size_bytes=8 << 30)
    assert frac is not None and frac.value == pytest.approx(4.7e11 / 4.6e11)


# --- the CLI on this GPU-less machine ---------------------------------------------------


@pytest.mark.e2e
def test_run_gpu_without_gpu_skips_with_reasons(tmp_path: Path) -> None:
    env = {**os.environ, "BENCH_AGENT_KEY": str(tmp_path / "node.key")}
    done = subprocess.run([sys.executable, "-m", "bench_agent.cli", "run", "gpu", "--output",
                           str(tmp_path / "out"), "--no-sign"], capture_output=True, text=True,
                          timeout=120, cwd=REPO, env=env)
    text = done.stdout + done.stderr
    assert "Traceback" not in text
    for check in ("gpu.health", "gpu.matmul", "gpu.hbm"):
        line = next(ln for ln in done.stdout.splitlines() if ln.startswith(check))
        assert "SKIP" in line, line
    assert list((tmp_path / "out").glob("*/*.json"))


def _pci_tree(root: Path, devices: dict[str, tuple[str, str]]) -> Path:
    """A sysfs PCI tree: bus id -> (vendor, class), as the kernel writes them."""
    for bus_id, (vendor, pci_class) in devices.items():
        folder = root / "sys/bus/pci/devices" / bus_id
        folder.mkdir(parents=True)
        (folder / "vendor").write_text(vendor + "\n")
        (folder / "class").write_text(pci_class + "\n")
    return root


def test_gpus_on_the_pci_bus_with_a_broken_stack_are_an_error_not_a_skip(
    tmp_path: Path,
) -> None:
    """A GPU node whose driver or CUDA torch is broken must not pass `run gpu`."""
    from bench_agent.checks.gpu.checks import MatmulCheck
    from bench_agent.checks.gpu.presence import nvidia_pci_gpus
    from bench_agent.core.errors import ToolFailed

    gpu_node = _pci_tree(tmp_path / "gpu", {
        "0000:18:00.0": ("0x10de", "0x030200"),   # H100: 3D controller
        "0000:05:00.0": ("0x10de", "0x068000"),   # NVSwitch: a bridge, not a GPU
        "0000:00:02.0": ("0x8086", "0x030000"),   # another vendor's VGA
    })
    cpu_node = _pci_tree(tmp_path / "cpu", {"0000:00:02.0": ("0x1af4", "0x010000")})
    assert nvidia_pci_gpus(gpu_node) == ["0000:18:00.0"]
    with nvml.use_loader(lambda: FakeNvml(init_error=9)):  # "Driver Not Loaded"
        with pytest.raises(ToolFailed, match=r"1 NVIDIA GPU\(s\) on the PCI bus "
                                             r"\(0000:18:00.0\) but NVML cannot start"):
            HealthCheck().run(CheckContext(root=gpu_node), HealthParams())
        with pytest.raises(NotApplicable, match="NVML cannot start"):
            HealthCheck().run(CheckContext(root=cpu_node), HealthParams())
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a real GPU is here")
    with pytest.raises(ToolFailed, match="sees no CUDA GPU"):
        MatmulCheck().available(CheckContext(root=gpu_node))
    assert "sees no CUDA GPU" in (MatmulCheck().available(CheckContext(root=cpu_node)) or "")


def test_an_eight_gpu_node_missing_a_gpu_fails_the_expected_count() -> None:
    profile = load_profile_named("gpu-node-8")
    seven = Measurement("gpu.health", "gpu.count", 7, Unit.COUNT)
    eight = Measurement("gpu.health", "gpu.count", 8, Unit.COUNT)
    statuses = [v.status for v in evaluate([seven], profile.thresholds, ["gpu.health"])
                if v.metric == "gpu.count"]
    assert statuses == [Status.FAIL]
    statuses = [v.status for v in evaluate([eight], profile.thresholds, ["gpu.health"])
                if v.metric == "gpu.count"]
    assert statuses == [Status.PASS]


# --- issue 14, section 1 ----------------------------------------------------------------


def _nvlink_verdicts(nv: FakeNvml, **params: Any) -> tuple[list[Measurement], dict[Any, Status]]:
    check = HealthCheck(load=no_load, kernel_log=no_log)
    with nvml.use_loader(lambda: nv):
        out = check.run(CheckContext(), HealthParams(load_seconds=1, sample_interval=0.01,
                                                     **params))
    return out, verdicts(out)


@pytest.mark.parametrize("name", ["NVIDIA A100 80GB PCIe", "NVIDIA H100 PCIe",
                                  "NVIDIA H100 NVL"])
def test_a_pcie_card_without_a_bridge_is_not_failed_on_its_inactive_nvlinks(name: str) -> None:
    """These cards report their NVLinks as inactive, not NOT_SUPPORTED, when no
    bridge is fitted: before, gpu-nvlink-down FAILed a healthy card."""
    nv = FakeNvml(gpus=[FakeGpu(name=name, nvlink=[0] * 12) for _ in range(2)])
    out, statuses = _nvlink_verdicts(nv)
    assert "gpu.nvlink_down" not in {m.metric for m in out}
    assert statuses[("gpu.nvlink_down", "")] is Status.SKIP
    count = next(m for m in out if m.metric == "gpu.count")
    assert "no NVLink expected, links not judged" in count.params["nvlink_not_judged"]["gpu0"]


def test_an_sxm_gpu_is_judged_against_its_models_link_count() -> None:
    nv = FakeNvml(gpus=[FakeGpu(), FakeGpu(nvlink=[1] * 16 + [0] * 2),
                        FakeGpu(name="NVIDIA A100-SXM4-80GB", nvlink=[1] * 12 + [0] * 6)])
    out, statuses = _nvlink_verdicts(nv)
    down = {m.device: m for m in out if m.metric == "gpu.nvlink_down"}
    assert down["gpu0"].value == 0 and down["gpu0"].params["expected"] == 18
    assert down["gpu1"].value == 2 and down["gpu1"].params["down"] == [16, 17]
    assert down["gpu1"].params["expected_from"] == "baseline H100 SXM5 80GB"
    # An A100 SXM4 has 12 links (NVLink 3): the 6 NVML lists past them are no finding.
    assert down["gpu2"].value == 0 and down["gpu2"].params["expected"] == 12
    assert statuses[("gpu.nvlink_down", "gpu1")] is Status.FAIL
    assert statuses[("gpu.nvlink_down", "gpu0")] is Status.PASS
    assert statuses[("gpu.nvlink_down", "gpu2")] is Status.PASS


def test_an_sxm_gpu_passed_through_without_its_fabric_is_judged_as_the_suite_says() -> None:
    nv = FakeNvml(gpus=[FakeGpu(nvlink=[0] * 18)])
    out, statuses = _nvlink_verdicts(nv)
    assert by(out, "gpu.nvlink_down") == {"gpu0": 18}  # a bare-metal HGX: a fault
    assert statuses[("gpu.nvlink_down", "gpu0")] is Status.FAIL
    out, statuses = _nvlink_verdicts(nv, expected_nvlinks=0)  # the VM's suite says none
    assert "gpu.nvlink_down" not in {m.metric for m in out}
    assert statuses[("gpu.nvlink_down", "")] is Status.SKIP


def test_an_unknown_model_is_judged_only_when_some_link_is_up() -> None:
    nv = FakeNvml(gpus=[FakeGpu(name="NVIDIA Future X", nvlink=[0] * 18),
                        FakeGpu(name="NVIDIA Future X", nvlink=[1] * 17 + [0])])
    out, _ = _nvlink_verdicts(nv)
    assert by(out, "gpu.nvlink_down") == {"gpu1": 1}
    count = next(m for m in out if m.metric == "gpu.count")
    assert "none is active" in count.params["nvlink_not_judged"]["gpu0"]


def _hot_load(nv: FakeNvml, gpu: int, samples_hot: int | None = None,
              violation_s: float | None = None) -> Any:
    def load(indices: list[int], seconds: float) -> dict[str, Any]:
        import time

        if violation_s is not None:
            nv.gpus[gpu].thermal_violation_ns += int(violation_s * 1e9)
        if samples_hot is not None:
            nv.gpus[gpu].reasons = 0x20  # SW thermal slowdown for a moment ...
            time.sleep(0.05 * samples_hot)
            nv.gpus[gpu].reasons = 0
        time.sleep(1.0)  # ... then the load runs on, cool
        return {"ran": True}

    return load


def test_one_hot_sample_warns_and_a_sustained_slowdown_fails() -> None:
    """Before: one 0.5 s sample with a thermal clock event reason FAILed the GPU."""
    nv = FakeNvml(gpus=[FakeGpu(), FakeGpu()])
    out = health(nv, load=_hot_load(nv, 1, samples_hot=1, violation_s=0.02))
    statuses = verdicts(out)
    share = {m.device: m for m in out if m.metric == "gpu.thermal_slowdown_share"}
    assert share["gpu1"].params["method"] == "nvmlDeviceGetViolationStatus(THERMAL)"
    assert 0 < share["gpu1"].value < 0.1 and share["gpu0"].value == 0
    assert by(out, "gpu.throttle_thermal")["gpu1"] >= 1
    assert statuses[("gpu.throttle_thermal", "gpu1")] is Status.WARN
    assert statuses[("gpu.thermal_slowdown_share", "gpu1")] is Status.PASS
    nv = FakeNvml(gpus=[FakeGpu(), FakeGpu()])
    out = health(nv, load=_hot_load(nv, 1, violation_s=0.8))  # 0.8 s of about 1 s
    statuses = verdicts(out)
    assert by(out, "gpu.thermal_slowdown_share")["gpu1"] > 0.5
    assert statuses[("gpu.thermal_slowdown_share", "gpu1")] is Status.FAIL


def test_without_the_violation_counter_the_share_of_many_samples_is_judged() -> None:
    nv = FakeNvml(gpus=[FakeGpu()])
    nv.nvmlDeviceGetViolationStatus = None  # type: ignore[assignment,method-assign]
    out = health(nv, load=_hot_load(nv, 0, samples_hot=2))
    [share] = [m for m in out if m.metric == "gpu.thermal_slowdown_share"]
    assert share.params["method"] == "clock event reason samples"
    assert share.params["samples"] >= 10
    assert share.value == share.params["thermal_samples"] / share.params["samples"] < 0.5


def test_children_get_their_gpu_by_uuid_under_a_parent_cuda_visible_devices() -> None:
    """Slurm's CUDA_VISIBLE_DEVICES=4,5,6,7: the parent's cuda:1 is physical GPU 5.
    Before, the child got CUDA_VISIBLE_DEVICES=1, the wrong GPU."""
    from bench_agent.checks.gpu.kernels import child_cuda_env

    parent = {"CUDA_VISIBLE_DEVICES": "4,5,6,7", "PATH": "/usr/bin"}
    uuids = [f"GPU-0000000{i}-aaaa-bbbb-cccc-dddddddddddd" for i in (4, 5, 6, 7)]
    env, device = child_cuda_env("cuda:1", parent, lambda: uuids)
    assert env["CUDA_VISIBLE_DEVICES"] == "GPU-00000005-aaaa-bbbb-cccc-dddddddddddd"
    assert device == "cuda:0" and env["PATH"] == "/usr/bin"
    assert parent["CUDA_VISIBLE_DEVICES"] == "4,5,6,7"  # the parent's own is untouched
    env, _ = child_cuda_env(f"cuda:{uuids[3]}", parent, lambda: [])
    assert env["CUDA_VISIBLE_DEVICES"] == uuids[3]
    assert child_cuda_env("cpu", parent, lambda: uuids) == (parent, "cpu")
    with pytest.raises(ValueError, match="sees 4 GPU"):
        child_cuda_env("cuda:4", parent, lambda: uuids)


def test_fp8_sizes_not_divisible_by_16_are_skipped_with_the_reason() -> None:
    from bench_agent.checks.gpu.kernels import fp8_shape_reason

    assert fp8_shape_reason(8192) is None and fp8_shape_reason(4096 + 16) is None
    assert fp8_shape_reason(1000) == ("fp8 needs sizes divisible by 16 (torch._scaled_mm /"
                                      " cuBLASLt); 1000 is not")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["raise", "skip"])
def test_a_failing_child_releases_its_siblings_at_once(how: str) -> None:
    """Before: the sibling waited 300 s at the barrier, past the check's own limit,
    so one bad GPU made every GPU "timed out"."""
    pytest.importorskip("torch")
    import time

    from bench_agent.checks.gpu.kernels import run_on_devices

    task = {"kernel": "tests.checks.example_gpu_kernel:one_rank_fails_kernel",
            "bad_rank": 0, "how": how}
    started = time.monotonic()
    results = run_on_devices(["cpu", "cpu"], task, timeout=100)
    elapsed = time.monotonic() - started
    if how == "raise":
        assert "illegal memory access" in results[0]["error"]
    else:
        assert results[0]["skipped_everything"] is True
    assert "error" not in results[1], results[1]
    assert results[1]["barrier"]["timed_out"] is False
    assert results[1]["barrier"]["timeout_s"] == 50  # half the run's time limit
    assert elapsed < 45, elapsed  # torch imports in two children; never the 50 s wait


def test_the_barrier_counts_a_sibling_whose_process_is_gone(tmp_path: Path) -> None:
    """A sibling killed before it could leave (SIGKILL, a segfault) ends the wait too."""
    import time

    from bench_agent.checks.gpu.kernels import FileBarrier

    done = subprocess.run(["true"], check=True)  # a pid that has ended
    assert done.returncode == 0
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / "pid-1").write_text(str(dead.pid))
    barrier = FileBarrier(tmp_path, rank=0, parties=2, timeout=30)
    started = time.monotonic()
    barrier()
    assert time.monotonic() - started < 5
    assert barrier.report()["siblings_gone"] == [1] and not barrier.timed_out
    alive = FileBarrier(tmp_path, rank=0, parties=3, timeout=0.3)  # rank 2: no pid yet
    alive()
    assert alive.timed_out and alive.report()["timeout_s"] == 0.3


@pytest.mark.slow
def test_bench_gpu_fp8_runs_its_raw_loop() -> None:
    """Before: `--precision fp8` crashed (torch.randn / torch.matmul take no float8)."""
    pytest.importorskip("torch")
    done = subprocess.run([sys.executable, "benchmarks/bench_gpu.py", "--precision", "fp8",
                           "--n", "64", "--iterations", "2"], capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-1500:]
    assert "Traceback" not in done.stderr
    assert "fp8 64^3" in done.stdout and "ratio" in done.stdout
    odd = subprocess.run([sys.executable, "benchmarks/bench_gpu.py", "--precision", "fp8",
                          "--n", "100"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert odd.returncode == 3
    assert odd.stdout.strip() == ("bench_gpu: fp8 needs sizes divisible by 16 "
                                  "(torch._scaled_mm / cuBLASLt); 100 is not")


# The GPUs the guide names and those in service (issue 14): each has a baseline.
MODELS = {"NVIDIA A10": 0, "NVIDIA A30": 0, "NVIDIA A40": 0, "NVIDIA L4": 0, "NVIDIA L40S": 0,
          "Tesla T4": 0, "NVIDIA A100-PCIE-40GB": 0, "NVIDIA A100 80GB PCIe": 0,
          "NVIDIA A100-SXM4-40GB": 12, "NVIDIA A100-SXM4-80GB": 12, "NVIDIA H100 PCIe": 0,
          "NVIDIA H100 NVL": 0, "NVIDIA H100 80GB HBM3": 18, "NVIDIA H200": 18,
          "NVIDIA GH200 480GB": None, "NVIDIA B200": 18}


@pytest.mark.parametrize(("name", "links"), MODELS.items())
def test_every_model_has_a_baseline_that_states_its_method(name: str, links: int | None) -> None:
    baseline = baselines.baseline_for(name)
    assert baseline is not None, name
    assert baseline.nvlink_links == links
    assert "gpu.hbm_copy" in baseline.figures or name == "NVIDIA A100-SXM4-40GB"
    for figure in baseline.figures.values():
        assert figure.kind in ("measured", "datasheet_peak"), (name, figure.metric)
        assert len(figure.method) > 40, (name, figure.metric)  # how, in words
        if figure.kind == "datasheet_peak":
            # A peak is never reached: judged against a calibrated share of it.
            assert 0.4 <= figure.expect < 1, (name, figure.metric)
            assert "expect" in figure.method and "https://" in figure.source


def test_a_datasheet_peak_is_judged_against_its_calibrated_share() -> None:
    l40s = baselines.baseline_for("NVIDIA L40S")
    m = Measurement(check="gpu.matmul", metric="gpu.matmul_bf16", value=200e12, unit=Unit.FLOPS)
    frac = baselines.fraction(m, l40s)
    assert frac is not None
    assert frac.value == pytest.approx(200e12 / (0.5 * 362e12))
    assert frac.params["judged_against"] == "0.5 x the datasheet peak (181 TFLOP/s)"
    assert frac.params["kind"] == "datasheet_peak"


def test_a_datasheet_peak_without_expect_is_refused(tmp_path: Path) -> None:
    from bench_agent.core.errors import ConfigError

    path = tmp_path / "x.yaml"
    path.write_text("model: X\nnvml_names: [X]\nfigures:\n  gpu.matmul_bf16: {value: 100 TFLOP/s,"
                    " kind: datasheet_peak, source: s}\n")
    with pytest.raises(ConfigError, match="a datasheet peak is never reached"):
        baselines.load_baseline(path)


# --- scripts/gpu-check on an air-gapped node ------------------------------------------


def _gpu_check_module() -> Any:
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.SourceFileLoader("gpu_check", str(REPO / "scripts/gpu-check"))
    spec = importlib.util.spec_from_loader("gpu_check", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _wheel(folder: Path, name: str = "demo_dep", version: str = "1.0") -> Path:
    """A real (pure-python) wheel, as PEP 427 lays it out, RECORD hashes included."""
    import base64
    import hashlib
    import zipfile

    files = {f"{name}/__init__.py": "VALUE = 42\n",
             f"{name}-{version}.dist-info/METADATA":
                 f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{name}-{version}.dist-info/WHEEL":
                 "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{name}-{version}.dist-info/RECORD,,")
    files[f"{name}-{version}.dist-info/RECORD"] = "\n".join(record) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in files.items():
            archive.writestr(member, text)
    return path


def test_gpu_check_downloads_wheels_for_the_node_not_for_this_machine() -> None:
    """Before: `pip download` for this machine's Python and platform, so the binary
    wheels (pydantic_core, ...) did not install on the node; and cryptography was
    demanded although a --no-sign run never imports it."""
    gpu_check = _gpu_check_module()
    cmd = gpu_check.download_command(Path("/w"), "3.10", "aarch64", python="python3")
    assert cmd[:5] == ["python3", "-m", "pip", "download", "-d"]
    assert "--only-binary=:all:" in cmd
    assert cmd[cmd.index("--python-version") + 1] == "3.10"
    platforms = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--platform"]
    assert platforms == ["manylinux_2_34_aarch64", "manylinux_2_28_aarch64",
                         "manylinux_2_17_aarch64", "manylinux2014_aarch64"]
    assert not any("cryptography" in arg for arg in cmd)
    assert "cryptography" not in gpu_check.DEPS
    assert {"pydantic>=2.6,<3", "nvidia-ml-py>=12.535"} <= set(cmd)


@pytest.mark.slow
def test_gpu_check_wheels_reach_a_venv_python_that_keeps_its_own_packages(
        tmp_path: Path) -> None:
    """The GPU image's layout: torch lives in a venv. Before, gpu-check made a new
    venv with system_site_packages=True from it, which links the *base*
    interpreter's site-packages: the venv's torch was gone (shown below), and
    with_pip needed ensurepip. Now the wheels go into a folder put on sys.path of
    the venv's own python: with pip where the venv has it, unpacked where not."""
    import venv

    node = tmp_path / "node-venv"
    venv.EnvBuilder(with_pip=False).create(node)
    python = str(node / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "torch_in_the_venv.py").write_text("CUDA = True\n")
    wheels = tmp_path / "wheels"
    _wheel(wheels)
    probe = f"""
import sys
sys.argv = ["gpu-check"]
import importlib.machinery, importlib.util
loader = importlib.machinery.SourceFileLoader("gpu_check", {str(REPO / "scripts/gpu-check")!r})
spec = importlib.util.spec_from_loader("gpu_check", loader)
gpu_check = importlib.util.module_from_spec(spec)
loader.exec_module(gpu_check)
gpu_check.DEPS = {{"demo_dep": "demo_dep"}}
assert gpu_check.missing_modules() == ["demo_dep"]
how = gpu_check.install_target(__import__("pathlib").Path({str(wheels)!r}),
                               __import__("pathlib").Path({str(tmp_path / "target")!r}),
                               ["demo_dep"])
sys.path.insert(0, {str(tmp_path / "target")!r})
import demo_dep, torch_in_the_venv
print(how, demo_dep.VALUE, torch_in_the_venv.CUDA)
"""
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-1500:]
    assert done.stdout.strip() == "unpacked 1 wheels (no pip) 42 True"
    # With pip (this repository's venv has it): pip install --target, same result.
    pip_target = tmp_path / "pip-target"
    gpu_check = _gpu_check_module()
    gpu_check.DEPS = {"demo_dep": "demo_dep"}
    assert gpu_check.install_target(wheels, pip_target, ["demo_dep"],
                                    python=sys.executable) == "pip install --target"
    assert (pip_target / "demo_dep" / "__init__.py").read_text() == "VALUE = 42\n"
    # The old way: a venv made from the venv's python does not see the venv's packages.
    old = tmp_path / "old-venv"
    subprocess.run([python, "-c", "import venv, sys; venv.EnvBuilder("
                    "system_site_packages=True, with_pip=False).create(sys.argv[1])", str(old)],
                   check=True, timeout=120)
    lost = subprocess.run([str(old / "bin" / "python"), "-c", "import torch_in_the_venv"],
                          capture_output=True, text=True, timeout=60)
    assert lost.returncode != 0 and "No module named 'torch_in_the_venv'" in lost.stderr


def test_host_copies_bind_to_the_cpus_of_the_gpus_numa_node(tmp_path: Path) -> None:
    """Before: all GPUs copied at once from wherever their child happened to run."""
    import os

    from bench_agent.checks.gpu.numa import bind_to_gpu_numa, numa_cpus_of_gpu, parse_cpulist

    mine = sorted(os.sched_getaffinity(0))
    pci = tmp_path / "sys/bus/pci/devices/0000:3b:00.0"
    pci.mkdir(parents=True)
    (pci / "numa_node").write_text("1\n")
    node = tmp_path / "sys/devices/system/node/node1"
    node.mkdir(parents=True)
    (node / "cpulist").write_text(f"{mine[0]},{mine[-1]}-{mine[-1] + 3}\n")
    assert parse_cpulist("0-3,8,10-11") == {0, 1, 2, 3, 8, 10, 11}
    assert parse_cpulist("0-x") == set()
    assert numa_cpus_of_gpu("0000:3B:00.0", tmp_path) == (
        1, {mine[0], *range(mine[-1], mine[-1] + 4)})

    class Props:  # torch.cuda.get_device_properties' PCI fields (cudaDeviceProp)
        pci_domain_id, pci_bus_id, pci_device_id = 0, 0x3B, 0

    class FakeTorch:  # the CUDA device properties only: no GPU here
        class cuda:
            @staticmethod
            def get_device_properties(device: str) -> Props:
                return Props()

    before = os.sched_getaffinity(0)
    try:
        done = bind_to_gpu_numa(FakeTorch, "cuda:0", tmp_path)
        assert done == {"numa_node": 1, "cpus": len({mine[0], mine[-1]}),
                        "pci_bus_id": "0000:3b:00.0"}
        assert os.sched_getaffinity(0) == {mine[0], mine[-1]}
    finally:
        os.sched_setaffinity(0, before)
    (pci / "numa_node").write_text("-1\n")  # a single-node machine or a VM
    assert bind_to_gpu_numa(FakeTorch, "cuda:0", tmp_path)["numa"].startswith("no NUMA node")


def test_gpu_check_without_a_gpu_says_so_in_one_line() -> None:
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a real GPU is here")
    done = subprocess.run([sys.executable, "scripts/gpu-check"], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert done.returncode == 2
    assert done.stdout.strip() == (f"gpu-check: torch {torch.__version__} sees no CUDA GPU: "
                                   "nothing to measure")
    assert "Traceback" not in done.stderr
