"""Give each verdict that needs action its fault code, component and remediation.

A verdict names a check, a metric and a device ("gpu3", "mlx5_0/1", "nvme0n1",
a mount point); the measurement behind it carries the identity its check read
(a GPU's UUID, serial and PCI address in gpu.health's params), and the report's
inventory the rest. ``component`` joins them into the words an SRE needs to find
the part: "GPU 3 GPU-8f1c... serial 1652822012345 00000000:1B:00.0".

FAIL, ERROR and WARN verdicts are coded (a WARN is a judged finding too: a warn
band, or a flaky FAIL that passed on a re-run); PASS and SKIP keep "".
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bench_agent.core.inventory import Inventory
from bench_agent.core.model import Measurement, Status, Verdict
from bench_agent.faults.catalog import NOT_MEASURED, Catalog, Fault, load_catalog

CODED = (Status.FAIL, Status.ERROR, Status.WARN)
_GPU_DEVICE = re.compile(r"^gpu(\d+)$")
_XID_IN_LINE = re.compile(r"NVRM: Xid \([^)]*\): (\d+)")


def _xids_of(measurement: Measurement | None) -> list[int]:
    """The XIDs a measurement's params list: "xids" (numbers, or records with an
    "xid") or kernel-log "lines" (NVRM: Xid (PCI:...): 79, ...)."""
    if measurement is None:
        return []
    found: list[int] = []
    for item in measurement.params.get("xids") or []:
        value = item.get("xid") if isinstance(item, dict) else item
        if isinstance(value, int) and not isinstance(value, bool):
            found.append(value)
    for line in measurement.params.get("lines") or []:
        match = _XID_IN_LINE.search(str(line))
        if match:
            found.append(int(match.group(1)))
    return found


def _gpu_component(device: str, params: Mapping[str, Any], inventory: Inventory) -> str:
    match = _GPU_DEVICE.match(device)
    index = int(match.group(1)) if match else None
    known = next((g for g in inventory.gpus if g.index == index), None)
    uuid = params.get("uuid") or (known.uuid if known else None)
    # A device that is no "gpuN" is a kernel log's PCI bus (health.gpu_xid): the
    # PCI address below names the GPU then.
    parts = [f"GPU {index}" if index is not None else "GPU"]
    if index is None and device and not params.get("pci_bus_id") and device != "all":
        parts.append(device)
    if params.get("name") or known:
        parts.append(str(params.get("name") or (known.name if known else "")))
    if uuid:
        parts.append(str(uuid))
    if params.get("serial"):
        parts.append(f"serial {params['serial']}")
    if params.get("pci_bus_id"):
        parts.append(str(params["pci_bus_id"]))
    return " ".join(p for p in parts if p)


def _port_component(device: str, params: Mapping[str, Any], inventory: Inventory) -> str:
    hca, _, port = device.partition("/")
    if not hca:
        return "HCA"
    text = f"HCA {hca} port {port}" if port else f"HCA {hca}"
    known = next((p for p in inventory.infiniband
                  if p.device == hca and str(p.port) == port), None)
    if known is not None and known.link_layer:
        text += f" ({known.link_layer})"
    return text


def _drive_component(device: str, params: Mapping[str, Any], inventory: Inventory) -> str:
    if not device or device == "aggregate":
        return "the drives tested together" if device else "drive"
    name = device.removeprefix("/dev/")
    known = next((d for d in inventory.disks if d.name == name), None)
    parts = [f"drive {name}"]
    model = params.get("model") or (known.model if known else None)
    if model:
        parts.append(str(model).strip())
    if params.get("serial"):
        parts.append(f"serial {str(params['serial']).strip()}")
    return " ".join(parts)


def _nic_component(device: str, params: Mapping[str, Any], inventory: Inventory) -> str:
    if device:
        return f"NIC {device.split(':')[0]}"
    fastest = max(inventory.nics, key=lambda n: n.speed_bits_per_second or 0, default=None)
    return f"NIC {fastest.name}" if fastest is not None else "NIC"


def component_of(fault: Fault, verdict: Verdict, measurement: Measurement | None,
                 inventory: Inventory) -> str:
    """The part a verdict is about, as words an SRE can find it by."""
    params = measurement.params if measurement is not None else {}
    device = verdict.device
    if fault.component == "gpu":
        return _gpu_component(device, params, inventory)
    if fault.component == "hca-port":
        return _port_component(device, params, inventory)
    if fault.component == "drive":
        return _drive_component(device, params, inventory)
    if fault.component == "nic":
        return _nic_component(device, params, inventory)
    if fault.component == "filesystem":
        return f"filesystem {device}" if device else "filesystem"
    if fault.component in ("tool", "check"):
        return f"check {verdict.check}"
    host = inventory.host.hostname
    return f"node {host}" if host else "node"


def classify(verdict: Verdict, measurement: Measurement | None, inventory: Inventory,
             error: str = "", catalog: Catalog | None = None) -> Verdict:
    """``verdict`` with its fault fields, when its status is coded (else as is)."""
    if verdict.status not in CODED:
        return verdict
    catalog = catalog or load_catalog()
    if verdict.metric and verdict.value is None and verdict.status is Status.FAIL:
        code = NOT_MEASURED  # a required metric its check did not produce
    else:
        code = catalog.code_for(verdict.check, verdict.metric, error, _xids_of(measurement))
    fault = catalog.fault(code)
    return dataclasses.replace(verdict, fault_code=fault.code, remediation=fault.remediation,
                               component=component_of(fault, verdict, measurement, inventory))


def _measurement_index(measurements: Iterable[Measurement]
                       ) -> dict[tuple[str, str], Measurement]:
    index: dict[tuple[str, str], Measurement] = {}
    for m in measurements:
        index.setdefault((m.metric, m.device), m)
    return index


def assign_faults(verdicts: Sequence[Verdict], measurements: Sequence[Measurement],
                  inventory: Inventory, errors: Mapping[str, str] | None = None,
                  catalog: Catalog | None = None) -> list[Verdict]:
    """Every verdict, the coded ones with their fault fields. ``errors`` maps a check
    that did not measure to the error it ended in (runner.CheckOutcome.error)."""
    catalog = catalog or load_catalog()
    index = _measurement_index(measurements)
    return [classify(v, index.get((v.metric, v.device)), inventory,
                     (errors or {}).get(v.check, ""), catalog) for v in verdicts]
