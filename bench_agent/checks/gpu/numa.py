"""NUMA placement of a GPU child: bind it to the CPUs of its GPU's NUMA node.

Host copies from pinned memory cross the socket interconnect when the buffer sits
on the other socket's memory; with every GPU copying at once, unbound children
also pile their buffers onto whichever node they started on. Linux places a page
on the node of the CPU that first touches it (the default "local" memory policy,
set_mempolicy(2)), so binding the child's CPUs before it allocates is enough.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bench_agent.core.sysfs import read_line


def numa_cpus_of_gpu(pci_bus_id: str, root: Path = Path("/")) -> tuple[int | None, set[int]]:
    """(NUMA node, its CPUs) of the GPU at ``pci_bus_id`` ("0000:3b:00.0"), from sysfs:
    /sys/bus/pci/devices/<id>/numa_node and /sys/devices/system/node/node<N>/cpulist
    (Documentation/ABI/testing/sysfs-bus-pci, sysfs-devices-system-cpu). (None, set())
    when the kernel does not say (-1 on a single-node machine or a VM)."""
    node_text = read_line(root / "sys/bus/pci/devices" / pci_bus_id.lower() / "numa_node")
    try:
        node = int(node_text) if node_text is not None else -1
    except ValueError:
        node = -1
    if node < 0:
        return None, set()
    cpulist = read_line(root / f"sys/devices/system/node/node{node}/cpulist") or ""
    return node, parse_cpulist(cpulist)


def parse_cpulist(text: str) -> set[int]:
    """The kernel's CPU list format, "0-3,8,10-11" (Documentation/admin-guide/cputopology)."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        try:
            cpus.update(range(int(first), int(last or first) + 1))
        except ValueError:
            return set()  # not the kernel's format: no binding rather than a wrong one
    return cpus


def _pci_bus_id(torch: Any, device: str) -> str | None:
    props = torch.cuda.get_device_properties(device)
    if not hasattr(props, "pci_bus_id"):
        return None
    return (f"{int(getattr(props, 'pci_domain_id', 0)):04x}:{int(props.pci_bus_id):02x}:"
            f"{int(getattr(props, 'pci_device_id', 0)):02x}.0")


def bind_to_gpu_numa(torch: Any, device: str, root: Path = Path("/")) -> dict[str, Any]:
    """Bind this process to the CPUs of its GPU's NUMA node, before the pinned host
    buffer is allocated: Linux places a page on the node of the CPU that first
    touches it (the default "local" policy, set_mempolicy(2)), so the host copies
    cross no socket link, and GPUs copying at once do not all share one node.
    Returns what was done, for the copy results."""
    bus = _pci_bus_id(torch, device)
    if bus is None:
        return {"numa": "torch gives no PCI bus id: not bound"}
    node, cpus = numa_cpus_of_gpu(bus, root)
    allowed = cpus & os.sched_getaffinity(0)
    if node is None or not allowed:
        return {"numa": f"no NUMA node known for {bus}: not bound", "pci_bus_id": bus}
    os.sched_setaffinity(0, allowed)
    return {"numa_node": node, "cpus": len(allowed), "pci_bus_id": bus}
