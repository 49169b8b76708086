"""Profiles that make the runner's inventory check FAIL or PASS on this VM."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def write_vcpu_profile(path: Path, vcpus: int) -> Path:
    why = "the count of this VM" if vcpus == os.cpu_count() else "more than any VM"
    path.write_text(f"""\
name: {path.stem}
description: at least {vcpus} vCPUs
thresholds:
  - id: cpu-vcpus
    metric: inventory.logical_cpus
    comparator: ">="
    value: {vcpus}
    source: 'test: {vcpus} vCPUs ({why})'
""")
    return path


@pytest.fixture
def failing_profile(tmp_path: Path) -> Path:
    return write_vcpu_profile(tmp_path / "needs-many-vcpus.yaml", 100_000)


@pytest.fixture
def passing_profile(tmp_path: Path) -> Path:
    return write_vcpu_profile(tmp_path / "this-vm.yaml", os.cpu_count() or 1)


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package's wheel, built from this checkout as a user would (pip wheel)."""
    import sys

    from bench_agent.core.process import run_child
    from tests.paths import REPO

    folder = tmp_path_factory.mktemp("wheel")
    done = run_child([sys.executable, "-m", "pip", "wheel", "--no-deps",
                      "--no-build-isolation", "-q", "-w", str(folder), str(REPO)],
                     timeout=300.0)
    assert done.returncode == 0, done.stderr
    return next(folder.glob("bench_agent-*.whl"))
