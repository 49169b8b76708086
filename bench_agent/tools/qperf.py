"""qperf: the latency fallback (tcp_lat, udp_lat) and its bandwidth tests.

qperf prints each test as a block (qperf.c, ``show_rest`` and the ``view_*``
helpers; qperf 0.4.11):

    tcp_lat:
        latency  =  26.1 us          one-way: half the round trip (qperf(1),
    tcp_bw:                          "tcp_lat: One way TCP latency")
        bw  =  5.78 GB/sec

Units change with the size of the figure: ns, us, ms, sec for times; bytes/sec,
KB/sec, MB/sec, GB/sec for rates, decimal (our -vv capture shows 142,074 one-byte
messages as "142 KB"); -uu prints raw "10419 ns" and "4036591616 bytes/sec".
With -vv extra lines (msg_rate, cpus, sizes) follow; only the first value line
of each test is its result. Failures ("failed to connect", "failed to modify QP
to RTR") may come with exit code 0 or 1.
"""

from __future__ import annotations

import math
import re

from bench_agent.core.errors import ParseError, ToolFailed
from bench_agent.core.model import Measurement
from bench_agent.core.process import run_tool
from bench_agent.core.strict_json import check_size, snippet
from bench_agent.core.units import Unit
from bench_agent.tools.sockperf import clean_text

TOOL = "qperf"
_TIME = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "sec": 1.0, "s": 1.0}
_RATE = {"bytes/sec": 1.0, "KB/sec": 1e3, "MB/sec": 1e6, "GB/sec": 1e9, "TB/sec": 1e12}
_TEST_RE = re.compile(r"^([a-z_]+):\s*$")
# Any indented "name = value" line of a test block (-vv adds msg_rate, cpus, ...).
_LINE_RE = re.compile(r"^\s+([a-z_]+)\s*=\s*(.*)$")
# The result's value: a figure and its unit, nothing else.
_RESULT_RE = re.compile(r"([0-9][0-9.,]*)\s+(\S+)")
# A failure: qperf's words contain these (qperf.c error(), "failed to connect",
# "failed to modify QP to RTR"; rdma "could not ..."). A substring test, not
# the backtracking ".*: failed to .*$" regex, which is quadratic on a long line.
_ERROR_WORDS = ("failed to ", "could not ", "Could not ")
# test -> (value key, metric, kind)
_TESTS: dict[str, tuple[str, str, str]] = {
    "tcp_lat": ("latency", "network.tcp_latency", "time"),
    "udp_lat": ("latency", "network.udp_latency", "time"),
    "tcp_bw": ("bw", "network.tcp_bandwidth", "rate"),
    "udp_bw": ("recv_bw", "network.udp_bandwidth", "rate"),
}


def _convert(value: str, unit: str, kind: str, line: str) -> float:
    try:
        number = float(value.replace(",", ""))
    except ValueError:
        raise ParseError(TOOL, f"no number in {snippet(line.strip())}") from None
    table = _TIME if kind == "time" else _RATE
    if unit not in table:
        raise ParseError(TOOL, f"unknown unit {unit!r} for a {kind}: {snippet(line.strip())}")
    if not math.isfinite(number):
        raise ParseError(TOOL, f"a {kind} too large for a number: {snippet(line.strip())}")
    # A latency of 0 would pass any "<" threshold; qperf prints 3 significant
    # digits, so no real round trip reads 0.
    if kind == "time" and number <= 0:
        raise ParseError(TOOL, f"a latency of {value} {unit}: {snippet(line.strip())}")
    # Rates become bits/s, the canonical unit of network bandwidth.
    return number * table[unit] * (8.0 if kind == "rate" else 1.0)


def parse_qperf(text: str, check: str | None = None) -> list[Measurement]:
    """One result per test block. qperf prints each test it ran once, so a test
    printed twice (two documents) or a line that is neither a test name, an
    indented "name = value" line nor qperf's failure words is a ParseError.

    ``check`` names the check that ran qperf; without one (`bench-agent parse`)
    each result is named after its metric, which is also its check's name."""
    check_size(TOOL, text)
    text = clean_text(text)
    out: list[Measurement] = []
    seen: set[str] = set()
    current: str | None = None
    read = False  # the current test's result line was read
    errors: list[str] = []
    garbage: str | None = None
    for line in text.splitlines():
        if not line.strip():
            continue
        test = _TEST_RE.match(line)
        if test:
            current, read = test.group(1), False
            if current in seen:
                raise ParseError(TOOL, f"test {current!r} printed twice (a second result "
                                       f"of the same test): {snippet(text.strip())}")
            seen.add(current)
            continue
        if any(words in line for words in _ERROR_WORDS):
            errors.append(line.strip())
            continue
        value = _LINE_RE.match(line) if line[0].isspace() and current else None
        if value is None:
            garbage = garbage or line
            continue
        if current not in _TESTS or read:
            continue
        key, metric, kind = _TESTS[current]
        if value.group(1) != key:
            continue
        result = _RESULT_RE.fullmatch(value.group(2).strip())
        if result is None:
            raise ParseError(TOOL, f"the {current} result is no 'figure unit': "
                                   f"{snippet(line.strip())}")
        unit = Unit.SECONDS if kind == "time" else Unit.BITS_PER_SECOND
        out.append(Measurement(check=check or metric, metric=metric, unit=unit, tool=TOOL,
                               value=_convert(result.group(1), result.group(2), kind, line),
                               params={"test": current}))
        read = True
    if errors:
        raise ToolFailed(TOOL, errors[0][:300])
    if garbage is not None:
        raise ParseError(TOOL, f"a line qperf does not print: {snippet(garbage.strip())}")
    if not out:
        raise ParseError(TOOL, "no test result (latency = / bw =)", text.strip()[:300])
    return out


def client_command(host: str, port: int, test: str, duration: int) -> list[str]:
    return [TOOL, host, "-lp", str(port), "-t", str(duration), "-vv", test]


def run_qperf(command: list[str], timeout: float) -> str:
    proc = run_tool(TOOL, command, timeout, "install qperf (apt install qperf)")
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise ToolFailed(TOOL, output[-500:], returncode=proc.returncode)
    return output
