"""`bench-agent slurm health` against a real one-node Slurm cluster.

munged, slurmctld and slurmd are Debian's (slurm-wlm, munge), started per module
by tests/sched/slurm_cluster.py and stopped by pid in the fixture's finalizer,
also when a test fails. The health reports are real: the runner's inventory
check against a profile that demands more vCPUs than this VM has (FAIL) or
exactly its count (PASS).
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench_agent.cli.parser import build_parser
from bench_agent.cli.slurm import cmd_slurm
from bench_agent.core.process import run_child
from bench_agent.sched.report_source import inventory_report
from bench_agent.sched.slurm import Scontrol
from tests.paths import REPO
from tests.sched.slurm_cluster import SlurmCluster, missing_daemons

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="slurmd and munged need root here"),
    pytest.mark.skipif(bool(missing_daemons()),
                       reason=f"not installed: {', '.join(missing_daemons())} "
                       "(apt-get install slurm-wlm munge)"),
]

# The fault code, then the component: the node's counts are the node's (faults/assign.py).
OUR_FAIL_REASON = "bench-agent: BA-NODE-CPU-COUNT node "


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    folder = tmp_path_factory.mktemp("slurm")
    started = SlurmCluster(folder, socket.gethostname().split(".")[0], os.cpu_count() or 1)
    try:
        yield started.start()
    finally:
        started.stop()


@pytest.fixture
def node(cluster: SlurmCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
    yield cluster.node
    # Each test starts from an idle node in service.
    if "DRAIN" in cluster.node_line():
        cluster.scontrol("update", f"nodename={cluster.node}", "state=resume")


def _health(profile: Path, *extra: str) -> int:
    args = build_parser().parse_args(["slurm", "health", "--profile", str(profile), *extra])
    return cmd_slurm(args, source=inventory_report)


def _reason(cluster: SlurmCluster) -> str:
    return Scontrol().show_node(cluster.node).reason


def test_fault_drains_with_our_reason_and_the_fix_resumes(
        cluster: SlurmCluster, node: str, failing_profile: Path, passing_profile: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert _health(failing_profile) == 1
    line = cluster.node_line()
    assert "State=IDLE+DRAIN " in line
    assert _reason(cluster).startswith(OUR_FAIL_REASON)
    assert f"node {node}: fail (BA-NODE-CPU-COUNT: " in capsys.readouterr().out

    assert _health(passing_profile) == 0
    resumed = Scontrol().show_node(node)
    assert "DRAIN" not in resumed.states, cluster.node_line()
    out = capsys.readouterr().out
    assert f"resuming: it was drained by bench-agent ({OUR_FAIL_REASON}" in out


def test_admin_drain_stays_after_a_pass_and_after_a_fail(
        cluster: SlurmCluster, node: str, failing_profile: Path, passing_profile: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    cluster.scontrol("update", f"nodename={node}", "state=drain", "reason=admin: hw ticket")
    assert _health(passing_profile) == 0
    assert "DRAIN" in cluster.node_line()
    assert _reason(cluster) == "admin: hw ticket"
    assert "not by bench-agent: left drained" in capsys.readouterr().out
    # A failure does not overwrite the admin's reason either.
    assert _health(failing_profile) == 1
    assert _reason(cluster) == "admin: hw ticket"


def test_prolog_mode_fails_the_prolog_and_drains(
        cluster: SlurmCluster, node: str, failing_profile: Path) -> None:
    assert _health(failing_profile, "--mode", "prolog", "--budget", "40") == 1
    assert _reason(cluster).startswith(OUR_FAIL_REASON)


def test_report_is_kept_when_asked(cluster: SlurmCluster, node: str, passing_profile: Path,
                                   tmp_path: Path) -> None:
    assert _health(passing_profile, "--output", str(tmp_path / "spool"), "--no-sign") == 0
    kept = list((tmp_path / "spool").glob("*/*.json"))
    assert len(kept) == 1 and "quick-inventory" in kept[0].name


def test_slurmctld_down_is_a_bounded_clear_error(
        cluster: SlurmCluster, node: str, failing_profile: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    cluster.stop_daemon("slurmctld")
    try:
        started = time.monotonic()
        code = _health(failing_profile, "--budget", "20")
        took = time.monotonic() - started
        err = capsys.readouterr().err
        assert code == 2
        assert f"node {node}: fail (BA-NODE-CPU-COUNT" in err
        assert "Slurm not updated" in err
        assert "slurmctld did not answer" in err or "Unable to contact slurm controller" in err
        assert took < 25, f"took {took:.1f} s with a 20 s budget"
    finally:
        cluster.start_slurmctld()


def test_a_controller_that_never_answers_is_bounded(
        cluster: SlurmCluster, node: str, passing_profile: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # A listener that accepts and never says a word: a hung slurmctld (NHC issue 159).
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        conf = tmp_path / "slurm.conf"
        # scontrol's own MessageTimeout raised to a minute: our deadline must stop it.
        changed = {"SlurmctldPort": f"SlurmctldPort={port}", "MessageTimeout": "MessageTimeout=60"}
        conf.write_text("\n".join(
            changed.get(line.split("=")[0], line)
            for line in cluster.conf.read_text().splitlines()) + "\n")
        monkeypatch.setenv("SLURM_CONF", str(conf))
        started = time.monotonic()
        code = _health(passing_profile, "--budget", "14")
        took = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 2
    assert (f"node {node}: pass; Slurm not updated: slurmctld did not answer within "
            in err), err
    assert took < 17, f"took {took:.1f} s with a 14 s budget"


def test_a_failing_prolog_keeps_our_reason_and_holds_the_job(
        tmp_path: Path, failing_profile: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # slurmd runs our prolog at a job's start; it drains with our reason and
    # exits 1, and Slurm requeues the job held ("launch failed requeued held")
    # and keeps our reason (Slurm 22.05: seen here, not assumed).
    log = tmp_path / "prolog.log"
    prolog = tmp_path / "prolog.sh"
    prolog.write_text(f"#!/bin/sh\nexport PYTHONPATH={REPO}\n"
                      f"exec {sys.executable} -m bench_agent slurm health --mode prolog "
                      f"--profile {failing_profile} --budget 40 >>{log} 2>&1\n")
    prolog.chmod(0o755)
    folder = tmp_path / "cluster"
    folder.mkdir(mode=0o700)
    own = SlurmCluster(folder, socket.gethostname().split(".")[0], os.cpu_count() or 1,
                       extra_conf=f"Prolog={prolog}\n")
    try:
        own.start()
        monkeypatch.setenv("SLURM_CONF", str(own.conf))
        own.scontrol("ping")
        done = run_child(["sbatch", "--wrap", "true", "-o", str(tmp_path / "job.out")],
                         timeout=30.0, env=own.env)
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            queue = run_child(["squeue", "-h", "-o", "%T %r"], timeout=30.0, env=own.env)
            if "held" in queue.stdout:
                break
            time.sleep(0.5)
        assert queue.stdout.split() == ["PENDING", "launch", "failed", "requeued", "held"], \
            f"{queue.stdout}\n{own.logs()}"
        assert Scontrol().show_node(own.node).reason.startswith(OUR_FAIL_REASON)
        assert "slurm prolog: node" in log.read_text()
        assert "draining: bench-agent: BA-NODE-CPU-COUNT" in log.read_text()
    finally:
        own.stop()
