"""Facts about a raw block device, and why a destructive write to it is refused.

Writing to a raw device destroys what is on it, so the storage checks refuse it
unless the SRE asked (``--destructive``) *and* the device looks unused: not
mounted (itself, a partition, or anything stacked on it: LVM, dm-crypt, md),
not swap, without partitions, without a filesystem or other signature, and not
behind /. Facts come from /proc and /sys under an injectable root (tests use the
live ones on a loop device, or read the root device's facts and never write).

Signatures: ``blkid -p`` (low-level probe, util-linux) when present, and always a
read of the first bytes for the magics below (offsets from util-linux libblkid's
superblocks/*.c and the on-disk format specs), so a missing blkid never makes a
used disk look blank.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from bench_agent.core.errors import StorageRefused
from bench_agent.core.process import run_child
from bench_agent.core.sysfs import read_int

# (offset, magic, what): the first bytes of common on-disk formats.
_MAGICS: tuple[tuple[int, bytes, str], ...] = (
    (0, b"XFSB", "xfs"),
    (0, b"LUKS\xba\xbe", "crypto_LUKS"),
    (512, b"EFI PART", "GPT partition table"),
    (4096, b"EFI PART", "GPT partition table (4 KiB sectors)"),
    (512, b"LABELONE", "LVM2 physical volume"),
    (1080, b"\x53\xef", "ext2/3/4"),  # s_magic 0xEF53 at 1024 + 56, little-endian
    (4086, b"SWAPSPACE2", "swap"),  # last 10 bytes of the first 4 KiB page
    (4096, b"\xfc\x4e\x2b\xa9", "linux_raid_member (md 1.2)"),  # 0xa92b4efc LE
    (0, b"\xfc\x4e\x2b\xa9", "linux_raid_member (md 1.1)"),
    (65600, b"_BHRfS_M", "btrfs"),  # superblock at 64 KiB, magic at +64
    (32769, b"CD001", "iso9660"),
    (510, b"\x55\xaa", "boot sector / DOS partition table (0x55AA)"),
)
_PROBE_BYTES = 65600 + 8


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    path: str  # as given on the command line
    real_path: str
    name: str  # kernel name: nvme0n1, loop3, vda
    size_bytes: int
    partitions: tuple[str, ...]
    parent: str | None  # the whole disk when ``name`` is a partition
    holders: tuple[str, ...]  # device-mapper/md devices stacked on it or its partitions
    mounted_at: tuple[str, ...]  # mount points of it, its partitions or what it holds
    swap: bool
    backs_root: bool
    signature: str | None


def _sys_block_dir(root: Path, major: int, minor: int) -> Path:
    return (root / "sys/dev/block" / f"{major}:{minor}").resolve()


def _names_below(root: Path, name: str) -> set[str]:
    """``name`` and, recursively, the devices it is built on (its slaves), plus the
    whole disk of every partition among them."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        base = root / "sys/class/block" / current
        slaves = base / "slaves"
        if slaves.is_dir():
            todo.extend(p.name for p in slaves.iterdir())
        if (base / "partition").exists():
            todo.append(base.resolve().parent.name)
    return seen


def _name_of(root: Path, dev: int) -> str | None:
    path = root / "sys/dev/block" / f"{os.major(dev)}:{os.minor(dev)}"
    return path.resolve().name if path.exists() else None


def _name_of_path(root: Path, source: str) -> str | None:
    try:
        st = os.stat(source)
    except OSError:
        return None
    return _name_of(root, st.st_rdev) if stat.S_ISBLK(st.st_mode) else None


def _mounts(root: Path) -> list[tuple[str, str, str]]:
    """(major:minor, source, mount point) of every mount, from mountinfo (proc(5))."""
    try:
        text = (root / "proc/self/mountinfo").read_text()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) >= 5 and len(tail) >= 2:
            out.append((fields[2], tail[1], fields[4]))
    return out


def _busy_names(root: Path) -> dict[str, str]:
    """Kernel names of devices in use -> why (mounted at X, swap, backs /)."""
    busy: dict[str, str] = {}
    for majmin, source, point in _mounts(root):
        names = set()
        major, _, minor = majmin.partition(":")
        if major.isdigit() and minor.isdigit() and major != "0":
            sysdir = root / "sys/dev/block" / majmin
            if sysdir.exists():
                names.add(sysdir.resolve().name)
        if source.startswith("/dev/"):
            by_path = _name_of_path(root, source)
            if by_path:
                names.add(by_path)
        for name in names:
            for below in _names_below(root, name):
                busy.setdefault(below, f"mounted at {point}")
    try:
        swaps = (root / "proc/swaps").read_text().splitlines()[1:]
    except OSError:
        swaps = []
    for line in swaps:
        parts = line.split()
        swap_name = _name_of_path(root, parts[0]) if parts else None
        if swap_name:
            for below in _names_below(root, swap_name):
                busy.setdefault(below, "used as swap")
    return busy


def _root_names(root: Path) -> set[str]:
    """Devices behind the filesystem at / (st_dev of /; for btrfs or overlay that
    number is anonymous, so the source of the "/" mount counts too)."""
    names: set[str] = set()
    first = _name_of(root, os.stat(root).st_dev)
    if first:
        names |= _names_below(root, first)
    for majmin, source, point in _mounts(root):
        if point != "/":
            continue
        sysdir = root / "sys/dev/block" / majmin
        if sysdir.exists():
            names |= _names_below(root, sysdir.resolve().name)
        by_path = _name_of_path(root, source) if source.startswith("/dev/") else None
        if by_path:
            names |= _names_below(root, by_path)
    return names


def probe_signature(path: str) -> str | None:
    """The first known on-disk signature of a device, or None when it looks blank."""
    try:
        done = run_child(["blkid", "-p", "-o", "export", path], timeout=30)
        # blkid exits 2 when it finds nothing, and 8 when low-level probing finds
        # an ambivalent result, i.e. several signatures (blkid(8), "RETURN CODE"):
        # that device is certainly not blank.
        if done.returncode == 8:
            return "several signatures (blkid -p exit 8: ambivalent probing result)"
        if done.returncode == 0:
            found = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
            kind: str | None = found.get("TYPE") or found.get("PTTYPE")
            if kind:
                return f"{kind} (blkid)"
    except OSError:
        pass  # no blkid: the magic bytes below still decide (and after a timeout too)
    try:
        with open(path, "rb", buffering=0) as handle:
            head = handle.read(_PROBE_BYTES)
    except OSError as exc:
        raise StorageRefused(f"cannot read {path} to look for a filesystem: {exc}") from exc
    for offset, magic, what in _MAGICS:
        if head[offset : offset + len(magic)] == magic:
            return f"{what} (magic at byte {offset})"
    return None


def device_size(path: str, sysfs_dir: Path) -> int:
    """Bytes of a block device: sysfs "size" counts 512-byte sectors whatever the
    logical block size (include/linux/types.h, sector_t); else seek to the end."""
    sectors = read_int(sysfs_dir / "size")
    if sectors is not None:
        return sectors * 512
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise StorageRefused(f"cannot open {path}: {exc.strerror}") from exc
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def inspect_device(path: str, root: Path = Path("/"), read_signature: bool = True) -> DeviceFacts:
    """Facts of a block device; StorageRefused when ``path`` is not one."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise StorageRefused(f"device {path}: {exc.strerror}") from exc
    if not stat.S_ISBLK(st.st_mode):
        raise StorageRefused(f"{path} is not a block device (use --target for a directory)")
    name = _name_of(root, st.st_rdev) or Path(os.path.realpath(path)).name
    base = root / "sys/class/block" / name
    parent = base.resolve().parent.name if (base / "partition").exists() else None
    partitions = tuple(sorted(p.name for p in base.iterdir()
                              if (p / "partition").exists())) if base.is_dir() else ()
    holders: list[str] = []
    for own in (name, *partitions):
        hdir = root / "sys/class/block" / own / "holders"
        if hdir.is_dir():
            holders.extend(p.name for p in hdir.iterdir())
    busy = _busy_names(root)
    related = {name, *partitions}
    mounted = tuple(sorted({busy[n] for n in related if n in busy
                            and busy[n].startswith("mounted")}))
    swap = any(busy.get(n) == "used as swap" for n in related)
    root_names = _root_names(root)
    backs_root = bool(related & root_names) or (parent is not None and parent in root_names)
    return DeviceFacts(
        path=path,
        real_path=os.path.realpath(path),
        name=name,
        size_bytes=device_size(path, base),
        partitions=partitions,
        parent=parent,
        holders=tuple(sorted(set(holders))),
        mounted_at=mounted,
        swap=swap,
        backs_root=backs_root,
        signature=probe_signature(path) if read_signature else None,
    )


def write_refusals(facts: DeviceFacts) -> list[str]:
    """Every reason not to write to this device; empty when it looks unused. Pure."""
    reasons = []
    if facts.backs_root:
        reasons.append("it backs the root filesystem /")
    if facts.mounted_at:
        reasons.append("it is " + ", ".join(facts.mounted_at))
    if facts.swap:
        reasons.append("it is used as swap")
    if facts.partitions:
        reasons.append("it holds partitions " + ", ".join(facts.partitions))
    if facts.holders:
        reasons.append("it is in use by " + ", ".join(facts.holders))
    if facts.signature:
        reasons.append(f"it holds a signature: {facts.signature}")
    return reasons
