"""perftest (ib_write_lat, ib_write_bw, ib_read_lat): run the client, read its report.

Text report (perftest_parameters.h, RESULT_FMT* headers and REPORT_FMT* rows):

    #bytes #iterations    t_min[usec]    t_max[usec]  t_typical[usec]    t_avg[usec]
        t_stdev[usec]   99% percentile[usec]   99.9% percentile[usec]
    #bytes     #iterations    BW peak[MB/sec]    BW average[MB/sec]   MsgRate[Mpps]

- t_typical is the median of the sorted samples (print_report_lat: get_median).
  WRITE and SEND latencies are half the round trip (rtt_factor 2); READ and
  ATOMIC are the whole operation (rtt_factor 1).
- BW headers: "MB/sec" (older releases, e.g. 4.5 and 6.06) and "MiB/sec" (newer)
  both mean 2^20 bytes/s ("--report_gbits ... (instead of MiB/sec) Note: MiB=2^20
  byte, while Gb=10^9 bits", ib_write_bw --help of perftest 6.06); "Gb/sec" with
  --report_gbits is 10^9 bits/s.
- Rows are validated by their column count against the header's columns;
  anything else (warnings, "Conflicting CPU frequency ...", a server's banner in
  the same stream) is skipped. A sweep (-a) or --run_infinitely gives several
  rows: latency reports the smallest message size, bandwidth the largest, each
  the median of the rows of that size.

--out_json (perftest_parameters.c, write_report_lat_to_file / write_bw_report_to_file)
writes {"test_info": {...}, "results": {"MsgSize": 2, "n_iterations": 1000,
"t_min": ..., "t_typical": ..., "percentile_99": ..., "percentile_99.9": ...}}
or results {"BW_peak", "BW_average", "MsgRate"} in the report's unit. perftest
6.06 writes these keys unquoted ("MsgSize: 2,"), which is not JSON, so the file
is read as key: value pairs, which works for both.
"""

from __future__ import annotations

import math
import re
import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_agent.errors import ParseError, ToolFailed
from bench_agent.model import Measurement
from bench_agent.tools.process import run_tool
from bench_agent.tools.sockperf import clean_text
from bench_agent.units import Unit

TOOL = "perftest"
US = 1e-6
BW_UNITS = {"MB/sec": 2**20 * 8.0, "MiB/sec": 2**20 * 8.0, "Gb/sec": 1e9}
_COLUMN_RE = re.compile(r"#\w+|[\w.% ]+?\[[^\]]*\]")
_TEST_RE = re.compile(r"^\s*(RDMA_Write|RDMA_Read|Send|Atomic)\s+(BW|Latency)\s+Test", re.M)
_DEVICE_RE = re.compile(r"Device\s*:\s*(\S+)")
_PAIR_RE = re.compile(r'"?([A-Za-z_][\w.]*)"?\s*:\s*("[^"]*"|-?[0-9][0-9.eE+-]*)')
# --out_json result keys that are figures (latencies, bandwidths, message rate).
_NUMBER_KEY_RE = re.compile(r"^(t_|percentile_|BW_|MsgRate)")
_ERRORS = ("Did not detect devices", "Unable to", "Couldn't", "Failed to", "failed to",
           "Conflicting parameters", "is not supported")
_VERBS = {"RDMA_Write": "write", "RDMA_Read": "read"}


@dataclass(frozen=True, slots=True)
class PerftestTable:
    kind: str  # "lat" or "bw"
    columns: list[str]
    rows: list[list[float]]


def header_columns(line: str) -> list[str]:
    return [c.strip() for c in _COLUMN_RE.findall(line)]


def tables(text: str) -> list[PerftestTable]:
    found: list[PerftestTable] = []
    current: PerftestTable | None = None
    for line in text.splitlines():
        if line.lstrip().startswith("#bytes"):
            columns = header_columns(line)
            kind = "lat" if any(c.startswith("t_") for c in columns) else "bw"
            current = PerftestTable(kind, columns, [])
            found.append(current)
            continue
        if current is None:
            continue
        fields = line.split()
        if not fields or not re.fullmatch(r"\d+", fields[0]):
            if line.startswith("---"):
                current = None
            continue
        if len(fields) != len(current.columns):
            continue  # not a row of this table: a column count that does not fit
        try:
            values = [float(f) for f in fields]
        except ValueError:
            continue
        # "nan", "inf" or a negative figure is no measurement: a negative latency
        # would pass a "< 10 us" threshold, so such a row is dropped, not read.
        if all(math.isfinite(v) and v >= 0 for v in values):
            current.rows.append(values)
    return [t for t in found if t.rows]


def _column(table: PerftestTable, prefix: str) -> int:
    for index, name in enumerate(table.columns):
        if name.startswith(prefix):
            return index
    raise ParseError(TOOL, f"no {prefix!r} column in {table.columns}")


def _failure(text: str) -> str | None:
    lines = [ln.strip() for ln in text.splitlines() if any(e in ln for e in _ERRORS)]
    return "; ".join(lines[:3]) if lines else None


def _verb(text: str) -> str:
    test = _TEST_RE.search(text)
    if test is None:
        return "write"
    verb = _VERBS.get(test.group(1))
    if verb is None:
        raise ParseError(TOOL, f"{test.group(0).strip()} is not a test bench-agent reports")
    return verb


def _rows_of_size(rows: list[list[float]], largest: bool) -> list[list[float]]:
    size = max(r[0] for r in rows) if largest else min(r[0] for r in rows)
    return [r for r in rows if r[0] == size]


def parse_perftest(text: str, device: str = "") -> list[Measurement]:
    """The text report of ib_write_lat / ib_write_bw / ib_read_lat."""
    text = clean_text(text)
    found = tables(text)
    if not found:
        failure = _failure(text)
        if failure:
            raise ToolFailed(TOOL, failure)
        raise ParseError(TOOL, "no result table (#bytes header and rows)", text.strip()[:300])
    verb = _verb(text)
    match = _DEVICE_RE.search(text)
    device = device or (match.group(1) if match else "")
    table = found[-1]
    if table.kind == "lat":
        rows = _rows_of_size(table.rows, largest=False)
        # t_typical is the figure judged; older perftest builds print no t_avg or
        # percentile columns, which are then simply not reported.
        values = {"typical": statistics.median(r[_column(table, "t_typical")] for r in rows) * US}
        for key, prefix in (("avg", "t_avg"), ("p99", "99%"), ("p99_9", "99.9%"),
                            ("min", "t_min"), ("max", "t_max")):
            if any(name.startswith(prefix) for name in table.columns):
                values[key] = statistics.median(r[_column(table, prefix)] for r in rows) * US
        return latency_measurements(verb, values, int(rows[0][0]), device)
    bw_col = _column(table, "BW average")
    unit = table.columns[bw_col].split("[", 1)[1].rstrip("]")
    if unit not in BW_UNITS:
        raise ParseError(TOOL, f"unknown bandwidth unit {unit!r}")
    rows = _rows_of_size(table.rows, largest=True)
    samples = [r[bw_col] * BW_UNITS[unit] for r in rows]
    return [Measurement(check="network.rdma_bandwidth", metric=f"network.rdma_{verb}_bandwidth",
                        value=statistics.median(samples), unit=Unit.BITS_PER_SECOND,
                        samples=tuple(samples) if len(samples) > 1 else (), device=device,
                        tool=TOOL, params={"size": int(rows[0][0]), "header_unit": unit})]


def latency_measurements(verb: str, values: dict[str, float], size: int,
                         device: str) -> list[Measurement]:
    base = f"network.rdma_{verb}_latency"
    common: dict[str, Any] = {"check": "network.rdma_latency", "unit": Unit.SECONDS,
                              "device": device, "tool": TOOL, "params": {"size": size}}
    stats = {k: v for k, v in values.items() if k in ("min", "max")}
    out = [Measurement(metric=base, value=values["typical"], stats=stats, **common)]
    for key in ("avg", "p99", "p99_9"):
        if key in values:
            out.append(Measurement(metric=f"{base}_{key}", value=values[key], **common))
    return out


def parse_perftest_json(text: str, gbits: bool = False, verb: str = "write",
                        device: str = "") -> list[Measurement]:
    """An --out_json file (quoted keys, or 6.06's unquoted ones)."""
    start = text.find("results")
    if start < 0:
        raise ParseError(TOOL, "no 'results' in the --out_json file", text.strip()[:300])
    pairs = {k: v.strip('"') for k, v in _PAIR_RE.findall(text[start:])}
    info = {k: v.strip('"') for k, v in _PAIR_RE.findall(text[:start])}
    device = device or info.get("Device", "")
    for key, value in pairs.items():
        if _NUMBER_KEY_RE.match(key) and value.startswith("-"):
            raise ParseError(TOOL, f"negative {key} in --out_json: {value}",
                             text[start:start + 300])
    try:
        if "t_typical" in pairs:
            values = {"typical": float(pairs["t_typical"]) * US}
            for key, name in (("avg", "t_avg"), ("p99", "percentile_99"),
                              ("p99_9", "percentile_99.9"), ("min", "t_min"),
                              ("max", "t_max")):
                if name in pairs:
                    values[key] = float(pairs[name]) * US
            return latency_measurements(verb, values, int(float(pairs.get("MsgSize", 0))),
                                        device)
        if "BW_average" in pairs:
            factor = BW_UNITS["Gb/sec" if gbits else "MiB/sec"]
            return [Measurement(check="network.rdma_bandwidth",
                                metric=f"network.rdma_{verb}_bandwidth",
                                value=float(pairs["BW_average"]) * factor,
                                unit=Unit.BITS_PER_SECOND, device=device, tool=TOOL,
                                params={"size": int(float(pairs.get("MsgSize", 0))),
                                        "header_unit": "Gb/sec" if gbits else "MiB/sec"})]
    except ValueError as exc:
        raise ParseError(TOOL, f"unreadable number in --out_json: {exc}") from exc
    raise ParseError(TOOL, "--out_json results have neither t_typical nor BW_average",
                     text[start:start + 300])


# --- running -------------------------------------------------------------------------


def supports_out_json(tool: str) -> bool:
    """--out_json appeared in perftest 6.x; older builds reject the option."""
    try:
        proc = subprocess.run([tool, "--help"], capture_output=True, text=True, timeout=10,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--out_json" in proc.stdout + proc.stderr


def run_client(tool: str, host: str, port: int, device: str, gid_index: int | None,
               size: int, iterations: int, timeout: float,
               report_gbits: bool = True) -> list[Measurement]:
    verb = "read" if "read" in tool else "write"
    command = [tool, "-d", device, "-p", str(port), "-s", str(size), "-n", str(iterations)]
    if gid_index is not None:
        command += ["-x", str(gid_index)]
    if report_gbits and tool.endswith("_bw"):
        command.append("--report_gbits")
    with tempfile.TemporaryDirectory(prefix="bench-agent-perftest-") as tmp:
        json_path = Path(tmp) / "out.json"
        if supports_out_json(tool):
            command += ["--out_json", f"--out_json_file={json_path}"]
        command.append(host)
        proc = run_tool(tool, command, timeout, "install perftest (apt install perftest)")
        output = proc.stdout + proc.stderr
        if proc.returncode != 0:
            raise ToolFailed(tool, _failure(output) or output[-500:], returncode=proc.returncode)
        if json_path.is_file():
            return parse_perftest_json(json_path.read_text(errors="replace"),
                                       gbits=report_gbits, verb=verb, device=device)
    return parse_perftest(output, device=device)


def parse_perftest_output(text: str) -> list[Measurement]:
    """`bench-agent parse perftest FILE`: a text report, or an --out_json file.

    An --out_json file does not name its bandwidth unit; MiB/s (perftest's
    default) is assumed unless its test_info mentions Gb/sec.
    """
    stripped = clean_text(text).lstrip()
    if stripped.startswith("{"):
        verb = "read" if "Read" in stripped[:400] else "write"
        return parse_perftest_json(stripped, gbits="Gb/sec" in stripped, verb=verb)
    return parse_perftest(text)
