"""tools/process.py: the one boundary where starting a tool becomes our errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench_agent.errors import CheckTimeout, ToolFailed, ToolMissing
from bench_agent.tools.process import run_tool


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
