"""`bench-agent fleet compare` on 10,000 reports: wall time and peak memory.

    python benchmarks/bench_fleet.py

Target: under 5 s. Reference in the same run: the floor of the same job, reading
and json-decoding the 10,000 files in a bare loop (what no implementation can
skip), and the start-up of an interpreter that imports pandas. Each runs as its own
process so its peak RSS (getrusage of the child) is its own. Reports, does not
assert: exit code 0 whatever the figures.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fleet_factory import write_fleet  # noqa: E402

NODES = 10_000
TARGET_S = 5.0

FLOOR = """
import json, sys
from pathlib import Path
for p in Path(sys.argv[1]).glob('*.json'):
    json.loads(p.read_text())
"""


def measure(command: list[str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MiB, exit code) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    proc = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          check=False)
    wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the max over all waited-for children (KiB on Linux):
    # run the biggest last or read it as an upper bound.
    return wall, max(peak, before) / 1024, proc.returncode


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder)
        print(f"writing {NODES} reports ...", flush=True)
        write_fleet(path, NODES, slow={5: "cpu.gemm_fp64_all_cores"})
        rows = [
            ("bare read + json decode (floor)", measure([sys.executable, "-c", FLOOR, folder])),
            ("python -c 'import pandas'", measure([sys.executable, "-c", "import pandas"])),
            ("bench-agent fleet compare", measure(
                [sys.executable, "-m", "bench_agent.cli", "fleet", "compare", folder])),
        ]
    print(f"{'what':<34} | {'wall time':>10} | {'peak RSS':>10} | target")
    print("-" * 72)
    for name, (wall, rss, code) in rows:
        target = ""
        if name.startswith("bench-agent"):
            verdict = "MEETS" if wall < TARGET_S else "MISSES"
            target = f"< {TARGET_S:g} s {verdict} (exit {code}: 1 = outliers found)"
        print(f"{name:<34} | {wall:>8.2f} s | {rss:>6.0f} MiB | {target}")
    print("(peak RSS is the running maximum over the children measured so far, in order)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
