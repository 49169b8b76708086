"""The Makefile, read with `make -n` (nothing runs): `make run` installs only what a
node needs (never Debian's prometheus, which starts a server on :9090), `make test`
runs every test, `make test-fast` leaves out exactly the slow tiers that
pyproject.toml registers."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib

import pytest

from tests.paths import REPO

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
NODE_PACKAGES = {"fio", "iperf3", "sockperf", "qperf", "perftest", "stress-ng", "nvme-cli",
                 "pciutils"}
TEST_PACKAGES = {"chromium", "chromium-driver", "prometheus", "prometheus-node-exporter",
                 "slurm-wlm", "munge", "podman", "kubernetes-client",
                 # the image test's local base image and its OCI runtime
                 "mmdebstrap", "runc",
                 # the completion (zsh) and man page (man-db, groff) tests
                 "zsh", "man-db", "groff"}


def dry_run(target: str) -> list[str]:
    # -B: every recipe as if out of date (the venv's too), so the listing is the same
    # on a fresh checkout and in a developer's tree.
    proc = subprocess.run(["make", "-n", "-B", "-C", str(REPO), target], capture_output=True,
                          text=True, timeout=60, check=True)
    return proc.stdout.splitlines()


def apt_packages(lines: list[str]) -> set[str]:
    found: set[str] = set()
    for line in lines:
        for command in re.findall(r"apt-get install ([^>|&;]*)", line):
            # "$p": the one-at-a-time retry's loop variable over the same packages
            found |= {word for word in command.split() if not word.startswith(("-", "$"))}
    return found


def pytest_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if re.search(r"/bin/pytest\b", line)]


def test_make_run_installs_only_what_a_node_needs() -> None:
    lines = dry_run("run")
    assert apt_packages(lines) == NODE_PACKAGES
    assert not pytest_lines(lines)


def test_make_test_installs_the_test_tools_and_runs_everything() -> None:
    lines = dry_run("test")
    assert apt_packages(lines) == NODE_PACKAGES | TEST_PACKAGES
    # Two runs: the fast tiers (as test-fast) on the workers, then exactly the rest.
    fast, slow = pytest_lines(lines)
    assert fast.count(" -m ") == 1 and slow.count(" -m ") == 1 and " -k " not in fast + slow
    fast_tiers = re.search(r'pytest -q -n \S+ -m "([^"]+)"', fast)
    slow_tiers = re.search(r'pytest -q -n \S+ --dist loadfile -m "([^"]+)"', slow)
    assert fast_tiers is not None and slow_tiers is not None, (fast, slow)
    markers = ["deploy", "e2e", "netns", "slow"]
    assert fast_tiers[1] == " and ".join(f"not {m}" for m in markers)
    assert slow_tiers[1] == " or ".join(markers)
    assert any(line.endswith("/bin/mypy") for line in lines)
    assert any("/bin/ruff check bench_agent tests" in line for line in lines)


def test_make_test_fast_leaves_out_exactly_the_registered_tiers() -> None:
    lines = dry_run("test-fast")
    assert apt_packages(lines) == NODE_PACKAGES | TEST_PACKAGES
    [run] = pytest_lines(lines)
    expression = re.search(r'-m "([^"]+)"', run)
    assert expression is not None, run
    left_out = set(re.findall(r"not (\w+)", expression[1]))
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]
    registered = {marker.split(":")[0] for marker in config["ini_options"]["markers"]}
    assert left_out == registered == {"deploy", "e2e", "netns", "slow"}
    assert expression[1] == " and ".join(f"not {m}" for m in sorted(left_out))
    assert "--strict-markers" in config["ini_options"]["addopts"]
    assert any(line.endswith("/bin/mypy") for line in lines)
