"""What people see: live progress and the verdict table.

rich on a terminal, plain lines otherwise (logs, Ansible, CI). rich is imported
only when it is about to print, so `bench-agent --help` never loads it.

Everything shown comes from outside (host, device and tool names, tool messages,
paths the operator typed), so two rules hold for every string printed here:

* rich gets ``Text`` objects, never markup strings: ``[/tmp/reports]`` is a path,
  not a closing tag, and ``[nvme0n1]`` is a device, not a style (rich's markup
  syntax: https://rich.readthedocs.io/en/stable/markup.html).
* control and format characters (ESC of an ANSI sequence, CR, BEL, bidi
  overrides) are shown as escapes (``\\x1b``), never sent raw: a tool's output must
  not move the cursor, retitle the terminal or hide text (ECMA-48; Unicode's
  "Other" and "Separator" categories, which is what ``str.isprintable`` tests).

The standard streams are guarded (``guard_std_streams``): a reader that goes
away (``| head -1``) or a full disk behind ``> file`` silences the stream instead
of raising, so the display can never cost the report or change the exit code.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import IO, Any, TextIO, cast

from bench_agent.core.inventory import Inventory
from bench_agent.core.model import Report, Status, Verdict
from bench_agent.core.units import Unit, format_value

_STYLE = {
    "PASS": "green",
    "WARN": "yellow",
    "SKIP": "dim",
    "FAIL": "bold red",
    "ERROR": "bold magenta",
    "-": "dim",
}
COLUMNS = ("check", "metric", "value", "threshold", "status", "source / message")
# Worst first: what needs a person's attention tops the table; "-" is a measurement
# no threshold judged.
STATUS_ORDER = ("FAIL", "ERROR", "WARN", "SKIP", "PASS", "-")
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """``text`` with each non-printable character written as a visible escape.

    ``str.isprintable`` is false for Unicode's "Other" (Cc controls such as ESC,
    Cf format characters such as U+202E RIGHT-TO-LEFT OVERRIDE, Cs, Co, Cn) and
    "Separator" categories except the ASCII space; printable letters (``ü``) stay.
    """
    if text.isprintable():
        return text
    out = []
    for char in text:
        if char.isprintable():
            out.append(char)
        elif char in _NAMED_ESCAPES:
            out.append(_NAMED_ESCAPES[char])
        elif ord(char) < 0x100:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return "".join(out)


# --- the standard streams ----------------------------------------------------------


class GuardedStream:
    """A text stream that stops writing, instead of raising, once writing fails.

    A reader that closed the pipe (EPIPE: ``bench-agent run | head -1``; Python
    ignores SIGPIPE, so the write fails instead of killing the process) or a full
    disk behind ``> file`` must cost nothing but the rest of this stream's output.
    On the first failure the file descriptor is pointed at /dev/null, so that the
    interpreter's own flush at exit cannot fail either (it would print "Exception
    ignored ... BrokenPipeError" and exit 120; Python's signal docs, "Note on
    SIGPIPE", recommend the same dup2).
    """

    def __init__(self, inner: TextIO, name: str, on_failure: Any = None) -> None:
        self._inner = inner
        self._name = name
        self._on_failure = on_failure
        self.silenced = False

    def _fail(self, exc: BaseException) -> None:
        self.silenced = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self._inner.fileno())
            finally:
                os.close(devnull)
        except (OSError, ValueError):
            pass
        broken_pipe = isinstance(exc, OSError) and exc.errno == errno.EPIPE
        if self._on_failure is not None and not broken_pipe:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self._on_failure(f"bench-agent: {self._name}: cannot write ({why}); "
                             "the rest of its output is dropped\n")

    def write(self, text: str) -> int:
        if not self.silenced:
            try:
                self._inner.write(text)
            except (OSError, ValueError) as exc:
                self._fail(exc)
        return len(text)

    def flush(self) -> None:
        if not self.silenced:
            try:
                self._inner.flush()
            except (OSError, ValueError) as exc:
                self._fail(exc)

    def isatty(self) -> bool:
        try:
            return not self.silenced and self._inner.isatty()
        except (OSError, ValueError):
            return False

    def fileno(self) -> int:
        return self._inner.fileno()

    @property
    def encoding(self) -> str:
        return self._inner.encoding

    @property
    def errors(self) -> str | None:
        return self._inner.errors

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _ensure_std_fds() -> None:
    """Open /dev/null on any of fds 0-2 that is closed (``bench-agent run >&-``):
    else the next file opened (the report) would get that number, and output
    meant for the terminal would land in it (POSIX: open returns the lowest free
    descriptor)."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            opened = os.open(os.devnull, os.O_RDWR)
            if opened != fd:
                os.dup2(opened, fd)
                os.close(opened)


def guard_std_streams() -> None:
    """Make stdout and stderr safe to write for the rest of the process."""
    _ensure_std_fds()
    if not isinstance(sys.stderr, GuardedStream):
        stderr = sys.stderr or open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
        sys.stderr = cast(TextIO, GuardedStream(stderr, "stderr"))
    if not isinstance(sys.stdout, GuardedStream):
        stdout = sys.stdout or open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
        sys.stdout = cast(TextIO, GuardedStream(stdout, "stdout",
                                                on_failure=lambda m: sys.stderr.write(m)))


# --- the verdict table -------------------------------------------------------------


def table_rows(report: Report) -> list[tuple[str, str, str, str, str, str]]:
    """One row per verdict, then one per measurement that no threshold judged.

    Cells are made printable here, once, for both the rich and the plain table."""
    rows: list[tuple[str, str, str, str, str, str]] = []
    judged: set[tuple[str, str]] = set()
    for v in report.verdicts:
        metric = v.metric + (f" [{v.device}]" if v.device else "")
        note = v.source
        if v.status not in (Status.PASS,) and v.message:
            note = v.message + (f" ({v.source})" if v.source else "")
        elif v.message:
            note = f"{v.source} - {v.message}" if v.source else v.message
        if v.fault_code:
            # The part and what to do (docs/faults.md) lead; the code has its own
            # column (print_table), so it is not repeated here.
            note = f"{fault_label(v, with_code=False)}: {note}"
        rows.append(_printable_row(
            (v.check, metric, v.display_value, v.threshold, v.status.value, note)))
        judged.add((v.metric, v.device))
    for m in report.measurements:
        if (m.metric, m.device) in judged:
            continue
        metric = m.metric + (f" [{m.device}]" if m.device else "")
        note = "measured; no threshold in this profile"
        if m.unstable:
            note += " (unstable: wide spread between repetitions)"
        rows.append(_printable_row(
            (m.check, metric, format_value(m.value, m.unit), "", "-", note)))
    return rows


def fault_label(v: Verdict, with_code: bool = True) -> str:
    """ "BA-GPU-XID-79 GPU 3 GPU-... [reboot]" (and "flaky, 2 attempts")."""
    parts = [v.fault_code if with_code else "", v.component,
             f"[{v.remediation}]" if v.remediation else ""]
    if v.flaky:
        parts.append(f"(flaky, {v.attempts} attempts)")
    elif v.attempts > 1:
        parts.append(f"({v.attempts} attempts)")
    return " ".join(p for p in parts if p)


def _printable_row(
    row: tuple[str, str, str, str, str, str],
) -> tuple[str, str, str, str, str, str]:
    a, b, c, d, e, f = (printable(cell) for cell in row)
    return a, b, c, d, e, f


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return hasattr(stream, "isatty") and stream.isatty()
    except (OSError, ValueError):
        return False


def summary_line(report: Report) -> str:
    return printable(
        f"{report.host}: {report.status.value} - suite {report.suite.name}, "
        f"profile {report.profile.name}"
        + (" (INTERRUPTED: partial report)" if report.interrupted else "")
    )


def counts_line(report: Report) -> str:
    """The verdicts counted by status, worst first: "2 FAIL, 1 ERROR, 14 PASS" and
    the measurements no threshold judged; statuses of no verdict are left out."""
    counts = {status: 0 for status in STATUS_ORDER}
    for verdict in report.verdicts:
        counts[verdict.status.value] = counts.get(verdict.status.value, 0) + 1
    parts = [f"{n} {status}" for status, n in counts.items() if n]
    unjudged = sum(1 for row in table_rows(report) if row[4] == "-")
    if unjudged:
        parts.append(f"{unjudged} measured without a threshold")
    return "summary: " + (", ".join(parts) if parts else "no verdict")


def _fault_cells(report: Report) -> list[str] | None:
    """The fault code of each table row, or None when no verdict carries one (the
    column is then left out): a code names the catalog entry (bench-agent faults)."""
    codes = [v.fault_code for v in report.verdicts]
    if not any(codes):
        return None
    return [printable(code) for code in codes]


def print_table(report: Report, stream: IO[str] | None = None,
                next_steps: list[str] | None = None) -> None:
    """The verdict table, worst first (FAIL, ERROR, WARN, SKIP, PASS, then what was
    measured without a threshold), a line of counts, and ``next_steps``."""
    stream = stream or sys.stdout
    rows = table_rows(report)
    faults = _fault_cells(report)
    columns: tuple[str, ...] = COLUMNS
    if faults is not None:
        faults += [""] * (len(rows) - len(faults))  # the unjudged measurements
        columns = (*COLUMNS[:5], "fault", COLUMNS[5])
    shown: list[tuple[str, ...]] = [
        (*row[:5], faults[i], row[5]) if faults is not None else row
        for i, row in enumerate(rows)]
    order = {status: rank for rank, status in enumerate(STATUS_ORDER)}
    shown.sort(key=lambda row: order.get(row[4], len(order)))  # stable within a status
    summary = summary_line(report)
    tail = [counts_line(report), *(printable(step) for step in next_steps or [])]
    if _is_terminal(stream):
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        table = Table(title=Text(summary), show_lines=False)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in shown:
            # Text, not str: a str cell is parsed as markup (and emoji codes).
            table.add_row(*(Text(cell) for cell in row[:4]),
                          Text(row[4], style=_STYLE.get(row[4], "")),
                          *(Text(cell) for cell in row[5:]))
        console = Console(file=stream)
        console.print(table)
        for line in tail:
            console.print(Text(line))
        return
    last = len(columns) - 1
    widths = [max(len(columns[i]), *(len(r[i]) for r in shown)) if shown else len(columns[i])
              for i in range(last)]
    print(summary, file=stream)
    for row in (columns, *shown):
        cells = "  ".join(cell.ljust(w) for cell, w in zip(row[:last], widths, strict=True))
        print(f"{cells}  {row[last]}", file=stream)
    for line in tail:
        print(line, file=stream)


def next_steps(report: Report, kept: Path | None, spool: Path,
               rerun: list[str] | None = None, note: str = "") -> list[str]:
    """What to do after a run: where the report is, how to upload it, and the exact
    command that re-runs only the checks that did not pass (FAIL or ERROR).

    ``note`` says how the report was kept ("signed"). ``rerun`` is the command
    line that ran (``["bench-agent", "run"]`` and the options to keep); the failed
    checks and the profile are added to it."""
    import shlex

    steps = []
    if kept is not None:
        steps.append(f"report: {kept}" + (f" ({note})" if note else ""))
        upload = ["bench-agent", "upload"]
        if spool != Path("results"):
            upload += ["--output", str(spool)]
        steps.append(f"upload: {shlex.join(upload)} --collector URL "
                     "(or set BENCH_AGENT_COLLECTOR)")
    failed = list(dict.fromkeys(
        v.check for v in report.verdicts
        if v.status in (Status.FAIL, Status.ERROR)))
    if failed and rerun:
        profile = report.profile.path or report.profile.name
        if report.profile.path and Path(report.profile.path).parent.name == "profiles" \
                and Path(report.profile.path).stem == report.profile.name:
            profile = report.profile.name  # a shipped profile: its name reads better
        steps.append("re-run what failed: "
                     + shlex.join([*rerun, *failed, "--profile", profile]))
    return steps


def print_rows(columns: tuple[str, ...], rows: list[tuple[str, ...]],
               stream: IO[str] | None = None) -> None:
    """A plain table of ``rows``: rich's on a terminal, aligned columns otherwise
    (the last column unpadded), every cell made printable."""
    stream = stream or sys.stdout
    shown = [tuple(printable(cell) for cell in row) for row in rows]
    if _is_terminal(stream):
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        table = Table(show_lines=False)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in shown:
            table.add_row(*(Text(cell) for cell in row))  # Text: never parsed as markup
        Console(file=stream).print(table)
        return
    widths = [max(len(columns[i]), *(len(r[i]) for r in shown)) if shown else len(columns[i])
              for i in range(len(columns) - 1)]
    for row in (columns, *shown):
        cells = "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True))
        print(f"{cells}  {row[-1]}", file=stream)


def print_inventory(inventory: Inventory) -> None:
    """A one-screen summary of collect_inventory()'s facts (each line made printable)."""
    for line in inventory_lines(inventory):
        print(printable(line))


def _known(value: object) -> str:
    return "?" if value is None else str(value)


def inventory_lines(inventory: Inventory) -> list[str]:
    cpu, mem, os_info = inventory.cpu, inventory.memory, inventory.os
    lines = []
    total = mem.total_bytes
    lines.append(f"host     {_known(inventory.host.hostname)}")
    lines.append(f"os       {_known(os_info.pretty_name)}, kernel {_known(os_info.kernel)}")
    lines.append(f"cpu      {_known(cpu.model)}: {cpu.sockets} socket(s), "
                 f"{cpu.physical_cores} cores, {cpu.logical_cpus} logical; "
                 f"AI flags: {' '.join(cpu.flags_ai) or 'none'}")
    lines.append(f"memory   {format_value(total, Unit.BYTES) if total else '?'}, "
                 f"{len(mem.numa_nodes)} NUMA node(s)")
    for disk in inventory.disks:
        size = format_value(disk.size_bytes, Unit.BYTES) if disk.size_bytes else "?"
        kind = "NVMe" if disk.nvme else ("HDD" if disk.rotational else "SSD")
        lines.append(f"disk     {disk.name}: {disk.model or '?'} {size} {kind}")
    for nic in inventory.nics:
        speed = nic.speed_bits_per_second
        shown = format_value(speed, Unit.BITS_PER_SECOND) if speed else "unknown speed"
        lines.append(f"nic      {nic.name}: {shown}, driver {nic.driver or '-'}")
    for port in inventory.infiniband:
        lines.append(f"ib       {port.device}/{port.port}: {port.state}, "
                     f"{port.rate}, {port.link_layer}")
    for hca in inventory.hcas:
        lines.append(f"hca      {hca.name}: {hca.hca_type or '?'}, firmware {hca.fw_ver or '?'}"
                     f", board {hca.board_id or '?'}")
    gpus = inventory.gpus
    note = inventory.gpu_probe_note
    lines.append(f"gpus     {len(gpus)}" + (f" ({note})" if not gpus and note else ""))
    return lines
