"""sockperf ping-pong: run the client, read its summary.

sockperf's client summary (sockperf 3.5-3.7, src/client.cpp ``client_statistics``):

    sockperf: ====> avg-lat=  9.017 (std-dev=4.171)        3.5, one-way
    sockperf: ====> avg-latency=6.426 (std-dev=4.916)      3.7, one-way
    sockperf: ====> avg-rtt=10.453 (std-dev=30.304)        --full-rtt: round trip
    sockperf: ---> percentile 99.900 =   16.824
    sockperf: ---> <MAX> observation =   98.777

All figures are microseconds. By default they are half the round trip; with
``--full-rtt`` the whole round trip ("avg-rtt", "Summary: Round trip is ...").
One-way and round trip are different metrics (network.tcp_latency* vs
network.tcp_round_trip*), never mixed.

The output is hostile: 3.7 colours the summary with ANSI escapes, VirtualClient's
capture starts with a UTF-8 byte-order mark, and sockperf exits 0 after
"ERROR: Can`t connect socket" or "No messages were received from the server".
The transport is read from the "[ 0] IP = ... # TCP" line; without it, UDP,
sockperf's default ("--tcp: Use TCP protocol (default UDP)", sockperf --help).
"""

from __future__ import annotations

import math
import re
from typing import Any

from bench_agent.core.errors import ParseError, ToolFailed
from bench_agent.core.model import Measurement
from bench_agent.core.process import run_tool
from bench_agent.core.strict_json import check_size, snippet
from bench_agent.core.units import Unit

TOOL = "sockperf"
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_NUM = r"([0-9]+(?:\.[0-9]+)?)"
_AVG_RE = re.compile(r"====>\s*avg-(lat|latency|rtt)\s*=\s*" + _NUM + r"\s*\(std-dev=\s*" + _NUM)
# The "--->" lines of a summary, whole (a line that fits neither is garbage).
_PCT_RE = re.compile(r"--->\s*percentile\s+" + _NUM + r"\s*=\s*" + _NUM + r"\s*$")
_EXTREME_RE = re.compile(r"--->\s*<(MAX|MIN)>\s*observation\s*=\s*" + _NUM + r"\s*$")
_PROTO_RE = re.compile(r"^\[\s*\d+\]\s*IP\s*=.*#\s*(TCP|UDP)", re.MULTILINE)
_VERSION_RE = re.compile(r"version\s*#?\s*([0-9][\w.-]*)")
_SERVER_RE = re.compile(r"Printing statistics for Server No:\s*(\d+)")
# Where the first server's summary ends: the next server's statistics or summary.
_BLOCK_END_RE = re.compile(r"Printing statistics|====>\s*avg-")
_ERROR_RE = re.compile(r"sockperf:\s*(ERROR:.*|No messages were received.*)")
US = 1e-6
# The percentiles we report as metrics; sockperf prints 25..99.999.
REPORTED = {50.0: "_p50", 99.0: "_p99", 99.9: "_p99_9"}


def clean_text(text: str) -> str:
    """Without the byte-order mark and the ANSI colour codes."""
    return _ANSI_RE.sub("", text.replace("\ufeff", ""))


def _latency(value: str, what: str, line: str) -> float:
    """Microseconds as printed -> seconds; 0 or an overflowing figure is no latency
    (sockperf prints ns resolution: no round trip takes 0.000 us) and would pass a
    "<" threshold."""
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ParseError(TOOL, f"{what} {value} us is no latency: {snippet(line.strip())}")
    return number * US


def _first_summary(text: str) -> re.Match[str]:
    """The first server's summary line. sockperf prints one summary per server
    ("Printing statistics for Server No: N", several with -f); a second summary
    under the same server, or a server twice, is a second result of one test."""
    summaries = list(_AVG_RE.finditer(text))
    servers = list(_SERVER_RE.finditer(text))
    seen: dict[str | None, re.Match[str]] = {}
    index = 0
    for avg in summaries:
        while index < len(servers) and servers[index].start() < avg.start():
            index += 1
        server = servers[index - 1].group(1) if index else None
        if server in seen:
            first = snippet(seen[server].group(0))
            raise ParseError(TOOL, f"a second summary for server {server or '(unnamed)'}: "
                                   f"{snippet(avg.group(0))} after {first}")
        seen[server] = avg
    numbers: set[str] = set()
    for header in servers:
        if header.group(1) in numbers:
            raise ParseError(TOOL, f"statistics for server No: {header.group(1)} printed twice")
        numbers.add(header.group(1))
    return summaries[0]


def parse_sockperf(text: str, protocol: str | None = None,
                   check: str | None = None) -> list[Measurement]:
    """Measurements of one ping-pong summary (the first server's, "Server No: 0")."""
    check_size(TOOL, text)
    text = clean_text(text)
    if _AVG_RE.search(text) is None:
        error = _ERROR_RE.search(text)
        if error:
            raise ToolFailed(TOOL, error.group(1))
        raise ParseError(TOOL, "no 'avg-lat'/'avg-rtt' summary line", text.strip()[:300])
    avg = _first_summary(text)
    found = _PROTO_RE.search(text)
    proto = (protocol or (found.group(1) if found else "UDP")).lower()
    round_trip = avg.group(1) == "rtt"
    base = f"network.{proto}_round_trip" if round_trip else f"network.{proto}_latency"
    version = _VERSION_RE.search(text)
    # Only the summary block of the first server: stop at a --full-log CSV or a
    # second "Printing statistics" block.
    block = text[avg.end():]
    following = _BLOCK_END_RE.search(block)
    if following:
        block = block[:following.start()]
    percentiles: dict[float, float] = {}
    extremes: dict[str, float] = {}
    for line in block.splitlines():
        if "--->" not in line:
            continue
        pct, extreme = _PCT_RE.search(line), _EXTREME_RE.search(line)
        if pct:
            key = float(pct.group(1))
            if key in percentiles:
                raise ParseError(TOOL, f"percentile {pct.group(1)} printed twice: "
                                       f"{snippet(line.strip())}")
            percentiles[key] = _latency(pct.group(2), f"p{pct.group(1)} latency", line)
        elif extreme:
            if extreme.group(1) in extremes:
                raise ParseError(TOOL, f"<{extreme.group(1)}> printed twice: "
                                       f"{snippet(line.strip())}")
            extremes[extreme.group(1)] = _latency(extreme.group(2),
                                                  f"{extreme.group(1)} latency", line)
        else:
            raise ParseError(TOOL, f"a summary line that is no percentile or observation: "
                                   f"{snippet(line.strip())}")
    value = _latency(avg.group(2), "average latency", avg.group(0))
    std_dev = float(avg.group(3))
    if not math.isfinite(std_dev):
        raise ParseError(TOOL, f"a std-dev of {avg.group(3)} us: {snippet(avg.group(0))}")
    stats = {"std_dev": std_dev * US, **{f"p{p:g}": v for p, v in percentiles.items()}}
    if "MAX" in extremes:
        stats["max"] = extremes["MAX"]
    if "MIN" in extremes:
        stats["min"] = extremes["MIN"]
    common: dict[str, Any] = {"check": check or f"network.{proto}_latency", "unit": Unit.SECONDS,
              "tool": TOOL, "tool_version": version.group(1) if version else "",
              "params": {"protocol": proto, "full_rtt": round_trip}}
    out = [Measurement(metric=base, value=value, stats=stats, **common)]
    for pct_key, suffix in REPORTED.items():
        if pct_key in percentiles:
            out.append(Measurement(metric=base + suffix, value=percentiles[pct_key], **common))
    return out


def client_command(host: str, port: int, protocol: str, duration: int,
                   msg_size: int | None = None, full_rtt: bool = False) -> list[str]:
    command = [TOOL, "ping-pong", "-i", host, "-p", str(port), "-t", str(duration)]
    if protocol == "tcp":
        command.append("--tcp")
    if msg_size is not None:
        command += ["-m", str(msg_size)]
    if full_rtt:
        command.append("--full-rtt")
    return command


def run_sockperf(command: list[str], timeout: float) -> str:
    proc = run_tool(TOOL, command, timeout, "install sockperf (apt install sockperf)")
    output = proc.stdout + proc.stderr
    if proc.returncode != 0 and _AVG_RE.search(clean_text(output)) is None:
        raise ToolFailed(TOOL, clean_text(output)[-500:], returncode=proc.returncode)
    return output
