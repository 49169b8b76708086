"""The node's PCI topology, read from sysfs under the injected root (pure: files in,
records out; nothing here runs a tool).

Every PCI function is a link in /sys/bus/pci/devices/ to its place in the tree
under /sys/devices/pci<domain>:<bus>/ (Linux Documentation/ABI/testing/
sysfs-bus-pci; drivers/pci/pci-sysfs.c writes the attributes):

    class            "0x030200": base class, subclass, programming interface
    vendor           "0x10de"
    numa_node        the node the kernel attached the device to, -1 when none
    max_link_speed   "32.0 GT/s PCIe" (the link's capability, LnkCap)
    max_link_width   "16"
    current_link_*   what the link trained to now (LnkSta): GPUs drop to Gen1 at
                     idle to save power, so the current figures are informative only

The components kept, by class code (PCI Code and ID Assignment Specification,
section 1): GPUs are display controllers (0x0300 VGA, 0x0302 3D) of NVIDIA (0x10de)
or AMD (0x1002); HCAs are InfiniBand controllers (0x0207) or network controllers
with an RDMA device (an ``infiniband/`` folder: RoCE); other network controllers
(0x02) are NICs; NVMe is 0x010802.

"Near" is the relation nvidia-smi topo -m calls PIX/PXB: two devices below the
same PCIe switch, reached without crossing the host bridge. Here: the same top
bridge below the root port (the switch's upstream port) in the device's sysfs path.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from bench_agent.core.sysfs import list_dir, read_int, read_line

PCI_DEVICES = "sys/bus/pci/devices"
_ADDRESS_RE = re.compile(r"[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]")
# "32.0 GT/s PCIe" -> generation: 2.5, 5, 8, 16, 32, 64 GT/s are PCIe 1.0 to 6.0
# (PCI Express Base Specification, "Data rate" of each revision).
_GT_PER_GENERATION = {2.5: 1, 5.0: 2, 8.0: 3, 16.0: 4, 32.0: 5, 64.0: 6}
_SPEED_RE = re.compile(r"^([0-9.]+) GT/s")
GPU_VENDORS = {"0x10de": "NVIDIA", "0x1002": "AMD"}
KINDS = ("gpu", "hca", "nic", "nvme")


@dataclass(frozen=True, slots=True)
class PciDevice:
    kind: str  # one of KINDS
    address: str  # "0000:53:00.0"
    name: str | None  # "mlx5_0", "eth0", "nvme0"; None for a GPU
    numa_node: int | None  # the kernel's, -1 when the platform gave none; None unreadable
    max_gen: int | None
    max_width: int | None
    current_gen: int | None
    current_width: int | None
    switch: str | None  # address of the switch's upstream port above it; None: on a root port

    @property
    def label(self) -> str:
        return f"{self.kind} {self.address}" + (f" ({self.name})" if self.name else "")


@dataclass(frozen=True)
class Topology:
    devices: tuple[PciDevice, ...]

    def of_kind(self, kind: str) -> list[PciDevice]:
        return [d for d in self.devices if d.kind == kind]

    def counts(self) -> dict[str, int]:
        return {kind: len(self.of_kind(kind)) for kind in KINDS}

    def near(self, device: PciDevice) -> list[PciDevice]:
        """The HCAs, NICs and NVMe drives below the same PCIe switch as ``device``."""
        if device.switch is None:
            return []
        return [d for d in self.devices if d.switch == device.switch and d.kind != "gpu"
                and d.address != device.address]


def pcie_generation(text: str | None) -> int | None:
    """PCIe generation of a sysfs link speed ("32.0 GT/s PCIe" -> 5); None if unknown."""
    match = _SPEED_RE.match(text or "")
    return _GT_PER_GENERATION.get(float(match.group(1))) if match else None


def _kind(device_dir: Path) -> str | None:
    code = (read_line(device_dir / "class") or "").lower()
    if not re.fullmatch(r"0x[0-9a-f]{6}", code):
        return None
    base_sub = code[2:6]
    if base_sub in ("0300", "0302"):
        return "gpu" if (read_line(device_dir / "vendor") or "").lower() in GPU_VENDORS else None
    if code[2:] == "010802":
        return "nvme"
    if base_sub == "0207" or (code[2:4] == "02" and list_dir(device_dir / "infiniband")):
        return "hca"
    if code[2:4] == "02":
        return "nic"
    return None


def _name(kind: str, device_dir: Path) -> str | None:
    if kind == "hca":
        names = list_dir(device_dir / "infiniband")
    elif kind == "nvme":
        names = list_dir(device_dir / "nvme")
    elif kind == "nic":
        # virtio-net puts its interface one level down (virtio0/net/eth0).
        names = list_dir(device_dir / "net") or [
            n for sub in list_dir(device_dir) if sub.startswith("virtio")
            for n in list_dir(device_dir / sub / "net")]
    else:
        return None
    return names[0] if names else None


def _chain(root: Path, link: Path) -> list[str]:
    """The PCI addresses from the root port down to the device, from its sysfs path."""
    target = os.path.realpath(link)
    devices = os.path.realpath(root / "sys/devices")
    if not target.startswith(devices + os.sep):
        return [link.name]
    return [part for part in target[len(devices) + 1:].split(os.sep)
            if _ADDRESS_RE.fullmatch(part)]


def read_topology(root: Path) -> Topology:
    """Every GPU, HCA, NIC and NVMe function on the PCI bus, by address."""
    base = root / PCI_DEVICES
    found = []
    for address in list_dir(base):
        if not _ADDRESS_RE.fullmatch(address):
            continue
        device_dir = base / address
        kind = _kind(device_dir)
        if kind is None:
            continue
        chain = _chain(root, device_dir)
        # chain[0] is the root port (or the device itself on the root complex);
        # a switch's upstream port follows it when the device sits below one.
        switch = chain[1] if len(chain) >= 3 else None
        found.append(PciDevice(
            kind=kind, address=address, name=_name(kind, device_dir),
            numa_node=read_int(device_dir / "numa_node"),
            max_gen=pcie_generation(read_line(device_dir / "max_link_speed")),
            max_width=read_int(device_dir / "max_link_width"),
            current_gen=pcie_generation(read_line(device_dir / "current_link_speed")),
            current_width=read_int(device_dir / "current_link_width"),
            switch=switch))
    return Topology(tuple(found))
