"""The inventory's records (core/inventory.py): exact JSON out, strict JSON in for the
current version, tolerant for the untyped inventories of older reports.

tests/data/reports/ holds reports written by the agent before the inventory was
typed (their README says how); every reader must still read them.
"""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from bench_agent.config.loader import schema_dir
from bench_agent.core.errors import ReportError
from bench_agent.core.inventory import (
    CONFIG_ABSENT,
    INVENTORY_SCHEMA_VERSION,
    Cpu,
    Disk,
    Gpu,
    GpuConfig,
    Hca,
    Host,
    IbPort,
    Inventory,
    Memory,
    Nic,
    NodeConfig,
    NumaNode,
    OsInfo,
)
from bench_agent.core.model import Report
from bench_agent.inventory.collect import collect_inventory
from tests.paths import DATA

OLD_REPORTS = DATA / "reports"
OLD_SIGNED = OLD_REPORTS / "v1-untyped-inventory.signed.json"
OLD_VM = OLD_REPORTS / "v1-untyped-inventory-vm.json"
DUAL = DATA / "sysroots" / "dual-socket-nvme-ib"


def old_predicate(path: Path) -> dict[str, Any]:
    raw = json.loads(path.read_bytes())
    if "payloadType" in raw:
        raw = json.loads(base64.b64decode(raw["payload"]))["predicate"]
    assert isinstance(raw, dict)
    return raw


def full_inventory() -> Inventory:
    return Inventory(
        host=Host("n1"), os=OsInfo("Ubuntu 22.04.4 LTS", "5.15.0", "x86_64"),
        cpu=Cpu(model="Xeon", vendor="GenuineIntel", sockets=2, physical_cores=64,
                logical_cpus=128, flags_ai=("amx_tile", "avx512f"), threads_per_core=2,
                l3_cache_bytes=110100480),
        memory=Memory(1 << 40, (NumaNode(0, "0-63", 1 << 39), NumaNode(1, "64-127", None))),
        disks=(Disk("nvme0n1", "SAMSUNG", 3840755982336, False, True, False),),
        nics=(Nic("eth0", 100_000_000_000, "mlx5_core", "up", "b8:3f:d2:4a:10:20"),),
        infiniband=(IbPort("mlx5_0", 1, "4: ACTIVE", "400 Gb/sec (4X NDR)", 400_000_000_000,
                           "InfiniBand"),),
        gpus=(Gpu(0, "NVIDIA H100 80GB HBM3", "GPU-0", 85520809984, "550.54.15"),),
        gpu_probe_note=None)


# --- JSON out and in -------------------------------------------------------------------


def test_written_exactly_with_its_version_and_every_field() -> None:
    data = full_inventory().to_dict()
    assert list(data) == ["schema_version", "host", "os", "cpu", "memory", "disks", "nics",
                          "infiniband", "gpus", "gpu_probe_note", "error", "hcas", "config"]
    assert data["schema_version"] == INVENTORY_SCHEMA_VERSION == 2
    assert data["cpu"]["flags_ai"] == ["amx_tile", "avx512f"]
    assert data["cpu"]["logical_cpus_note"] is None  # unknown is written, as null
    assert data["memory"]["numa_nodes"][1] == {"node": 1, "cpus": "64-127",
                                              "memory_bytes": None}
    assert data["infiniband"][0]["port"] == 1
    assert data["error"] is None


def test_a_version_1_inventory_reads_with_its_configuration_unknown() -> None:
    # Version 1 (agent 0.1.x) had no configuration facts: they are unknown, and the
    # rest is read as strictly as version 1 always was.
    v1 = {k: v for k, v in full_inventory().to_dict().items() if k != "config"}
    v1["schema_version"] = 1
    read = Inventory.from_dict(v1)
    assert read.config == NodeConfig(gpu_note=CONFIG_ABSENT)
    assert read.config.nvidia_driver_version is None
    assert read.cpu == full_inventory().cpu
    with pytest.raises(ValueError, match=r"^inventory: unknown field\(s\) 'bogomips'$"):
        Inventory.from_dict({**v1, "bogomips": 1})
    # Version 2 writes the facts, so a version-2 inventory without them is refused.
    with pytest.raises(ValueError, match=r"^inventory: missing field 'config'$"):
        Inventory.from_dict({**v1, "schema_version": 2})


def test_round_trip_through_json_is_the_same_record() -> None:
    inventory = full_inventory()
    assert Inventory.from_dict(json.loads(json.dumps(inventory.to_dict()))) == inventory
    failed = Inventory(error="timed out after 60 s and was stopped")
    assert Inventory.from_dict(json.loads(json.dumps(failed.to_dict()))) == failed


def test_the_current_version_is_read_strictly() -> None:
    good = full_inventory().to_dict()
    cases: list[tuple[dict[str, Any], str]] = [
        ({**good, "bogomips": 4000}, r"^inventory: unknown field\(s\) 'bogomips'$"),
        ({**good, "cpu": {**good["cpu"], "cores": 64}},
         r"^inventory\.cpu: unknown field\(s\) 'cores'$"),
        ({k: v for k, v in good.items() if k != "nics"}, r"^inventory: missing field 'nics'$"),
        ({**good, "cpu": {**good["cpu"], "logical_cpus": 128.0}},
         r"^inventory\.cpu\.logical_cpus: expected an integer or null, got float 128\.0$"),
        ({**good, "cpu": {**good["cpu"], "logical_cpus": True}},
         r"^inventory\.cpu\.logical_cpus: expected an integer or null, got bool True$"),
        ({**good, "disks": [{**good["disks"][0], "nvme": 1}]},
         r"^inventory\.disks\[0\]\.nvme: expected true/false, got int 1$"),
        ({**good, "gpus": {"0": good["gpus"][0]}},
         r"^inventory\.gpus: expected a list of an object \(Gpu\), got dict"),
        ({**good, "cpu": {**good["cpu"], "flags_ai": ["avx2", 3]}},
         r"^inventory\.cpu\.flags_ai\[1\]: expected a string, got int 3$"),
        ({**good, "schema_version": "1"},
         r"^inventory\.schema_version: expected an integer >= 1, got str '1'$"),
    ]
    for data, message in cases:
        with pytest.raises(ValueError, match=message):
            Inventory.from_dict(data)


def test_a_newer_version_is_refused_with_the_way_out() -> None:
    with pytest.raises(ReportError, match=r"^inventory schema version 3 is newer than this "
                                          r"agent reads \(2\); upgrade bench-agent$"):
        Inventory.from_dict({**full_inventory().to_dict(), "schema_version": 3})



def test_version_1_is_read_strictly_with_the_hcas_it_did_not_have_unknown() -> None:
    old = {k: v for k, v in full_inventory().to_dict().items() if k not in ("hcas", "config")}
    assert Inventory.from_dict({**old, "schema_version": 1}) == replace(
        full_inventory(), hcas=(), config=NodeConfig(gpu_note=CONFIG_ABSENT))
    with pytest.raises(ValueError, match=r"^inventory: missing field 'hcas'$"):
        Inventory.from_dict({**old, "schema_version": 2})
    with pytest.raises(ValueError, match=r"^inventory: unknown field\(s\) 'bogomips'$"):
        Inventory.from_dict({**old, "schema_version": 1, "bogomips": 1})


def test_a_record_refuses_a_value_of_the_wrong_type_when_built() -> None:
    with pytest.raises(ValueError, match=r"^Gpu\.memory_total_bytes: expected an integer or "
                                         r"null, got float nan$"):
        Gpu(0, "H100", "GPU-0", float("nan"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^Cpu\.flags_ai: expected a list of a string"):
        Cpu(flags_ai=["avx2"])  # type: ignore[arg-type]


def test_an_untyped_inventory_is_read_tolerantly() -> None:
    """What agents wrote before the inventory was typed: no schema_version, a partial
    inventory in tests and hand-made reports, "non_finite_facts" from the NaN
    guard that the typed records made needless, {"error": ...} when it failed."""
    inventory = Inventory.from_dict({"host": {"hostname": "n1"}, "cpu": {"logical_cpus": 64},
                                     "gpus": [{"index": 0, "name": "T4", "uuid": "GPU-1",
                                               "power_w": None}],
                                     "non_finite_facts": ["gpus[0].power_w"]})
    assert inventory.host == Host("n1")
    assert inventory.cpu == Cpu(logical_cpus=64)
    assert inventory.gpus == (Gpu(0, "T4", "GPU-1"),)
    assert inventory.disks == () and inventory.error is None
    assert Inventory.from_dict({"error": "interrupted while collecting"}) == Inventory(
        error="interrupted while collecting")
    assert Inventory.from_dict({}) == Inventory()
    # Tolerant of what is missing or unknown, never of a wrong type.
    with pytest.raises(ValueError, match=r"^inventory\.cpu\.logical_cpus: expected an "
                                         r"integer or null, got str 'many'$"):
        Inventory.from_dict({"cpu": {"logical_cpus": "many"}})
    with pytest.raises(ValueError, match=r"^inventory\.disks\[0\]: missing field 'name'$"):
        Inventory.from_dict({"disks": [{"nvme": True}]})


# --- reports written before this version -------------------------------------------------


@pytest.mark.parametrize("path", [OLD_SIGNED, OLD_VM], ids=["signed", "vm"])
def test_a_report_written_before_the_typed_inventory_loads(path: Path) -> None:
    data = old_predicate(path)
    assert data["schema_version"] == 1 and "schema_version" not in data["inventory"]
    report = Report.from_dict(data)
    # Every fact the old agent wrote is in the typed record, unchanged.
    written = report.inventory.to_dict()
    for section in ("host", "os", "memory"):
        assert written[section] == data["inventory"][section]
    for section in ("disks", "nics", "infiniband", "gpus"):
        assert written[section] == data["inventory"][section]
    assert written["cpu"] == {**data["inventory"]["cpu"], "logical_cpus_note": None}
    assert written["gpu_probe_note"] == data["inventory"]["gpu_probe_note"]


def test_the_old_signed_report_is_the_dual_socket_node() -> None:
    inventory = Report.from_dict(old_predicate(OLD_SIGNED)).inventory
    assert inventory.host == Host("dual-socket-nvme-ib")
    assert [d.name for d in inventory.nvme_disks] == [f"nvme{n}n1" for n in range(4)]
    assert [p.device for p in inventory.infiniband if p.active] == ["mlx5_0", "mlx5_1"]
    # The same facts as today's collector reads from the same tree, NVML absent alike.
    today = collect_inventory(DUAL, gpu_probe=list)
    assert (inventory.cpu, inventory.memory, inventory.disks, inventory.nics,
            inventory.infiniband) == (today.cpu, today.memory, today.disks, today.nics,
                                      today.infiniband)


def _schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((schema_dir() / "report-v1.schema.json").read_text())
    return loaded


@pytest.mark.parametrize("path", [OLD_SIGNED, OLD_VM], ids=["signed", "vm"])
def test_the_schema_validates_old_and_new_reports(path: Path) -> None:
    data = old_predicate(path)
    jsonschema.validate(data, _schema())
    rewritten = Report.from_dict(data).to_dict()
    assert rewritten["inventory"]["schema_version"] == INVENTORY_SCHEMA_VERSION == 2
    jsonschema.validate(rewritten, _schema())
    # An inventory of version 2 without its configuration does not validate.
    without = {k: v for k, v in rewritten["inventory"].items() if k != "config"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**rewritten, "inventory": without}, _schema())


def test_the_schema_refuses_a_typed_inventory_of_the_wrong_shape() -> None:
    data = Report.from_dict(old_predicate(OLD_VM)).to_dict()
    for bad in ({**data["inventory"], "cpu": {**data["inventory"]["cpu"], "cores": 2}},
                {**data["inventory"], "disks": [{"name": "sda", "size_bytes": "1 TB"}]},
                {k: v for k, v in data["inventory"].items() if k != "gpus"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**data, "inventory": bad}, _schema())


def test_the_schema_names_every_field_of_the_records() -> None:
    """The schema and the records cannot drift apart: the same fields, all required."""
    from dataclasses import fields

    inventory = _schema()["$defs"]["inventory"]
    config = inventory["properties"]["config"]
    sections: dict[str, tuple[type, dict[str, Any]]] = {
        "inventory": (Inventory, inventory),
        "config": (NodeConfig, config),
        "config.gpus": (GpuConfig, config["properties"]["gpus"]["items"]),
        "host": (Host, inventory["properties"]["host"]),
        "os": (OsInfo, inventory["properties"]["os"]),
        "cpu": (Cpu, inventory["properties"]["cpu"]),
        "memory": (Memory, inventory["properties"]["memory"]),
        "numa": (NumaNode, inventory["properties"]["memory"]["properties"]["numa_nodes"]
                 ["items"]),
    }
    for name, cls in (("disks", Disk), ("nics", Nic), ("infiniband", IbPort), ("gpus", Gpu),
                      ("hcas", Hca)):
        sections[name] = (cls, inventory["properties"][name]["items"])
    for name, (cls, schema) in sections.items():
        names = [f.name for f in fields(cls)]
        if cls is Inventory:
            names = ["schema_version", *names]
        assert list(schema["properties"]) == names, name
        assert schema["required"] == names and schema["additionalProperties"] is False, name
