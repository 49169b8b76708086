"""tests/cli_support.run_cli answers what a real `python -m bench_agent.cli` child answers.

Each case runs both ways and compares exit code, stdout and stderr byte for byte:
a success, an argparse refusal (SystemExit from the parser), a usage error from a
command, one that reads the environment and one that reads the working folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_support import run_cli
from tests.paths import REPO


def real(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench_agent.cli", *args], capture_output=True,
                          text=True, timeout=120, env=env, cwd=cwd, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("args", [
    ["--version"],
    ["no-such-command"],
    ["report", "show", "missing-report.json"],  # relative: read from the working folder
    ["upload", "--output", "{tmp}"],  # the collector comes from the environment
])
def test_run_cli_matches_a_real_child(args: list[str], tmp_path: Path) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    env = {**os.environ, "BENCH_AGENT_COLLECTOR": "", "COLUMNS": "100"}
    forked = run_cli(*argv, env=env, cwd=tmp_path)
    child = real(argv, env, tmp_path)
    assert (forked.returncode, forked.stdout, forked.stderr) == (
        child.returncode, child.stdout, child.stderr)
    assert forked.returncode in (0, 3), forked.stderr


def test_one_run_leaves_nothing_to_the_next(tmp_path: Path) -> None:
    """The environment of one call does not reach the next (each child is forked
    from the same pristine server)."""
    unset = {k: v for k, v in os.environ.items() if k != "BENCH_AGENT_COLLECTOR"}
    refused = run_cli("upload", "--output", str(tmp_path), env=unset, cwd=REPO)
    with_url = run_cli("upload", "--output", str(tmp_path),
                       env={**unset, "BENCH_AGENT_COLLECTOR": "ftp://nowhere"}, cwd=REPO)
    again = run_cli("upload", "--output", str(tmp_path), env=unset, cwd=REPO)
    assert refused.returncode == 3 and "no collector" in refused.stderr
    assert with_url.stderr != refused.stderr
    assert (again.returncode, again.stderr) == (refused.returncode, refused.stderr)
