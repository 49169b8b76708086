"""nvbandwidth (NVIDIA/nvbandwidth): run it, read its matrices of GB/s per testcase.

Two output forms, both read here into one record (published outputs of v0.5 to v0.8:
NVIDIA/nvbandwidth README and issues 34, 42, 50, NVIDIA/DCGM's nvbandwidth plugin tests):

- Text (every version; output.cpp): a header ("nvbandwidth Version: v0.8", "CUDA
  Runtime Version", "Driver Version", "Device N: NAME (bus)"), then per testcase
  "Running NAME.", a description ending in its unit ("memcpy CE CPU(row) -> GPU(column)
  bandwidth (GB/s)", "memory latency SM ... (ns)"), a column header, one row per
  source, a blank line and "SUM NAME VALUE". Before v0.5 a GPU's own cell (the
  diagonal of a GPU x GPU matrix) printed "0.00", later "N/A": it is no figure. A
  testcase that cannot run prints "Waived: ..." (NVB_WAIVED); one that fails prints
  its error and, for an ASSERT, the run stops there (error_handling.h).
- JSON (``-j``, v0.5 on; json_output.cpp): ``{"nvbandwidth": {"version", "Driver
  Version", "CUDA Runtime Version", "testcases": [{"name", "status", "bandwidth_matrix"
  (rows of strings, "N/A"), "sum", "bandwidth_description"}], "error"}}``; statuses
  Passed, Waived, Not Found, Error (and Running for one the run died in).

nvbandwidth's GB/s is decimal (bytes / 1e9 / seconds, README "Bandwidth is
reported in GB/s"): stored as bytes/s = GB/s * 1e9; latencies in ns as seconds.
Each matrix's SUM must agree with its cells (as printed, to their rounding): a SUM
that does not is a ParseError, not a figure.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from bench_agent.core.errors import ParseError, ToolFailed
from bench_agent.core.model import Measurement
from bench_agent.core.process import run_tool
from bench_agent.core.strict_json import check_size, read_document, snippet
from bench_agent.core.units import Unit

TOOL = "nvbandwidth"
CHECK = "gpu.nvbandwidth"
INSTALL_HINT = ("build it from https://github.com/NVIDIA/nvbandwidth (cmake; needs the CUDA "
                "toolkit) and put it on PATH")
PASSED, WAIVED, NOT_FOUND, ERROR, INCOMPLETE = ("Passed", "Waived", "Not Found", "Error",
                                                "Incomplete")  # Incomplete: JSON "Running"
_JSON_STATUSES = {PASSED, WAIVED, NOT_FOUND, ERROR, "Running"}
GB = 1e9
NS = 1e-9

# The testcases of nvbandwidth v0.5 to v0.8 (testcases_ce.cpp, testcases_sm.cpp; the
# names of the v0.5 JSON sample), each a metric of the check: its weakest cell (GB/s)
# or its slowest (ns).
_COPIES = ("host_to_device_memcpy", "device_to_host_memcpy",
           "host_to_device_bidirectional_memcpy", "device_to_host_bidirectional_memcpy",
           "device_to_device_memcpy_read", "device_to_device_memcpy_write",
           "device_to_device_bidirectional_memcpy_read",
           "device_to_device_bidirectional_memcpy_write", "all_to_host_memcpy",
           "all_to_host_bidirectional_memcpy", "host_to_all_memcpy",
           "host_to_all_bidirectional_memcpy", "all_to_one_write", "all_to_one_read",
           "one_to_all_write", "one_to_all_read")
BANDWIDTH_TESTCASES = tuple(f"{c}_{engine}" for engine in ("ce", "sm") for c in _COPIES)
LATENCY_TESTCASES = ("host_device_latency_sm", "device_to_device_latency_sm")

_DECIMAL = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,12})?")
_NAME = re.compile(r"[a-z0-9_]{1,80}")
_DESCRIPTION = re.compile(r"^(?P<desc>\S.*\(row\).*\(column\).*?)\s*\((?P<unit>GB/s|ns)\)\s*$")
_ELIDED = re.compile(r"^\s*(?:\[\.\.\.\]|\.\.\.|…)\s*$")
_STATUS_LINE = re.compile(r"^(Waived|Not Found|Error)\b:?\s*(.*)$")
_FAILURE_WORDS = re.compile(r"ASSERT|[Ee]rror|ERROR|Invalid|[Ff]ailed")
_HEADER_FIELDS = {
    "version": re.compile(r"^nvbandwidth Version: (\S+)$"),
    "git": re.compile(r"^Built from Git version: ?(.*)$"),
    "cuda_runtime": re.compile(r"^CUDA Runtime Version: (\d+)$"),
    "cuda_driver": re.compile(r"^CUDA Driver Version: (\d+)$"),
    "driver": re.compile(r"^Driver Version: (\S+)$"),
}
_DEVICE = re.compile(r"^Device (\d+): (.+)$")
_RUNNING = re.compile(r"^Running (\S+)\.$")
_SUM = re.compile(r"^SUM (\S+) (\S+)$")


@dataclass
class Testcase:
    name: str
    status: str
    description: str = ""
    unit: str = "GB/s"
    matrix: list[list[float | None]] = field(default_factory=list)
    total: float | None = None  # the SUM the tool printed
    message: str = ""

    @property
    def gpu_to_gpu(self) -> bool:
        return "GPU(row)" in self.description and "GPU(column)" in self.description

    def cells(self) -> list[tuple[int, int, float]]:
        """(row, column, value) of every figure; a GPU's own cell of a GPU x GPU
        matrix is none (printed 0.00 before v0.5, N/A since)."""
        return [(r, c, v) for r, row in enumerate(self.matrix) for c, v in enumerate(row)
                if v is not None and not (self.gpu_to_gpu and r == c)]


@dataclass
class Bandwidth:
    testcases: list[Testcase]
    form: str
    header: dict[str, str] = field(default_factory=dict)
    devices: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str = ""  # an error of the whole run (JSON "error")

    @property
    def failed(self) -> list[Testcase]:
        return [t for t in self.testcases if t.status in (ERROR, INCOMPLETE)]


def _cell(token: Any, where: str) -> float | None:
    if token == "N/A":
        return None
    if isinstance(token, str) and _DECIMAL.fullmatch(token):
        return float(token)
    if isinstance(token, int | float) and not isinstance(token, bool) \
            and math.isfinite(token) and token >= 0:
        return float(token)
    raise ParseError(TOOL, f"{where}: {snippet(str(token), 40)} is not a figure (a decimal "
                           ">= 0 or N/A)")


def _check_sum(case: Testcase) -> None:
    """The printed SUM against the cells: each cell is rounded to 0.01 (text) or to 6
    significant digits (JSON), so they may differ by that much per cell."""
    if case.total is None:
        return
    cells = [v for row in case.matrix for v in row if v is not None]
    computed = sum(cells)
    slack = 0.005 * len(cells) + 0.01 + 1e-5 * computed
    if abs(computed - case.total) > slack:
        raise ParseError(TOOL, f"testcase {case.name}: the SUM {case.total:g} does not agree "
                               f"with its cells, which add up to {computed:.2f}")


# --- text -------------------------------------------------------------------------------


class _TextReader:
    def __init__(self) -> None:
        self.run = Bandwidth([], "text")
        self.current: Testcase | None = None  # named by "Running", matrix maybe pending
        self.columns: list[int] | None = None  # inside a matrix: its column labels
        self.matrix_case: Testcase | None = None
        self.names: set[str] = set()
        self.message: list[str] = []

    def add(self, case: Testcase) -> None:
        if case.name in self.names:
            raise ParseError(TOOL, f"testcase {case.name} is reported twice: which result "
                                   "stands is unknown")
        self.names.add(case.name)
        self.run.testcases.append(case)

    def end_matrix(self) -> None:
        case, self.columns = self.matrix_case, None
        if case is not None and not case.matrix:
            raise ParseError(TOOL, f"the matrix of {case.name or case.description} has no rows")

    def close_running(self) -> None:
        """The testcase "Running NAME." began and nothing more came of it."""
        case = self.current
        self.current = None
        if case is None or case.status != "Running":
            return
        words = " ".join(self.message).strip()
        if not _FAILURE_WORDS.search(words):
            # No result and no error: the output was cut short (nvbandwidth killed,
            # a file saved half-way); what it would have said is unknown.
            raise ParseError(TOOL, f"testcase {case.name} started and the output ends "
                                   "before its result or an error"
                             + (f" (it printed {snippet(words, 100)})" if words else ""))
        case.status, case.message = ERROR, words
        self.message = []

    def line(self, raw: str) -> None:
        line = raw.rstrip()
        if self.columns is not None:
            if line.strip() and not _ELIDED.match(line):
                self.row(line)
                return
            self.end_matrix()
        if _ELIDED.match(line):
            self.run.notes.append("the output was elided by whoever saved it ('...' line)")
            return
        if not line.strip():
            return
        text = line.strip()
        if text.startswith("$ "):
            self.run.notes.append(f"command: {text[2:][:200]}")
            return
        for key, pattern in _HEADER_FIELDS.items():
            if (found := pattern.match(text)) is not None:
                self.run.header[key] = found.group(1)
                return
        if (device := _DEVICE.match(text)) is not None:
            self.run.devices.append(device.group(2))
            return
        if (running := _RUNNING.match(text)) is not None:
            self.close_running()
            self.current = Testcase(running.group(1), "Running")
            self.add(self.current)
            return
        if (desc := _DESCRIPTION.match(text)) is not None:
            self.start_matrix(desc.group("desc"), desc.group("unit"))
            return
        if (total := _SUM.match(text)) is not None:
            self.sum_line(total.group(1), total.group(2), text)
            return
        if (status := _STATUS_LINE.match(text)) is not None and self.current is not None \
                and self.current.status == "Running":
            self.current.status = {"Waived": WAIVED, "Not Found": NOT_FOUND}.get(
                status.group(1), ERROR)
            self.current.message = status.group(2)
            self.current = None
            return
        if self.current is not None and self.current.status == "Running":
            self.message.append(text)  # the tool's words about the testcase it ran
            return
        self.run.notes.append(f"not read: {snippet(text, 100)}")

    def start_matrix(self, description: str, unit: str) -> None:
        self.columns = []
        if self.current is not None and self.current.status == "Running":
            case = self.current
            self.current = None
            self.message = []
        else:
            case = Testcase("", "Running")  # named by its SUM line (a pasted fragment)
        case.description, case.unit, case.status = description, unit, PASSED
        self.matrix_case = case

    def row(self, line: str) -> None:
        assert self.columns is not None and self.matrix_case is not None
        tokens = line.split()
        if not self.columns and not self.matrix_case.matrix:
            if not all(t.isdigit() and len(t) < 5 for t in tokens) or \
                    [int(t) for t in tokens] != list(range(len(tokens))):
                raise ParseError(TOOL, f"the column header of {self.matrix_case.description!r}"
                                       f" is not 0, 1, ...: {snippet(line)}")
            self.columns = [int(t) for t in tokens]
            return
        case = self.matrix_case
        if not tokens[0].isdigit() or int(tokens[0]) != len(case.matrix) \
                or len(tokens) != len(self.columns) + 1:
            raise ParseError(TOOL, f"a row of {case.name or case.description!r} that does not "
                                   f"fit its {len(self.columns)} columns: {snippet(line)}")
        where = f"{case.name or case.description} row {tokens[0]}"
        case.matrix.append([_cell(t, where) for t in tokens[1:]])

    def sum_line(self, name: str, value: str, text: str) -> None:
        case = self.matrix_case
        if case is None or case.total is not None or not case.matrix:
            raise ParseError(TOOL, f"a SUM line with no matrix before it: {snippet(text)}")
        if not _NAME.fullmatch(name):
            raise ParseError(TOOL, f"a SUM line that names no testcase: {snippet(text)}")
        if not case.name:
            case.name = name
            self.add(case)
        elif case.name != name:
            raise ParseError(TOOL, f"the SUM of {name} follows the matrix of {case.name}")
        total = _cell(value, f"the SUM of {name}")
        case.total = total
        _check_sum(case)

    def finish(self, text: str) -> Bandwidth:
        if self.columns is not None:
            case = self.matrix_case
            assert case is not None
            complete = (len(case.matrix) == (len(self.columns) if case.gpu_to_gpu else 1)
                        and text.endswith("\n"))
            if not complete:
                # Cut inside its matrix: no figure of it can be trusted.
                raise ParseError(TOOL, f"the output ends inside the matrix of "
                                       f"{case.name or case.description!r} ({len(case.matrix)}"
                                       " rows): it was cut short")
            self.columns = None
        self.close_running()
        case = self.matrix_case
        if case is not None and not case.name:
            raise ParseError(TOOL, f"a matrix ({case.description!r}) whose testcase is not "
                                   "named: no 'Running NAME.' before it nor SUM after it")
        if not self.run.testcases:
            words = "; ".join(self.message or self.run.notes[-3:]) or "no testcase"
            raise ParseError(TOOL, f"no testcase in the output ({snippet(words, 200)})",
                             text[:300])
        return self.run


def parse_text(text: str) -> Bandwidth:
    check_size(TOOL, text)
    reader = _TextReader()
    for raw in text.splitlines():
        if "\x00" in raw:
            raise ParseError(TOOL, f"a NUL character in the output: {snippet(raw)}")
        reader.line(raw)
    return reader.finish(text)


# --- JSON -------------------------------------------------------------------------------


def _json_case(item: Any, where: str) -> Testcase:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str) \
            or not _NAME.fullmatch(item["name"]):
        raise ParseError(TOOL, f"{where} is not a testcase with a name")
    status = item.get("status")
    if status not in _JSON_STATUSES:
        raise ParseError(TOOL, f"testcase {item['name']}: the status "
                               f"{snippet(str(status), 40)} is none of "
                               f"{', '.join(sorted(_JSON_STATUSES))}")
    case = Testcase(item["name"], INCOMPLETE if status == "Running" else status)
    error = item.get("error")
    if error is not None:
        case.message = error if isinstance(error, str) else snippet(repr(error), 200)
        case.status = ERROR
    if case.status != PASSED:
        return case
    description = item.get("bandwidth_description")
    matrix = item.get("bandwidth_matrix")
    if not isinstance(description, str) or not isinstance(matrix, list) or not matrix \
            or not all(isinstance(row, list) and row for row in matrix):
        raise ParseError(TOOL, f"testcase {case.name} passed without a bandwidth matrix")
    found = _DESCRIPTION.match(description.strip())
    case.description = found.group("desc") if found else description.strip()
    case.unit = found.group("unit") if found else "GB/s"
    case.matrix = [[_cell(v, f"{case.name} row {r}") for v in row]
                   for r, row in enumerate(matrix)]
    if "sum" in item:
        total = item["sum"]
        if isinstance(total, bool) or not isinstance(total, int | float) or total < 0:
            raise ParseError(TOOL, f"testcase {case.name}: the sum {snippet(repr(total), 40)}"
                                   " is not a figure")
        case.total = float(total)
        _check_sum(case)
    return case


def parse_json(text: str) -> Bandwidth:
    from bench_agent.tools import refuse_control_keys

    document, leading = read_document(text, TOOL)
    refuse_control_keys(TOOL, document)
    root = document.get("nvbandwidth")
    if not isinstance(root, dict) or not isinstance(root.get("testcases", []), list):
        keys = ", ".join(repr(k) for k in list(document)[:6])
        raise ParseError(TOOL, f"not an nvbandwidth document (top-level keys: {keys})")
    run = Bandwidth([], "json", notes=[f"text before the JSON: {snippet(x, 100)}"
                                       for x in leading[:5]])
    for key, name in (("version", "version"), ("git_version", "git"),
                      ("CUDA Runtime Version", "cuda_runtime"), ("Driver Version", "driver")):
        if isinstance(root.get(key), str | int) and not isinstance(root.get(key), bool):
            run.header[name] = str(root[key])
    names: set[str] = set()
    for i, item in enumerate(root.get("testcases", [])):
        case = _json_case(item, f"testcases[{i}]")
        if case.name in names:
            raise ParseError(TOOL, f"testcase {case.name} is reported twice")
        names.add(case.name)
        run.testcases.append(case)
    if root.get("error") is not None:
        run.error = str(root["error"])[:500]
    if not run.testcases and not run.error:
        raise ParseError(TOOL, "an nvbandwidth document with no testcase and no error")
    return run


def parse_output(text: str) -> Bandwidth:
    """nvbandwidth's output, JSON (``-j``) or text."""
    if re.search(r'^[ \t]*\{', text, re.MULTILINE) and '"nvbandwidth"' in text:
        return parse_json(text)
    return parse_text(text)


# --- measurements -----------------------------------------------------------------------


def bandwidth_measurements(run: Bandwidth) -> list[Measurement]:
    """Per known testcase that passed: its weakest cell (bandwidth) or slowest
    (latency), the cell named; per run the testcases that failed and were waived."""
    version = run.header.get("version", "")
    out: list[Measurement] = []
    unjudged: list[str] = []
    for case in run.testcases:
        cells = case.cells()
        if case.status != PASSED or not cells:
            continue
        latency = case.unit == "ns"
        if case.name not in (LATENCY_TESTCASES if latency else BANDWIDTH_TESTCASES):
            unjudged.append(case.name)
            continue
        row, col, value = (max if latency else min)(cells, key=lambda c: c[2])
        source = f"GPU{row}" if "GPU(row)" in case.description else "CPU"
        target = f"GPU{col}" if "GPU(column)" in case.description else "CPU"
        arrow = "<-" if "<-" in case.description and "<->" not in case.description else (
            "<->" if "<->" in case.description else "->")
        pair = f"{source} {arrow} {target}"
        unit = case.unit
        out.append(Measurement(
            check=CHECK, metric=f"gpu.nvbandwidth_{case.name}",
            value=value * (NS if latency else GB),
            unit=Unit.SECONDS if latency else Unit.BYTES_PER_SECOND, tool=TOOL,
            tool_version=version,
            params={"form": run.form, "description": f"{case.description} ({unit})",
                    "matrix": case.matrix, "sum": case.total, "weakest": pair,
                    "note": f"{'slowest' if latency else 'weakest'} cell: {pair}, "
                            f"{value:g} {unit}"}))
    failed = run.failed
    notes = [f"{t.name}: {t.status}: {t.message}" for t in failed]
    if run.error:
        notes.append(f"the run: {run.error}")
    waived = [t.name for t in run.testcases if t.status in (WAIVED, NOT_FOUND)]
    out.append(Measurement(check=CHECK, metric="gpu.nvbandwidth_failed_testcases",
                           value=len(failed) + bool(run.error), unit=Unit.COUNT, tool=TOOL,
                           tool_version=version,
                           params={"form": run.form, "failed": [t.name for t in failed],
                                   "note": "; ".join(notes)[:1000], "notes": run.notes[:20],
                                   "unjudged": unjudged}))
    if waived:
        # Only a count of some: a text output has no end marker before v0.8 (its
        # NOTE lines), so "none waived" cannot be told from an output cut short.
        out.append(Measurement(check=CHECK, metric="gpu.nvbandwidth_waived_testcases",
                               value=len(waived), unit=Unit.COUNT, tool=TOOL,
                               tool_version=version, params={"waived": waived}))
    return out


def parse_nvbandwidth(text: str) -> list[Measurement]:
    """`bench-agent parse nvbandwidth FILE`: the measurements of a saved output."""
    return bandwidth_measurements(parse_output(text))


def nvbandwidth_failures(measurements: list[Measurement]) -> list[str]:
    """What a parsed output reports as failed (`bench-agent parse nvbandwidth` exits 1)."""
    return [str(m.params.get("note") or "a testcase failed") for m in measurements
            if m.metric == "gpu.nvbandwidth_failed_testcases" and m.value > 0]


# --- running ------------------------------------------------------------------------------


def run_nvbandwidth(testcases: list[str], timeout: float) -> Bandwidth:
    """``nvbandwidth -j [-t NAME ...]`` (-t is multitoken, nvbandwidth.cpp); a version
    before v0.5 knows no ``-j`` and is run again for its text. An ASSERT ends the
    run non-zero with the matrices so far: those are read, the testcase it died in
    is an Error."""
    selection = ["-t", *testcases] if testcases else []
    done = run_tool(TOOL, ["nvbandwidth", "-j", *selection], timeout, INSTALL_HINT)
    if done.returncode != 0 and '"nvbandwidth"' not in done.stdout and \
            re.search(r"unrecognised|unrecognized|unknown option", done.stdout + done.stderr):
        done = run_tool(TOOL, ["nvbandwidth", *selection], timeout, INSTALL_HINT)
    try:
        run = parse_output(done.stdout)
    except ParseError:
        if done.returncode != 0:
            words = (done.stderr.strip() or done.stdout.strip() or "no output")[-600:]
            raise ToolFailed(TOOL, words, returncode=done.returncode) from None
        raise
    if done.returncode != 0 and not run.failed and not run.error:
        run.error = (f"exited {done.returncode}: "
                     f"{(done.stderr.strip() or 'no error message')[-300:]}")
    return run
