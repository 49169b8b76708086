"""The configuration facts' read time, beside `python -c pass`.

    python benchmarks/bench_config.py

Target (issue "Fabric, topology and configuration"): the port, topology and
configuration reads together under 0.3 s on the 2-core VM, so they fit the fast
health mode. This script measures the configuration part three ways:

- a fresh process that imports the reader and reads this machine (what a health
  run pays), against a fresh `python -c pass` of the same interpreter;
- the read alone, in process, on this machine (NVML is probed: here it is absent);
- the read alone on a generated 8-GPU, 8-HCA node tree (tests/inventory/
  config_tree.py) with the fake NVML answering for 8 GPUs, so every fact is read.

Runs alternate after a warm-up; the table shows medians. It reports and does not
assert: the exit code is 0 whatever the figures.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_agent.inventory.config_facts import collect_config  # noqa: E402
from bench_agent.tools import nvml  # noqa: E402
from tests.fake_nvml import FakeNvml  # noqa: E402
from tests.inventory.config_tree import gpu_node_tree  # noqa: E402

RUNS = 15
TARGET_S = 0.3
READ = ("from bench_agent.inventory.config_facts import collect_config; "
        "collect_config()")


def wall_time(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   cwd=ROOT)
    return time.perf_counter() - started


def in_process(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> int:
    baseline_cmd = [sys.executable, "-c", "pass"]
    read_cmd = [sys.executable, "-c", READ]
    for command in (baseline_cmd, read_cmd):
        wall_time(command)
    baseline, fresh, here, tree = [], [], [], []
    with tempfile.TemporaryDirectory() as folder:
        root = gpu_node_tree(Path(folder))
        for _ in range(RUNS):
            baseline.append(wall_time(baseline_cmd))
            fresh.append(wall_time(read_cmd))
            here.append(in_process(collect_config))
            with nvml.use_loader(lambda: FakeNvml()):
                tree.append(in_process(lambda: collect_config(root)))
    base = statistics.median(baseline)
    rows = [
        ("python -c pass", base, "reference"),
        ("fresh process: import + read this VM", statistics.median(fresh),
         f"< {TARGET_S:g} s with ports and topology"),
        ("read this VM, in process", statistics.median(here), ""),
        ("read an 8-GPU 8-HCA tree (fake NVML)", statistics.median(tree), ""),
    ]
    print(f"{'what':<40} | {'median':>10} | {'over python -c pass':>20} | target")
    print("-" * 100)
    for name, seconds, target in rows:
        extra = f"{(seconds - base) * 1e3:+.1f} ms" if name.startswith("fresh") else ""
        print(f"{name:<40} | {seconds * 1e3:>7.1f} ms | {extra:>20} | {target}")
    print(f"({RUNS} alternating runs each, {sys.executable})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
