"""A Slurm drain-and-resume round trip on a real one-node test cluster.

    python benchmarks/bench_slurm.py        (root; Debian's slurm-wlm and munge)

Starts munged, slurmctld and slurmd as tests/sched/slurm_cluster.py does (all
files in a temporary folder, the daemons stopped at the end), then measures:

- `scontrol show node -o`: one read, what every run starts with;
- drain + resume through bench_agent.sched.slurm.apply (read, update, read,
  update): what a failed run and the next passing run cost in scontrol time,
  until slurmctld shows the node drained, then in service again;
- `bench-agent slurm health` end to end as slurmd starts it (a new Python, the
  runner's inventory check in its child, scontrol), failing then passing.

Reference: `python -c pass`, the floor of any command slurmd starts. It
reports and does not assert: the exit code is 0 whatever the figures.
"""

from __future__ import annotations

import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench_agent.core.process import run_child  # noqa: E402
from bench_agent.sched.slurm import Scontrol, apply  # noqa: E402
from bench_agent.sched.summary import Fault, HealthSummary  # noqa: E402
from tests.sched.conftest import write_vcpu_profile  # noqa: E402
from tests.sched.slurm_cluster import SlurmCluster, missing_daemons  # noqa: E402

ROUND_TRIPS = 20
CLI_RUNS = 5
FAILED = HealthSummary("fail", (Fault("BA-GPU-XID-79", "GPU 3", "benchmark"),), "b", "t")
PASSED = HealthSummary("pass", (), "b", "t")


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1e3:>9.1f} ms"


def _wall(command: list[str], env: dict[str, str]) -> tuple[float, int]:
    started = time.perf_counter()
    done = run_child(command, timeout=120.0, env=env)
    assert done.returncode is not None, done.stderr
    return time.perf_counter() - started, done.returncode


def main() -> int:
    missing = missing_daemons()
    if missing or os.geteuid() != 0:
        print(f"bench_slurm: not run: {'missing ' + ', '.join(missing) if missing else 'not root'}"
              " (apt-get install slurm-wlm munge, as root)")
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-slurm-") as folder:
        cluster = SlurmCluster(Path(folder), socket.gethostname().split(".")[0],
                               os.cpu_count() or 1)
        try:
            cluster.start()
            os.environ["SLURM_CONF"] = str(cluster.conf)
            return _measure(cluster, Path(folder))
        finally:
            cluster.stop()


def _measure(cluster: SlurmCluster, folder: Path) -> int:
    scontrol = Scontrol()
    reads, drains, resumes = [], [], []
    for _ in range(ROUND_TRIPS):
        started = time.perf_counter()
        scontrol.show_node(cluster.node)
        reads.append(time.perf_counter() - started)
        started = time.perf_counter()
        apply(scontrol, cluster.node, FAILED)
        assert scontrol.show_node(cluster.node).drained
        drains.append(time.perf_counter() - started)
        started = time.perf_counter()
        apply(scontrol, cluster.node, PASSED)
        assert not scontrol.show_node(cluster.node).drained
        resumes.append(time.perf_counter() - started)
    # Cached bytecode, as an installed wheel has it (bench_health.py says why), and
    # one warm-up run of each profile: slurmd starts the command every few minutes,
    # so the health plan cache beside the state file is warm (health/plan_cache.py).
    env = {k: v for k, v in cluster.env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(REPO)
    env["PYTHONPYCACHEPREFIX"] = str(folder / "pycache")
    failing = write_vcpu_profile(folder / "needs-many-vcpus.yaml", 100_000)
    passing = write_vcpu_profile(folder / "this-vm.yaml", os.cpu_count() or 1)
    for profile in (failing, passing):
        _wall([sys.executable, "-m", "bench_agent", "slurm", "health", "--profile",
               str(profile), "--node", cluster.node], env)
    baseline, cli_fail, cli_pass = [], [], []
    for _ in range(CLI_RUNS):
        baseline.append(_wall([sys.executable, "-c", "pass"], env)[0])
        seconds, code = _wall([sys.executable, "-m", "bench_agent", "slurm", "health",
                               "--profile", str(failing), "--node", cluster.node], env)
        assert code == 1, code
        cli_fail.append(seconds)
        seconds, code = _wall([sys.executable, "-m", "bench_agent", "slurm", "health",
                               "--profile", str(passing), "--node", cluster.node], env)
        assert code == 0, code
        cli_pass.append(seconds)
    print(f"{'what':<58} | {'median':>12}")
    print("-" * 74)
    print(f"{'python -c pass (reference)':<58} | {_ms(baseline)}")
    print(f"{'scontrol show node -o':<58} | {_ms(reads)}")
    print(f"{'drain: show + update state=drain + show (drained)':<58} | {_ms(drains)}")
    print(f"{'resume: show + update state=resume + show (in service)':<58} | {_ms(resumes)}")
    print(f"{'drain + resume round trip':<58} | "
          f"{_ms([d + r for d, r in zip(drains, resumes, strict=True)])}")
    print(f"{'bench-agent slurm health, failing (drains)':<58} | {_ms(cli_fail)}")
    print(f"{'bench-agent slurm health, passing (resumes)':<58} | {_ms(cli_pass)}")
    print(f"({ROUND_TRIPS} round trips, {CLI_RUNS} CLI runs each; Slurm "
          f"{cluster.node_line().split('Version=')[1].split()[0]}, {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
