"""core/process.py: the one subprocess seam, with real processes (no mocks)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench_agent.core.errors import CheckTimeout, ToolFailed, ToolMissing
from bench_agent.core.process import _SignalsHeld, run_tool, running
from tests.paths import REPO
from tests.process_support import alive, kill_all, marked, pids_in, unique_marker, wait_until


def test_output_and_exit_code_come_back_unjudged() -> None:
    proc = run_tool(sys.executable, [sys.executable, "-c", "import sys; print('out'); "
                               "print('err', file=sys.stderr); sys.exit(3)"], 30, "")
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out\n", "err\n")


def test_a_tool_not_on_path_is_missing_with_its_hint() -> None:
    with pytest.raises(ToolMissing, match=r"no-such-tool-xyz is not installed \(apt install x\)"):
        run_tool("no-such-tool-xyz", ["no-such-tool-xyz"], 5, "apt install x")


def test_a_hung_tool_is_a_timeout_naming_the_command() -> None:
    with pytest.raises(CheckTimeout, match=r"python.* ran past 0.5 s \(.*time.sleep"):
        run_tool(sys.executable, [sys.executable, "-c", "import time; time.sleep(30)"], 0.5, "")


def test_a_tool_that_cannot_be_started_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    broken = tmp_path / "broken-tool"
    broken.write_bytes(b"\x00\x01\x02 not a program")
    broken.chmod(0o755)
    with pytest.raises(ToolFailed, match="cannot start"):
        run_tool(str(broken), [str(broken)], 5, "")


# --- a tool's children die at its timeout (real processes, a fake tool on PATH) --------

REPO = REPO

FAKE_TOOL = r"""#!/bin/bash
# faketool VARIANT MARKER PIDFILE: start a child the way VARIANT says, then hang.
# Started by code that chooses the arguments (fio, python), the FAKE_* variables say.
variant=${FAKE_VARIANT:-$1} marker=${FAKE_MARKER:-$2} pidfile=${FAKE_PIDFILE:-$3}
case $variant in
  child)          (exec -a "$marker" sleep 600) & echo $! >> "$pidfile" ;;
  ignoring-term)  trap '' TERM
                  (exec -a "$marker" sleep 600) & echo $! >> "$pidfile" ;;
  setsid)         setsid bash -c 'echo $$ >> "$0"; exec -a "$1" sleep 600' \
                      "$pidfile" "$marker" & ;;
  orphaned-setsid) setsid -f bash -c 'echo $$ >> "$0"; exec -a "$1" sleep 600' \
                      "$pidfile" "$marker" ;;
  leftover)       (exec -a "$marker" sleep 600) >/dev/null 2>&1 & echo $! >> "$pidfile"
                  echo done; exit 0 ;;
  leftover-on-our-pipes) (exec -a "$marker" sleep 600) & echo $! >> "$pidfile"
                  echo done; exit 0 ;;
esac
until [ -s "$pidfile" ]; do sleep 0.05; done
echo "started, now hanging" >&2
echo $$ >> "$pidfile"
exec -a "$marker" sleep 600
"""


@pytest.fixture
def faketool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "faketool"
    tool.write_text(FAKE_TOOL)
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tool


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["child", "ignoring-term", "setsid", "orphaned-setsid"])
def test_a_tools_children_die_at_its_timeout(faketool: Path, tmp_path: Path,
                                             variant: str) -> None:
    marker = unique_marker(variant)
    pidfile = tmp_path / "pids"
    try:
        with pytest.raises(CheckTimeout) as caught:
            run_tool("faketool", ["faketool", variant, marker, str(pidfile)], 3.0, "",
                     grace=1.0)
        started = pids_in(pidfile)
        # The tool's child and the tool itself had started: the test is not vacuous.
        assert len(started) == 2, f"the fake tool did not get going: {started}"
        assert [pid for pid in started if alive(pid)] == []
        assert marked(marker) == []
        assert str(caught.value).startswith(
            f"faketool ran past 3 s (faketool {variant} {marker} {pidfile}) and was stopped "
            "with its children; last output: started, now hanging")
    finally:
        kill_all(marker, *pids_in(pidfile))


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["leftover", "leftover-on-our-pipes"])
def test_what_a_tool_leaves_behind_when_it_exits_is_stopped(faketool: Path, tmp_path: Path,
                                                             variant: str) -> None:
    """Its exit code and words come back (not a timeout, though a leftover holds our
    pipes), and the leftover is stopped."""
    marker = unique_marker(variant)
    pidfile = tmp_path / "pids"
    try:
        done = run_tool("faketool", ["faketool", variant, marker, str(pidfile)], 600, "")
        assert (done.returncode, done.stdout) == (0, "done\n")
        (leftover,) = pids_in(pidfile)
        assert not alive(leftover)
        assert marked(marker) == []
    finally:
        kill_all(marker, *pids_in(pidfile))


def test_input_reaches_the_tool_and_its_words_come_back() -> None:
    done = run_tool(sys.executable, [sys.executable, "-c",
                                     "import sys; data = sys.stdin.read(); "
                                     "print(len(data)); print('caf\\u00e9', file=sys.stderr)"],
                    30, "", input="x" * 300_000)  # more than a pipe holds (pipe(7): 64 KiB)
    assert (done.returncode, done.stdout, done.stderr) == (0, "300000\n", "café\n")


def _driver(code: str) -> subprocess.Popen[str]:
    """A stand-in for the agent: a separate Python process that we can SIGKILL."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)


def test_a_child_dies_with_its_parent_even_by_sigkill() -> None:
    marker = unique_marker("pdeathsig")
    driver = _driver(
        "import time\n"
        "from bench_agent.core.process import spawn\n"
        f"child = spawn(['bash', '-c', 'exec -a {marker} sleep 600'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(600)\n")
    child = 0
    try:
        assert driver.stdout is not None
        child = int(driver.stdout.readline())
        assert wait_until(lambda: marked(marker) == [child]), "the child never started"
        driver.kill()  # SIGKILL: no handler, no finally runs in the parent
        driver.wait(timeout=30)
        # PR_SET_PDEATHSIG: the kernel SIGKILLs the child as its parent exits.
        assert wait_until(lambda: not alive(child), 10)
        assert marked(marker) == []
    finally:
        driver.kill()
        driver.wait(timeout=30)
        kill_all(marker, child)


def test_a_worker_and_its_tool_die_with_the_agent(tmp_path: Path) -> None:
    """The runner's worker dies with the agent, and the worker's tool with the worker."""
    marker = unique_marker("agent-killed")
    pidfile = tmp_path / "tool.pid"
    worker = REPO / "tests" / "data" / "workers" / "misbehaving_worker.py"
    driver = _driver(
        "import sys\n"
        "from bench_agent.run.runner import run_in_child\n"
        "run_in_child({'check': 'cpu.gemm'}, 600, "
        f"[sys.executable, {str(worker)!r}, 'hang-with-tool', {str(pidfile)!r}, {marker!r}])\n")
    try:
        assert wait_until(lambda: len(marked(marker)) == 1 and pidfile.exists()
                          and pidfile.read_text() != ""), "the worker's tool never started"
        tool = pids_in(pidfile)[0]
        driver.kill()
        driver.wait(timeout=30)
        assert wait_until(lambda: not alive(tool), 10)
        assert marked(marker) == []
    finally:
        driver.kill()
        driver.wait(timeout=30)
        kill_all(marker, *pids_in(pidfile))


@pytest.fixture
def sigint_raises() -> Iterator[None]:
    """SIGINT as Python's default (KeyboardInterrupt), also when the test run was
    started in the background by a shell, which ignores it (POSIX sh, "&")."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def test_an_interrupt_stops_a_child_that_is_owned_from_its_start(
        tmp_path: Path, sigint_raises: None) -> None:
    """The child SIGINTs us as soon as it runs: however early that lands (while
    it starts, while we read), the child is stopped before the interrupt reaches us."""
    marker = unique_marker("interrupt")
    pidfile = tmp_path / "pid"
    code = ("import os, signal, sys, time\n"
            "open(sys.argv[1], 'w').write(str(os.getpid()))\n"
            "os.kill(os.getppid(), signal.SIGINT)\n"
            "time.sleep(600)\n")
    try:
        with pytest.raises(KeyboardInterrupt), running(
                [sys.executable, "-c", code, str(pidfile), marker]) as child:
            child.finish(timeout=60)
        assert wait_until(pidfile.exists)
        assert not alive(int(pidfile.read_text()))
        assert marked(marker) == []
    finally:
        kill_all(marker, *pids_in(pidfile))


def test_signals_that_come_while_a_child_starts_are_delivered_once_it_is_owned(
        sigint_raises: None) -> None:
    held = _SignalsHeld()
    held.hold()
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)  # room for the handler to run, were it not held
        assert held.pending == [signal.SIGINT]
    finally:
        with pytest.raises(KeyboardInterrupt):
            held.release()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# --- the call sites use the seam: a hung tool's children die with it --------------------


@pytest.fixture
def hanging(faketool: Path, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """The fake tool, whatever its arguments, starts a child and hangs."""
    marker = unique_marker("call-site")
    pidfile = tmp_path / "pids"
    for name, value in (("VARIANT", "child"), ("MARKER", marker), ("PIDFILE", str(pidfile))):
        monkeypatch.setenv(f"FAKE_{name}", value)
    try:
        yield marker, pidfile
    finally:
        kill_all(marker, *pids_in(pidfile))


def _nothing_left(marker: str, pidfile: Path) -> None:
    started = pids_in(pidfile)
    assert len(started) >= 2, f"the fake tool did not get going: {started}"
    assert [pid for pid in started if alive(pid)] == []
    assert marked(marker) == []


@pytest.mark.slow
def test_fio_and_its_children_are_stopped_at_its_timeout(
        faketool: Path, hanging: tuple[str, Path]) -> None:
    from bench_agent.tools.fio_run import run_fio

    with pytest.raises(CheckTimeout, match=r"^fio ran past 3 s and was stopped; "
                                           r"last output: started, now hanging$"):
        run_fio(str(faketool), "[job]\nrw=read\n", 3.0)
    _nothing_left(*hanging)


@pytest.mark.slow
def test_gpu_bench_children_and_theirs_are_stopped_at_the_timeout(
        faketool: Path, hanging: tuple[str, Path]) -> None:
    from bench_agent.checks.gpu.kernels import run_on_devices

    task = {"kernel": "bench_agent.checks.gpu.kernels:copy_kernel"}
    results = run_on_devices(["cpu"], task, 3.0, python=str(faketool))
    assert results == [{"device": "cpu", "error": "timed out after 3 s"}]
    _nothing_left(*hanging)


@pytest.mark.slow
def test_iperf3_clients_and_their_children_are_stopped_at_the_timeout(
        faketool: Path, hanging: tuple[str, Path]) -> None:
    from bench_agent.tools.iperf3 import run_parallel

    with pytest.raises(CheckTimeout, match=r"^iperf3 ran past 3 s \(faketool client\)$"):
        run_parallel([["faketool", "client"]], 3.0)
    _nothing_left(*hanging)


@pytest.mark.slow
def test_collective_launch_stops_torchrun_and_its_ranks_at_the_timeout(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from bench_agent.checks.nccl.collective import launch

    def ranks() -> list[int]:  # torchrun and its ranks name the request file in tmp_path
        return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                and alive(int(p.name)) and str(tmp_path).encode() in _cmdline(int(p.name))]

    request = {"backend": "gloo", "collectives": ["all_reduce"], "min_bytes": 1 << 20,
               "max_bytes": 1 << 20, "warmup": 1, "iterations": 10**9}
    seen: set[int] = set()
    launched = threading.Event()

    def watch() -> None:
        while not launched.is_set():
            seen.update(ranks())
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result, tail = launch(request, nproc=2, timeout=20, workdir=tmp_path)
        launched.set()
        watcher.join(timeout=30)
        assert result is None and tail.startswith("timed out after 20 s")
        assert len(seen) >= 3, f"torchrun and two ranks never ran: {seen}"
        assert ranks() == []
    finally:
        launched.set()
        kill_all(None, *seen)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
