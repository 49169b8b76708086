"""What people see: live progress and the verdict table.

rich on a terminal, plain lines otherwise (logs, Ansible, CI). rich is imported
only when it is about to print, so `bench-agent --help` never loads it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import IO, Any

from bench_agent.model import Report, Status
from bench_agent.runner import CheckOutcome
from bench_agent.units import Unit, format_value

_STYLE = {
    "PASS": "green",
    "WARN": "yellow",
    "SKIP": "dim",
    "FAIL": "bold red",
    "ERROR": "bold magenta",
    "-": "dim",
}
COLUMNS = ("check", "metric", "value", "threshold", "status", "source / message")


def table_rows(report: Report) -> list[tuple[str, str, str, str, str, str]]:
    """One row per verdict, then one per measurement that no threshold judged."""
    rows: list[tuple[str, str, str, str, str, str]] = []
    judged: set[tuple[str, str]] = set()
    for v in report.verdicts:
        metric = v.metric + (f" [{v.device}]" if v.device else "")
        note = v.source
        if v.status not in (Status.PASS,) and v.message:
            note = v.message + (f" ({v.source})" if v.source else "")
        elif v.message:
            note = f"{v.source} - {v.message}" if v.source else v.message
        rows.append((v.check, metric, v.display_value, v.threshold, v.status.value, note))
        judged.add((v.metric, v.device))
    for m in report.measurements:
        if (m.metric, m.device) in judged:
            continue
        metric = m.metric + (f" [{m.device}]" if m.device else "")
        note = "measured; no threshold in this profile"
        if m.unstable:
            note += " (unstable: wide spread between repetitions)"
        rows.append((m.check, metric, format_value(m.value, m.unit), "", "-", note))
    return rows


def _is_terminal(stream: IO[str]) -> bool:
    return hasattr(stream, "isatty") and stream.isatty()


def print_table(report: Report, stream: IO[str] | None = None) -> None:
    stream = stream or sys.stdout
    rows = table_rows(report)
    summary = (
        f"{report.host}: {report.status.value} - suite {report.suite.name}, "
        f"profile {report.profile.name}"
        + (" (INTERRUPTED: partial report)" if report.interrupted else "")
    )
    if _is_terminal(stream):
        from rich.console import Console
        from rich.table import Table

        table = Table(title=summary, show_lines=False)
        for column in COLUMNS:
            table.add_column(column, overflow="fold")
        for row in rows:
            style = _STYLE.get(row[4], "")
            table.add_row(*row[:4], f"[{style}]{row[4]}[/]", row[5])
        Console(file=stream).print(table)
        return
    widths = [max(len(COLUMNS[i]), *(len(r[i]) for r in rows)) if rows else len(COLUMNS[i])
              for i in range(5)]
    print(summary, file=stream)
    header = "  ".join(c.ljust(w) for c, w in zip(COLUMNS[:5], widths, strict=True))
    print(f"{header}  {COLUMNS[5]}", file=stream)
    for row in rows:
        cells = "  ".join(cell.ljust(w) for cell, w in zip(row[:5], widths, strict=True))
        print(f"{cells}  {row[5]}", file=stream)


@dataclass
class PlainProgress:
    """One line per check on stderr: for logs and Ansible output."""

    stream: IO[str] = sys.stderr

    def check_started(self, check: str, index: int, total: int) -> None:
        print(f"[{index + 1}/{total}] {check} ...", file=self.stream, flush=True)

    def check_finished(self, outcome: CheckOutcome) -> None:
        state = outcome.status.value if outcome.status else "measured"
        detail = f": {outcome.message}" if outcome.message else ""
        print(f"      {outcome.check} {state} in {outcome.seconds:.1f} s{detail}",
              file=self.stream, flush=True)


class RichProgress:
    """A spinner per running check on a terminal (stderr), finished lines kept."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self._status: Any = None

    def check_started(self, check: str, index: int, total: int) -> None:
        self._status = self.console.status(f"[{index + 1}/{total}] running {check} ...")
        self._status.start()

    def check_finished(self, outcome: CheckOutcome) -> None:
        if self._status is not None:
            self._status.stop()
        state = outcome.status.value if outcome.status else "measured"
        style = _STYLE.get(state, "green")
        detail = f": {outcome.message}" if outcome.message else ""
        self.console.print(
            f"  {outcome.check} [{style}]{state}[/] in {outcome.seconds:.1f} s{detail}"
        )


def make_progress() -> PlainProgress | RichProgress:
    return RichProgress() if _is_terminal(sys.stderr) else PlainProgress()


def print_inventory(inventory: dict[str, Any]) -> None:
    """A one-screen summary of collect_inventory()'s facts."""
    cpu = inventory.get("cpu", {})
    mem = inventory.get("memory", {})

    total = mem.get("total_bytes")
    print(f"host     {inventory.get('host', {}).get('hostname', '?')}")
    print(f"os       {inventory.get('os', {}).get('pretty_name', '?')}, kernel "
          f"{inventory.get('os', {}).get('kernel', '?')}")
    print(f"cpu      {cpu.get('model', '?')}: {cpu.get('sockets')} socket(s), "
          f"{cpu.get('physical_cores')} cores, {cpu.get('logical_cpus')} logical; "
          f"AI flags: {' '.join(cpu.get('flags_ai') or []) or 'none'}")
    print(f"memory   {format_value(total, Unit.BYTES) if total else '?'}, "
          f"{len(mem.get('numa_nodes') or [])} NUMA node(s)")
    for disk in inventory.get("disks", []):
        size = format_value(disk["size_bytes"], Unit.BYTES) if disk.get("size_bytes") else "?"
        kind = "NVMe" if disk.get("nvme") else ("HDD" if disk.get("rotational") else "SSD")
        print(f"disk     {disk.get('name')}: {disk.get('model') or '?'} {size} {kind}")
    for nic in inventory.get("nics", []):
        speed = nic.get("speed_bits_per_second")
        shown = format_value(speed, Unit.BITS_PER_SECOND) if speed else "unknown speed"
        print(f"nic      {nic.get('name')}: {shown}, driver {nic.get('driver') or '-'}")
    for port in inventory.get("infiniband", []):
        print(f"ib       {port.get('device')}/{port.get('port')}: {port.get('state')}, "
              f"{port.get('rate')}, {port.get('link_layer')}")
    gpus = inventory.get("gpus", [])
    print(f"gpus     {len(gpus)}" + (f" ({inventory['gpu_probe_note']})"
                                     if not gpus and inventory.get("gpu_probe_note") else ""))
