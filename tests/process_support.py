"""Finding the processes a test started, by pid or by a marker in their command line.

A test gives every process it starts a marker of its own as argv[0] (bash's
``exec -a MARKER``), so "no process of that tree is alive" is a scan of
/proc/*/cmdline for it, whatever the process's parent or session became.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from pathlib import Path


def unique_marker(label: str) -> str:
    return f"bench-agent-test-{label}-{uuid.uuid4().hex[:12]}"


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for its parent to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:].split()[0] not in "ZX"


def marked(marker: str) -> list[int]:
    """Live processes whose argv[0] is ``marker``."""
    assert marker, "an empty marker would match kernel threads"
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            argv0 = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0", 1)[0]
            if argv0 == marker.encode() and alive(int(name)):
                found.append(int(name))
    return found


def wait_until(predicate: object, seconds: float = 30.0) -> bool:
    """Poll a real state (a process started, a file written) up to ``seconds``."""
    assert callable(predicate)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def pids_in(path: Path) -> list[int]:
    with contextlib.suppress(OSError):
        return [int(word) for word in path.read_text().split()]
    return []


def kill_all(marker: str | None, *pids: int) -> None:
    """Cleanup: SIGKILL what this test started and left behind: the processes with
    its marker and the pids it was told of (read from its own pid files)."""
    for pid in {*(marked(marker) if marker else []), *(p for p in pids if alive(p))}:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
