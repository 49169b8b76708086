"""The one subprocess seam: every child the agent starts goes through here.

What a tool's output *means* (which exit codes, which words are a failure) stays
in each tool's module; this module starts the process, bounds it in time, stops
it with everything it started, and translates foreign errors at this boundary:

    spawn(command)           -> Child, started in its own session, with a
                                parent-death signal and a token in its environment
    with running(command)    -> the same, owned from the first instant: stopped on
                                the way out, whatever happens
    Child.finish(input, t)   -> Finished: exit code, output read under a deadline
    Child.stop(grace)        -> SIGTERM the group and every escapee, wait, SIGKILL
    run_child(command, ...)  -> spawn + finish + stop, never raises but OSError
    run_tool(tool, ...)      -> the same for an external tool, in our errors:
        not on PATH              -> ToolMissing (SKIP), with how to install it
        cannot be started        -> ToolFailed, with the OS's words
        runs past its time limit -> CheckTimeout, naming the command, with its
                                    last words; it and its children are stopped

Why each part is there:

- Own session (setsid): the child and the processes it forks share a process
  group, so one killpg(2) reaches them all (``subprocess.run(timeout=)`` kills the
  direct child only; fio's job processes or a tool's helper ran on).
- Escapees: a process that calls setsid(2) leaves the group. Every child gets a
  token appended to ``BENCH_AGENT_SPAWN`` in its environment, which its
  descendants inherit; stop() also signals every process whose environment
  (/proc/PID/environ, proc(5)) carries the token or whose parent chain leads to
  the child, so an escapee is found even after it was re-parented to init.
- Parent-death signal: prctl(2) PR_SET_PDEATHSIG makes the kernel signal the
  child when its parent dies, even by SIGKILL, so no worker or tool outlives the
  agent. It fires when the *thread* that forked the child ends (prctl(2)), so a
  child started from a short-lived thread must opt out (die_with_parent=False).
  It is set between fork and exec; if the parent died before that, getppid(2)
  no longer names it and the child exits instead of running on.
- Signals while starting: a KeyboardInterrupt raised after fork(2) but before the
  Popen object reaches its owner leaves a child nobody stops. Python runs signal
  handlers in the main thread between bytecodes whichever thread the kernel
  delivered the signal to (signal module docs, "Execution of Python signal
  handlers"): blocking it with pthread_sigmask defers it only while no other
  thread can take it, and the child would inherit the mask across execve
  (signal(7)). Instead the main thread's Python-level SIGINT/SIGTERM
  handlers are swapped for a recorder while the child starts, and what was
  recorded is replayed once the child is owned (and stopped if that replay
  raises). A signal whose action is the default one kills the agent outright,
  and then the parent-death signal ends the child.
- Output is read with select(2) under a deadline, never to EOF alone: a process
  that escaped even that and holds our pipes cannot hang us.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any

from bench_agent.core.errors import CheckTimeout, ToolFailed, ToolMissing
from bench_agent.core.proctree import TOKEN_VAR, Snapshot, Stat, all_stats, stat_of

# After SIGTERM, how long a child gets to clean up (fio removes its files, a
# server closes its sockets) before SIGKILL.
KILL_GRACE_S = 5.0
# A tool stopped inside a worker gets less than the runner gives the worker
# (runner.KILL_GRACE_S), so the worker can still report before it is killed.
TOOL_GRACE_S = 3.0
# After SIGKILL only the kernel can delay the end: a process in D state (a hung
# driver, dead NFS) cannot be killed, and we stop waiting for it.
REAP_S = 5.0
# How long we keep reading the pipes after the child exited or was stopped: a
# process it left behind may hold them open.
DRAIN_S = 2.0
_POLL_S = 0.05
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
STDOUT = subprocess.STDOUT

Redirect = int | IO[Any] | None


# --- starting -------------------------------------------------------------------------


_prctl_cache: list[Callable[..., int] | None] = []


def _prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up once in the parent: the child only calls it."""
    if not _prctl_cache:
        import ctypes

        try:
            function: Callable[..., int] | None = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):  # not Linux: no parent-death signal
            function = None
        _prctl_cache.append(function)
    return _prctl_cache[0]


def _child_setup(parent: int, death_signal: int) -> Callable[[], None]:
    prctl = _prctl()

    def setup() -> None:  # runs in the child between fork and exec: syscalls only
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, int(death_signal))
        if os.getppid() != parent:  # the parent died before the line above took effect
            os._exit(1)

    return setup


class _SignalsHeld:
    """Record SIGINT/SIGTERM instead of running their Python handlers, then replay."""

    def __init__(self) -> None:
        self.previous: dict[int, Any] = {}
        self.pending: list[int] = []

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.pending.append(signum)

    def hold(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # handlers run in the main thread: they cannot interrupt this one
        for sig in _DEFERRED_SIGNALS:
            handler = signal.getsignal(sig)
            if callable(handler):
                self.previous[sig] = signal.signal(sig, self._record)

    def release(self) -> None:
        """Put the handlers back and deliver what came meanwhile (this may raise)."""
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}
        pending, self.pending = self.pending, []
        for sig in dict.fromkeys(pending):
            signal.raise_signal(sig)


def _start(command: Sequence[str], stdin: Redirect, stdout: Redirect, stderr: Redirect,
           env: Mapping[str, str] | None, cwd: Path | str | None,
           death_signal: int | None, grace: float) -> Child:
    token = uuid.uuid4().hex[:16]
    environment = dict(os.environ if env is None else env)
    chain = environment.get(TOKEN_VAR, "")
    environment[TOKEN_VAR] = f"{chain} {token}".strip()
    popen = subprocess.Popen(
        list(command), stdin=stdin, stdout=stdout, stderr=stderr, env=environment, cwd=cwd,
        start_new_session=True,
        preexec_fn=None if death_signal is None else _child_setup(os.getpid(), death_signal),
    )
    return Child(popen, tuple(command), token, grace)


def spawn(command: Sequence[str], *, stdin: Redirect = DEVNULL, stdout: Redirect = PIPE,
          stderr: Redirect = PIPE, env: Mapping[str, str] | None = None,
          cwd: Path | str | None = None, die_with_parent: bool = True,
          death_signal: int = signal.SIGKILL, grace: float = KILL_GRACE_S) -> Child:
    """Start ``command`` in its own session; raises OSError if it cannot start.

    For a child kept beyond one block (a server, a load); where a block is enough,
    ``with running(...)`` leaves no instant at which the child is not owned.
    """
    return running(command, stdin=stdin, stdout=stdout, stderr=stderr, env=env, cwd=cwd,
                   die_with_parent=die_with_parent, death_signal=death_signal,
                   grace=grace).__enter__()


class running:  # lowercase: used like contextlib's context managers
    """``with running(command) as child:`` spawn, and stop the child on the way out."""

    def __init__(self, command: Sequence[str], *, stdin: Redirect = DEVNULL,
                 stdout: Redirect = PIPE, stderr: Redirect = PIPE,
                 env: Mapping[str, str] | None = None, cwd: Path | str | None = None,
                 die_with_parent: bool = True, death_signal: int = signal.SIGKILL,
                 grace: float = KILL_GRACE_S) -> None:
        self._args = (command, stdin, stdout, stderr, env, cwd,
                      death_signal if die_with_parent else None, grace)
        self.child: Child | None = None

    def __enter__(self) -> Child:
        held = _SignalsHeld()
        held.hold()
        try:
            # Signals are recorded, not raised, until the child is stored here.
            self.child = _start(*self._args)
        except BaseException:
            held.release()
            raise
        try:
            held.release()
        except BaseException:
            self.child.stop()
            raise
        return self.child

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self.child is not None:
            self.child.stop()


# --- the child ------------------------------------------------------------------------


def _text(data: bytes) -> str:
    # As subprocess's text mode does (universal newlines), but a stray non-UTF-8
    # byte must not hide the tool's words.
    return data.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")


@dataclass(frozen=True)
class Finished:
    """How a child ended. ``returncode`` is None only when it outlived SIGKILL."""

    command: tuple[str, ...]
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool = False
    # Something we could not stop kept our pipes open: the output may be cut short.
    pipes_held: bool = False


class Child:
    """A process we started and own, with everything it starts.

    Its exit is observed without reaping it (waitid WNOWAIT) until stop() is done:
    the unreaped leader keeps its pid, which is the group id, from being reused,
    so killpg(2) cannot reach a stranger's group.
    """

    def __init__(self, popen: subprocess.Popen[bytes], command: tuple[str, ...], token: str,
                 grace: float) -> None:
        self.popen = popen
        self.command = command
        self.token = token
        self.grace = grace
        self.pid = popen.pid  # also its process group and session id (setsid)
        self._stopped = False  # a stop was begun: __del__ leaves it alone
        self._ended = False  # a stop found nothing left: a second one has nothing to do
        self._out: dict[IO[bytes], list[bytes]] = {}
        self._selector: selectors.BaseSelector | None = None
        self._input: memoryview | None = None

    def __enter__(self) -> Child:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def __del__(self) -> None:
        # The last resort for a child whose owner lost it (an exception between
        # spawn() returning and its caller storing it): no waiting here.
        if not getattr(self, "_stopped", True) and self.popen.returncode is None:
            with contextlib.suppress(OSError):
                os.killpg(self.pid, signal.SIGKILL)

    def poll(self) -> int | None:
        """The exit code once it ended (this reaps it), else None."""
        return self.popen.poll()

    def _exited(self) -> bool:
        if self.popen.returncode is not None:
            return True
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # reaped by someone else
            self.popen.poll()
            return True
        return info is not None

    # -- output --

    def _open_pipes(self, data: bytes | None) -> None:
        if self._selector is not None:
            return
        self._selector = selectors.DefaultSelector()
        if self.popen.stdin is not None:
            if data:
                self._input = memoryview(data)
                os.set_blocking(self.popen.stdin.fileno(), False)
                self._selector.register(self.popen.stdin, selectors.EVENT_WRITE)
            else:
                with contextlib.suppress(BrokenPipeError):
                    self.popen.stdin.close()
        for pipe in (self.popen.stdout, self.popen.stderr):
            if pipe is not None:
                self._out[pipe] = []
                self._selector.register(pipe, selectors.EVENT_READ)

    def _pump(self, deadline: float, after_exit: float | None = None) -> bool:
        """Feed stdin, read stdout and stderr until EOF on all (True), ``deadline``,
        or ``after_exit`` seconds after the child exited (False): a process it
        left behind may hold the pipes, and its exit code is what we wait for."""
        assert self._selector is not None
        give_up = deadline
        while self._selector.get_map():
            now = time.monotonic()
            if after_exit is not None and give_up == deadline and self._exited():
                give_up = min(deadline, now + after_exit)
            if now >= give_up:
                return False
            for key, _events in self._selector.select(min(give_up - now, 0.25)):
                if key.fileobj is self.popen.stdin:
                    self._write_some()
                    continue
                pipe = self.popen.stdout if key.fileobj is self.popen.stdout else self.popen.stderr
                assert pipe is not None
                chunk = os.read(key.fd, 65536)
                if chunk:
                    self._out[pipe].append(chunk)
                else:
                    self._selector.unregister(pipe)
                    pipe.close()
        return True

    def _write_some(self) -> None:
        stdin = self.popen.stdin
        assert stdin is not None and self._input is not None and self._selector is not None
        try:
            written = os.write(stdin.fileno(), self._input[:65536])
        except BlockingIOError:
            return
        except BrokenPipeError:  # it stopped reading: its output will say why
            written = len(self._input)
        self._input = self._input[written:]
        if not self._input:
            self._selector.unregister(stdin)
            with contextlib.suppress(BrokenPipeError):
                stdin.close()

    def _wait_exit(self, deadline: float) -> bool:
        pause = 0.001  # most children exit right after closing their output
        while not self._exited():
            if time.monotonic() >= deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, _POLL_S)
        return True

    def _output(self, pipe: IO[bytes] | None) -> str:
        return _text(b"".join(self._out.get(pipe, []))) if pipe is not None else ""

    def finish(self, data: bytes | None = None, timeout: float | None = None) -> Finished:
        """Send ``data``, read everything, wait for the exit: at most ``timeout``
        seconds, after which the child and its tree are stopped (TERM, grace, KILL).

        Processes it left behind when it exited are stopped too, so a tool's
        helper never outlives the call (nor, holding the pipes, makes it wait).
        """
        deadline = time.monotonic() + (timeout if timeout is not None else float("inf"))
        stdout_pipe, stderr_pipe = self.popen.stdout, self.popen.stderr
        self._open_pipes(data)
        self._pump(deadline, after_exit=DRAIN_S)
        timed_out = not self._wait_exit(deadline)
        self.stop()
        pipes_held = not self._pump(time.monotonic() + DRAIN_S)
        self._close()
        return Finished(self.command, self.popen.returncode, self._output(stdout_pipe),
                        self._output(stderr_pipe), timed_out, pipes_held)

    def _close(self) -> None:
        if self._selector is not None:
            self._selector.close()
        for pipe in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    # -- stopping --

    def _tree(self, now: Snapshot) -> dict[int, int]:
        """Live (not zombie) processes of this child, pid -> start time: its group,
        every process whose environment carries its token (an escapee whose
        parent died was re-parented and is found only so), and the descendants of
        these by parent (setsid keeps the parent)."""
        found: dict[int, Stat] = {}
        if self.popen.returncode is None:  # unreaped: its pid and group id are still ours
            found = {s.pid: s for s in now.stats if s.pgrp == self.pid}
        found.update((s.pid, s) for s in now.by_token.get(self.token.encode(), []))
        by_parent: dict[int, list[Stat]] = {}
        for stat in now.stats:
            by_parent.setdefault(stat.ppid, []).append(stat)
        todo = list(found)
        while todo:
            for stat in by_parent.get(todo.pop(), []):
                if stat.pid not in found:
                    found[stat.pid] = stat
                    todo.append(stat.pid)
        return {pid: s.start for pid, s in found.items() if s.state not in "ZX"}

    @staticmethod
    def _alive(targets: dict[int, int]) -> dict[int, int]:
        alive = {}
        for pid, start in targets.items():
            stat = stat_of(pid)
            if stat is not None and stat.start == start and stat.state not in "ZX":
                alive[pid] = start
        return alive

    def _signal(self, targets: dict[int, int], sig: int) -> None:
        if self.popen.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)
        for pid in self._alive(targets):  # a pid reused meanwhile is left alone
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    def _group_gone(self) -> bool:
        if self.popen.returncode is not None:
            return True  # reaped before stop(): its members are known by token only
        return not any(s.pgrp == self.pid and s.state not in "ZX" for s in all_stats())

    def _gone(self, targets: dict[int, int]) -> bool:
        # Cheapest first: the known pids, the leader, then a scan for the group.
        return not self._alive(targets) and self._exited() and self._group_gone()

    def stop(self, grace: float | None = None) -> bool:
        """SIGTERM the child's group and everything it started, SIGKILL what is left
        after ``grace`` seconds, reap it. False when something outlived SIGKILL (a
        process stuck in the kernel): we stop waiting for it."""
        if self._ended:
            return True
        return stop_all([self], self.grace if grace is None else grace)


def stop_all(children: Sequence[Child], grace: float) -> bool:
    """Stop several children at once: SIGTERM to all, one grace period for all,
    SIGKILL to what is left (Child.stop is this for one).

    A second Ctrl-C or SIGTERM while this waits is held until the stop is done:
    cut short, it would leave the child running on.
    """
    targets: dict[Child, dict[int, int]] = {}
    held = _SignalsHeld()
    held.hold()
    try:
        now = Snapshot.take()
        for child in children:
            child._stopped = True
            found = child._tree(now)
            if found or not child._exited():
                targets[child] = found
        for child, found in targets.items():
            child._signal(found, signal.SIGTERM)
        left = _wait_all_gone(targets, grace)
        if left:
            now = Snapshot.take()
        for child in left:
            targets[child].update(child._tree(now))
            child._signal(targets[child], signal.SIGKILL)
        stuck = _wait_all_gone({c: targets[c] for c in left}, REAP_S)
        for child in children:
            child._ended = child not in stuck
        return not stuck
    finally:
        for child in children:
            child.popen.poll()  # reap the leader now that its group id is no longer needed
        held.release()


def _wait_all_gone(targets: dict[Child, dict[int, int]], seconds: float) -> list[Child]:
    """Wait up to ``seconds`` for every child's tree to end; the children still running."""
    deadline = time.monotonic() + seconds
    left = list(targets)
    while True:
        left = [child for child in left if not child._gone(targets[child])]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(_POLL_S)


def run_child(command: Sequence[str], *, data: bytes | None = None, timeout: float,
              grace: float = KILL_GRACE_S, stdout: Redirect = PIPE, stderr: Redirect = PIPE,
              env: Mapping[str, str] | None = None, cwd: Path | str | None = None) -> Finished:
    """Run ``command`` to its end or its time limit; raises only OSError (cannot start)."""
    with running(command, stdin=PIPE if data is not None else DEVNULL, stdout=stdout,
                 stderr=stderr, env=env, cwd=cwd, grace=grace) as child:
        return child.finish(data, timeout)


def tail(text: str, limit: int = 600) -> str:
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


def run_tool(tool: str, command: list[str], timeout: float, install_hint: str, *,
             input: str | None = None,  # subprocess.run's name for it
             grace: float = TOOL_GRACE_S) -> subprocess.CompletedProcess[str]:
    """Run ``command`` (stdin closed unless ``input``, output captured as text);
    never checks the exit code: what it means is the tool module's business."""
    if shutil.which(tool) is None:
        raise ToolMissing(tool, install_hint)
    try:
        done = run_child(command, data=None if input is None else input.encode(),
                         timeout=timeout, grace=grace)
    except OSError as exc:
        raise ToolFailed(tool, f"cannot start {command[0]}: {exc}") from exc
    if done.timed_out:
        words = tail(done.stderr or done.stdout, 300)
        raise CheckTimeout(f"{tool} ran past {timeout:g} s ({' '.join(command)}) and was "
                           "stopped with its children"
                           + (f"; last output: {words}" if words else ""))
    assert done.returncode is not None  # it exited: that is what ended the wait
    return subprocess.CompletedProcess(command, done.returncode, done.stdout, done.stderr)
