"""The one defensive reader of /proc and /sys files, for every layer that reads them.

Every reader takes a path already under the injected ``root`` (psutil's idea: tests
feed captured trees from tests/data/sysroots/), so nothing here knows of "/".
Hardware files are hostile: a file may be missing (a virtual device, an older
kernel, a container), unreadable (EACCES), or fail on read although it exists
(sysfs ``speed`` of a NIC whose link is down returns EINVAL, net/core/net-sysfs.c
``speed_show``; a device in the wrong state answers ENODEV). So a file that
cannot be read gives None, a folder that cannot be listed an empty list, never an
exception; an unknown fact is None, never a guess.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# sysfs cache sizes: drivers/base/cacheinfo.c size_show prints "%uK" (KiB); the
# M and G suffixes cover other sources of the same notation (lscpu, older kernels).
_CACHE_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMG]?)\s*$")
_CACHE_FACTORS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def read_text(path: Path) -> str | None:
    """The file's text, or None when it is missing or cannot be read.

    OSError covers ENOENT, EACCES, EISDIR and the EINVAL/ENODEV that sysfs show
    functions return for a device in the wrong state; ValueError covers a file
    that is not text. Bytes that are not UTF-8 are replaced, not an error: sysfs
    text is ASCII, and a stray byte must not hide the rest of the line.
    """
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except (OSError, ValueError):
        return None


def read_line(path: Path) -> str | None:
    """The file's text without surrounding white space (sysfs ends each value with
    a newline); None when it cannot be read."""
    text = read_text(path)
    return None if text is None else text.strip()


def read_int(path: Path) -> int | None:
    """The file as a decimal integer; None when it cannot be read or is no integer."""
    try:
        return int(read_line(path) or "")
    except ValueError:
        return None


def list_dir(path: Path) -> list[str]:
    """Sorted entry names; empty when the directory is missing or unreadable."""
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def parse_cache_size(text: str | None) -> int | None:
    """Bytes of a sysfs cache size ("32768K" is 32768 KiB); None when unreadable."""
    match = _CACHE_SIZE_RE.match(text or "")
    return int(match.group(1)) * _CACHE_FACTORS[match.group(2)] if match else None
