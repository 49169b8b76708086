"""Running one external tool to completion: the part every ``run_*`` shares.

What a tool's output *means* (which exit codes, which words are a failure) stays
in each tool's module; this only starts the process, bounds it in time and
translates the foreign errors at this one boundary:

    not on PATH              -> ToolMissing (SKIP), with how to install it
    cannot be started        -> ToolFailed, with the OS's words
    runs past its time limit -> CheckTimeout, naming the command
"""

from __future__ import annotations

import shutil
import subprocess

from bench_agent.errors import CheckTimeout, ToolFailed, ToolMissing


def run_tool(tool: str, command: list[str], timeout: float,
             install_hint: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` (stdin closed, output captured as text); never checks the exit code."""
    if shutil.which(tool) is None:
        raise ToolMissing(tool, install_hint)
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              # a stray non-UTF-8 byte must not hide the tool's words
                              errors="replace",
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        raise CheckTimeout(f"{tool} ran past {timeout:g} s ({' '.join(command)})") from None
    except OSError as exc:
        raise ToolFailed(tool, f"cannot start {command[0]}: {exc}") from exc

