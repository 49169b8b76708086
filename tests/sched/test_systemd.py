"""The systemd units shipped in the package: in the wheel, valid for the real
`systemd-analyze verify`, and running commands our own parser accepts."""

from __future__ import annotations

import configparser
import shlex
import shutil
import sys
import zipfile
from pathlib import Path

import pytest

from bench_agent.cli.parser import build_parser
from bench_agent.core.process import run_child
from bench_agent.data import SYSTEMD, UNITS


def _installed_agent() -> str | None:
    """The bench-agent script beside this Python (the venv's), else on PATH."""
    beside = Path(sys.executable).parent / "bench-agent"
    return str(beside) if beside.is_file() else shutil.which("bench-agent")


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(SYSTEMD / name)
    return parser


def test_every_unit_is_there() -> None:
    assert sorted(p.name for p in SYSTEMD.iterdir()) == sorted(UNITS)


@pytest.mark.slow
def test_the_wheel_ships_the_units(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for unit in UNITS:
        assert f"bench_agent/data/systemd/{unit}" in names


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian: systemd)")
    agent = _installed_agent()
    if agent is None:
        pytest.skip("no installed bench-agent script to stand for /usr/local/bin/bench-agent")
    # verify checks that ExecStart's program exists: the installed script stands in.
    for unit in UNITS:
        text = (SYSTEMD / unit).read_text().replace("/usr/local/bin/bench-agent", agent)
        (tmp_path / unit).write_text(text)
    done = run_child(["systemd-analyze", "verify", "--man=no",
                      *[str(tmp_path / u) for u in UNITS]], timeout=60.0)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ""


def test_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian: systemd)")
    broken = tmp_path / "broken.service"
    broken.write_text("[Service]\nType=oneshot\nExecStart=/nonexistent/bench-agent health\n")
    done = run_child(["systemd-analyze", "verify", "--man=no", str(broken)], timeout=60.0)
    assert done.returncode != 0
    assert "/nonexistent/bench-agent" in done.stderr


@pytest.mark.parametrize(("timer", "service"), [
    ("bench-agent-health.timer", "bench-agent-health.service"),
    ("bench-agent-acceptance.timer", "bench-agent-acceptance.service"),
])
def test_each_timer_starts_its_service(timer: str, service: str) -> None:
    assert _unit(timer)["Timer"]["Unit"] == service
    assert _unit(timer)["Install"]["WantedBy"] == "timers.target"


def test_acceptance_runs_the_acceptance_suite() -> None:
    argv = shlex.split(_unit("bench-agent-acceptance.service")["Service"]["ExecStart"])
    assert argv[0] == "/usr/local/bin/bench-agent"
    args = build_parser().parse_args(argv[1:])
    assert (args.command, args.targets) == ("run", ["acceptance"])


def test_health_runs_the_health_command() -> None:
    argv = shlex.split(_unit("bench-agent-health.service")["Service"]["ExecStart"])
    assert argv == ["/usr/local/bin/bench-agent", "health"]
    service = _unit("bench-agent-health.service")["Service"]
    # A FAIL (exit 1) is a result, not a unit failure; the spool is the state dir's.
    assert service["SuccessExitStatus"] == "1"
    assert service["WorkingDirectory"] == "/var/lib/bench-agent"
