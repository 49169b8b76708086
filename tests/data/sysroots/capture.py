"""Capture the /proc and /sys files bench_agent.inventory reads into a fixture tree.

    python tests/data/sysroots/capture.py tests/data/sysroots/<name> --hostname <name>

Only small text files are copied, with their contents as read (sysfs attributes
are read, not copied: they report a 4096-byte size whatever they hold). A file
that cannot be read is left out, as inventory.py would find it unreadable:
a NIC whose ``speed`` returns EINVAL (interface down) has no ``speed`` here.

Symlinks into /sys cannot be kept, so a NIC's ``device/driver`` becomes a
relative link to an empty directory named after the driver inside the tree
(sys/bus/<bus>/drivers/<driver>), which keeps the basename inventory.py reads.
The hostname is replaced so that no real machine name lands in the repository.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

# Block devices that are not disks (same list as bench_agent/inventory.py).
SKIPPED_BLOCK_PREFIXES = ("loop", "ram", "zram", "dm-")

STATIC_FILES = [
    "proc/cpuinfo",
    "proc/meminfo",
    "proc/sys/kernel/osrelease",
    "proc/sys/kernel/arch",
    "etc/os-release",
    "sys/devices/system/cpu/online",
]


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None


def _copy(src_root: Path, dest: Path, rel: str) -> None:
    text = _read(src_root / rel)
    if text is None:
        return
    target = dest / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")


def _names(path: Path) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def capture(src_root: Path, dest: Path, hostname: str) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for rel in STATIC_FILES:
        _copy(src_root, dest, rel)
    (dest / "proc/sys/kernel").mkdir(parents=True, exist_ok=True)
    (dest / "proc/sys/kernel/hostname").write_text(hostname + "\n", encoding="utf-8")

    cpu = "sys/devices/system/cpu"
    for name in _names(src_root / cpu):
        if name.startswith("cpu") and name[3:].isdigit():
            for attr in ("physical_package_id", "core_id"):
                _copy(src_root, dest, f"{cpu}/{name}/topology/{attr}")
    for index in _names(src_root / cpu / "cpu0/cache"):
        if index.startswith("index"):
            for attr in ("level", "size", "type"):
                _copy(src_root, dest, f"{cpu}/cpu0/cache/{index}/{attr}")

    node = "sys/devices/system/node"
    for name in _names(src_root / node):
        if name.startswith("node") and name[4:].isdigit():
            for attr in ("cpulist", "meminfo"):
                _copy(src_root, dest, f"{node}/{name}/{attr}")

    for name in _names(src_root / "sys/block"):
        if name.startswith(SKIPPED_BLOCK_PREFIXES):
            continue
        for attr in ("size", "removable", "queue/rotational", "device/model"):
            _copy(src_root, dest, f"sys/block/{name}/{attr}")

    for name in _names(src_root / "sys/class/net"):
        for attr in ("speed", "operstate", "address"):
            _copy(src_root, dest, f"sys/class/net/{name}/{attr}")
        _capture_driver_link(src_root, dest, name)

    ib = "sys/class/infiniband"
    for device in _names(src_root / ib):
        for port in _names(src_root / ib / device / "ports"):
            for attr in ("state", "rate", "link_layer", "phys_state"):
                _copy(src_root, dest, f"{ib}/{device}/ports/{port}/{attr}")


def _capture_driver_link(src_root: Path, dest: Path, nic: str) -> None:
    try:
        real = (src_root / f"sys/class/net/{nic}/device/driver").resolve(strict=True)
    except OSError:
        return  # a virtual interface has no device, hence no driver
    bus = real.parent.parent.name  # /sys/bus/<bus>/drivers/<driver>
    driver_dir = dest / "sys/bus" / bus / "drivers" / real.name
    driver_dir.mkdir(parents=True, exist_ok=True)
    # git keeps no empty directory; real driver directories hold a uevent file.
    (driver_dir / "uevent").touch()
    link = dest / f"sys/class/net/{nic}/device/driver"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(driver_dir, link.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path, help="fixture directory to (re)create")
    parser.add_argument("--hostname", required=True, help="hostname to write instead")
    parser.add_argument("--root", type=Path, default=Path("/"), help="tree to read")
    args = parser.parse_args()
    capture(args.root, args.dest, args.hostname)


if __name__ == "__main__":
    main()
