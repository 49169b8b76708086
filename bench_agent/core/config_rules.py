"""Configuration facts as named values, and the two ways they are judged.

The inventory's NodeConfig (core/inventory.py) holds raw readings; this module
names the facts an SRE compares ("gpu.vbios_version", "node.cpu_governor"), and
judges them, purely (no I/O):

- uniform within the node: every GPU of one model, every HCA, must agree on each
  fact; the components that differ from the most common value are named;
- against an expected configuration: a profile's ``configuration`` section, a
  list of allowed values per fact (``Expectation``).

The same names serve fleet drift (fleet/drift.py): each node's value of each
fact against the fleet's most common value.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from bench_agent.core.inventory import CONFIG_ABSENT, GpuConfig, Hca, Inventory, NodeConfig

FactValue = str | int | bool | None

# Every fact, with what it means. A profile's configuration section may name
# only these (config/loader.py checks it).
NODE_FACTS: dict[str, str] = {
    "node.kernel": "kernel release (uname -r)",
    "node.nvidia_driver": "NVIDIA driver version (NVML)",
    "node.cuda_driver": "newest CUDA version the driver supports (NVML)",
    "node.cpu_governor": "cpufreq scaling governor(s) of the CPUs, comma-separated when mixed",
    "node.transparent_hugepage": "transparent huge pages mode (always, madvise, never)",
    "node.thp_defrag": "transparent huge pages defrag mode",
    "node.iommu": "off, or the IOMMU groups' domain type(s): identity (passthrough), DMA, "
                  "DMA-FQ",
    "node.clocksource": "current clock source (tsc, hpet, kvm-clock, ...)",
    "node.numa_balancing": "automatic NUMA balancing (0 off, 1 on, 2 tiering)",
    "node.fabric_manager": "NVIDIA fabric manager process on NVSwitch systems: running, not "
                           "running, or not needed (no NVSwitch); unknown in a container "
                           "without the host's PIDs (gpu.fabric_state is what to judge)",
    "node.nvidia_peermem": "nvidia_peermem (GPUDirect RDMA) on nodes with GPUs and RDMA "
                           "devices: loaded, not loaded, or not needed",
    "node.rdma_core": "rdma-core package version",
    "node.ofed": "MLNX_OFED / DOCA-OFED driver version (mlx5_core module version)",
}
GPU_FACTS: dict[str, str] = {
    "gpu.model": "product name NVML reports",
    "gpu.vbios_version": "VBIOS version",
    "gpu.persistence_mode": "persistence mode enabled",
    "gpu.ecc_mode": "ECC enabled (current)",
    "gpu.ecc_pending": "ECC enabled after the next reset (pending)",
    "gpu.mig_mode": "MIG enabled (current; false where the GPU has no MIG)",
    "gpu.mig_pending": "MIG enabled after the next reset (pending)",
    "gpu.fabric_state": "NVLink fabric state set by the fabric manager (NVML): completed, "
                        "not started, in progress, failed (...), or not supported",
    "gpu.power_limit_w": "power management limit, watts",
    "gpu.power_limit_at_default": "power limit equals the default limit",
    "gpu.app_clocks_at_default": "applications clocks (graphics and memory) at their defaults",
}
HCA_FACTS: dict[str, str] = {
    "hca.model": "HCA type (sysfs hca_type)",
    "hca.fw_ver": "HCA firmware version",
    "hca.board_id": "board id (PSID)",
}
FACTS: dict[str, str] = {**NODE_FACTS, **GPU_FACTS, **HCA_FACTS}


def _joined(values: Iterable[str]) -> str | None:
    return ",".join(sorted(values)) or None


def _equal_or_none(a: int | None, b: int | None) -> bool | None:
    return None if a is None or b is None else a == b


def gpu_facts(gpu: GpuConfig) -> dict[str, FactValue]:
    clocks = [_equal_or_none(gpu.app_clock_graphics_mhz, gpu.app_clock_graphics_default_mhz),
              _equal_or_none(gpu.app_clock_memory_mhz, gpu.app_clock_memory_default_mhz)]
    return {
        "gpu.model": gpu.name,
        "gpu.vbios_version": gpu.vbios_version,
        "gpu.persistence_mode": gpu.persistence_mode,
        "gpu.ecc_mode": gpu.ecc_enabled,
        "gpu.ecc_pending": gpu.ecc_pending_enabled,
        "gpu.mig_mode": gpu.mig_enabled,
        "gpu.mig_pending": gpu.mig_pending_enabled,
        "gpu.fabric_state": gpu.fabric_state,
        "gpu.power_limit_w": round(gpu.power_limit_mw / 1000)
        if gpu.power_limit_mw is not None else None,
        "gpu.power_limit_at_default": _equal_or_none(gpu.power_limit_mw,
                                                     gpu.power_limit_default_mw),
        "gpu.app_clocks_at_default": None if None in clocks else all(clocks),
    }


def hca_facts(hca: Hca) -> dict[str, FactValue]:
    return {"hca.model": hca.hca_type, "hca.fw_ver": hca.fw_ver, "hca.board_id": hca.board_id}


def node_facts(inv: Inventory) -> dict[str, FactValue]:
    cfg: NodeConfig = inv.config
    if cfg.gpu_note == CONFIG_ABSENT:
        # An older agent's inventory: nothing is known but the kernel.
        return {fact: (inv.os.kernel if fact == "node.kernel" else None) for fact in NODE_FACTS}
    iommu: str | None
    if cfg.iommu_groups is None:
        iommu = None
    elif cfg.iommu_groups == 0:
        iommu = "off"
    else:
        iommu = _joined(cfg.iommu_group_types) or "on"
    fabric: str | None = None
    if cfg.nvswitch_count == 0:
        fabric = "not needed"
    elif cfg.nvswitch_count is not None and cfg.fabric_manager_running is not None:
        fabric = "running" if cfg.fabric_manager_running else "not running"
    peermem: str | None = None
    gpus_known = cfg.gpu_note is None or bool(inv.gpus)
    if gpus_known and (not (cfg.gpus or inv.gpus) or not inv.hcas):
        peermem = "not needed"
    elif gpus_known and cfg.nvidia_peermem_loaded is not None:
        peermem = "loaded" if cfg.nvidia_peermem_loaded else "not loaded"
    return {
        "node.kernel": inv.os.kernel,
        "node.nvidia_driver": cfg.nvidia_driver_version,
        "node.cuda_driver": cfg.cuda_driver_version,
        "node.cpu_governor": _joined(cfg.cpu_governors),
        "node.transparent_hugepage": cfg.transparent_hugepage,
        "node.thp_defrag": cfg.thp_defrag,
        "node.iommu": iommu,
        "node.clocksource": cfg.clocksource,
        "node.numa_balancing": cfg.numa_balancing,
        "node.fabric_manager": fabric,
        "node.nvidia_peermem": peermem,
        "node.rdma_core": cfg.rdma_core_version,
        "node.ofed": cfg.ofed_version,
    }


@dataclass(frozen=True)
class Component:
    """A GPU or an HCA with its facts; ``label`` names it for an SRE (index, PCI
    address, serial); ``group`` is what its facts are compared within (the model)."""

    kind: Literal["gpu", "hca"]
    label: str
    group: str
    facts: dict[str, FactValue]


def components(inv: Inventory) -> list[Component]:
    out = []
    for gpu in inv.config.gpus:
        where = " ".join(part for part in (gpu.pci_bus_id, f"serial {gpu.serial}"
                                           if gpu.serial else None) if part)
        out.append(Component("gpu", f"GPU {gpu.index} ({where or gpu.uuid})",
                             gpu.name or "unknown model", gpu_facts(gpu)))
    for hca in inv.hcas:
        label = f"HCA {hca.name}"
        # hca_type is only the PCI device id (MT4129 for every ConnectX-7): the board
        # id (PSID) tells the card apart, and firmware is released per PSID.
        group = f"{hca.hca_type or 'unknown type'} {hca.board_id or 'unknown board'}"
        out.append(Component("hca", label, group, hca_facts(hca)))
    return out


def shown(value: FactValue) -> str:
    return "unknown" if value is None else str(value).lower() if isinstance(value, bool) \
        else str(value)


# Facts that make the group, so are never compared within it.
_GROUP_FACTS = frozenset({"gpu.model", "hca.model", "hca.board_id"})


@dataclass(frozen=True)
class Uniformity:
    """One fact over the components of one group: who differs from the most common."""

    fact: str
    group: str
    common: FactValue
    total: int
    odd: tuple[tuple[str, FactValue], ...]

    def note(self, kind: str) -> str:
        if not self.odd:
            return f"all {self.total} {kind}s of {self.group}: {shown(self.common)}"
        others = self.total - len(self.odd)
        named = "; ".join(f"{label} has {shown(value)}" for label, value in self.odd)
        return (f"{named}; the other {others} {kind}(s) of {self.group} have "
                f"{shown(self.common)}")


def uniformity(items: Sequence[Component]) -> list[Uniformity]:
    """Every fact of every group of two or more components that at least one of them
    could read. The most common value is the reference (on a tie, the value of the
    first component, so the odd ones out are the later ones). Facts are compared
    within a model: a GPU's product name, an HCA's type and board id (PSID).
    "gpu.model" is compared across all GPUs too (one node, one GPU model);
    "hca.model" is not: a DGX H100 pairs eight ConnectX-7 for the compute fabric
    with a BlueField-3 for storage (leptonai/gpud's captured sys-class-infiniband-
    h100 tree: eight MT4129 at 28.41.1000 and one MT41692 at 32.38.3056), and an
    Azure VM's Ethernet and InfiniBand VFs are both MT4126 on different boards and
    firmware (gpud's ibstat of an A100 VM); both are healthy."""
    out: list[Uniformity] = []
    for kind in ("gpu", "hca"):
        of_kind = [c for c in items if c.kind == kind]
        groups: dict[str, list[Component]] = {}
        for c in of_kind:
            groups.setdefault(c.group, []).append(c)
        units: list[tuple[str, str, list[Component]]] = []
        if of_kind and kind == "gpu":
            units.append(("gpu.model", "this node", of_kind))
        for group, members in groups.items():
            units += [(fact, group, members) for fact in of_kind[0].facts
                      if fact not in _GROUP_FACTS]
        for fact, group, members in units:
            values = [c.facts.get(fact) for c in members]
            if len(members) < 2 or all(v is None for v in values):
                continue
            counts = Counter(values)
            best = max(counts.values())
            common = next(v for v in values if counts[v] == best)
            odd = tuple((c.label, v) for c, v in zip(members, values, strict=True)
                        if v != common)
            out.append(Uniformity(fact, group, common, len(members), odd))
    return out


@dataclass(frozen=True)
class Expectation:
    """One entry of a profile's configuration section: the values a fact may have."""

    fact: str
    allowed: tuple[FactValue, ...]
    severity: Literal["fail", "warn"] = "fail"
    source: str = ""

    def __post_init__(self) -> None:
        if not known_fact(self.fact):
            raise ValueError(f"unknown configuration fact {self.fact!r}")
        if not self.allowed:
            raise ValueError(f"{self.fact}: no allowed value")

    def to_dict(self) -> dict[str, Any]:
        return {"fact": self.fact, "allowed": list(self.allowed), "severity": self.severity,
                "source": self.source}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Expectation:
        if set(data) - {"fact", "allowed", "severity", "source"}:
            raise ValueError(f"unknown key(s) in an expectation: {sorted(data)}")
        allowed = data.get("allowed")
        if not isinstance(allowed, list) or not all(
                isinstance(v, str | int | bool) for v in allowed):
            raise ValueError(f"allowed must be a list of values, got {allowed!r:.80}")
        severity = data.get("severity", "fail")
        if severity not in ("fail", "warn"):
            raise ValueError(f"severity must be fail or warn, got {severity!r}")
        return cls(str(data.get("fact")), tuple(allowed), severity, str(data.get("source", "")))

    def allows(self, value: FactValue) -> bool:
        # Exact, typed: true is not 1, "0" is not 0 (YAML gives each its type).
        return any(type(value) is type(a) and value == a for a in self.allowed)


@dataclass(frozen=True)
class ExpectationResult:
    expectation: Expectation
    checked: int  # the node, or its GPUs / HCAs
    offenders: tuple[tuple[str, FactValue], ...] = field(default=())

    def note(self) -> str:
        allowed = " or ".join(shown(v) for v in self.expectation.allowed)
        if self.checked == 0:
            return f"no component has {self.expectation.fact} here"
        if not self.offenders:
            return f"{self.expectation.fact} is {allowed} as expected"
        named = "; ".join(f"{label}: {shown(value)}" for label, value in self.offenders)
        return f"{self.expectation.fact} must be {allowed}: {named}"


def judge_expectations(inv: Inventory, expectations: Iterable[Expectation]
                       ) -> list[ExpectationResult]:
    """Each expectation against the node (node facts) or each GPU or HCA. A fact
    that could not be read does not meet an expectation: unknown is never allowed."""
    node = node_facts(inv)
    items = components(inv)
    out = []
    for exp in expectations:
        if exp.fact in NODE_FACTS:
            value = node[exp.fact]
            offenders = () if exp.allows(value) else (("node", value),)
            out.append(ExpectationResult(exp, 1, offenders))
            continue
        fact, group = split_fact(exp.fact)
        kind = fact.partition(".")[0]
        subjects = [c for c in items if c.kind == kind and group in (None, c.group)]
        out.append(ExpectationResult(exp, len(subjects), tuple(
            (c.label, c.facts.get(fact)) for c in subjects
            if not exp.allows(c.facts.get(fact)))))
    return out


def flat_facts(inv: Inventory) -> dict[str, FactValue]:
    """One value per fact for the node, for fleet drift and fleet baselines. A
    component fact is keyed by its group, "hca.fw_ver[MT4129 MT_0000000838]", so a
    node's ConnectX-7s are compared with the fleet's ConnectX-7s, not with its
    BlueField; one the group's members do not share is their values joined with
    " | " (itself a difference from a healthy fleet). "gpu.model" is the node's GPU
    model(s), which makes the node's type."""
    out = dict(node_facts(inv))
    values: dict[str, set[FactValue]] = {}
    for c in components(inv):
        for fact, value in c.facts.items():
            if fact not in _GROUP_FACTS:
                values.setdefault(f"{fact}[{c.group}]", set()).add(value)
    for key, found in sorted(values.items()):
        if found == {None}:
            continue
        out[key] = next(iter(found)) if len(found) == 1 else " | ".join(
            sorted(shown(v) for v in found))
    models = sorted({c.group for c in components(inv) if c.kind == "gpu"})
    if models:
        out["gpu.model"] = " | ".join(models)
    return out


def split_fact(name: str) -> tuple[str, str | None]:
    """ "hca.fw_ver[MT4129 MT_0000000838]" -> ("hca.fw_ver", "MT4129 MT_0000000838")."""
    if name.endswith("]") and "[" in name:
        base, _, group = name[:-1].partition("[")
        return base, group
    return name, None


def known_fact(name: str) -> bool:
    """A fact of FACTS, or a GPU or HCA fact qualified by its group."""
    base, group = split_fact(name)
    return base in FACTS and (group is None or (base not in NODE_FACTS and bool(group)))
