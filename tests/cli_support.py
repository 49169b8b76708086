"""`python -m bench_agent.cli ARGS` for the tests, without paying a Python start each time.

About 200 fast-tier tests need only what a short command prints and returns. A
fresh interpreter costs each of them 0.3-0.6 s of CPU (the start, then importing
pydantic, rich, SQLAlchemy and the package: `python -X importtime -m
bench_agent.cli list`), which was most of `make test-fast`. ``run_cli`` gives the
same CompletedProcess as ``subprocess.run([sys.executable, "-m", "bench_agent.cli",
*args], capture_output=True, text=True, ...)``: a process of its own runs
``bench_agent.cli.main.main(args)`` with the test's environment, folder and stdin,
its fds 0, 1 and 2 on files, and exits like an interpreter (SystemExit's code, a
traceback and 1 for an exception, the atexit handlers, a wait for its threads).

That process is forked from a server started once per pytest process, which has
imported every module of the package before its first fork (the
multiprocessing "forkserver" idea; multiprocessing's own is not used because its
children re-import the parent's __main__, here the `pytest` script, and reset
stdin). Each command so starts from the same pristine state, as a fresh
interpreter would: nothing a command changes (os.environ, the folder, signal
handlers, sys.stdout, logging, functools caches) reaches the next one.

What it is not: the `bench-agent` entry point, a terminal, a process whose parent
is pytest, or a check of what the CLI imports at start. The tests of those keep a
real ``subprocess.run`` (tests/cli/test_cli_terminal.py, test_cli_e2e.py,
test_completion_man.py's --version, faults/test_outputs.py, the signal tests).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import locale
import os
import pkgutil
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.paths import REPO

# Set BENCH_AGENT_TEST_SUBPROCESS=1 to run every run_cli call as a real
# `python -m bench_agent.cli` child instead (to rule the server out when a test fails).
REAL_CHILD_ENV = "BENCH_AGENT_TEST_SUBPROCESS"
# Modules that cannot be imported outside their own context: alembic runs
# migrations/env.py itself, with its `context` set up.
_NOT_PRELOADED = (".migrations",)


# --- the server side ------------------------------------------------------------------


def _preload() -> None:
    import bench_agent

    for module in pkgutil.walk_packages(bench_agent.__path__, "bench_agent."):
        if module.name.endswith("__main__") or any(p in module.name for p in _NOT_PRELOADED):
            continue
        # A module whose optional dependency is absent (torch, pynvml) is imported by
        # the command that needs it, and fails there as it would in a fresh process.
        with contextlib.suppress(Exception):
            importlib.import_module(module.name)


def serve() -> None:
    """Read one request per line on stdin, fork a child per request, answer on stdout.

    Answers: {"pid": N} when the child started, then {"status": waitstatus}."""
    requests = os.fdopen(os.dup(0), "rb")
    answers = os.dup(1)
    # Nothing the server or a child prints may land in the answers: 0 and 1 go elsewhere.
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    os.close(devnull)
    _preload()
    for line in requests:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            requests.close()
            os.close(answers)
            _child(request)  # never returns
        os.write(answers, json.dumps({"pid": pid}).encode() + b"\n")
        _, status = os.waitpid(pid, 0)
        os.write(answers, json.dumps({"status": status}).encode() + b"\n")


def _child(request: dict[str, Any]) -> None:
    """In the forked child: become `python -m bench_agent.cli ARGV` and exit."""
    code = 1
    try:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for fd, path, flags in ((0, request["stdin"], os.O_RDONLY),
                                (1, request["stdout"], os.O_WRONLY),
                                (2, request["stderr"], os.O_WRONLY)):
            opened = os.open(path, flags)
            os.dup2(opened, fd)
            os.close(opened)
        # The streams a fresh interpreter opens on 0, 1 and 2 when they are not a
        # terminal (Python's "sys.stdin" docs: stderr's errors are backslashreplace).
        encoding = locale.getpreferredencoding(False)
        sys.stdin = open(0, encoding=encoding, closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", encoding=encoding, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", encoding=encoding, errors="backslashreplace",  # noqa: SIM115
                          closefd=False, buffering=1)
        import bench_agent.cli

        sys.argv = [str(Path(bench_agent.cli.__file__).with_name("__main__.py")),
                    *request["argv"]]
        from bench_agent.cli.main import main

        code = _exit_code(main, request["argv"])
    except BaseException:  # the child reports whatever escaped, then exits
        traceback.print_exc()
        code = 1
    finally:
        # What the interpreter does at exit: wait for non-daemon threads, run the
        # atexit handlers, flush the streams; os._exit keeps the server's loop and
        # buffers out of it.
        with contextlib.suppress(BaseException):
            threading._shutdown()  # type: ignore[attr-defined]
        with contextlib.suppress(BaseException):
            atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):
                stream.flush()
        os._exit(code)


def _exit_code(main: Any, argv: list[str]) -> int:
    """main's return value, or what a SystemExit out of it makes the interpreter exit with."""
    try:
        return int(main(argv))
    except SystemExit as exc:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        print(exc.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # The interpreter's exit on an uncaught Ctrl-C: the traceback, then death by SIGINT.
        traceback.print_exc()
        sys.stderr.flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        raise


# --- the test side --------------------------------------------------------------------


class _Server:
    """The fork server of this pytest process, started at its first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._folder = tempfile.TemporaryDirectory(prefix="bench-agent-cli-")
        self._calls = 0

    def _started(self) -> subprocess.Popen[bytes]:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                [sys.executable, "-c", "from tests.cli_support import serve; serve()"],
                # Unbuffered: a reader's buffer holding the next answer would hide it
                # from select() below.
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, cwd=REPO,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(
                    [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])})
            atexit.register(self.stop)
        return self._process

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._folder.cleanup()

    def run(self, argv: list[str], env: Mapping[str, str], cwd: str, input: str | None,
            timeout: float | None) -> tuple[int, bytes, bytes, bool]:
        with self._lock:
            self._calls += 1
            files = Path(self._folder.name)
            stdin, out, err = (files / f"{self._calls}.{n}" for n in ("in", "out", "err"))
            stdin.write_bytes((input or "").encode(locale.getpreferredencoding(False)))
            out.touch()
            err.touch()
            process = self._started()
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(json.dumps({
                "argv": argv, "env": dict(env), "cwd": cwd, "stdin": str(stdin),
                "stdout": str(out), "stderr": str(err)}).encode() + b"\n")
            pid = self._answer(process, None)["pid"]
            deadline = None if timeout is None else time.monotonic() + timeout
            try:
                status = self._answer(process, deadline)["status"]
                timed_out = False
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                status = self._answer(process, None)["status"]
                timed_out = True
            result = (os.waitstatus_to_exitcode(status), out.read_bytes(), err.read_bytes(),
                      timed_out)
            for path in (stdin, out, err):
                path.unlink()
            return result

    @staticmethod
    def _answer(process: subprocess.Popen[bytes], deadline: float | None) -> dict[str, int]:
        assert process.stdout is not None
        while deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            if select.select([process.stdout], [], [], left)[0]:
                break
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"the CLI fork server exited ({process.wait()}): see stderr")
        answer: dict[str, int] = json.loads(line)
        return answer


# Made at the first call, not at import: the server imports this module too, and
# its children must not inherit (and at exit clean up) a client's temporary folder.
_SERVER: _Server | None = None


def _text(data: bytes) -> str:
    # What subprocess.run(text=True) returns: the locale's decoding, universal newlines.
    text = data.decode(locale.getpreferredencoding(False))
    return text.replace("\r\n", "\n").replace("\r", "\n")


def run_cli(*args: str | os.PathLike[str], env: Mapping[str, str] | None = None,
            cwd: str | os.PathLike[str] | None = None, input: str | None = None,
            timeout: float | None = 300) -> subprocess.CompletedProcess[str]:
    """`python -m bench_agent.cli ARGS` in a process of its own: its exit code, stdout, stderr.

    ``env`` is the whole environment (os.environ at the call when None), ``cwd``
    the repository when None, stdin is ``input`` (empty when None). Raises
    subprocess.TimeoutExpired after ``timeout`` seconds, as subprocess.run does."""
    argv = [os.fspath(a) for a in args]
    command = [sys.executable, "-m", "bench_agent.cli", *argv]
    environment = dict(os.environ if env is None else env)
    folder = os.fspath(REPO if cwd is None else cwd)
    if os.environ.get(REAL_CHILD_ENV) == "1":
        return subprocess.run(command, capture_output=True, text=True, env=environment,
                              cwd=folder, input=input or "", timeout=timeout, check=False)
    global _SERVER
    if _SERVER is None:
        _SERVER = _Server()
    code, out, err, timed_out = _SERVER.run(argv, environment, folder, input, timeout)
    if timed_out:
        assert timeout is not None
        raise subprocess.TimeoutExpired(command, timeout, output=out, stderr=err)
    return subprocess.CompletedProcess(command, code, _text(out), _text(err))
