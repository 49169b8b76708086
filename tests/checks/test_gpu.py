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
from tests.fake_nvml import FakeNvml
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
    assert baselines.baseline_for("NVIDIA H100 PCIe") is None
    assert baselines.baseline_for("NVIDIA L40S") is None
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
        assert frac is not None and frac.params["baseline"] == "794 TFLOP/s"
        [v] = evaluate([frac], [t for t in profile.thresholds if t.metric == frac.metric],
                       {"gpu.matmul"})
        return v.status

    assert status(798e12) is Status.PASS
    assert status(0.92 * 794e12) is Status.WARN
    assert status(0.85 * 794e12) is Status.FAIL


def test_unknown_model_says_so() -> None:
    m = baselines.baseline_known("gpu.matmul", "NVIDIA L40S", None)
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
    from bench_agent.checks.gpu.checks import MatmulCheck, nvidia_pci_gpus
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
