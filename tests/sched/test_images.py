"""docker/Dockerfile and docker/Dockerfile.cuda: built from the wheel with podman
(or a docker whose daemon answers) and smoke-tested (`--version`, `list`).

Skipped, with the reason, when no container engine works here or the base image
can be neither found locally nor pulled (a build machine without access to the
image registry): never a pass without a build.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench_agent import __version__
from bench_agent.core.process import run_child, tail
from tests.paths import REPO

pytestmark = pytest.mark.slow
DOCKER = REPO / "docker"
# A build downloads the Debian packages and the wheel's dependencies.
BUILD_TIMEOUT_S = 1800.0


def base_image(dockerfile: Path) -> str:
    found = re.search(r"^ARG BASE_IMAGE=(\S+)$", dockerfile.read_text(), re.MULTILINE)
    assert found, f"{dockerfile.name} names no ARG BASE_IMAGE"
    return found[1]


def _engine() -> str:
    reasons = []
    for engine in ("podman", "docker"):
        if shutil.which(engine) is None:
            reasons.append(f"{engine} is not installed")
            continue
        done = run_child([engine, "info"], timeout=60.0)
        if done.returncode == 0:
            return engine
        reasons.append(f"`{engine} info` failed: {tail(done.stderr, 200)}")
    pytest.skip("no container engine works here: " + "; ".join(reasons))


def _obtain(engine: str, image: str) -> None:
    if run_child([engine, "image", "inspect", image], timeout=60.0).returncode == 0:
        return
    pulled = run_child([engine, "pull", image], timeout=600.0)
    if pulled.returncode != 0:
        pytest.skip(f"the base image {image} is not here and cannot be pulled: "
                    f"{tail(pulled.stderr or pulled.stdout, 300)}")


@pytest.fixture
def built(request: pytest.FixtureRequest, wheel: Path) -> Iterator[tuple[str, str]]:
    dockerfile = DOCKER / request.param
    engine = _engine()
    _obtain(engine, base_image(dockerfile))
    tag = f"localhost/bench-agent-test:{uuid.uuid4().hex[:12]}"
    try:
        done = run_child([engine, "build", "-f", str(dockerfile), "-t", tag,
                          str(wheel.parent)], timeout=BUILD_TIMEOUT_S)
        assert done.returncode == 0, tail(done.stderr or done.stdout, 2000)
        yield engine, tag
    finally:
        run_child([engine, "rmi", "-f", tag], timeout=120.0)


@pytest.mark.parametrize("built", ["Dockerfile", "Dockerfile.cuda"], indirect=True)
def test_image_runs_bench_agent(built: tuple[str, str]) -> None:
    engine, tag = built
    version = run_child([engine, "run", "--rm", tag, "--version"], timeout=120.0)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"bench-agent {__version__}"
    listing = run_child([engine, "run", "--rm", tag, "list"], timeout=120.0)
    assert listing.returncode == 0, listing.stderr
    assert "checks:" in listing.stdout and "inventory" in listing.stdout
    assert "acceptance" in listing.stdout


def test_base_images_are_pinned() -> None:
    # A tag, not `latest`: the same Dockerfile builds the same base next year.
    for name in ("Dockerfile", "Dockerfile.cuda"):
        image = base_image(DOCKER / name)
        assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), image
