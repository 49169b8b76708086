"""fio: find it, ask which engines it has, run a job file (parse in fio.py).

``run_fio`` hands the job file on stdin and returns the report that
``fio.parse_fio_report`` reads, or raises with fio's own words: an exit code 0
with a job error inside is a failure too.
"""

from __future__ import annotations

import shutil

from bench_agent.core.errors import CheckTimeout, ParseError, ToolFailed, ToolMissing
from bench_agent.core.process import TOOL_GRACE_S, run_child
from bench_agent.tools.fio import TOOL, FioReport, parse_fio_report


def find_fio() -> str:
    path = shutil.which("fio")
    if path is None:
        raise ToolMissing(TOOL, "apt-get install fio; `make install` does it as root")
    return path


def engines(fio: str) -> set[str]:
    """Engines compiled into this fio (``fio --enghelp``); compiled is not usable:
    io_uring can still be refused by the kernel or a seccomp filter."""
    try:
        done = run_child([fio, "--enghelp"], timeout=10)
    except OSError:
        return set()
    if done.timed_out:
        return set()
    return {line.strip() for line in done.stdout.splitlines()[1:] if line.strip()}


def run_fio(
    fio: str,
    job_file: str,
    timeout: float,
    *,
    json_plus: bool = True,
    readonly: bool = False,
) -> tuple[FioReport, str]:
    """Run a job file given on stdin (fio reads "-" as stdin, so nothing is written
    to disk for it); return the parsed report and the raw output."""
    command = [fio, f"--output-format={'json+' if json_plus else 'json'}"]
    if readonly:
        # HOWTO, --readonly: "Turn on safety read-only checks, preventing writes
        # and trims"; fio refuses a job that would write.
        command.append("--readonly")
    command.append("-")
    try:
        # Through the seam: at the time limit fio's job processes (fio forks one
        # per job unless --thread) are stopped with it, not left running.
        done = run_child(command, data=job_file.encode(), timeout=timeout, grace=TOOL_GRACE_S)
    except OSError as exc:
        raise ToolFailed(TOOL, f"cannot start {fio}: {exc}") from exc
    if done.timed_out:
        raise CheckTimeout(f"fio ran past {timeout:.0f} s and was stopped"
                           + (f"; last output: {_tail(done.stderr, 300)}"
                              if done.stderr.strip() else ""))
    assert done.returncode is not None  # it exited: that is what ended the wait
    words = "\n".join(line for line in (done.stderr + "\n" + done.stdout).splitlines()
                      if line.strip() and not line.lstrip().startswith(("{", "}", '"')))
    if done.returncode != 0:
        # A job error inside a valid report names the job; fio's stderr says why.
        job_error = ""
        try:
            parse_fio_report(done.stdout)
        except ToolFailed as exc:
            job_error = str(exc).removeprefix("fio failed: ") + "; "
        except ParseError:
            pass
        raise ToolFailed(TOOL, job_error + _tail(words or "no output"),
                         returncode=done.returncode)
    try:
        report = parse_fio_report(done.stdout)
    except ToolFailed as exc:
        # Exit code 0 with an error inside: say so, with fio's words.
        raise ToolFailed(TOOL, f"{str(exc).removeprefix('fio failed: ')}"
                         f"{'; ' + _tail(words) if words else ''}", returncode=0) from exc
    except ParseError as exc:
        if done.stderr.strip():
            raise ParseError(TOOL, f"{exc}; fio's stderr: {_tail(done.stderr)}") from exc
        raise
    return report, done.stdout


def _tail(text: str, limit: int = 800) -> str:
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]
