"""Make the sysfs trees of the fabric and topology tests from public outputs.

    python tests/data/sysroots/make_fabric_trees.py            # all three trees
    python tests/data/sysroots/make_fabric_trees.py --vm-only  # only this VM's

Writes, under tests/data/sysroots/:

  h100-ndr/   an 8-GPU, 8-HCA NDR InfiniBand node (DGX/HGX H100 class)
  h100-roce/  the same GPUs with eight 400G RoCE ports and four 100G ones
  vm-pci/     this VM's PCI tree, as read (the third tree the issue asks for)

Sources (../shared/samples, see its PROVENANCE.txt; nothing is copied verbatim
into the repository but the facts listed here):

  * GPU PCI addresses and PCIe Gen5 x16: topology/nvidia-smi-q_gpud_8xH100-80GB-HBM3_
    535.183.01.txt (leptonai/gpud testdata, "Bus Id" 00000000:53:00.0 ... CA:00.0,
    "PCIe Generation Max 5", "Link Width Max 16x").
  * NUMA nodes: topology/nvidia-smi_topo-m_stas00_8xH100_NV18_trimmed.txt (stas00/
    ml-engineering): GPU0-3 NUMA 0, GPU4-7 NUMA 1.
  * InfiniBand HCAs (NDR tree): ib/sys-class-infiniband_gpud_h100/ (leptonai/gpud, a
    copy of /sys/class/infiniband of an H100 node): the eight InfiniBand devices
    mlx5_0,1,4-9 with their fw_ver, board_id, hca_type, port state, phys_state,
    rate, link_layer and counters/* (the values get the newline real sysfs ends
    each with).
  * RoCE HCAs (RoCE tree): ib/ibstat_gpud_h100_roce400g_all_active.txt (leptonai/
    gpud): twelve CAs, MT4129 at 400 and MT4125 at 100, Ethernet link layer, their
    firmware versions and port GUIDs.

Made here, where the public outputs are silent, and chosen to look like an
HGX H100 board: the PCIe tree (each GPU behind its own switch, with one
ConnectX-7 and one U.2 NVMe drive under the same switch, as NVIDIA's DGX H100
User Guide pairs one ConnectX-7 with each GPU), the HCA and NVMe addresses (the
GPU's bus + 1 and + 2), the 100G RoCE ports and a management NIC on root ports,
the HCA board_id and counters of the RoCE tree (none in ibstat), and the RoCE GID
tables: the four entries mlx5 creates for an interface with one IPv4 address
(fe80 link-local and ::ffff:a.b.c.d, each as IB/RoCE v1 and RoCE v2, as NVIDIA's
show_gids lists them) for made-up addresses 10.0.<n>.2.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
SAMPLES = HERE.parents[3] / "shared" / "samples"
NVSMI = SAMPLES / "topology" / "nvidia-smi-q_gpud_8xH100-80GB-HBM3_535.183.01.txt"
TOPO = SAMPLES / "topology" / "nvidia-smi_topo-m_stas00_8xH100_NV18_trimmed.txt"
IB_SYSFS = SAMPLES / "ib" / "sys-class-infiniband_gpud_h100"
IBSTAT_ROCE = SAMPLES / "ib" / "ibstat_gpud_h100_roce400g_all_active.txt"

# PCI class codes (PCI Code and ID Assignment Specification): 3D controller,
# InfiniBand controller, Ethernet controller, NVMe, PCI-to-PCI bridge.
GPU_CLASS, IB_CLASS, ETH_CLASS, NVME_CLASS, BRIDGE_CLASS = (
    "0x030200", "0x020700", "0x020000", "0x010802", "0x060400")
NVIDIA, MELLANOX, SAMSUNG = "0x10de", "0x15b3", "0x144d"
GEN5, GEN4, GEN1 = "32.0 GT/s PCIe", "16.0 GT/s PCIe", "2.5 GT/s PCIe"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")


def pci_function(root: Path, chain: list[str], cls: str, vendor: str, numa: int,
                 max_speed: str, width: int, current: str | None = None) -> Path:
    """A PCI function at the end of ``chain`` (root port first), with its bridges,
    and its /sys/bus/pci/devices link; returns the function's folder."""
    domain_bus = chain[0].rsplit(":", 1)[0]  # "0000:50"
    folder = root / "sys/devices" / f"pci{domain_bus}"
    for index, address in enumerate(chain):
        folder = folder / address
        last = index == len(chain) - 1
        attributes = {
            "class": cls if last else BRIDGE_CLASS, "vendor": vendor if last else "0x1000",
            "numa_node": str(numa), "max_link_speed": max_speed, "max_link_width": str(width),
            "current_link_speed": (current or max_speed) if last else max_speed,
            "current_link_width": str(width)}
        for name, value in attributes.items():
            if not (folder / name).exists():
                write(folder / name, value)
        link = root / "sys/bus/pci/devices" / address
        if not link.is_symlink():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(folder, link.parent))
    return folder


def gpu_addresses() -> list[str]:
    found = re.findall(r"Bus Id\s+: 0000([0-9A-F]{4}:[0-9A-F]{2}:00\.0)", NVSMI.read_text())
    assert len(found) == 8, found
    return [a.lower() for a in found]


def gpu_numa_nodes() -> list[int]:
    rows = [line.split() for line in TOPO.read_text().splitlines() if line.startswith("GPU")]
    return [int(row[-1]) for row in rows]


def switch_chain(gpu: str, leaf: str, port: int) -> list[str]:
    """Root port, switch upstream port, the downstream port ``port``, then ``leaf``."""
    domain, bus = gpu.split(":")[:2]
    b = int(bus, 16)
    return [f"{domain}:{b - 3:02x}:01.0", f"{domain}:{b - 2:02x}:00.0",
            f"{domain}:{b - 1:02x}:{port:02x}.0", leaf]


def on_gpu_switch(gpu: str, offset: int) -> str:
    domain, bus = gpu.split(":")[:2]
    return f"{domain}:{int(bus, 16) + offset:02x}:00.0"


def gpus(root: Path) -> None:
    for gpu, numa in zip(gpu_addresses(), gpu_numa_nodes(), strict=True):
        # Idle GPUs train their link down (nvidia-smi -q "Current" at idle): informative.
        pci_function(root, switch_chain(gpu, gpu, 0), GPU_CLASS, NVIDIA, numa, GEN5, 16, GEN1)
        nvme = pci_function(root, switch_chain(gpu, on_gpu_switch(gpu, 2), 2), NVME_CLASS,
                            SAMSUNG, numa, GEN4, 4)
        (nvme / "nvme" / f"nvme{gpu_addresses().index(gpu)}").mkdir(parents=True)


def management_nic(root: Path) -> None:
    nic = pci_function(root, ["0000:00:1c.0", "0000:01:00.0"], ETH_CLASS, "0x8086", 0, GEN4, 4)
    (nic / "net" / "eno1").mkdir(parents=True)


def hca_folder(root: Path, gpu: str, name: str, cls: str, numa: int) -> Path:
    device = pci_function(root, switch_chain(gpu, on_gpu_switch(gpu, 1), 1), cls, MELLANOX,
                          numa, GEN5, 16)
    ib = device / "infiniband" / name
    ib.mkdir(parents=True)
    link = root / "sys/class/infiniband" / name
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(ib, link.parent))
    return ib


def ndr_tree(root: Path) -> None:
    gpus(root)
    management_nic(root)
    names = sorted((p.name for p in IB_SYSFS.iterdir()
                    if (p / "ports/1/link_layer").read_text().strip() == "InfiniBand"),
                   key=lambda n: int(n.split("_")[1]))
    assert len(names) == 8, names
    for gpu, numa, name in zip(gpu_addresses(), gpu_numa_nodes(), names, strict=True):
        ib = hca_folder(root, gpu, name, IB_CLASS, numa)
        sample = IB_SYSFS / name
        for rel in ("fw_ver", "board_id", "hca_type"):
            write(ib / rel, (sample / rel).read_text())
        for rel in ("state", "phys_state", "rate", "link_layer"):
            write(ib / "ports/1" / rel, (sample / "ports/1" / rel).read_text())
        for counter in (sample / "ports/1/counters").iterdir():
            write(ib / "ports/1/counters" / counter.name, counter.read_text())


def parse_ibstat(text: str) -> list[dict[str, str]]:
    cas: list[dict[str, str]] = []
    for line in text.splitlines():
        if line.startswith("CA '"):
            cas.append({"name": line[4:-1]})
        elif ":" in line and cas:
            key, _, value = line.strip().partition(":")
            cas[-1].setdefault(key.strip(), value.strip())
    return cas


def gid_entries(port_guid: str, ipv4: str) -> list[tuple[str, str]]:
    """The (GID, type) entries of a RoCE port with one IPv4 address."""
    guid = port_guid.removeprefix("0x").rjust(16, "0")
    local = "fe80:0000:0000:0000:" + ":".join(guid[i:i + 4] for i in range(0, 16, 4))
    a, b, c, d = (int(x) for x in ipv4.split("."))
    mapped = f"0000:0000:0000:0000:0000:ffff:{a:02x}{b:02x}:{c:02x}{d:02x}"
    return [(local, "IB/RoCE v1"), (local, "RoCE v2"), (mapped, "IB/RoCE v1"),
            (mapped, "RoCE v2")]


def roce_tree(root: Path) -> None:
    gpus(root)
    management_nic(root)
    cas = parse_ibstat(IBSTAT_ROCE.read_text())
    fast = sorted((c for c in cas if c["Rate"] == "400"), key=lambda c: int(c["name"][5:]))
    slow = sorted((c for c in cas if c["Rate"] != "400"), key=lambda c: int(c["name"][5:]))
    assert len(fast) == 8 and len(slow) == 4, (fast, slow)
    placed = list(zip(gpu_addresses(), gpu_numa_nodes(), fast, strict=True))
    for n, ca in enumerate(slow):  # storage/front-end ports on root ports of socket 0
        placed.append((f"0000:{0x10 + 2 * n:02x}:00.0", 0, ca))
    for n, (where, numa, ca) in enumerate(placed):
        name = ca["name"]
        if n < 8:
            ib = hca_folder(root, where, name, ETH_CLASS, numa)
        else:
            domain, bus = where.split(":")[:2]
            device = pci_function(root, [f"{domain}:{int(bus, 16) - 1:02x}:01.0", where],
                                  ETH_CLASS, MELLANOX, numa, GEN4, 16)
            ib = device / "infiniband" / name
            ib.mkdir(parents=True)
            link = root / "sys/class/infiniband" / name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(ib, link.parent))
        netdev = f"eth{n}"
        (ib.parent.parent / "net" / netdev).mkdir(parents=True)
        write(ib / "fw_ver", ca["Firmware version"])
        write(ib / "hca_type", ca["CA type"])
        write(ib / "board_id", "MT_0000000838" if ca["CA type"] == "MT4129" else "MT_0000000359")
        rate = {"400": "400 Gb/sec (4X NDR)", "100": "100 Gb/sec (2X HDR)"}[ca["Rate"]]
        write(ib / "ports/1/state", "4: ACTIVE" if ca["State"] == "Active" else "1: DOWN")
        write(ib / "ports/1/phys_state",
              "5: LinkUp" if ca["Physical state"] == "LinkUp" else "3: Disabled")
        write(ib / "ports/1/rate", rate)
        write(ib / "ports/1/link_layer", ca["Link layer"])
        for counter in ("symbol_error", "link_error_recovery", "link_downed", "port_rcv_errors",
                        "port_rcv_remote_physical_errors", "port_xmit_discards",
                        "local_link_integrity_errors", "excessive_buffer_overrun_errors"):
            write(ib / "ports/1/counters" / counter, "0")
        for index, (gid, kind) in enumerate(gid_entries(ca["Port GUID"], f"10.0.{n}.2")):
            write(ib / "ports/1/gids" / str(index), gid)
            write(ib / "ports/1/gid_attrs/types" / str(index), kind)
            write(ib / "ports/1/gid_attrs/ndevs" / str(index), netdev)
        # Unused entries: an all-zero GID, whose type file fails to read (EINVAL) in
        # real sysfs; left without a type file here.
        for index in range(4, 8):
            write(ib / "ports/1/gids" / str(index), "0000:" * 7 + "0000")


VM_ATTRIBUTES = ("class", "vendor", "device", "numa_node", "max_link_speed", "max_link_width",
                 "current_link_speed", "current_link_width")


def vm_tree(root: Path, source: Path = Path("/")) -> None:
    """This machine's PCI functions, their ancestors' attributes and interface names."""
    devices = source / "sys/bus/pci/devices"
    for address in sorted(os.listdir(devices)):
        real = Path(os.path.realpath(devices / address))
        rel = real.relative_to(source / "sys/devices")
        folder = root / "sys/devices" / rel
        for name in VM_ATTRIBUTES:
            try:
                write(folder / name, (real / name).read_text())
            except OSError:
                continue  # absent, or EINVAL (virtio has no PCIe link): left out
        for sub in ("net", "nvme", "infiniband"):
            for name in sorted(os.listdir(real / sub)) if (real / sub).is_dir() else []:
                (folder / sub / name).mkdir(parents=True, exist_ok=True)
        for virtio in sorted(p for p in real.glob("virtio*") if (p / "net").is_dir()):
            for name in sorted(os.listdir(virtio / "net")):
                (folder / virtio.name / "net" / name).mkdir(parents=True, exist_ok=True)
        link = root / "sys/bus/pci/devices" / address
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(folder, link.parent))


def keep_empty_folders(root: Path) -> None:
    """git keeps no empty folder, and a device's name is a folder (net/eno1,
    nvme/nvme0): give each an empty ``uevent``, as every sysfs device has one."""
    for folder in sorted(p for p in root.rglob("*") if p.is_dir() and not p.is_symlink()):
        if not any(folder.iterdir()):
            (folder / "uevent").write_text("")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vm-only", action="store_true")
    args = parser.parse_args()
    makers = [("vm-pci", vm_tree)]
    if not args.vm_only:
        makers += [("h100-ndr", ndr_tree), ("h100-roce", roce_tree)]
    for name, make in makers:
        root = HERE / name
        shutil.rmtree(root, ignore_errors=True)
        make(root)
        keep_empty_folders(root)
        print(f"wrote {root}")


if __name__ == "__main__":
    main()
