"""The inventory check: the node's sized facts (CPUs, RAM, NVMe, links, GPUs).

The facts are read by inventory.py; this check only turns them into
measurements, so the sizing table of the guide is judged like any other
threshold. It is judged with the cpu domain's profile section.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from bench_agent.checks.base import Check, CheckContext
from bench_agent.core.model import Measurement
from bench_agent.inventory.collect import collect_inventory, inventory_measurements


class InventoryCheck(Check):
    name: ClassVar[str] = "inventory"
    domain: ClassVar[str] = "cpu"
    description: ClassVar[str] = (
        "node facts: logical CPUs, physical cores, RAM, NVMe capacity, fastest link, GPUs"
    )
    metrics: ClassVar[tuple[str, ...]] = (
        "inventory.logical_cpus",
        "inventory.physical_cores",
        "inventory.memory_total",
        "inventory.nvme_capacity",
        "inventory.nic_speed_max",
        "inventory.gpu_count",
        "inventory.gpu_memory_min",
    )

    def run(self, ctx: CheckContext, params: BaseModel) -> list[Measurement]:
        return inventory_measurements(collect_inventory(ctx.root))
