"""The configuration facts, read from files under a root and from NVML (the fake)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench_agent.core.config_rules import flat_facts, node_facts
from bench_agent.core.errors import ToolFailed
from bench_agent.core.inventory import Inventory
from bench_agent.inventory.collect import collect_inventory
from bench_agent.inventory.config_facts import collect_config, dpkg_version, selected_word
from bench_agent.tools import nvml
from bench_agent.tools.nvml_config import read_gpu_configs
from tests.fake_nvml import FakeGpu, FakeNvml
from tests.inventory.config_tree import CX7_FW, gpu_node_tree
from tests.paths import DATA, SAMPLES

VM = DATA / "sysroots" / "vm-2core"
H100_IB = SAMPLES / "ib" / "sys-class-infiniband_gpud_h100"


def test_a_gpu_node_tree_reads_every_fact(tmp_path: Path) -> None:
    root = gpu_node_tree(tmp_path)
    with nvml.use_loader(lambda: FakeNvml()):
        cfg = collect_config(root)
    assert cfg.cpu_governors == ("performance",)
    assert (cfg.transparent_hugepage, cfg.thp_defrag) == ("madvise", "madvise")
    assert (cfg.iommu_groups, cfg.iommu_group_types) == (3, ("identity",))
    assert cfg.iommu_cmdline == ("iommu=pt", "intel_iommu=on")
    assert (cfg.clocksource, cfg.numa_balancing) == ("tsc", 1)
    assert (cfg.nvidia_peermem_loaded, cfg.nvswitch_count, cfg.fabric_manager_running) == (
        True, 4, True)
    assert cfg.rdma_core_version == "2307mlnx47-1.2310036"
    assert cfg.ofed_version is None  # in-tree mlx5_core: no module version file
    assert (cfg.nvidia_driver_version, cfg.cuda_driver_version) == ("550.54.15", "12.4")
    gpu = cfg.gpus[3]
    assert (gpu.index, gpu.vbios_version, gpu.persistence_mode, gpu.ecc_enabled,
            gpu.mig_enabled) == (3, "96.00.74.00.01", True, True, False)
    assert (gpu.power_limit_mw, gpu.power_limit_default_mw) == (700000, 700000)
    assert (gpu.app_clock_graphics_mhz, gpu.app_clock_memory_default_mhz) == (1980, 2619)
    assert gpu.pci_bus_id == "00000000:48:00.0" and gpu.serial == "1654321003"


def test_the_facts_name_what_an_sre_compares(tmp_path: Path) -> None:
    root = gpu_node_tree(tmp_path, governors=("performance", "powersave"), fabric_manager=False)
    gpus = [FakeGpu() for _ in range(8)]
    gpus[5].limit_mw = 500000
    with nvml.use_loader(lambda: FakeNvml(gpus)):
        inv = collect_inventory(root, gpu_probe=list)
    facts = node_facts(inv)
    assert facts["node.cpu_governor"] == "performance,powersave"
    assert facts["node.iommu"] == "identity"
    assert facts["node.fabric_manager"] == "not running"  # four NVSwitches, no daemon
    assert facts["node.kernel"] == "5.15.0-113-generic"
    flat = flat_facts(inv)
    h100 = "NVIDIA H100 80GB HBM3"
    assert flat[f"gpu.power_limit_w[{h100}]"] == "500 | 700"  # mixed within the node
    assert flat[f"gpu.vbios_version[{h100}]"] == "96.00.74.00.01"
    assert flat["hca.fw_ver[MT4129 MT_0000000838]"] == CX7_FW
    assert flat["gpu.model"] == h100


def test_a_container_cannot_tell_whether_the_fabric_manager_runs(tmp_path: Path) -> None:
    # A pod without hostPID sees its own processes; PID 1 is not an init.
    root = gpu_node_tree(tmp_path, fabric_manager=False)
    (root / "proc/1/comm").write_text("bench-agent\n")
    assert collect_config(root, gpu_probe=_no_nvml).fabric_manager_running is None
    (root / "proc/1/comm").write_text("systemd\n")
    assert collect_config(root, gpu_probe=_no_nvml).fabric_manager_running is False


def test_hostile_files_are_unknown_facts(tmp_path: Path) -> None:
    root = gpu_node_tree(tmp_path, hcas=1)
    (root / "sys/class/infiniband/mlx5_0/fw_ver").write_bytes(b"28.41\x00\x07\xff\n")
    (root / "proc/cmdline").write_text("iommu=pt " * 100_000)
    (root / "sys/module/mlx5_core/version").write_text("5.0-0\n")  # an in-tree driver
    cfg = collect_config(root, gpu_probe=_no_nvml)
    (hca,) = collect_inventory(root, gpu_probe=list, config_gpu_probe=_no_nvml).hcas
    assert hca.fw_ver is None  # not a version to compare
    assert len(cfg.iommu_cmdline) <= 4096 // len("iommu=pt ") + 1
    assert cfg.ofed_version is None


def test_unreadable_facts_are_unknown_never_guessed() -> None:
    # The captured VM tree has none of these files: every fact is None, the GPU
    # probe's reason is kept, and nothing raises.
    cfg = collect_config(VM, gpu_probe=_no_nvml)
    assert (cfg.cpu_governors, cfg.transparent_hugepage, cfg.clocksource,
            cfg.numa_balancing, cfg.iommu_groups, cfg.nvswitch_count,
            cfg.fabric_manager_running, cfg.rdma_core_version) == (
        (), None, None, None, None, None, None, None)
    # No /proc/1 in the capture: whether the fabric manager runs is unknown.
    assert cfg.gpu_note == "nvidia-ml-py (pynvml) is not installed"


def _no_nvml() -> tuple[()]:
    from bench_agent.core.errors import ToolMissing

    raise ToolMissing("nvidia-ml-py (pynvml)")


def test_nvml_not_supported_is_unknown_and_other_errors_are_findings() -> None:
    gpu = FakeGpu(vbios=None, persistence=None, mig_mode=None, app_clocks=None)
    with nvml.use_loader(lambda: FakeNvml([gpu])):
        (config,), driver, _ = read_gpu_configs()
    # MIG NOT_SUPPORTED is a GPU without MIG: off, not unknown.
    assert (config.vbios_version, config.persistence_mode, config.mig_enabled,
            config.app_clock_graphics_mhz) == (None, None, False, None)
    assert driver == "550.54.15"
    fake = FakeNvml([FakeGpu()])
    fake.nvmlDeviceGetVbiosVersion = lambda h: (_ for _ in ()).throw(  # type: ignore
        fake.NVMLError(15))  # NVML_ERROR_GPU_IS_LOST
    with nvml.use_loader(lambda: fake), pytest.raises(ToolFailed, match="nvml"):
        read_gpu_configs()


def test_selected_word_and_dpkg_status() -> None:
    assert selected_word("always [madvise] never") == "madvise"
    assert selected_word("always madvise never") is None and selected_word(None) is None
    status = ("Package: rdma-core\nStatus: deinstall ok config-files\nVersion: 1\n\n"
              "Package: rdma-core-dev\nStatus: install ok installed\nVersion: 2\n")
    assert dpkg_version(status, "rdma-core") is None  # removed, only its config left
    assert dpkg_version(status, "rdma-core-dev") == "2"


@pytest.mark.skipif(not H100_IB.is_dir(), reason="../shared/samples is absent")
def test_the_captured_h100_hcas(tmp_path: Path) -> None:
    (tmp_path / "sys/class").mkdir(parents=True)
    shutil.copytree(H100_IB, tmp_path / "sys/class/infiniband")
    inv = collect_inventory(tmp_path, gpu_probe=list, config_gpu_probe=_no_nvml)
    by_type: dict[str | None, set[str | None]] = {}
    for hca in inv.hcas:
        by_type.setdefault(hca.hca_type, set()).add(hca.fw_ver)
    assert by_type == {"MT4129": {"28.41.1000"}, "MT41692": {"32.38.3056"}}


def test_the_inventory_carries_the_configuration_through_json(tmp_path: Path) -> None:
    with nvml.use_loader(lambda: FakeNvml()):
        inv = collect_inventory(gpu_node_tree(tmp_path), gpu_probe=list)
    assert Inventory.from_dict(inv.to_dict()) == inv
    assert len(inv.config.gpus) == 8
