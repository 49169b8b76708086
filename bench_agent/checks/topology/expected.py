"""A node type's expected topology: written from a good node (`bench-agent topology
capture`), read strictly, and compared with another node's (pure).

The file (YAML, version 1):

    schema: 1
    captured_from: gpu-node-017          # informative
    counts: {gpu: 8, hca: 8, nic: 2, nvme: 8}
    devices:
      - kind: gpu
        address: "0000:53:00.0"
        numa_node: 0
        pcie_max_gen: 5
        pcie_max_width: 16
        near: ["0000:54:00.0"]           # HCAs, NICs, NVMe below the same switch
      - kind: hca
        address: "0000:54:00.0"
        name: mlx5_0                     # informative: names follow probe order
        ...

Components are matched by PCI address: nodes of one type place each card in the
same slot, and a name such as mlx5_3 shifts when an earlier HCA is missing, where
an address does not. Each difference is one Mismatch naming the component and its
address; the current link (what it trained to at idle) is never compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bench_agent.checks.topology.reader import KINDS, PciDevice, Topology
from bench_agent.core.errors import ConfigError

SCHEMA = 1


class ExpectedDevice(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: str = Field(pattern=r"^(gpu|hca|nic|nvme)$")
    address: str = Field(pattern=r"^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
    name: str | None = None
    numa_node: int | None = None
    pcie_max_gen: int | None = Field(default=None, ge=1, le=7)
    pcie_max_width: int | None = Field(default=None, ge=1, le=32)
    near: list[str] = Field(default_factory=list)


class ExpectedTopology(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_: int = Field(alias="schema")
    captured_from: str | None = None
    counts: dict[str, int]
    devices: list[ExpectedDevice]


@dataclass(frozen=True, slots=True)
class Mismatch:
    component: str  # "gpu 0000:53:00.0 (mlx5_0)", or "gpu count"
    what: str  # "numa_node", "missing", "unexpected", "pcie_max_gen", "near", "count"
    expected: str
    found: str

    @property
    def message(self) -> str:
        if self.what == "missing":
            return f"{self.component}: missing (expected on this node type)"
        if self.what == "unexpected":
            return f"{self.component}: not in the expected topology"
        return f"{self.component}: {self.what} {self.found}, expected {self.expected}"


def capture(topology: Topology, host: str | None = None) -> dict[str, Any]:
    """The expected-topology document of this node (what `topology capture` writes)."""
    devices = []
    for device in topology.devices:
        entry: dict[str, Any] = {"kind": device.kind, "address": device.address}
        if device.name:
            entry["name"] = device.name
        entry |= {"numa_node": device.numa_node, "pcie_max_gen": device.max_gen,
                  "pcie_max_width": device.max_width}
        if device.kind == "gpu":
            entry["near"] = [d.address for d in topology.near(device)]
        devices.append(entry)
    return {"schema": SCHEMA, "captured_from": host, "counts": topology.counts(),
            "devices": devices}


def parse_expected(data: Any, file: str) -> ExpectedTopology:
    """The expected topology of a parsed file (the CLI reads the YAML strictly,
    config/loader.py); ConfigError naming ``file`` and the place otherwise."""
    try:
        expected = ExpectedTopology.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        hint = (" (quote PCI addresses: YAML reads an unquoted 0000:53:00.0 as a number)"
                if first["loc"][-1:] == ("address",) or "near" in first["loc"] else "")
        raise ConfigError(f"{first['msg']} at {where}{hint}", file=file) from None
    if expected.schema_ != SCHEMA:
        raise ConfigError(f"expected-topology schema {expected.schema_} is not {SCHEMA} "
                          "(capture it again with this bench-agent)", file=file)
    unknown = sorted(set(expected.counts) - set(KINDS))
    if unknown:
        raise ConfigError(f"unknown component kind(s) in counts: {', '.join(unknown)}",
                          file=file)
    addresses = [d.address for d in expected.devices]
    if len(set(addresses)) != len(addresses):
        twice = sorted({a for a in addresses if addresses.count(a) > 1})
        raise ConfigError(f"device address(es) listed twice: {', '.join(twice)}",
                          file=file)
    return expected


def _label(kind: str, address: str, name: str | None) -> str:
    return f"{kind} {address}" + (f" ({name})" if name else "")


def _shown(value: object) -> str:
    return "unknown" if value is None else str(value)


def compare(expected: ExpectedTopology, actual: Topology) -> list[Mismatch]:
    """Every difference between the expected topology and this node's, in file order."""
    out: list[Mismatch] = []
    counts = actual.counts()
    for kind in KINDS:
        want = expected.counts.get(kind, 0)
        if counts[kind] != want:
            out.append(Mismatch(f"{kind} count", "count", str(want), str(counts[kind])))
    here = {d.address: d for d in actual.devices}
    for want_device in expected.devices:
        device = here.get(want_device.address)
        if device is None or device.kind != want_device.kind:
            out.append(Mismatch(_label(want_device.kind, want_device.address, want_device.name),
                                "missing", "present", "absent"))
            continue
        out += _device_mismatches(want_device, device, actual)
    listed = {d.address for d in expected.devices}
    out += [Mismatch(d.label, "unexpected", "absent", "present")
            for d in actual.devices if d.address not in listed]
    return out


def _device_mismatches(want: ExpectedDevice, device: PciDevice,
                       actual: Topology) -> list[Mismatch]:
    out = []
    for what, expected_value, found in (
            ("numa_node", want.numa_node, device.numa_node),
            ("pcie_max_gen", want.pcie_max_gen, device.max_gen),
            ("pcie_max_width", want.pcie_max_width, device.max_width)):
        if expected_value != found:
            out.append(Mismatch(device.label, what, _shown(expected_value), _shown(found)))
    if device.kind == "gpu":
        near = sorted(d.address for d in actual.near(device))
        if near != sorted(want.near):
            out.append(Mismatch(device.label, "near", ", ".join(sorted(want.near)) or "none",
                                ", ".join(near) or "none"))
    return out
