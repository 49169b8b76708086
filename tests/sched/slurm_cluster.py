"""A real one-node Slurm cluster for the tests and benchmarks/bench_slurm.py.

munged, slurmctld and slurmd from Debian's packages (slurm-wlm, munge), each
started in the foreground as our child through core/process.py, with every file
(key, sockets, state, spool, logs, pid files) in one temporary folder, and stopped
by pid in ``stop()`` (the ``slurm_cluster`` fixture calls it in its finalizer, so
also when a test fails). Nothing of the host's own /etc/slurm or /run/munge is
used: ``SLURM_CONF`` points every client (scontrol) at our slurm.conf.

The configuration is the smallest Slurm 22.05 accepts without cgroups
(slurm.conf(5)): ProctrackType=proctrack/linuxproc and TaskPlugin=task/none need
no cgroup hierarchy; AuthInfo=socket= points auth/munge and cred/munge at our
munged (slurm.conf(5) "AuthInfo ... socket").
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench_agent.core.process import DEVNULL, Child, run_child, spawn

DAEMONS = ("munged", "slurmctld", "slurmd", "scontrol")
# How long the daemons get to come up: slurmd registers with slurmctld within a
# second or two on this VM; 30 s leaves room on a loaded 2-core machine.
START_TIMEOUT_S = 30.0


def missing_daemons() -> list[str]:
    return [d for d in DAEMONS if shutil.which(d) is None
            and not Path("/usr/sbin", d).exists()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _binary(name: str) -> str:
    found = shutil.which(name) or str(Path("/usr/sbin", name))
    return found


@dataclass
class SlurmCluster:
    folder: Path
    node: str
    cpus: int
    extra_conf: str = ""  # lines appended to slurm.conf (Prolog=...)
    conf: Path = field(init=False)
    env: dict[str, str] = field(init=False)
    children: dict[str, Child] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.conf = self.folder / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        # munged(8) refuses a socket whose every parent folder is not searchable
        # by all ("Socket is inaccessible: execute permissions for all required"),
        # and pytest's tmp_path lies under /tmp/pytest-of-root (0700): the
        # socket gets a folder of its own right under /tmp, removed by stop().
        self.socket_dir = Path(tempfile.mkdtemp(prefix="bench-munge-"))
        self.socket_dir.chmod(0o755)
        self.socket = self.socket_dir / "munge.socket"

    # -- configuration --

    def write_config(self) -> None:
        f = self.folder
        for sub in ("munge", "state", "spool", "log"):
            (f / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        key = f / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))  # munged(8): a key of 32 to 1024 bytes
        key.chmod(0o400)
        self.conf.write_text(f"""\
ClusterName=bench
SlurmctldHost=localhost
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.socket}
StateSaveLocation={f}/state
SlurmdSpoolDir={f}/spool
SlurmctldPidFile={f}/slurmctld.pid
SlurmdPidFile={f}/slurmd.pid
SlurmctldLogFile={f}/log/slurmctld.log
SlurmdLogFile={f}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SwitchType=switch/none
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
MessageTimeout=5
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} State=UNKNOWN
PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
{self.extra_conf}""")

    # -- daemons --

    def start_munged(self) -> None:
        f = self.folder / "munge"
        self.children["munged"] = spawn(
            [_binary("munged"), "-F", f"--key-file={f}/munge.key",
             f"--socket={self.socket}", f"--pid-file={f}/munged.pid",
             f"--log-file={f}/munged.log", f"--seed-file={f}/munged.seed"],
            stdout=DEVNULL, stderr=DEVNULL, env=self.env)
        self._wait_for(self.socket.exists, "munged's socket")

    def start_slurmctld(self) -> None:
        # -i: ignore state files from an earlier run (there are none, but a
        # restarted slurmctld in a test must not trip on a half-written one).
        self.children["slurmctld"] = spawn(
            [_binary("slurmctld"), "-D", "-i", "-f", str(self.conf)],
            stdout=DEVNULL, stderr=DEVNULL, env=self.env)
        self._wait_for(self._controller_answers, "slurmctld to answer `scontrol ping`")

    def start_slurmd(self) -> None:
        self.children["slurmd"] = spawn(
            [_binary("slurmd"), "-D", "-N", self.node, "-f", str(self.conf)],
            stdout=DEVNULL, stderr=DEVNULL, env=self.env)
        self._wait_for(self._node_up, f"node {self.node} to register as IDLE")

    def start(self) -> SlurmCluster:
        self.write_config()
        self.start_munged()
        self.start_slurmctld()
        self.start_slurmd()
        return self

    def stop_daemon(self, name: str) -> None:
        child = self.children.pop(name, None)
        if child is not None:
            child.stop(grace=10.0)

    def stop(self) -> None:
        try:
            for name in ("slurmd", "slurmctld", "munged"):
                self.stop_daemon(name)
        finally:
            shutil.rmtree(self.socket_dir, ignore_errors=True)

    # -- queries, straight through scontrol --

    def scontrol(self, *args: str) -> str:
        done = run_child([_binary("scontrol"), *args], timeout=30.0, env=self.env)
        if done.returncode != 0:
            raise AssertionError(f"scontrol {' '.join(args)} exited {done.returncode}: "
                                 f"{done.stderr.strip()}\n{self.logs()}")
        return done.stdout

    def _controller_answers(self) -> bool:
        done = run_child([_binary("scontrol"), "ping"], timeout=10.0, env=self.env)
        return done.returncode == 0 and "UP" in done.stdout

    def _node_up(self) -> bool:
        done = run_child([_binary("scontrol"), "show", "node", "-o", self.node],
                         timeout=10.0, env=self.env)
        return done.returncode == 0 and "State=IDLE" in done.stdout

    def node_line(self) -> str:
        return self.scontrol("show", "node", "-o", self.node)

    def _wait_for(self, ready: object, what: str) -> None:
        assert callable(ready)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if ready():
                return
            for name, child in self.children.items():
                if child.poll() is not None:
                    raise AssertionError(f"{name} exited {child.poll()} while waiting for "
                                         f"{what}\n{self.logs()}")
            time.sleep(0.2)
        raise AssertionError(f"timed out after {START_TIMEOUT_S:g} s waiting for {what}\n"
                             f"{self.logs()}")

    def logs(self) -> str:
        parts = []
        for log in [*sorted(self.folder.glob("log/*.log")), self.folder / "munge/munged.log"]:
            if log.exists():
                parts.append(f"--- {log.name} (last lines)\n"
                             + "\n".join(log.read_text(errors="replace").splitlines()[-15:]))
        return "\n".join(parts)
