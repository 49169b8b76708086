"""The inventory check: the node's sized facts (CPUs, RAM, NVMe, links, GPUs).

The facts are read by inventory.py; this check only turns them into
measurements, so the sizing table of the guide is judged like any other
threshold. It is judged with the cpu domain's profile section.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from bench_agent.checks.base import Check, CheckContext, MetricSpec
from bench_agent.core.model import Measurement
from bench_agent.core.units import Unit
from bench_agent.inventory.collect import collect_inventory, inventory_measurements


class InventoryCheck(Check):
    name: ClassVar[str] = "inventory"
    domain: ClassVar[str] = "cpu"
    description: ClassVar[str] = (
        "node facts: logical CPUs, physical cores, RAM, NVMe capacity, fastest link, GPUs"
    )
    # Facts of the node, checked against the guide's sizing table.
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("inventory.logical_cpus", Unit.COUNT, "logical CPUs (vCPUs) online"),
        MetricSpec("inventory.physical_cores", Unit.COUNT, "physical cores, all sockets"),
        MetricSpec("inventory.memory_total", Unit.BYTES, "RAM (MemTotal)"),
        MetricSpec("inventory.nvme_capacity", Unit.BYTES, "sum of NVMe namespace sizes"),
        MetricSpec("inventory.nic_speed_max", Unit.BITS_PER_SECOND, "fastest NIC link"),
        MetricSpec("inventory.gpu_count", Unit.COUNT, "GPUs seen by NVML"),
        MetricSpec("inventory.gpu_memory_min", Unit.BYTES, "memory of the smallest GPU"),
    )

    def run(self, ctx: CheckContext, params: BaseModel) -> list[Measurement]:
        return inventory_measurements(collect_inventory(ctx.root))


# The checks of this module, in `bench-agent list` order (checks/__init__.py finds them).
CHECKS: tuple[type[Check], ...] = (InventoryCheck,)
