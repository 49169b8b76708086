"""Whether this node has NVIDIA GPUs, read from the PCI bus, whatever the driver's state.

A GPU check that cannot run here (no torch, no NVML, no driver) is a SKIP on a
node without GPUs and a failure on one with them: a GPU node whose software stack
is broken must never pass quietly. Apart from checks/gpu/checks.py so that the
passive health checks (which may not import pydantic, checks/plain_params.py)
can ask too.
"""

from __future__ import annotations

from pathlib import Path

from bench_agent.core.errors import GpuStackBroken
from bench_agent.core.sysfs import list_dir, read_line

# PCI vendor id of NVIDIA, and the PCI classes of GPUs: 0x0300 VGA controller and
# 0x0302 3D controller (PCI Code and ID Assignment Specification); an NVSwitch is
# 0x0680 ("other bridge") and is not counted.
NVIDIA_VENDOR = "0x10de"
GPU_CLASSES = ("0x0300", "0x0302")


def nvidia_pci_gpus(root: Path = Path("/")) -> list[str]:
    """Bus ids of NVIDIA GPUs on the PCI bus, whatever the driver's state."""
    found = []
    devices = root / "sys/bus/pci/devices"
    for name in list_dir(devices):
        pci_class = read_line(devices / name / "class")
        if read_line(devices / name / "vendor") == NVIDIA_VENDOR and pci_class \
                and pci_class.startswith(GPU_CLASSES):
            found.append(name)
    return found


def skip_or_fail(root: Path, reason: str) -> str:
    """The reason to SKIP a GPU check here, unless the node has NVIDIA GPUs on its
    PCI bus: then the software stack is broken on a GPU node, which is an ERROR
    (raised), never a quiet SKIP that lets `run gpu` exit 0."""
    gpus = nvidia_pci_gpus(root)
    if gpus:
        shown = ", ".join(gpus[:4]) + (" ..." if len(gpus) > 4 else "")
        raise GpuStackBroken("gpu stack", f"{len(gpus)} NVIDIA GPU(s) on the PCI bus "
                             f"({shown}) but {reason}")
    return reason
