"""`bench-agent health` wall time beside `python -c pass` of the same interpreter.

    python benchmarks/bench_health.py [--runs 20]

Target: a median under 0.3 s (issue 16). The reference SREs use today is LBNL
NHC (https://github.com/mej/nhc), whose README names speed as a design goal
("Fast - implemented almost entirely in native bash", README.md, "Features");
issue 16 measured eight of its passive checks (CPU count, memory, swap, mounts,
free space, interfaces, files, processes) at about 0.13 s on a VM like the test
VM. NHC is not packaged in Debian, so it is not run here; its figure is shown
as given.

What runs is the shipped health suite and profile as a user runs them
(`bench-agent health --no-sign --output TMP --state TMP/state.json`), on this
machine's real /proc, /sys and /dev/kmsg; without a GPU driver health.gpu is a
SKIP (NVML absent), so a GPU node adds its NVML calls (nvmlInit dominates, some
tens of milliseconds). Unsigned: signing is one Ed25519 signature, measured by
benchmarks/bench_startup.py's neighbours, and the key file would need creating.

Two health rows: the steady state, where the suite and profile come from the
plan cache beside the state file (health/plan_cache.py: every run after the
first, while the files and the agent are unchanged), and a first run, with the
cache removed before each run, which loads them in full (YAML and pydantic).

Bytecode: an installed wheel has its .pyc files (pip compiles them on install);
a checkout run with PYTHONDONTWRITEBYTECODE=1 recompiles every module on every
start, which is not what a node pays. The script points PYTHONPYCACHEPREFIX at a
temporary folder and warms it once, so both commands run with cached bytecode.

Both commands run alternately, after one warm-up each, so disk cache and CPU
frequency affect them alike; the table shows medians. It reports and does not
assert: the exit code is 0 whatever the figures (1 when health itself failed
to run: an exit code other than 0, 1 or 2).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 0.3
NHC_REFERENCE_S = 0.13  # issue 16: LBNL NHC, eight comparable passive checks, a VM like this


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wall_time(command: list[str], env: dict[str, str]) -> tuple[float, int, float]:
    """Wall seconds, exit code, and CPU seconds (user + system) of one run. CPU
    time is shown beside wall time because a shared machine (other processes on
    its cores) stretches wall time but hardly the CPU a run needs."""
    cpu = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          env=env, cwd=REPO, check=False)
    return time.perf_counter() - started, done.returncode, _children_cpu() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-health-") as tmp:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(PYTHONPYCACHEPREFIX=str(Path(tmp) / "pycache"),
                   PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""))
        baseline_cmd = [sys.executable, "-c", "pass"]
        health_cmd = [sys.executable, "-m", "bench_agent", "health", "--no-sign",
                      "--output", str(Path(tmp) / "spool"),
                      "--state", str(Path(tmp) / "state.json")]
        plan_cache = Path(tmp) / "state.plan.json"
        codes = set()
        for command in (baseline_cmd, health_cmd):
            codes.add(wall_time(command, env)[1])
        runs: dict[str, tuple[list[float], list[float]]] = {
            "base": ([], []), "warm": ([], []), "cold": ([], [])}
        for _ in range(args.runs):
            for kind, command in (("base", baseline_cmd), ("warm", health_cmd),
                                  ("cold", health_cmd)):
                if kind == "cold":
                    plan_cache.unlink(missing_ok=True)
                seconds, code, cpu = wall_time(command, env)
                runs[kind][0].append(seconds)
                runs[kind][1].append(cpu)
                if kind != "base":
                    codes.add(code)
        assert plan_cache.is_file(), "the health run wrote no plan cache"
    baseline, base_cpu = runs["base"]
    health, health_cpu = runs["warm"]
    cold, cold_cpu = runs["cold"]
    base = statistics.median(baseline)
    median = statistics.median(health)
    verdict = "MEETS" if median < TARGET_S else "MISSES"
    cpu_b, cpu_h = statistics.median(base_cpu), statistics.median(health_cpu)
    print(f"{'what':<40} | {'median wall':>11} | {'median CPU':>10} | target")
    print("-" * 90)
    print(f"{'python -c pass':<40} | {base * 1e3:>8.1f} ms | {cpu_b * 1e3:>7.1f} ms | reference")
    print(f"{'LBNL NHC, 8 passive checks (issue 16)':<40} | "
          f"{NHC_REFERENCE_S * 1e3:>8.1f} ms | {'':>10} | reference (as given, not run here)")
    print(f"{'bench-agent health (9 checks, cached)':<40} | {median * 1e3:>8.1f} ms | "
          f"{cpu_h * 1e3:>7.1f} ms | wall < {TARGET_S * 1e3:.0f} ms {verdict}")
    print(f"{'health, first run (no plan cache)':<40} | "
          f"{statistics.median(cold) * 1e3:>8.1f} ms | "
          f"{statistics.median(cold_cpu) * 1e3:>7.1f} ms | wall < {TARGET_S * 1e3:.0f} ms "
          f"{'MEETS' if statistics.median(cold) < TARGET_S else 'MISSES'}")
    print(f"{'bench-agent health minus python -c pass':<40} | "
          f"{(median - base) * 1e3:>8.1f} ms | {(cpu_h - cpu_b) * 1e3:>7.1f} ms |")
    print(f"({args.runs} alternating runs each, min {min(health) * 1e3:.1f} ms, max "
          f"{max(health) * 1e3:.1f} ms; {sys.executable}; health exit codes {sorted(codes)}; "
          f"load average {os.getloadavg()[0]:.2f})")
    return 0 if codes <= {0, 1, 2} else 1


if __name__ == "__main__":
    raise SystemExit(main())
