"""The inventory's records (core/inventory.py): exact JSON out, strict JSON in for the
current version, tolerant for the untyped inventories of older reports.

tests/data/reports/ holds reports written by the agent before the inventory was
typed (their README says how); every reader must still read them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import FrozenInstanceError, replace
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from bench_agent.config.loader import schema_dir
from bench_agent.core import inventory
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


# --- the compiled readers (inventory._Plan) against the reference reader ----------------


def rich_inventory() -> Inventory:
    """full_inventory with every kind of field filled: HCAs, configuration, GPU config."""
    return replace(full_inventory(), hcas=(Hca("mlx5_0", "28.41.1000", "MT_0000000838",
                                                "MT4129"),),
                   config=NodeConfig(nvidia_driver_version="550.54.15",
                                     cpu_governors=("performance",), iommu_groups=12,
                                     nvidia_peermem_loaded=True,
                                     gpus=(GpuConfig(0, "GPU-0", power_limit_mw=700_000,
                                                     ecc_enabled=True),)))


# A value of each JSON type, for every place that expects another.
OTHER_VALUES: list[Any] = [None, True, 0, 1.5, "x", [], {}, ["x"], [{}]]


def _variants(value: Any) -> Iterator[Any]:
    """``value`` changed in one place each time: every value replaced by each of
    OTHER_VALUES, every object given an unknown key and deprived of each of its own."""
    yield from OTHER_VALUES
    if isinstance(value, dict):
        yield {**value, "bogus": 1}
        for key in value:
            yield {k: v for k, v in value.items() if k != key}
            for changed in _variants(value[key]):
                yield {**value, key: changed}
    elif isinstance(value, list):
        for i, item in enumerate(value):
            for changed in _variants(item):
                yield [*value[:i], changed, *value[i + 1:]]


def _outcome(data: Any) -> tuple[str, Any]:
    try:
        return "read", Inventory.from_dict(data)
    except (ValueError, ReportError) as exc:
        return type(exc).__name__, str(exc)


def _as_read_slowly(monkeypatch: pytest.MonkeyPatch, data: Any) -> tuple[str, Any]:
    """What the reference reader alone answers (every compiled read declines)."""
    def decline(self: object, data: Any, strict: bool) -> Any:
        raise inventory._Mismatch
    with monkeypatch.context() as patched:
        patched.setattr(inventory._Plan, "read", decline)
        return _outcome(data)


def _versions() -> dict[str, dict[str, Any]]:
    current = rich_inventory().to_dict()
    v1 = {k: v for k, v in current.items() if k not in ("hcas", "config")}
    legacy = {k: v for k, v in v1.items() if k != "schema_version"}
    return {"v2": current, "v1": {**v1, "schema_version": 1}, "untyped": legacy}


@pytest.mark.parametrize("version", ["v2", "v1", "untyped"])
def test_the_compiled_reader_answers_as_the_reference_reader(
        version: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every one-place change of a good inventory (wrong types, unknown and missing
    # keys, at every depth): the same record, or the same refusal word for word.
    good = _versions()[version]
    variants = list(_variants(good))
    assert len(variants) > 600
    refused = 0
    for data in variants:
        fast, slow = _outcome(data), _as_read_slowly(monkeypatch, data)
        assert fast == slow, data
        refused += fast[0] != "read"
    # Both outcomes are exercised: strict versions refuse most changes, and the
    # untyped one reads many of them (a missing or an unknown fact).
    assert 0 < refused < len(variants)


@pytest.mark.parametrize("version", ["v2", "v1", "untyped"])
def test_a_good_inventory_is_read_by_the_compiled_reader_alone(
        version: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def not_needed(*args: Any) -> Any:
        raise AssertionError("the reference reader was needed for a good inventory")
    monkeypatch.setattr(inventory, "_read_slowly", not_needed)
    read = Inventory.from_dict(json.loads(json.dumps(_versions()[version])))
    expected = rich_inventory()
    if version != "v2":  # v1 had neither; an untyped inventory's are just unknown
        expected = replace(expected, hcas=(), config=NodeConfig(
            gpu_note=CONFIG_ABSENT if version == "v1" else None))
    assert read == expected and hash(read) == hash(expected)
    assert [g.power_limit_mw for g in read.config.gpus] == ([700_000] if version == "v2"
                                                             else [])
    # Built without its __post_init__, it is still a frozen record.
    with pytest.raises(FrozenInstanceError):
        read.cpu.model = "other"  # type: ignore[misc]


def test_unknown_keys_are_still_refused_where_they_are(monkeypatch: pytest.MonkeyPatch) -> None:
    good = rich_inventory().to_dict()
    nested = {**good, "config": {**good["config"],
                                 "gpus": [{**good["config"]["gpus"][0], "clock": 1}]}}
    with pytest.raises(ValueError, match=r"^inventory\.config\.gpus\[0\]: unknown field\(s\) "
                                         r"'clock'$"):
        Inventory.from_dict(nested)
    with pytest.raises(ValueError, match=r"^inventory\.hcas\[0\]: unknown field\(s\) 'psid'$"):
        Inventory.from_dict({**good, "hcas": [{**good["hcas"][0], "psid": "MT_1"}]})
    v1 = _versions()["v1"]
    with pytest.raises(ValueError, match=r"^inventory\.cpu: unknown field\(s\) 'bogomips'$"):
        Inventory.from_dict({**v1, "cpu": {**v1["cpu"], "bogomips": 4000}})
    # The untyped inventory drops them, as before.
    untyped = _versions()["untyped"]
    assert Inventory.from_dict({**untyped, "cpu": {**untyped["cpu"], "bogomips": 1}}).cpu \
        == rich_inventory().cpu
