"""What a child started, read from /proc (proc(5)): for core/process.py's stop.

A process is known by pid and start time (a pid can be reused), its group and
parent, and the spawn tokens in its environment (TOKEN_VAR), which its
descendants inherit even when they leave the session or lose their parent.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

TOKEN_VAR = "BENCH_AGENT_SPAWN"


@dataclass(frozen=True)
class Stat:
    pid: int
    state: str
    ppid: int
    pgrp: int
    start: int  # clock ticks after boot: tells a pid from a reused one


def stat_of(pid: int) -> Stat | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # proc(5): "pid (comm) state ppid pgrp session ..."; comm may hold spaces and
    # parentheses, so split after the last ')'.
    fields = text[text.rfind(")") + 2:].split()
    try:
        return Stat(pid, fields[0], int(fields[1]), int(fields[2]), int(fields[19]))
    except (IndexError, ValueError):
        return None


def all_stats() -> list[Stat]:
    stats = []
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if name.isdigit():
                stat = stat_of(int(name))
                if stat is not None:
                    stats.append(stat)
    return stats


def tokens_of(pid: int) -> list[bytes]:
    """The spawn tokens in a process's environment (empty if gone or another user's)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return []
    prefix = f"{TOKEN_VAR}=".encode()
    for entry in environ.split(b"\0"):
        if entry.startswith(prefix):
            return entry[len(prefix):].split()
    return []


@dataclass(frozen=True)
class Snapshot:
    """The processes now, read once for every child being stopped."""

    stats: list[Stat]
    by_token: dict[bytes, list[Stat]]

    @classmethod
    def take(cls) -> Snapshot:
        stats = all_stats()
        by_token: dict[bytes, list[Stat]] = {}
        me = os.getpid()
        for stat in stats:
            if stat.pid != me:
                for token in tokens_of(stat.pid):
                    by_token.setdefault(token, []).append(stat)
        return cls(stats, by_token)
