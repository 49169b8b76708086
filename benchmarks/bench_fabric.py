"""How long the port and topology reads take, beside `python -c pass`.

    python benchmarks/bench_fabric.py [RUNS]

Target (issue 15): the InfiniBand port reads and the topology read together under
0.3 s on this VM, so they fit the scheduler's fast health mode. Each run is a
fresh interpreter, as the worker child is, that imports the check modules and
reads: network.ib_port_health's snapshot and its end reading (both sides of the
counter deltas) and topology.match's PCI tree. Roots: this VM's own / (no HCA
here, so its port read is the "no /sys/class/infiniband" path) and the two
8-GPU trees of tests/data/sysroots (8 and 12 HCAs, the size of a real node).
The commands alternate, after one warm-up each; the table shows medians. It
reports and does not assert: exit code 0 whatever the figures.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 15
TARGET_S = 0.3
ROOTS = {"this VM (/)": Path("/"),
         "h100-ndr (8 GPU, 8 HCA)": ROOT / "tests/data/sysroots/h100-ndr",
         "h100-roce (8 GPU, 12 HCA)": ROOT / "tests/data/sysroots/h100-roce"}

READ = """
import json, sys, time
t0 = time.perf_counter()
from pathlib import Path
from bench_agent.checks.base import CheckContext
from bench_agent.checks.network.ib_ports import IbPortHealthCheck, IbPortParams
from bench_agent.checks.topology.reader import read_topology
t1 = time.perf_counter()
root = Path(sys.argv[1])
ctx = CheckContext(root=root)
check = IbPortHealthCheck()
ports = 0
if check.available(ctx) is None:
    before = check.snapshot(ctx, IbPortParams())
    ports = len(check.run(CheckContext(root=root, before=before), IbPortParams()))
t2 = time.perf_counter()
devices = len(read_topology(root).devices)
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "ports": t2 - t1, "topology": t3 - t2,
                  "measurements": ports, "devices": devices}))
"""


def wall(command: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
    return time.perf_counter() - started, done.stdout


def main() -> int:
    baseline_cmd = [sys.executable, "-c", "pass"]
    commands = {name: [sys.executable, "-c", READ, str(root)] for name, root in ROOTS.items()}
    for command in (baseline_cmd, *commands.values()):
        wall(command)
    base: list[float] = []
    walls: dict[str, list[float]] = {name: [] for name in commands}
    inside: dict[str, list[dict[str, float]]] = {name: [] for name in commands}
    for _ in range(RUNS):
        base.append(wall(baseline_cmd)[0])
        for name, command in commands.items():
            seconds, out = wall(command)
            walls[name].append(seconds)
            inside[name].append(json.loads(out))
    base_median = statistics.median(base)
    print(f"{RUNS} runs each, medians; target: port + topology reads < {TARGET_S} s")
    print(f"{'root':<28}{'process':>9}{'- pass':>9}{'import':>9}{'ports':>9}{'topology':>10}"
          f"{'reads':>9}  verdict")
    print(f"{'python -c pass':<28}{base_median:>9.3f}")
    for name in commands:
        parts = {k: statistics.median(r[k] for r in inside[name])
                 for k in ("import", "ports", "topology")}
        reads = parts["ports"] + parts["topology"]
        process = statistics.median(walls[name])
        last = inside[name][-1]
        print(f"{name:<28}{process:>9.3f}{process - base_median:>9.3f}{parts['import']:>9.3f}"
              f"{parts['ports']:>9.4f}{parts['topology']:>10.4f}{reads:>9.4f}  "
              f"{'OK' if reads < TARGET_S else 'over target'} "
              f"({int(last['measurements'])} port measurements, {int(last['devices'])} "
              "PCI components)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
