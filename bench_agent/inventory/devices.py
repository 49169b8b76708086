"""The node's devices that checks, burn-in and the peer look up by name, read once here.

One function each, through the injected ``root`` (core/sysfs.py readers):
the NVMe namespaces (checks/storage ``--all-nvme``, burn-in's smart-log sampler,
the inventory's disk list), a NIC's link speed (checks/network's link ratio, the
inventory's NIC list) and the RDMA devices (the peer's hello, the inventory).
"""

from __future__ import annotations

import re
from pathlib import Path

from bench_agent.core.sysfs import list_dir, read_int

# An NVMe namespace's block device is nvme<controller>n<namespace>
# (drivers/nvme/host/core.c nvme_alloc_ns: "nvme%dn%d"). With native multipath
# the per-path devices nvme<subsys>c<ctrl>n<ns> also sit in /sys/block, hidden
# (GENHD_FL_HIDDEN, no /dev node: drivers/nvme/host/multipath.c); they are
# paths to a namespace listed already, not namespaces, so the pattern leaves them.
_NVME_NAMESPACE = re.compile(r"^nvme\d+n\d+$")

# sysfs NIC speed is in Mbit/s (Documentation/ABI/testing/sysfs-class-net,
# "speed"). SPEED_UNKNOWN is -1 (include/uapi/linux/ethtool.h); old kernels
# printed it unsigned, as 4294967295. Zero is no speed either.
MBIT = 1_000_000
_SPEED_UNKNOWN_U32 = 0xFFFFFFFF


def is_nvme_namespace(name: str) -> bool:
    """Whether a /sys/block name is an NVMe namespace (nvme0n1), not a multipath path."""
    return _NVME_NAMESPACE.match(name) is not None


def nvme_devices(root: Path) -> list[str]:
    """The NVMe namespaces of the node as /dev paths (/dev/nvme0n1, ...), sorted."""
    return [f"/dev/{name}" for name in list_dir(root / "sys/block") if is_nvme_namespace(name)]


def link_speed_bps(root: Path, interface: str) -> int | None:
    """A NIC's link speed in bits/s from /sys/class/net/IF/speed; None when unknown
    (-1 or its unsigned form, 0, a virtual interface, a link that is down)."""
    mbit = read_int(root / "sys/class/net" / interface / "speed")
    return mbit * MBIT if mbit is not None and 0 < mbit < _SPEED_UNKNOWN_U32 else None


def rdma_devices(root: Path) -> list[str]:
    """RDMA device names (/sys/class/infiniband: InfiniBand and RoCE), sorted."""
    return list_dir(root / "sys/class/infiniband")
