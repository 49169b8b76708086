"""The node's configuration facts: what every node of one type must share.

Read through the injected ``root`` like the rest of the inventory, each file
defensively (a missing or unreadable file is an unknown fact, None, never a
guess). Nothing here starts a process: the whole read stays in milliseconds
(benchmarks/bench_config.py), so it can run in the fast health mode too.

Where each fact comes from:
- cpufreq governor: /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor
  (Documentation/admin-guide/pm/cpufreq.rst, "scaling_governor");
- transparent huge pages: /sys/kernel/mm/transparent_hugepage/{enabled,defrag},
  the selected word in brackets, "always [madvise] never"
  (Documentation/admin-guide/mm/transhuge.rst);
- IOMMU: the groups under /sys/kernel/iommu_groups and each group's "type"
  (identity = passthrough, DMA or DMA-FQ = translated;
  Documentation/ABI/testing/sysfs-kernel-iommu_groups), and the iommu options of
  /proc/cmdline (Documentation/admin-guide/kernel-parameters.txt: iommu=,
  intel_iommu=, amd_iommu=, iommu.passthrough=, iommu.strict=);
- clock source: /sys/devices/system/clocksource/clocksource0/current_clocksource
  (the "current_clocksource" attribute of kernel/time/clocksource.c);
- NUMA balancing: /proc/sys/kernel/numa_balancing (Documentation/admin-guide/
  sysctl/kernel.rst, "numa_balancing");
- nvidia_peermem: /sys/module/nvidia_peermem (a loaded module has its directory
  there; the older out-of-tree name is nv_peer_mem), needed for GPUDirect RDMA
  (NVIDIA GPUDirect RDMA docs, "Using nvidia-peermem");
- NVSwitches: PCI functions of vendor 0x10de whose class is 0x0680xx ("bridge,
  other"), as NVSwitch reports (PCI ID database, 10de:22a3 "GH100 [H100
  NVSwitch]"); the fabric manager is running when a process named
  nv-fabricmanager exists (NVIDIA Fabric Manager user guide: the
  nvidia-fabricmanager service runs /usr/bin/nv-fabricmanager), unknown when this
  /proc is not the host's (a container without hostPID); the GPUs' own fabric
  state, read through NVML, is what profiles judge (tools/nvml_config.py);
- rdma-core: Debian's package database /var/lib/dpkg/status (dpkg(1)); OFED: the
  version of the mlx5_core module (/sys/module/mlx5_core/version), which MLNX_OFED
  and DOCA-OFED builds set (in-tree drivers of kernels before 5.7 said "5.0-0",
  a version that no OFED release has);
- the HCAs' firmware, board id and type are the inventory's own (Inventory.hcas,
  inventory/infiniband.py); core/config_rules.py judges them with these facts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from bench_agent.core.errors import NotApplicable, ToolFailed, ToolMissing
from bench_agent.core.inventory import GpuConfig, NodeConfig
from bench_agent.core.sysfs import list_dir, read_int, read_line, read_text
from bench_agent.inventory.infiniband import printable

# (GPU configs, the NVIDIA driver version, the CUDA driver version).
GpuConfigProbe = Callable[[], tuple[tuple[GpuConfig, ...], str | None, str | None]]

_SELECTED_RE = re.compile(r"\[([^\]]+)\]")
_IOMMU_OPTION_RE = re.compile(r"^(?:iommu|intel_iommu|amd_iommu|iommu\.\w+)=")
_NVIDIA_VENDOR = "0x10de"
_NVSWITCH_CLASS_PREFIX = "0x0680"  # PCI class 06 (bridge), subclass 80 (other)
# The kernel keeps a task's name in TASK_COMM_LEN = 16 bytes with the NUL
# (include/linux/sched.h), so /proc/<pid>/comm of nv-fabricmanager (16 characters)
# reads "nv-fabricmanage".
_TASK_COMM_CHARS = 15
_FABRIC_MANAGER_COMM = "nv-fabricmanager"[:_TASK_COMM_CHARS]
# PID 1 of a host's PID namespace (systemd, SysV init, BusyBox/OpenRC init).
_HOST_INITS = frozenset({"systemd", "init"})
# The kernel command line is at most COMMAND_LINE_SIZE bytes (2048 on x86 before
# 6.x, up to 4096 on other architectures: arch/*/include/uapi/asm/setup.h).
_CMDLINE_MAX = 4096
# MODULE_VERSION of the in-tree mlx5_core before Linux 5.7, not an OFED release.
_INTREE_MLX5_VERSION = "5.0-0"
# /var/lib/dpkg/status is a few MB on a full system; read no more than this.
_DPKG_STATUS_LIMIT = 16 << 20


def selected_word(text: str | None) -> str | None:
    """"always [madvise] never" -> "madvise"; None when nothing is bracketed."""
    if text is None:
        return None
    match = _SELECTED_RE.search(text)
    return match.group(1) if match else None


def _governors(root: Path) -> tuple[str, ...]:
    cpu_dir = root / "sys/devices/system/cpu"
    found = {read_line(cpu_dir / name / "cpufreq/scaling_governor")
             for name in list_dir(cpu_dir) if re.fullmatch(r"cpu\d+", name)}
    return tuple(sorted(g for g in found if g))


def _iommu(root: Path) -> tuple[int | None, tuple[str, ...]]:
    groups_dir = root / "sys/kernel/iommu_groups"
    if not groups_dir.is_dir():
        # No directory: no IOMMU driver registered any group (IOMMU off, or a
        # kernel without it). A capture without /sys/kernel says nothing.
        return (0, ()) if (root / "sys/kernel").is_dir() else (None, ())
    try:
        groups = sorted(os.listdir(groups_dir))
    except OSError:
        return None, ()  # there but unreadable: unknown, not "off"
    types = {read_line(groups_dir / g / "type") for g in groups}
    return len(groups), tuple(sorted(t for t in types if t))


def _iommu_cmdline(root: Path) -> tuple[str, ...]:
    text = (read_line(root / "proc/cmdline") or "")[:_CMDLINE_MAX]
    return tuple(word for word in text.split() if _IOMMU_OPTION_RE.match(word)
                 and word.isascii() and word.isprintable())


def _module_loaded(root: Path, *names: str) -> bool | None:
    module_dir = root / "sys/module"
    if not module_dir.is_dir():
        return None
    return any((module_dir / name).is_dir() for name in names)


def _nvswitches(root: Path) -> int | None:
    pci = root / "sys/bus/pci/devices"
    if not pci.is_dir():
        return None
    count = 0
    for address in list_dir(pci):
        if read_line(pci / address / "vendor") == _NVIDIA_VENDOR and \
                (read_line(pci / address / "class") or "").startswith(_NVSWITCH_CLASS_PREFIX):
            count += 1
    return count


def _process_running(root: Path, comm: str) -> bool | None:
    """Whether a process of that name runs; None when this /proc cannot tell: none
    to look in (a capture), or not the host's (a container's own PID namespace,
    where PID 1 is not an init, or a /proc mounted with hidepid)."""
    proc = root / "proc"
    pids = [name for name in list_dir(proc) if name.isdigit()]
    if any(read_line(proc / pid / "comm") == comm for pid in pids):
        return True
    if read_line(proc / "1/comm") not in _HOST_INITS:
        return None
    return False


def dpkg_version(status_text: str, package: str) -> str | None:
    """The Version of an installed ``package`` in a dpkg status file (deb-control(5)
    paragraphs separated by blank lines); None when absent or not installed."""
    for paragraph in status_text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in paragraph.splitlines():
            key, sep, value = line.partition(":")
            if sep and not line.startswith((" ", "\t")):
                fields[key.strip()] = value.strip()
        if fields.get("Package") == package and \
                fields.get("Status", "").endswith(" installed"):
            return fields.get("Version") or None
    return None


def _rdma_core_version(root: Path) -> str | None:
    path = root / "var/lib/dpkg/status"
    try:
        if path.stat().st_size > _DPKG_STATUS_LIMIT:
            return None
    except OSError:
        return None
    text = read_text(path)
    if text is None or "Package: rdma-core\n" not in text:
        return None
    return dpkg_version(text, "rdma-core")


def _ofed_version(root: Path) -> str | None:
    version = printable(read_line(root / "sys/module/mlx5_core/version"))
    return None if version == _INTREE_MLX5_VERSION else version


def _pci_address(device_dir: Path) -> str | None:
    try:
        return os.path.basename(os.path.realpath(device_dir / "device")) or None
    except OSError:
        return None


def _default_gpu_probe() -> tuple[tuple[GpuConfig, ...], str | None, str | None]:
    from bench_agent.tools.nvml_config import read_gpu_configs

    return read_gpu_configs()


def collect_config(root: Path = Path("/"), gpu_probe: GpuConfigProbe | None = None
                   ) -> NodeConfig:
    """The node's configuration facts; never raises for a bad file.

    ``gpu_probe`` reads the GPUs' configuration (tests inject one); by default
    NVML. A node without NVML has no GPU entries and the reason in ``gpu_note``;
    other NVML failures are raised (a GPU fell off the bus: a finding).
    """
    probe = gpu_probe if gpu_probe is not None else _default_gpu_probe
    note = None
    gpus: tuple[GpuConfig, ...] = ()
    driver = cuda = None
    try:
        gpus, driver, cuda = probe()
    except (ToolMissing, NotApplicable) as exc:
        note = str(exc)
    except ToolFailed as exc:
        # The GPU list (collect.py) raises its own NVML failure as a finding; the
        # configuration keeps the reason and leaves the facts unknown.
        note = f"the GPUs' configuration could not be read: {exc}"
    groups, group_types = _iommu(root)
    return NodeConfig(
        nvidia_driver_version=driver,
        cuda_driver_version=cuda,
        cpu_governors=_governors(root),
        transparent_hugepage=selected_word(
            read_line(root / "sys/kernel/mm/transparent_hugepage/enabled")),
        thp_defrag=selected_word(read_line(root / "sys/kernel/mm/transparent_hugepage/defrag")),
        iommu_groups=groups,
        iommu_group_types=group_types,
        iommu_cmdline=_iommu_cmdline(root),
        clocksource=read_line(
            root / "sys/devices/system/clocksource/clocksource0/current_clocksource"),
        numa_balancing=read_int(root / "proc/sys/kernel/numa_balancing"),
        nvidia_peermem_loaded=_module_loaded(root, "nvidia_peermem", "nv_peer_mem"),
        nvswitch_count=_nvswitches(root),
        fabric_manager_running=_process_running(root, _FABRIC_MANAGER_COMM),
        rdma_core_version=_rdma_core_version(root),
        ofed_version=_ofed_version(root),
        gpus=gpus,
        gpu_note=note,
    )
