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
- Inside a table every line that starts with a message size is a row and must
  fit the header's columns with finite, non-negative figures (and latencies
  above 0), else it is a ParseError; other lines (warnings, "Conflicting CPU
  frequency ...", a server's banner in the same stream) are skipped. A sweep
  (-a) or --run_infinitely gives several rows: latency reports the smallest
  message size, bandwidth the largest, each the median of the rows of that size.
- A loopback server and client written to one stream print the same table
  twice; a second table with other figures is a ParseError (which one ran?).

--out_json (perftest_parameters.c, write_report_lat_to_file / write_bw_report_to_file)
writes {"test_info": {...}, "results": {"MsgSize": 2, "n_iterations": 1000,
"t_min": ..., "t_typical": ..., "percentile_99": ..., "percentile_99.9": ...}}
or results {"BW_peak", "BW_average", "MsgRate"} in the report's unit. perftest
6.06 writes these keys unquoted ("MsgSize: 2,"), which is not JSON, so the file
is read as key: value pairs, which works for both; a key given twice, a second
"results" or text after the object is a ParseError.
"""

from __future__ import annotations

import math
import re
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_agent.core.errors import ParseError, ToolFailed
from bench_agent.core.model import Measurement
from bench_agent.core.process import run_child, run_tool
from bench_agent.core.strict_json import check_size, snippet
from bench_agent.core.units import Unit
from bench_agent.tools import tool_name
from bench_agent.tools.sockperf import clean_text

TOOL = "perftest"
US = 1e-6
BW_UNITS = {"MB/sec": 2**20 * 8.0, "MiB/sec": 2**20 * 8.0, "Gb/sec": 1e9}
# Every run of name characters is consumed whether or not a "[unit]" follows, so
# a failed column never restarts one character later (linear on a 1 MB line; the
# lazy "[\w.% ]+?\[" it replaces rescanned the rest of the line from each start).
_COLUMN_RE = re.compile(r"#\w+|[\w.% ]+(?:\[[^\[\]]*\])?")
# [ \t]*, not \s*: \s crosses newlines, and from each of a million blank lines
# starts it would rescan all the blank lines after it.
_TEST_RE = re.compile(r"^[ \t]*(RDMA_Write|RDMA_Read|Send|Atomic)\s+(BW|Latency)\s+Test", re.M)
_DEVICE_RE = re.compile(r"Device\s*:\s*(\S+)")
# The look-behind keeps a key from starting inside a word: without it a 1 MB word
# was retried from each of its characters (quadratic).
_PAIR_RE = re.compile(r'(?<![\w."])"?([A-Za-z_][\w.]*)"?\s*:\s*("[^"]*"|-?[0-9][0-9.eE+-]*)')
_RESULTS_RE = re.compile(r'(?<![\w."])"?results"?\s*:\s*\{')
_BRACE_RE = re.compile(r'"[^"]*"|[{}]')
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
    return [c.strip() for c in _COLUMN_RE.findall(line) if c.startswith("#") or c.endswith("]")]


# Latency columns: a figure of 0 or less is no reading (perftest prints usec with
# two decimals; no RDMA operation takes under 0.005 us) and would pass a "<" threshold.
_LATENCY_PREFIXES = ("t_min", "t_max", "t_typical", "t_avg", "99%", "99.9%")


def _row(line: str, fields: list[str], table: PerftestTable) -> list[float]:
    """One result row, or a ParseError quoting it: inside a table every line that
    starts with a message size is a row, and a row that is not one is garbage."""
    if len(fields) != len(table.columns):
        raise ParseError(TOOL, f"a row with {len(fields)} fields under a header of "
                               f"{len(table.columns)} columns: {snippet(line.strip())}")
    try:
        values = [float(f) for f in fields]
    except ValueError:
        raise ParseError(TOOL, f"a row with a field that is no number: "
                               f"{snippet(line.strip())}") from None
    # "nan", "inf" or a negative figure is no measurement: a negative latency
    # would pass a "< 10 us" threshold.
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise ParseError(TOOL, f"a row with a negative or non-finite figure: "
                               f"{snippet(line.strip())}")
    for name, value in zip(table.columns, values, strict=True):
        if name.startswith(_LATENCY_PREFIXES) and value <= 0:
            raise ParseError(TOOL, f"a latency of {value:g} us ({name}): "
                                   f"{snippet(line.strip())}")
    return values


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
        if not fields or not fields[0].isdigit():
            if line.startswith("---"):
                current = None
            continue  # warnings ("Conflicting CPU frequency ..."), banners
        current.rows.append(_row(line, fields, current))
    return [t for t in found if t.rows]


def _one_table(found: list[PerftestTable]) -> PerftestTable:
    """The result table. A loopback run's server and client written to one stream
    print the same table twice (superbench's ib_loopback logs): that is one
    result. A second table with other figures is a second result, and which one
    this run measured is unknown."""
    first = found[0]
    for other in found[1:]:
        if (other.kind, other.columns, other.rows) != (first.kind, first.columns, first.rows):
            row = " ".join(f"{v:g}" for v in other.rows[0])
            raise ParseError(TOOL, f"a second result table with other figures "
                                   f"({len(found)} tables; the second begins {row!r})")
    return first


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
    check_size(TOOL, text)
    text = clean_text(text)
    found = tables(text)
    if not found:
        failure = _failure(text)
        if failure:
            raise ToolFailed(TOOL, failure)
        raise ParseError(TOOL, "no result table (#bytes header and rows)", text.strip()[:300])
    verb = _verb(text)
    match = _DEVICE_RE.search(text)
    device = tool_name(TOOL, device or (match.group(1) if match else ""))
    table = _one_table(found)
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


def _object_end(text: str, start: int) -> int:
    """Where the object opening at ``start`` closes (braces inside quotes skipped);
    -1 when it does not."""
    depth = 0
    for token in _BRACE_RE.finditer(text, start):
        if token.group() == "{":
            depth += 1
        elif token.group() == "}":
            depth -= 1
            if depth == 0:
                return token.end()
    return -1


def _results_pairs(text: str) -> tuple[dict[str, str], dict[str, str], str]:
    """test_info pairs, results pairs and the results text of one --out_json file.

    The file is one object; a second "results", a key given twice or text after
    the object is a ParseError: which figure perftest wrote would be unknown.
    """
    check_size(TOOL, text)
    body = text.strip()
    if not body.startswith("{"):
        raise ParseError(TOOL, "an --out_json file is one {...} object", body[:300])
    end = _object_end(body, 0)
    if end < 0:
        raise ParseError(TOOL, "the --out_json object does not close (truncated file)",
                         body[:300])
    if body[end:].strip():
        raise ParseError(TOOL, f"text after the --out_json object: {snippet(body[end:].strip())}")
    found = list(_RESULTS_RE.finditer(body, 0, end))
    if not found:
        raise ParseError(TOOL, "no 'results' in the --out_json file", body[:300])
    if len(found) > 1:
        raise ParseError(TOOL, f"{len(found)} 'results' sections in one --out_json file: "
                               f"{snippet(body[found[1].start():])}")
    start = found[0].start()
    close = body.find("}", found[0].end())
    section = body[start:close + 1 if close >= 0 else end]
    pairs: dict[str, str] = {}
    for key, value in _PAIR_RE.findall(section):
        if key in pairs:
            raise ParseError(TOOL, f"results key {key!r} given twice in --out_json "
                                   f"({pairs[key]} and {value.strip(chr(34))})")
        pairs[key] = value.strip('"')
    info = {k: v.strip('"') for k, v in _PAIR_RE.findall(body[:start])}
    return info, pairs, section


def _figure(pairs: dict[str, str], key: str) -> float:
    value = float(pairs[key])
    if not math.isfinite(value):
        raise ValueError(f"{key} = {pairs[key]!r} is not a finite number")
    return value


def parse_perftest_json(text: str, gbits: bool = False, verb: str = "write",
                        device: str = "") -> list[Measurement]:
    """An --out_json file (quoted keys, or 6.06's unquoted ones)."""
    info, pairs, section = _results_pairs(text)
    device = tool_name(TOOL, device or info.get("Device", ""))
    for key, value in pairs.items():
        if _NUMBER_KEY_RE.match(key) and value.startswith("-"):
            raise ParseError(TOOL, f"negative {key} in --out_json: {value}", section[:300])
    try:
        if "t_typical" in pairs:
            values = {"typical": _figure(pairs, "t_typical") * US}
            for key, name in (("avg", "t_avg"), ("p99", "percentile_99"),
                              ("p99_9", "percentile_99.9"), ("min", "t_min"),
                              ("max", "t_max")):
                if name in pairs:
                    values[key] = _figure(pairs, name) * US
            zero = [k for k, v in values.items() if v <= 0]
            if zero:
                raise ParseError(TOOL, f"a latency of 0 us in --out_json ({', '.join(zero)})",
                                 section[:300])
            return latency_measurements(verb, values, int(_figure(pairs, "MsgSize"))
                                        if "MsgSize" in pairs else 0, device)
        if "BW_average" in pairs:
            factor = BW_UNITS["Gb/sec" if gbits else "MiB/sec"]
            size = int(_figure(pairs, "MsgSize")) if "MsgSize" in pairs else 0
            return [Measurement(check="network.rdma_bandwidth",
                                metric=f"network.rdma_{verb}_bandwidth",
                                value=_figure(pairs, "BW_average") * factor,
                                unit=Unit.BITS_PER_SECOND, device=device, tool=TOOL,
                                params={"size": size,
                                        "header_unit": "Gb/sec" if gbits else "MiB/sec"})]
    except ValueError as exc:
        raise ParseError(TOOL, f"unreadable number in --out_json: {exc}") from exc
    raise ParseError(TOOL, "--out_json results have neither t_typical nor BW_average",
                     section[:300])


# --- running -------------------------------------------------------------------------


def supports_out_json(tool: str) -> bool:
    """--out_json appeared in perftest 6.x; older builds reject the option."""
    try:
        proc = run_child([tool, "--help"], timeout=10)
    except OSError:
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
