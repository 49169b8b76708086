"""topology.match: this node's PCI topology against its node type's expected one.

The expected topology is captured once from a good node (`bench-agent topology
capture`, checks/topology/expected.py) and handed to the run with `--expect FILE`
or the profile's ``topology`` key; the CLI reads the file strictly and sends its
document in the run options (RunOptions.expected_topology). Each component
(GPU, HCA, NIC, NVMe, by PCI address) and each count gets one
``topology.component_matches``: 1 when it is as expected, 0 with the differences
named in its note (the profile's threshold FAILs it, naming the component).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel

from bench_agent.checks.base import Check, CheckContext, MetricSpec
from bench_agent.checks.topology.expected import Mismatch, compare, parse_expected
from bench_agent.checks.topology.reader import KINDS, PCI_DEVICES, Topology, read_topology
from bench_agent.core.errors import ConfigError, NotApplicable, ParseError
from bench_agent.core.model import Measurement
from bench_agent.core.units import Unit


class TopologyMatchCheck(Check):
    name: ClassVar[str] = "topology.match"
    domain: ClassVar[str] = "topology"
    description: ClassVar[str] = ("PCI topology (GPU NUMA nodes, nearest HCAs/NICs/NVMe, "
                                  "PCIe max gen/width, counts) against the expected one")
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("topology.component_matches", Unit.COUNT,
                   "1 when the component (or count) is as the expected topology says: "
                   "present, NUMA node, PCIe max generation and width, near devices",
                   per_device=True),
        MetricSpec("topology.mismatches", Unit.COUNT,
                   "differences from the expected topology, all components together",
                   higher_is_better=False),
        *(MetricSpec(f"topology.{kind}_count", Unit.COUNT,
                     f"{kind.upper() if kind != 'nvme' else 'NVMe'} functions on the PCI bus "
                     "(sysfs)") for kind in KINDS),
    )

    def available(self, ctx: CheckContext) -> str | None:
        if not (ctx.root / PCI_DEVICES).is_dir():
            return "no /sys/bus/pci/devices: no PCI bus visible here"
        return None

    def run(self, ctx: CheckContext, params: BaseModel) -> list[Measurement]:
        document = ctx.options.expected_topology
        if document is None:
            raise NotApplicable("no expected topology: give `--expect FILE` (made with "
                                "`bench-agent topology capture` on a good node) or the "
                                "profile's topology key")
        where = ctx.options.expected_topology_file or "the expected topology"
        try:
            expected = parse_expected(document, where)
        except ConfigError as exc:  # the CLI checked it; a worker of another version
            raise ParseError("expected topology", str(exc)) from None
        topology = read_topology(ctx.root)
        mismatches = compare(expected, topology)
        return self._measurements(topology, mismatches, [(d.kind, d.address, d.name)
                                                         for d in expected.devices], where)

    def _measurements(self, topology: Topology, mismatches: list[Mismatch],
                      expected: list[tuple[str, str, str | None]], where: str
                      ) -> list[Measurement]:
        def m(metric: str, value: float, device: str = "", **extra: Any) -> Measurement:
            return Measurement(check=self.name, metric=metric, value=value, unit=Unit.COUNT,
                               device=device, tool="sysfs", params=extra)

        by_component: dict[str, list[Mismatch]] = {}
        for mismatch in mismatches:
            by_component.setdefault(mismatch.component, []).append(mismatch)
        out = [m(f"topology.{kind}_count", count, source="/sys/bus/pci/devices")
               for kind, count in topology.counts().items()]
        rows: dict[str, dict[str, Any]] = {f"{kind} count": {} for kind in KINDS}
        for device in topology.devices:
            rows[device.label] = {
                "address": device.address, "numa_node": device.numa_node,
                "pcie_max": f"Gen{device.max_gen} x{device.max_width}",
                # Informative: links train down at idle (ASPM, GPU power states).
                "pcie_current_informative": f"Gen{device.current_gen} x{device.current_width}",
                "near": [d.address for d in topology.near(device)]}
        for kind, address, name in expected:
            rows.setdefault(f"{kind} {address}" + (f" ({name})" if name else ""),
                            {"address": address})
        for component, facts in rows.items():
            found = by_component.get(component, [])
            extra: dict[str, Any] = {**facts, "expected_from": where}
            if found:
                extra["note"] = "; ".join(x.message for x in found)
            out.append(m("topology.component_matches", 0 if found else 1, component, **extra))
        out.append(m("topology.mismatches", len(mismatches), expected_from=where,
                     **({"note": "; ".join(x.message for x in mismatches)} if mismatches
                        else {})))
        return out


CHECKS: tuple[type[Check], ...] = (TopologyMatchCheck,)
