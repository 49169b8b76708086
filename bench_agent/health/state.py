"""The health state file: what the previous `bench-agent health` run read.

Counters and the kernel log's sequence number are kept here so that the next
run judges only what happened since (an XID is failed once, in the first run
after it; a link that went down once is not failed forever). The file is small
JSON, written atomically (core/model.write_atomic) after the report:

    {"schema": 1, "written_at": "2026-...Z", "readings": {CHECK: {"metric@device": N}}}

Default place: /var/lib/bench-agent/health-state.json as root (FHS 3.0 5.8,
state data of an application), else $XDG_STATE_HOME/bench-agent/ (default
~/.local/state, XDG Base Directory Specification 0.8). A file that cannot be
read or is not ours is no state: the run judges everything since boot and says so.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench_agent.core.model import write_atomic

STATE_SCHEMA = 1
ROOT_STATE = Path("/var/lib/bench-agent/health-state.json")


def default_state_path(environ: dict[str, str] | None = None, uid: int | None = None) -> Path:
    env = os.environ if environ is None else environ
    if (os.geteuid() if uid is None else uid) == 0:
        return ROOT_STATE
    base = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME", "~")).expanduser()
                                           / ".local" / "state")
    return Path(base) / "bench-agent" / "health-state.json"


@dataclass
class HealthState:
    readings: dict[str, dict[str, float]] = field(default_factory=dict)
    written_at: str = ""
    note: str = ""  # why no previous state was used ("" when it was)


def load_state(path: Path) -> HealthState:
    """The previous run's readings; an empty state with the reason when there are none."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return HealthState(note=f"no state file {path}: first health run, counters judged "
                                "since boot")
    except (OSError, ValueError) as exc:
        return HealthState(note=f"state file {path} unreadable ({exc}): counters judged "
                                "since boot")
    readings = data.get("readings") if isinstance(data, dict) else None
    if not isinstance(data, dict) or data.get("schema") != STATE_SCHEMA \
            or not isinstance(readings, dict):
        return HealthState(note=f"state file {path} is not a bench-agent health state "
                                f"(schema {STATE_SCHEMA}): counters judged since boot")
    clean: dict[str, dict[str, float]] = {}
    for check, values in readings.items():
        if not isinstance(values, dict):
            continue
        clean[str(check)] = {str(k): float(v) for k, v in values.items()
                             if isinstance(v, int | float) and not isinstance(v, bool)
                             and math.isfinite(v) and v >= 0}
    return HealthState(clean, str(data.get("written_at", "")))


def save_state(path: Path, readings: dict[str, dict[str, float]]) -> None:
    """Write the readings (ReportError when the file cannot be written)."""
    stamp = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    write_atomic(path, json.dumps({"schema": STATE_SCHEMA, "written_at": stamp,
                                   "readings": readings}, indent=1, sort_keys=True) + "\n")
