"""The node's facts as records: the inventory a report carries.

bench_agent/inventory/collect.py reads them from /proc, /sys and NVML; they live
here, with the other records, because a Report holds one and every reader of a
report (report show, the collector, fleet) reads it without the collectors.

JSON in and out, versioned inside the report (``inventory.schema_version``):
    (absent)  the untyped dict of reports written before the inventory was typed
              (report schema 1 up to agent 0.1.0): read tolerantly, a missing fact
              is unknown (None, or an empty list), a key this version does not
              know is dropped (only "non_finite_facts" ever existed: its facts are
              already null);
    1         these records: written exactly (every field, null when unknown) and
              read strictly: a missing field or an unknown one is refused, as is a
              value of the wrong type (a float where a count belongs, a string
              where a flag does), so a figure nobody measured cannot slip in;
    2         adds ``hcas`` (each RDMA device's fw_ver, board_id, hca_type) and
              ``config`` (NodeConfig: the configuration facts that nodes of one type
              must share: driver, VBIOS, persistence, ECC, MIG, fabric, clocks,
              power limits, kernel tunables). A version-1 inventory is read as
              strictly as before, with ``hcas`` empty and ``config`` unknown.
A version newer than INVENTORY_SCHEMA_VERSION is refused with a ReportError that
says to upgrade, as report.schema_version is (core/model.py).

Unknown facts are None, never a guess (collect.py). No field is a float: the
kernel and NVML give these facts as integers, so a NaN or an infinity cannot be
one of them (JSON cannot carry either: RFC 8259, section 6).
"""

from __future__ import annotations

import functools
import inspect  # already imported by dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, Self

from bench_agent.core.errors import ReportError

INVENTORY_SCHEMA_VERSION = 2
# NodeConfig.gpu_note of an inventory read from version 1, which had no config.
CONFIG_ABSENT = "an inventory of version 1 (agent 0.1.x): no configuration facts"


class _Record:
    """Type checks at construction, and the JSON in and out of every record here."""

    __slots__ = ()

    def __post_init__(self) -> None:
        for key, match in _plan(type(self)).matchers:
            if not match(getattr(self, key)):
                name = type(self).__name__
                _check(_hints(type(self))[key], getattr(self, key), f"{name}.{key}")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _encode(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, data: Any, *, strict: bool = True, where: str = "") -> Self:
        """The record of a JSON object; ValueError naming the place of what is wrong.

        ``strict``: every field present and no other (what to_dict writes); else
        missing fields take their defaults and unknown keys are dropped.
        """
        return _from_dict(cls, data, strict, where or cls.__name__.lower())


def _from_dict(cls: type[_R], data: Any, strict: bool, where: str) -> _R:
    """The record of ``data``: by the class's compiled plan (_Plan) when the data is
    well formed, else by _read_slowly, which names the place of what is wrong."""
    try:
        record: _R = _plan(cls).read(data, strict)
        return record
    except _Mismatch:
        # The slow reader is the reference: it raises the ValueError that names the
        # place (or, were the two ever to disagree, its answer is the one returned).
        return _read_slowly(cls, data, strict, where)


def _read_slowly(cls: type[_R], data: Any, strict: bool, where: str) -> _R:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object, got {_shown(data)}")
    hints = _hints(cls)
    if strict and (unknown := sorted(set(data) - set(hints))):
        raise ValueError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}")
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name in data:
            values[f.name] = _decode(hints[f.name], data[f.name], f"{where}.{f.name}", strict)
        elif strict or (f.default is MISSING and f.default_factory is MISSING):
            raise ValueError(f"{where}: missing field {f.name!r}")
    return cls(**values)


_R = typing.TypeVar("_R", bound=_Record)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """The field types of a record class, resolved once (the annotations are text)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


# Compiled readers. The collector reads an inventory per report it ingests: walking
# the type hints (typing.get_origin/get_args, isinstance on typing objects) and
# formatting every field's place ("inventory.cpu.model") on each read cost about a
# tenth of an ingest (profiled, issue 17). A _Plan turns each field's type into a
# closure once per class; it formats no place, and raises _Mismatch at the first
# value that is wrong, after which _read_slowly (the reference: the rules written
# once, in _matches and _decode) reads the same data again to say where and why.
# tests/core/test_inventory_records.py holds the two to the same answers.
class _Mismatch(Exception):
    """A compiled reader met a value it does not accept; the slow reader names it."""


_Matcher = Callable[[Any], bool]
_Reader = Callable[[Any, bool], Any]  # (JSON value, strict) -> value; raises _Mismatch


def _is_record(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, _Record)


def _compile_matcher(kind: Any) -> _Matcher:
    """_matches(kind, .) as a closure."""
    if kind is type(None):
        return lambda value: value is None
    if kind is int:
        return lambda value: isinstance(value, int) and not isinstance(value, bool)
    if kind in (str, bool) or _is_record(kind):
        return lambda value: isinstance(value, kind)
    if typing.get_origin(kind) is tuple:
        item = _compile_matcher(typing.get_args(kind)[0])
        return lambda value: isinstance(value, tuple) and all(map(item, value))
    if isinstance(kind, types.UnionType):
        args = typing.get_args(kind)
        if len(args) == 2 and type(None) in args:  # X | None, most fields
            other = _compile_matcher(next(k for k in args if k is not type(None)))
            return lambda value: value is None or other(value)
        options = tuple(_compile_matcher(k) for k in args)
        return lambda value: any(match(value) for match in options)
    raise TypeError(f"no rule for the type {kind!r}")  # as _matches


def _leaf(kind: Any) -> bool:
    """Whether a value of ``kind`` is read as it is (no record or list in it)."""
    if isinstance(kind, types.UnionType):
        return all(_leaf(k) for k in typing.get_args(kind))
    return not _is_record(kind) and typing.get_origin(kind) is not tuple


def _compile_reader(kind: Any) -> _Reader:
    """_decode(kind, ., where, strict) as a closure, without the place."""
    if _leaf(kind):
        match = _compile_matcher(kind)

        def read_leaf(raw: Any, strict: bool) -> Any:
            if match(raw):
                return raw
            raise _Mismatch
        return read_leaf
    if isinstance(kind, types.UnionType):
        options = tuple((_compile_matcher(k), _compile_reader(k), _is_record(k))
                        for k in typing.get_args(kind))

        def read_union(raw: Any, strict: bool) -> Any:
            for match, read, record in options:
                if match(raw) or (record and isinstance(raw, dict)):
                    return read(raw, strict)
            raise _Mismatch
        return read_union
    if _is_record(kind):
        if inspect.getattr_static(kind, "from_dict") is not vars(_Record)["from_dict"]:
            # A record with its own reader (Inventory: versions) is read by it.
            def read_own(raw: Any, strict: bool) -> Any:
                try:
                    return kind.from_dict(raw, strict=strict)
                except ValueError:
                    raise _Mismatch from None
            return read_own
        return lambda raw, strict: _plan(kind).read(raw, strict)
    item = _compile_reader(typing.get_args(kind)[0])  # tuple[X, ...]

    def read_list(raw: Any, strict: bool) -> Any:
        if not isinstance(raw, list):
            raise _Mismatch
        return tuple([item(value, strict) for value in raw])
    return read_list


class _Plan:
    """How to read and check one record class, compiled from its type hints once."""

    def __init__(self, cls: type[_Record]) -> None:
        hints = _hints(cls)
        self.cls = cls
        self.names = frozenset(hints)
        # (name, reader, default: a function that makes it, None when required)
        self.fields = tuple((f.name, _compile_reader(hints[f.name]), _default_of(f))
                            for f in fields(cls))  # type: ignore[arg-type]
        self.matchers = tuple((name, _compile_matcher(kind)) for name, kind in hints.items())

    def read(self, data: Any, strict: bool) -> Any:
        if not isinstance(data, dict) or (strict and not data.keys() <= self.names):
            raise _Mismatch
        # Built as the dataclass's __init__ builds a frozen instance (object.__setattr__
        # on each slot), without its __post_init__: every value was just checked by
        # the same rules (the matchers), and checking each twice was a third of a read.
        record = object.__new__(self.cls)
        for name, read, default in self.fields:
            if name in data:
                object.__setattr__(record, name, read(data[name], strict))
            elif strict or default is None:
                raise _Mismatch
            else:
                object.__setattr__(record, name, default())
        return record


def _default_of(f: Field[Any]) -> Callable[[], Any] | None:
    if f.default_factory is not MISSING:
        return f.default_factory
    if f.default is not MISSING:
        value = f.default
        return lambda: value
    return None


_PLANS: dict[type, _Plan] = {}


def _plan(cls: type[_Record]) -> _Plan:
    plan = _PLANS.get(cls)
    if plan is None:
        plan = _PLANS[cls] = _Plan(cls)
    return plan


def _shown(value: Any) -> str:
    return f"{type(value).__name__} {value!r:.60}"


def _matches(kind: Any, value: Any) -> bool:
    """Whether ``value`` is of ``kind`` (int is not bool, bool is not int)."""
    if kind is type(None):
        return value is None
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind in (str, bool):
        return isinstance(value, kind)
    if isinstance(kind, type) and issubclass(kind, _Record):
        return isinstance(value, kind)
    if typing.get_origin(kind) is tuple:
        (item, _) = typing.get_args(kind)
        return isinstance(value, tuple) and all(_matches(item, v) for v in value)
    if isinstance(kind, types.UnionType):
        return any(_matches(k, value) for k in typing.get_args(kind))
    raise TypeError(f"no rule for the type {kind!r}")  # a field of a type not handled here


def _expected(kind: Any) -> str:
    if isinstance(kind, types.UnionType):
        return " or ".join(_expected(k) for k in typing.get_args(kind))
    if typing.get_origin(kind) is tuple:
        return f"a list of {_expected(typing.get_args(kind)[0])}"
    names = {type(None): "null", int: "an integer", str: "a string", bool: "true/false"}
    return names.get(kind, f"an object ({getattr(kind, '__name__', kind)})")


def _check(kind: Any, value: Any, where: str) -> None:
    if not _matches(kind, value):
        raise ValueError(f"{where}: expected {_expected(kind)}, got {_shown(value)}")


def _decode(kind: Any, raw: Any, where: str, strict: bool) -> Any:
    """JSON ``raw`` as a value of ``kind``: objects become records, lists tuples."""
    if isinstance(kind, types.UnionType):
        for option in typing.get_args(kind):
            if _matches(option, raw) or (isinstance(raw, dict) and isinstance(option, type)
                                         and issubclass(option, _Record)):
                return _decode(option, raw, where, strict)
    elif isinstance(kind, type) and issubclass(kind, _Record):
        return kind.from_dict(raw, strict=strict, where=where)
    elif typing.get_origin(kind) is tuple:
        if not isinstance(raw, list):
            raise ValueError(f"{where}: expected {_expected(kind)}, got {_shown(raw)}")
        item = typing.get_args(kind)[0]
        return tuple(_decode(item, v, f"{where}[{i}]", strict) for i, v in enumerate(raw))
    _check(kind, raw, where)
    return raw


def _encode(value: Any) -> Any:
    if isinstance(value, _Record):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class Host(_Record):
    hostname: str | None = None


@dataclass(frozen=True, slots=True)
class OsInfo(_Record):
    """os-release(5) PRETTY_NAME, the kernel release, uname -m."""

    pretty_name: str | None = None
    kernel: str | None = None
    machine: str | None = None


@dataclass(frozen=True, slots=True)
class Cpu(_Record):
    model: str | None = None
    vendor: str | None = None
    sockets: int | None = None
    physical_cores: int | None = None
    logical_cpus: int | None = None
    # The flags AI kernels use (AVX-512, AMX, VNNI, FMA, AVX2), sorted.
    flags_ai: tuple[str, ...] = ()
    # The most hardware threads on one core (hybrid CPUs mix 2 and 1).
    threads_per_core: int | None = None
    l3_cache_bytes: int | None = None
    # Set when /proc/cpuinfo and sysfs "online" disagree on the count (collect.py).
    logical_cpus_note: str | None = None


@dataclass(frozen=True, slots=True)
class NumaNode(_Record):
    node: int
    cpus: str | None = None  # the sysfs cpulist, "0-31,64-95"
    memory_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class Memory(_Record):
    total_bytes: int | None = None
    numa_nodes: tuple[NumaNode, ...] = ()


@dataclass(frozen=True, slots=True)
class Disk(_Record):
    name: str
    model: str | None = None
    size_bytes: int | None = None
    rotational: bool | None = None
    nvme: bool = False
    removable: bool | None = None


@dataclass(frozen=True, slots=True)
class Nic(_Record):
    name: str
    speed_bits_per_second: int | None = None
    driver: str | None = None
    operstate: str | None = None
    mac: str | None = None


@dataclass(frozen=True, slots=True)
class IbPort(_Record):
    device: str
    port: int | str  # the sysfs directory name: a number, kept as text when it is not
    state: str | None = None  # "4: ACTIVE"
    rate: str | None = None  # "400 Gb/sec (4X NDR)"
    rate_bits_per_second: int | None = None
    link_layer: str | None = None

    @property
    def active(self) -> bool:
        # ib_port_state 4 is IB_PORT_ACTIVE; sysfs prints "4: ACTIVE"
        # (drivers/infiniband/core/sysfs.c state_show).
        return (self.state or "").endswith("ACTIVE")


@dataclass(frozen=True, slots=True)
class Hca(_Record):
    """An RDMA device (/sys/class/infiniband/<name>): what a node's HCAs must agree on."""

    name: str
    fw_ver: str | None = None  # "28.41.1000"
    board_id: str | None = None  # "MT_0000000838" (the adapter's PSID)
    hca_type: str | None = None  # "MT4129" (ConnectX-7)


@dataclass(frozen=True, slots=True)
class Gpu(_Record):
    """What NVML says a GPU is (tools/nvml.list_gpus)."""

    index: int
    name: str
    uuid: str
    memory_total_bytes: int | None = None
    driver_version: str | None = None


@dataclass(frozen=True, slots=True)
class GpuConfig(_Record):
    """How a GPU is set up, as NVML reports it (tools/nvml_config.py): what a node
    type's GPUs must share. None: NVML could not say (NOT_SUPPORTED, an old driver)."""

    index: int
    uuid: str
    name: str | None = None
    pci_bus_id: str | None = None
    serial: str | None = None
    vbios_version: str | None = None
    persistence_mode: bool | None = None
    ecc_enabled: bool | None = None
    ecc_pending_enabled: bool | None = None  # what the next reset applies
    mig_enabled: bool | None = None  # False also where the GPU has no MIG (NOT_SUPPORTED)
    mig_pending_enabled: bool | None = None
    # NVML's GPU fabric state (Hopper and later on NVSwitch systems): "completed",
    # "not started", "in progress", "failed (...)", or "not supported".
    fabric_state: str | None = None
    power_limit_mw: int | None = None
    power_limit_default_mw: int | None = None
    app_clock_graphics_mhz: int | None = None
    app_clock_graphics_default_mhz: int | None = None
    app_clock_memory_mhz: int | None = None
    app_clock_memory_default_mhz: int | None = None


@dataclass(frozen=True, slots=True)
class NodeConfig(_Record):
    """The node's configuration facts (inventory/config_facts.py reads them)."""

    nvidia_driver_version: str | None = None
    cuda_driver_version: str | None = None  # "12.4": the newest CUDA the driver runs
    cpu_governors: tuple[str, ...] = ()  # the distinct cpufreq governors, sorted
    transparent_hugepage: str | None = None  # the [selected] word of THP "enabled"
    thp_defrag: str | None = None
    iommu_groups: int | None = None
    iommu_group_types: tuple[str, ...] = ()  # distinct "type" of the groups: identity, DMA-FQ
    iommu_cmdline: tuple[str, ...] = ()  # the kernel command line's iommu options
    clocksource: str | None = None
    numa_balancing: int | None = None
    nvidia_peermem_loaded: bool | None = None
    nvswitch_count: int | None = None
    fabric_manager_running: bool | None = None
    rdma_core_version: str | None = None
    ofed_version: str | None = None
    gpus: tuple[GpuConfig, ...] = ()
    # Why the GPUs' configuration is not here (no NVML, NVML cannot start).
    gpu_note: str | None = None


@dataclass(frozen=True, slots=True)
class Inventory(_Record):
    """The node's facts. ``error`` says why they could not be read (the inventory
    child failed or was interrupted): then every fact is unknown."""

    host: Host = field(default_factory=Host)
    os: OsInfo = field(default_factory=OsInfo)
    cpu: Cpu = field(default_factory=Cpu)
    memory: Memory = field(default_factory=Memory)
    disks: tuple[Disk, ...] = ()
    nics: tuple[Nic, ...] = ()
    infiniband: tuple[IbPort, ...] = ()
    gpus: tuple[Gpu, ...] = ()
    # Why there is no GPU in the list (no NVML, NVML cannot start).
    gpu_probe_note: str | None = None
    error: str | None = None
    hcas: tuple[Hca, ...] = ()
    config: NodeConfig = field(default_factory=NodeConfig)

    @property
    def nvme_disks(self) -> tuple[Disk, ...]:
        return tuple(d for d in self.disks if d.nvme)

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": INVENTORY_SCHEMA_VERSION, **_Record.to_dict(self)}

    @classmethod
    def from_dict(cls, data: Any, *, strict: bool = True, where: str = "inventory") -> Self:
        """An inventory of any version this agent knows (module docstring).

        ``strict`` is decided by the version: a versioned inventory is read
        strictly, an unversioned (older) one tolerantly; the argument is only
        the record protocol's.
        """
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected an object, got {_shown(data)}")
        if "schema_version" not in data:
            legacy = {k: v for k, v in data.items() if k != "non_finite_facts"}
            return _from_dict(cls, legacy, False, where)
        version = data["schema_version"]
        if not _matches(int, version) or version < 1:
            raise ValueError(f"{where}.schema_version: expected an integer >= 1, got "
                             f"{_shown(version)}")
        if version > INVENTORY_SCHEMA_VERSION:
            raise ReportError(f"inventory schema version {version} is newer than this agent "
                              f"reads ({INVENTORY_SCHEMA_VERSION}); upgrade bench-agent")
        rest = {k: v for k, v in data.items() if k != "schema_version"}
        for added, defaults in _added_in_version().items():
            if version < added:
                rest = {**defaults, **rest}
        return _from_dict(cls, rest, True, where)


@functools.cache
def _added_in_version() -> dict[int, dict[str, Any]]:
    """The fields each version added, with the value an older inventory reads as:
    no HCAs listed, the configuration unknown (not refused). Made once (it is read
    with every inventory, and only merged into a new dict, never changed)."""
    return {2: {"hcas": [], "config": NodeConfig(gpu_note=CONFIG_ABSENT).to_dict()}}
