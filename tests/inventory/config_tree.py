"""A GPU node's configuration files under a test root, written by hand.

The values are those of public captures of DGX/HGX H100 nodes:
- HCAs: eight ConnectX-7 (hca_type MT4129, fw_ver 28.41.1000, board_id
  MT_0000000838) as leptonai/gpud's components/accelerator/nvidia/infiniband/
  class/testdata/sys-class-infiniband-h100.0 tree has them;
- kernel tunables: the defaults of Ubuntu 22.04's 5.15 kernel on such nodes
  (THP madvise, clocksource tsc, NUMA balancing 1), governor performance;
- NVSwitches: four PCI functions 10de:22a3 of class 0x068000, as `lspci -nn` lists
  the NVSwitches of an HGX H100 8-GPU baseboard (PCI ID database: 10de 22a3
  "GH100 [H100 NVSwitch]").
Each test changes what it is about.
"""

from __future__ import annotations

from pathlib import Path

CX7_FW = "28.41.1000"
CX7_BOARD = "MT_0000000838"


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def gpu_node_tree(root: Path, *, hcas: int = 8, nvswitches: int = 4, fabric_manager: bool = True,
                  peermem: bool = True, governors: tuple[str, ...] = ("performance",) * 4
                  ) -> Path:
    write(root, "proc/sys/kernel/osrelease", "5.15.0-113-generic\n")
    write(root, "proc/sys/kernel/numa_balancing", "1\n")
    write(root, "proc/cmdline", "BOOT_IMAGE=/vmlinuz ro iommu=pt intel_iommu=on quiet\n")
    for cpu, governor in enumerate(governors):
        write(root, f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor", governor + "\n")
    write(root, "sys/kernel/mm/transparent_hugepage/enabled", "always [madvise] never\n")
    write(root, "sys/kernel/mm/transparent_hugepage/defrag",
          "always defer defer+madvise [madvise] never\n")
    for group in range(3):
        write(root, f"sys/kernel/iommu_groups/{group}/type", "identity\n")
    write(root, "sys/devices/system/clocksource/clocksource0/current_clocksource", "tsc\n")
    (root / "sys/module/mlx5_core").mkdir(parents=True, exist_ok=True)
    if peermem:
        (root / "sys/module/nvidia_peermem").mkdir(parents=True, exist_ok=True)
    for n in range(nvswitches):
        dev = f"sys/bus/pci/devices/0000:0{n + 5}:00.0"
        write(root, f"{dev}/vendor", "0x10de\n")
        write(root, f"{dev}/class", "0x068000\n")
    write(root, "sys/bus/pci/devices/0000:00:00.0/vendor", "0x8086\n")
    write(root, "sys/bus/pci/devices/0000:00:00.0/class", "0x060000\n")
    write(root, "proc/1/comm", "systemd\n")
    if fabric_manager:
        # /proc/<pid>/comm holds 15 characters (TASK_COMM_LEN 16 with the NUL).
        write(root, "proc/2412/comm", "nv-fabricmanage\n")
    for n in range(hcas):
        base = f"sys/class/infiniband/mlx5_{n}"
        write(root, f"{base}/fw_ver", CX7_FW + "\n")
        write(root, f"{base}/board_id", CX7_BOARD + "\n")
        write(root, f"{base}/hca_type", "MT4129\n")
    write(root, "var/lib/dpkg/status",
          "Package: libc6\nStatus: install ok installed\nVersion: 2.35-0ubuntu3.8\n\n"
          "Package: rdma-core\nStatus: install ok installed\nPriority: optional\n"
          "Version: 2307mlnx47-1.2310036\nDescription: RDMA core userspace\n"
          " infrastructure and documentation\n\n"
          "Package: ibverbs-utils\nStatus: deinstall ok config-files\nVersion: 1\n")
    return root
