"""The node's facts (CPU, memory, disks, NICs, InfiniBand, GPUs, OS), read through
the injected root (collect.py). Their records live in core/inventory.py, beside
the Report that carries them, and are re-exported here."""

from bench_agent.core.inventory import (
    INVENTORY_SCHEMA_VERSION,
    Cpu,
    Disk,
    Gpu,
    Hca,
    Host,
    IbPort,
    Inventory,
    Memory,
    Nic,
    NumaNode,
    OsInfo,
)

__all__ = ["INVENTORY_SCHEMA_VERSION", "Cpu", "Disk", "Gpu", "Hca", "Host", "IbPort", "Inventory",
           "Memory", "Nic", "NumaNode", "OsInfo"]
