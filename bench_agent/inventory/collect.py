"""Node facts: CPU, RAM, NUMA, disks, NICs, InfiniBand, GPUs, OS.

Everything is read from /proc and /sys under one injectable ``root`` (psutil's
idea), so tests feed captured trees from tests/data/sysroots/. Hardware files
are hostile: a file may be missing (a virtual device, an older kernel, a
container), unreadable (EACCES) or fail on read although it exists (sysfs
``speed`` of a NIC whose interface is down returns EINVAL, net/core/net-sysfs.c
``speed_show``). So every read is defensive: a file that cannot be read gives
None or an empty list, never an exception. A fact that is unknown is None,
never a guess.

``collect_inventory`` returns the typed records of core/inventory.py (the
report carries them; ``Inventory.to_dict`` is their JSON). ``inventory_measurements``
turns the facts the guide sizes a node by into Measurements (metric names in
metrics.py), judged like any other.
"""

from __future__ import annotations

import os
import platform
import re
import shlex
import socket
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from bench_agent.core.errors import NotApplicable, ToolMissing
from bench_agent.core.inventory import (
    Cpu,
    Disk,
    Gpu,
    Host,
    IbPort,
    Inventory,
    Memory,
    Nic,
    NumaNode,
    OsInfo,
)
from bench_agent.core.model import Measurement
from bench_agent.core.sysfs import list_dir as _list_dir
from bench_agent.core.sysfs import parse_cache_size as _parse_cache_size
from bench_agent.core.sysfs import read_int as _read_int
from bench_agent.core.sysfs import read_line as _read_line
from bench_agent.core.sysfs import read_text as _read_text
from bench_agent.core.units import Unit
from bench_agent.inventory.config_facts import GpuConfigProbe, collect_config
from bench_agent.inventory.devices import is_nvme_namespace, link_speed_bps, rdma_devices

# parse_ib_rate is re-exported: the port health check and older callers read it here.
from bench_agent.inventory.infiniband import hcas, parse_ib_rate

CHECK_NAME = "inventory"

# /sys/block entries that are not disks anyone sizes a node by: loop devices
# (snaps, images), RAM disks, compressed swap in RAM, device-mapper volumes
# (they sit on top of real disks, which are listed themselves).
_SKIPPED_BLOCK_PREFIXES = ("loop", "ram", "zram", "dm-")

# /sys/block/<disk>/size counts 512-byte sectors whatever the device's logical
# block size: block/genhd.c prints bdev_nr_sectors(), and a "sector" in the
# block layer is always 1 << SECTOR_SHIFT = 512 bytes (include/linux/blk_types.h).
# A 4Kn NVMe namespace still reports its size in 512-byte units here.
_SYSFS_SECTOR_BYTES = 512

# /proc/meminfo and the per-node meminfo print "kB" but mean KiB: the kernel
# shifts page counts by (PAGE_SHIFT - 10) (fs/proc/meminfo.c show_val_kb;
# drivers/base/node.c uses K(x) = x << (PAGE_SHIFT - 10)). proc(5) documents
# the "name: value kB" format.
_MEMINFO_KB_BYTES = 1024

# CPU flags that matter for AI work on the host: AVX-512 (all its subsets), AMX
# (Intel's matrix tiles), and the VNNI/FMA/AVX2 baseline of every BLAS kernel.
_AI_FLAG_PREFIXES = ("avx512", "amx")
_AI_FLAGS = {"avx2", "fma", "avx_vnni"}

_NODE_MEMTOTAL_RE = re.compile(r"^Node\s+\d+\s+MemTotal:\s+(\d+)\s*kB", re.MULTILINE)
_NUMBERED_RE = re.compile(r"^(?:cpu|node)(\d+)$")

GpuProbe = Callable[[], Sequence[Gpu]]


# --- defensive readers: core/sysfs.py ----------------------------------------------


def _numbered(names: Iterable[str]) -> list[tuple[int, str]]:
    """("cpu12" or "node3") entries with their number, in numeric order."""
    matches = [(_NUMBERED_RE.match(name), name) for name in names]
    return sorted((int(m.group(1)), name) for m, name in matches if m)


def parse_cpulist(text: str | None) -> list[int] | None:
    """CPU numbers of a sysfs cpulist ("0-31,64-95"); None when it cannot be read.

    Format: Documentation/admin-guide/cputopology.rst (the "online" file) and
    lib/bitmap-str.c bitmap_parselist (ranges joined by commas).
    """
    if text is None:
        return None
    cpus: list[int] = []
    try:
        for part in filter(None, text.strip().split(",")):
            first, _, last = part.partition("-")
            start = int(first)
            end = int(last) if last else start
            cpus.extend(range(start, end + 1))
    except ValueError:
        return None
    return cpus


# --- host and OS ---------------------------------------------------------------------


def _is_live(root: Path) -> bool:
    return root.resolve() == Path("/")


def _host(root: Path) -> Host:
    hostname = _read_line(root / "proc/sys/kernel/hostname")
    if not hostname and _is_live(root):
        # /proc may be absent in odd sandboxes; the live machine still has a name.
        hostname = socket.gethostname()
    return Host(hostname=hostname or None)


def _os_release_field(root: Path, key: str) -> str | None:
    """One field of os-release(5): /etc/os-release, else /usr/lib/os-release."""
    text = _read_text(root / "etc/os-release") or _read_text(root / "usr/lib/os-release")
    for line in (text or "").splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() == key:
            # Values use shell quoting (os-release(5)); shlex undoes it.
            try:
                return " ".join(shlex.split(value))
            except ValueError:
                return value.strip().strip("\"'")
    return None


def _os(root: Path) -> OsInfo:
    if _is_live(root):
        machine = platform.machine()
    else:
        # /proc/sys/kernel/arch (newer kernels) is uname -m; a capture may lack it.
        machine = _read_line(root / "proc/sys/kernel/arch") or ""
    return OsInfo(
        pretty_name=_os_release_field(root, "PRETTY_NAME"),
        kernel=_read_line(root / "proc/sys/kernel/osrelease"),
        # platform.machine() is "" when uname cannot tell: unknown, not a name.
        machine=machine or None,
    )


# --- CPU ---------------------------------------------------------------------------


def parse_cpuinfo(text: str) -> list[dict[str, str]]:
    """The processor blocks of /proc/cpuinfo, as "key: value" dicts.

    Blocks are separated by blank lines and keys padded with tabs (proc(5)).
    Blocks without a "processor" key (the "Hardware"/"Revision" trailer of
    older ARM kernels) are dropped.
    """
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in [*text.splitlines(), ""]:
        if not line.strip():
            if "processor" in current:
                blocks.append(current)
            current = {}
            continue
        key, sep, value = line.partition(":")
        if sep:
            current[key.strip()] = value.strip()
    return blocks


def _l3_cache_bytes(cpu_dir: Path) -> int | None:
    cache = cpu_dir / "cpu0/cache"
    for name in _list_dir(cache):
        if name.startswith("index") and _read_line(cache / name / "level") == "3":
            return _parse_cache_size(_read_line(cache / name / "size"))
    return None


def _cpuinfo_topology(blocks: list[dict[str, str]]) -> list[tuple[int, int]]:
    """(physical id, core id) of each processor; [] unless every block has both.

    x86 prints them (arch/x86/kernel/cpu/proc.c show_cpuinfo_core); arm64 does not.
    """
    try:
        return [(int(b["physical id"]), int(b["core id"])) for b in blocks]
    except (KeyError, ValueError):
        return []


def _sysfs_topology(cpu_dir: Path, online: list[int] | None) -> list[tuple[int, int]]:
    """(package, core) of each CPU from sysfs topology (cputopology.rst).

    Used when /proc/cpuinfo lacks "physical id"/"core id", as on ARM. Offline
    CPUs have no topology directory, and are filtered by the online list too.
    """
    pairs = []
    for number, name in _numbered(_list_dir(cpu_dir)):
        if online is not None and number not in online:
            continue
        package = _read_int(cpu_dir / name / "topology/physical_package_id")
        core = _read_int(cpu_dir / name / "topology/core_id")
        if package is not None and core is not None:
            pairs.append((package, core))
    return pairs


def _cpu(root: Path) -> Cpu:
    cpu_dir = root / "sys/devices/system/cpu"
    cpuinfo = _read_text(root / "proc/cpuinfo")
    blocks = parse_cpuinfo(cpuinfo) if cpuinfo is not None else []
    first = blocks[0] if blocks else {}
    online = parse_cpulist(_read_line(cpu_dir / "online"))

    # /proc/cpuinfo lists the online CPUs (arch/x86/kernel/cpu/proc.c walks
    # cpu_online_mask); so does sysfs "online", which glibc reads for
    # sysconf(_SC_NPROCESSORS_ONLN), hence os.cpu_count(). They agree on a sane
    # machine; a disagreement (hotplug between the reads, a partial capture) is
    # kept as a note. sysfs stands in when /proc/cpuinfo cannot be read.
    logical: int | None = len(blocks) if blocks else None
    note = None
    if online:
        if logical is None:
            logical = len(online)
        elif logical != len(online):
            note = f"/proc/cpuinfo lists {logical} processors, sysfs online has {len(online)}"

    pairs = _cpuinfo_topology(blocks)
    if not pairs:
        pairs = _sysfs_topology(cpu_dir, online)
    per_core = Counter(pairs)

    flags = first.get("flags", "").split()
    flags_ai = sorted({f for f in flags if f.startswith(_AI_FLAG_PREFIXES) or f in _AI_FLAGS})
    return Cpu(
        model=first.get("model name"),
        vendor=first.get("vendor_id"),
        sockets=len({package for package, _ in pairs}) if pairs else None,
        physical_cores=len(per_core) if per_core else None,
        logical_cpus=logical,
        flags_ai=tuple(flags_ai),
        # The most hardware threads on one core (hybrid CPUs mix 2 and 1).
        threads_per_core=max(per_core.values()) if per_core else None,
        l3_cache_bytes=_l3_cache_bytes(cpu_dir),
        logical_cpus_note=note,
    )


# --- memory and NUMA -------------------------------------------------------------------


def _meminfo_total(root: Path) -> int | None:
    text = _read_text(root / "proc/meminfo")
    if text is None:
        return None
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name.strip() == "MemTotal":
            fields = rest.split()
            if fields and fields[0].isdigit():
                return int(fields[0]) * _MEMINFO_KB_BYTES
    return None


def _numa_nodes(root: Path) -> list[NumaNode]:
    """Nodes of Documentation/ABI/stable/sysfs-devices-node: cpulist and meminfo."""
    node_dir = root / "sys/devices/system/node"
    nodes = []
    for number, name in _numbered(_list_dir(node_dir)):
        meminfo = _read_text(node_dir / name / "meminfo") or ""
        match = _NODE_MEMTOTAL_RE.search(meminfo)
        nodes.append(
            NumaNode(
                node=number,
                cpus=_read_line(node_dir / name / "cpulist"),
                memory_bytes=int(match.group(1)) * _MEMINFO_KB_BYTES if match else None,
            )
        )
    return nodes


# --- disks, NICs, InfiniBand -----------------------------------------------------------


def _flag(path: Path) -> bool | None:
    value = _read_int(path)
    return None if value is None else value != 0


def _disks(root: Path) -> list[Disk]:
    block = root / "sys/block"
    disks = []
    for name in _list_dir(block):
        if name.startswith(_SKIPPED_BLOCK_PREFIXES):
            continue
        sectors = _read_int(block / name / "size")
        # SCSI and NVMe pad the model with spaces (SCSI INQUIRY, NVMe Identify).
        model = _read_line(block / name / "device/model")
        disks.append(
            Disk(
                name=name,
                model=model or None,
                size_bytes=sectors * _SYSFS_SECTOR_BYTES if sectors is not None else None,
                rotational=_flag(block / name / "queue/rotational"),
                nvme=is_nvme_namespace(name),
                removable=_flag(block / name / "removable"),
            )
        )
    return disks


def _driver_name(device_dir: Path) -> str | None:
    """Basename of the device/driver symlink; None for a virtual interface."""
    try:
        return os.path.basename(os.readlink(device_dir / "driver")) or None
    except OSError:
        return None


def _nics(root: Path) -> list[Nic]:
    net = root / "sys/class/net"
    nics = []
    for name in _list_dir(net):
        if name == "lo":
            continue
        nics.append(
            Nic(
                name=name,
                speed_bits_per_second=link_speed_bps(root, name),
                driver=_driver_name(net / name / "device"),
                operstate=_read_line(net / name / "operstate"),
                mac=_read_line(net / name / "address"),
            )
        )
    return nics


def _infiniband(root: Path) -> list[IbPort]:
    ib = root / "sys/class/infiniband"
    ports = []
    for device in rdma_devices(root):
        port_dir = ib / device / "ports"
        for port in sorted(_list_dir(port_dir), key=lambda p: (not p.isdigit(), p.zfill(8))):
            rate = _read_line(port_dir / port / "rate")
            ports.append(
                IbPort(
                    device=device,
                    port=int(port) if port.isdigit() else port,
                    state=_read_line(port_dir / port / "state"),
                    rate=rate,
                    rate_bits_per_second=parse_ib_rate(rate),
                    link_layer=_read_line(port_dir / port / "link_layer"),
                )
            )
    return ports


# --- GPUs and the whole inventory --------------------------------------------------------


def _default_gpu_probe() -> list[Gpu]:
    # Imported here so that the inventory does not depend on the tools package
    # at import time; nvml itself imports pynvml only when called.
    from bench_agent.tools.nvml import list_gpus

    return list_gpus()


def collect_inventory(root: Path = Path("/"), gpu_probe: GpuProbe | None = None,
                      config_gpu_probe: GpuConfigProbe | None = None) -> Inventory:
    """The node's facts; never raises for a bad file.

    ``gpu_probe`` lists GPUs (tests inject one); by default NVML. A node without
    NVML or without a GPU has ``gpus == []`` and the reason in
    ``gpu_probe_note``. ``config_gpu_probe`` reads the GPUs' configuration
    (inventory/config_facts.py; by default NVML too). Other probe errors
    (ToolFailed: a GPU fell off the bus) are raised: they are findings, not absences.
    """
    note: str | None = None
    probe = gpu_probe if gpu_probe is not None else _default_gpu_probe
    gpus: Sequence[Gpu]
    try:
        gpus = probe()
    except (ToolMissing, NotApplicable) as exc:
        gpus = []
        note = str(exc)
    return Inventory(
        host=_host(root),
        os=_os(root),
        cpu=_cpu(root),
        memory=Memory(total_bytes=_meminfo_total(root), numa_nodes=tuple(_numa_nodes(root))),
        disks=tuple(_disks(root)),
        nics=tuple(_nics(root)),
        infiniband=tuple(_infiniband(root)),
        gpus=tuple(gpus),
        gpu_probe_note=note,
        hcas=tuple(hcas(root)),
        config=collect_config(root, config_gpu_probe),
    )


def _measurement(metric: str, value: float, unit: Unit, **params: Any) -> Measurement:
    return Measurement(check=CHECK_NAME, metric=metric, value=value, unit=unit, params=params)


def inventory_measurements(inv: Inventory) -> list[Measurement]:
    """The sized facts of an inventory as measurements; unknown facts are omitted.

    An omitted metric becomes "could not measure" in thresholds.py, never a PASS.
    """
    out: list[Measurement] = []
    for metric, value, unit in (
        ("inventory.logical_cpus", inv.cpu.logical_cpus, Unit.COUNT),
        ("inventory.physical_cores", inv.cpu.physical_cores, Unit.COUNT),
        ("inventory.memory_total", inv.memory.total_bytes, Unit.BYTES),
    ):
        if value is not None:
            out.append(_measurement(metric, value, unit))

    # No NVMe disk is a real 0 bytes. One NVMe disk of unknown size makes the sum
    # unknown: a partial sum would understate the node without saying so.
    nvme_sizes = [d.size_bytes for d in inv.nvme_disks]
    known_sizes = [size for size in nvme_sizes if size is not None]
    if len(known_sizes) == len(nvme_sizes):
        out.append(
            _measurement(
                "inventory.nvme_capacity", sum(known_sizes), Unit.BYTES, drives=len(nvme_sizes)
            )
        )

    links: list[tuple[int, str]] = [
        (nic.speed_bits_per_second, nic.name)
        for nic in inv.nics
        if nic.speed_bits_per_second is not None
    ]
    links += [
        (port.rate_bits_per_second, f"{port.device}/{port.port}")
        for port in inv.infiniband
        if port.rate_bits_per_second is not None
    ]
    if links:
        speed, link = max(links, key=lambda pair: pair[0])  # first of equals
        out.append(_measurement("inventory.nic_speed_max", speed, Unit.BITS_PER_SECOND, link=link))

    gpus = inv.gpus
    # Why NVML saw none (not installed, cannot start): thresholds.py quotes it in
    # the FAIL of a GPU profile's count.
    note = inv.gpu_probe_note
    out.append(_measurement("inventory.gpu_count", len(gpus), Unit.COUNT,
                            **({"note": note} if not gpus and note else {})))
    gpu_memory = [g.memory_total_bytes for g in gpus]
    known_memory = [m for m in gpu_memory if m is not None]
    if gpus and len(known_memory) == len(gpu_memory):
        out.append(_measurement("inventory.gpu_memory_min", min(known_memory), Unit.BYTES))
    return out
