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

import re

from bench_agent.errors import ParseError, ToolFailed
from bench_agent.metrics import METRICS
from bench_agent.model import Measurement
from bench_agent.tools.process import run_tool
from bench_agent.tools.sockperf import clean_text
from bench_agent.units import Unit

TOOL = "qperf"
_TIME = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "sec": 1.0, "s": 1.0}
_RATE = {"bytes/sec": 1.0, "KB/sec": 1e3, "MB/sec": 1e6, "GB/sec": 1e9, "TB/sec": 1e12}
_TEST_RE = re.compile(r"^([a-z_]+):\s*$")
_VALUE_RE = re.compile(r"^\s+([a-z_]+)\s*=\s*([0-9.,]+)\s*(\S+)?")
_ERROR_RE = re.compile(r"(failed to .*|.*: failed to .*|.*[Cc]ould not .*)$", re.MULTILINE)
# test -> (value key, metric, kind)
_TESTS: dict[str, tuple[str, str, str]] = {
    "tcp_lat": ("latency", "network.tcp_latency", "time"),
    "udp_lat": ("latency", "network.udp_latency", "time"),
    "tcp_bw": ("bw", "network.tcp_bandwidth", "rate"),
    "udp_bw": ("recv_bw", "network.udp_bandwidth", "rate"),
}


def _convert(value: str, unit: str | None, kind: str) -> float:
    number = float(value.replace(",", ""))
    table = _TIME if kind == "time" else _RATE
    if unit is None or unit not in table:
        raise ParseError(TOOL, f"unknown unit {unit!r} for a {kind}")
    factor = table[unit]
    # Rates become bits/s, the canonical unit of network bandwidth.
    return number * factor * (8.0 if kind == "rate" else 1.0)


def parse_qperf(text: str) -> list[Measurement]:
    text = clean_text(text)
    out: list[Measurement] = []
    current: str | None = None
    for line in text.splitlines():
        test = _TEST_RE.match(line)
        if test:
            current = test.group(1)
            continue
        value = _VALUE_RE.match(line)
        if not value or current not in _TESTS:
            continue
        key, metric, kind = _TESTS[current]
        if value.group(1) != key:
            continue
        unit = Unit.SECONDS if kind == "time" else Unit.BITS_PER_SECOND
        info = METRICS.get(metric)
        out.append(Measurement(check=info.check if info else metric,
                               metric=metric, unit=unit, tool=TOOL,
                               value=_convert(value.group(2), value.group(3), kind),
                               params={"test": current}))
        current = None
    if not out:
        error = _ERROR_RE.search(text)
        if error:
            raise ToolFailed(TOOL, error.group(1).strip())
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
