"""Parser time against input size on hostile outputs: linear means 10x the input,
about 10x the seconds.

    python benchmarks/bench_parsers.py

Each case is a malformed output that once took quadratic time (issue items 13 and
14): lines of "{" (fio's and iperf3's readers retried a decode at every brace,
and each failed decode counted the lines before it), notes before a report,
a long qperf/perftest/sockperf line (backtracking regexes), blank lines (a
``^\\s*`` that crossed newlines) and many "# nThread" lines (nccl-tests' section
split rescanned its section). Every parse must end in a ParseError or a result;
the table shows the best of three runs. It reports and does not assert: the exit
code is 0 whatever the figures.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from bench_agent.core.errors import BenchAgentError
from bench_agent.tools.fio import parse_fio
from bench_agent.tools.iperf3 import parse_iperf3
from bench_agent.tools.nccl_tests import parse_nccl_tests
from bench_agent.tools.perftest import parse_perftest, parse_perftest_output
from bench_agent.tools.qperf import parse_qperf
from bench_agent.tools.sockperf import parse_sockperf

SIZES = (10_000, 100_000, 1_000_000)
FIO_REPORT = (Path(__file__).resolve().parents[1] / "tests" / "data" / "fio"
              / "randread_4k_libaio_numjobs2_grouped.json").read_text()

CASES: list[tuple[str, Callable[[str], object], Callable[[int], str]]] = [
    ("fio: lines of '{'", parse_fio, lambda n: "{\n" * (n // 2)),
    ("iperf3: lines of '{'", parse_iperf3, lambda n: "{\n" * (n // 2)),
    ("fio: notes, then a report", parse_fio,
     lambda n: "fio: {note}\n" * (n // 12) + FIO_REPORT),
    ("fio: '[' nesting", parse_fio, lambda n: '{"jobs": ' + "[" * n),
    ("qperf: one long line", parse_qperf, lambda n: "tcp_lat:\n" + "a" * n + ": failedto\n"),
    ("qperf: spaces in a value", parse_qperf,
     lambda n: "tcp_lat:\n    msg_rate = 1" + " " * n + "x\n"),
    ("perftest: long header", parse_perftest, lambda n: " #bytes " + "a a[" * (n // 4) + "\n"),
    ("perftest: blank lines", parse_perftest, lambda n: "\n" * n),
    ("perftest json: long word", parse_perftest_output, lambda n: "{" + "a" * n + "}"),
    ("sockperf: long line", parse_sockperf,
     lambda n: "sockperf: ---> percentile " + " " * n + "\n"),
    ("nccl-tests: '# nThread' lines", parse_nccl_tests, lambda n: "# nThread 1\n" * (n // 12)),
    ("nccl-tests: blank lines", parse_nccl_tests, lambda n: "\n" * n),
]


def seconds(parse: Callable[[str], object], text: str) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        with contextlib.suppress(BenchAgentError):  # the hostile cases end in ParseError
            parse(text)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> int:
    print(f"{'case':32}" + "".join(f"{n:>12,}" for n in SIZES) + "   10x input -> x time")
    for name, parse, make in CASES:
        times = [seconds(parse, make(n)) for n in SIZES]
        ratio = times[-1] / times[-2] if times[-2] > 0 else float("nan")
        print(f"{name:32}" + "".join(f"{t:11.5f}s" for t in times) + f"   {ratio:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
