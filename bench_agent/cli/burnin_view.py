"""What a burn-in shows while it runs: each load's rate, the GPUs' temperatures
and power, the hottest CPU, and the time left, from every sample the engine
writes to its series (Burnin.on_record).

On a terminal (stderr) a live panel that rich redraws in place at each sample;
otherwise (a log, a pipe, Ansible) one line per sampling interval, so a 4-hour
run in a log says every interval where it is. Events (an XID, a load that
crashed) get a line of their own in both. Every name and message from outside
goes through display.printable and reaches rich as ``Text``.
"""

from __future__ import annotations

import math
import sys
from typing import IO, Any

from bench_agent.burnin.health import HEALTH_METRICS
from bench_agent.core.units import Unit, format_value
from bench_agent.report.display import _is_terminal, printable
from bench_agent.report.progress import clock


def _value(reading: dict[str, Any]) -> str:
    try:
        return format_value(float(reading["value"]), Unit(reading["unit"]))
    except (KeyError, ValueError, TypeError):
        return "?"


def sample_parts(record: dict[str, Any], duration: float) -> list[str]:
    """The parts of one sample's line: time, then loads' rates, GPUs, the CPU."""
    elapsed = float(record.get("elapsed", 0.0))
    left = math.ceil(max(0.0, duration - elapsed))  # 4.2 s left reads "0:05 left", not 0:04
    parts = [f"{clock(elapsed)} of {clock(duration)} ({clock(left)} left)"]
    readings = [r for r in record.get("readings", []) if isinstance(r, dict)]
    for r in readings:  # a load's rate: what is not a health reading
        if r.get("metric") not in HEALTH_METRICS:
            name = str(r.get("metric", "?")).removeprefix("burnin.")
            parts.append(f"{name} {_value(r)}")
    gpus: dict[str, dict[str, str]] = {}
    for r in readings:
        if r.get("metric") in ("burnin.gpu_temperature", "burnin.gpu_power"):
            gpus.setdefault(str(r.get("device", "")), {})[str(r["metric"])] = _value(r)
    for device, shown in gpus.items():
        parts.append(f"GPU {device or '?'} {shown.get('burnin.gpu_temperature', '?')} "
                     f"{shown.get('burnin.gpu_power', '?')}")
    cpu = next((r for r in readings if r.get("metric") == "burnin.cpu_temperature"), None)
    if cpu is not None:
        parts.append(f"CPU {_value(cpu)}")
    return [printable(part) for part in parts]


def event_line(record: dict[str, Any]) -> str:
    kind = record.get("kind", "event")
    detail = record.get("detail") or record.get("device") or ""
    return printable(f"event at +{float(record.get('elapsed', 0.0)):.0f} s: {kind}"
                     + (f": {detail}" if detail else ""))


class PlainBurninView:
    """One line per sample (and per event) on stderr."""

    def __init__(self, duration: float, stream: IO[str] | None = None) -> None:
        self.duration = duration
        self.stream = stream or sys.stderr

    def __call__(self, record: dict[str, Any]) -> None:
        if record.get("type") == "sample":
            print("burn-in " + " | ".join(sample_parts(record, self.duration)),
                  file=self.stream, flush=True)
        elif record.get("type") == "event":
            print(f"burn-in {event_line(record)}", file=self.stream, flush=True)

    def close(self) -> None:
        pass


class LiveBurninView:
    """A panel redrawn in place at each sample (rich Live on stderr)."""

    def __init__(self, duration: float, name: str) -> None:
        from rich.console import Console
        from rich.live import Live
        from rich.text import Text

        self.duration = duration
        self.name = printable(name)
        self.console = Console(stderr=True)
        self.live = Live(Text(f"burn-in {self.name}: starting the loads ..."),
                         console=self.console, auto_refresh=False, transient=False)
        self.live.start()

    def __call__(self, record: dict[str, Any]) -> None:
        from rich.table import Table
        from rich.text import Text

        if record.get("type") == "event":
            self.console.print(Text(event_line(record), style="bold red"))
        if record.get("type") != "sample":
            return
        parts = sample_parts(record, self.duration)
        table = Table(title=Text(f"burn-in {self.name}: {parts[0]}"), show_header=False)
        table.add_column("what")
        table.add_column("now")
        for part in parts[1:]:
            what, _, now = part.partition(" ")
            if what == "GPU":
                device, _, now = now.partition(" ")
                what = f"GPU {device}"
            table.add_row(Text(what), Text(now))
        self.live.update(table, refresh=True)

    def close(self) -> None:
        self.live.stop()


def make_burnin_view(duration: float, name: str) -> PlainBurninView | LiveBurninView:
    if _is_terminal(sys.stderr):
        return LiveBurninView(duration, name)
    return PlainBurninView(duration)
