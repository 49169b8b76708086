"""`bench-agent --help` wall time against `python -c pass` of the same interpreter.

    python benchmarks/bench_startup.py

Target: at most 6x (nothing heavy is imported at start; rich only when it prints).
Both commands run alternately, after one warm-up each, so disk cache and CPU
frequency affect them alike; the table shows the medians. It reports and does
not assert: the exit code is 0 whatever the figures.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

RUNS = 20
TARGET_RATIO = 6.0


def wall_time(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    baseline_cmd = [sys.executable, "-c", "pass"]
    help_cmd = [sys.executable, "-m", "bench_agent.cli", "--help"]
    for command in (baseline_cmd, help_cmd):
        wall_time(command)
    baseline: list[float] = []
    agent: list[float] = []
    for _ in range(RUNS):
        baseline.append(wall_time(baseline_cmd))
        agent.append(wall_time(help_cmd))
    base_median = statistics.median(baseline)
    agent_median = statistics.median(agent)
    ratio = agent_median / base_median
    verdict = "MEETS" if ratio <= TARGET_RATIO else "MISSES"
    print(f"{'what':<34} | {'median wall time':>16} | {'ratio':>6} | target")
    print("-" * 76)
    print(f"{'python -c pass':<34} | {base_median * 1e3:>13.1f} ms | {1.0:>6.2f} | reference")
    print(f"{'bench-agent --help':<34} | {agent_median * 1e3:>13.1f} ms | {ratio:>6.2f} |"
          f" <= {TARGET_RATIO:g}x {verdict}")
    print(f"({RUNS} alternating runs each, {sys.executable})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
