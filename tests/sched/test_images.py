"""docker/Dockerfile and docker/Dockerfile.cuda: built from the wheel with podman
(or a docker whose daemon answers) and smoke-tested in a container: `--version`,
`list`, and a `health` run whose JSON report is the health suite's.

The base image is the Dockerfile's own (ARG BASE_IMAGE) when it is here or can be
pulled. Where no image registry can be reached, the CPU image is built on a
stand-in made here instead: a Debian root filesystem of the release that
python:3.11-slim-bookworm is built on, made by mmdebstrap from deb.debian.org and
imported as localhost/bench-agent-test-base:<suite>-<recipe digest>. That base is
kept for the next run (it takes about a minute to make); the images built on it
are removed, also when a step fails. The CUDA image has no stand-in (a PyTorch
CUDA base is several GB of NVIDIA's and PyTorch's builds) and skips, as does
everything when no container engine can start a container here, each with the
reason: never a pass without a build.
"""

from __future__ import annotations

import hashlib
import json
import re
import resource
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench_agent import __version__
from bench_agent.core.process import run_child, tail
from tests.paths import REPO

pytestmark = pytest.mark.slow
DOCKER = REPO / "docker"
# A build downloads the Debian packages and the wheel's dependencies.
BUILD_TIMEOUT_S = 1800.0
BASE_REPOSITORY = "localhost/bench-agent-test-base"
# What the stand-in base needs to run docker/Dockerfile: python (python-is-python3,
# as the python images have it), venv for the Dockerfile's /opt/bench-agent, and
# the CA bundle for pip's HTTPS. Nothing of pip itself: the venv brings its own.
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
# Local CA certificates (Debian's place for them, update-ca-certificates(8)): a
# machine that reaches pypi.org through a TLS-inspecting proxy trusts its CA here,
# and a base made on that machine must trust it too, as a site's own base would.
LOCAL_CAS = Path("/usr/local/share/ca-certificates")
# The environment the python images set (docker-library/python's Dockerfile); an
# imported root filesystem has none, and the Dockerfile extends PATH.
BASE_CHANGES = ("ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "ENV LANG=C.UTF-8", 'CMD ["/bin/bash"]')


def base_image(dockerfile: Path) -> str:
    found = re.search(r"^ARG BASE_IMAGE=(\S+)$", dockerfile.read_text(), re.MULTILINE)
    assert found, f"{dockerfile.name} names no ARG BASE_IMAGE"
    return found[1]


@dataclass(frozen=True)
class Engine:
    """A container engine, with what this machine needs for it to start a container."""

    name: str
    # Before the verb: `podman --runtime runc ...`.
    options: tuple[str, ...] = ()
    # `--ulimit` options, for `run` and for `build`'s RUN steps.
    limits: tuple[str, ...] = ()

    def __call__(self, verb: str, *args: str) -> list[str]:
        return [self.name, *self.options, verb, *args]

    def run(self, image: str, *args: str) -> list[str]:
        return self("run", "--rm", *self.limits, image, *args)


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


def _own_limits() -> tuple[str, ...]:
    """`--ulimit` for this process's own hard limits, which a container can always get.

    podman 4.3 (Debian bookworm's) asks a rootful container for nofile and nproc of
    1048576 whatever its caller may raise them to; without CAP_SYS_RESOURCE (root in
    a container or a sandboxed VM) the OCI runtime's setrlimit then fails with EPERM.
    Later podman clamps to the caller's limits when it lacks CAP_SYS_RESOURCE
    (libpod/container_internal_common.go); this does the same by hand. podman also
    lowers its own RLIMIT_NPROC to kernel.pid_max before it starts the runtime
    (containers/common pkg/config/default_linux.go, getDefaultProcessLimits), so nproc
    is at most that. For root in the container nproc binds nothing anyway: the kernel
    exempts uid 0 from it (copy_process, kernel/fork.c).
    """
    def capped(kind: int, ceiling: int) -> int:
        hard = resource.getrlimit(kind)[1]
        return ceiling if hard == resource.RLIM_INFINITY else min(hard, ceiling)

    nofile = capped(resource.RLIMIT_NOFILE, int(Path("/proc/sys/fs/nr_open").read_text()))
    nproc = capped(resource.RLIMIT_NPROC, int(Path("/proc/sys/kernel/pid_max").read_text()))
    return ("--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}")


def _startable(name: str, image: str) -> Engine:
    """The first of the engine's settings with which it starts a container of ``image``.

    Tried in turn, each on this machine's failure of the one before: the defaults;
    the caller's own ulimits (see _own_limits); and with podman, runc instead of
    crun, which refuses cgroup v1 while a controller (here hugetlb) sits on the v2
    hierarchy ("cgroups in hybrid mode not supported"), where runc runs.
    """
    candidates = [Engine(name), Engine(name, limits=_own_limits())]
    if name == "podman" and shutil.which("runc") is not None:
        candidates.append(Engine(name, ("--runtime", "runc"), _own_limits()))
    reasons = []
    for engine in candidates:
        done = run_child(engine.run(image, "true"), timeout=120.0)
        if done.returncode == 0:
            return engine
        reasons.append(f"{' '.join(engine('run', *engine.limits))}: "
                       f"{tail(done.stderr or done.stdout, 300)}")
    pytest.skip(f"{name} cannot start a container of {image} here: " + "; ".join(reasons))


def _pull_failure(engine: str, image: str) -> str | None:
    """None when ``image`` is here or was pulled, else why it is not."""
    if run_child([engine, "image", "inspect", image], timeout=60.0).returncode == 0:
        return None
    pulled = run_child([engine, "pull", image], timeout=600.0)
    if pulled.returncode == 0:
        return None
    return f"{image} is not here and cannot be pulled: {tail(pulled.stderr or pulled.stdout, 300)}"


def _suite(image: str) -> str:
    # python:3.11-slim-bookworm: the Debian release is the tag's last word.
    found = re.fullmatch(r".*:[\w.]+-slim-(\w+)", image)
    assert found, f"{image}: no Debian release in its tag to make a stand-in of"
    return found[1]


def _mmdebstrap_command(suite: str, tarball: Path) -> list[str]:
    hooks = []
    if sorted(LOCAL_CAS.glob("*.crt")):
        hooks = [f"--customize-hook=copy-in {LOCAL_CAS} {LOCAL_CAS.parent}",
                 '--customize-hook=chroot "$1" update-ca-certificates']
    # The three sources the Debian images have; deb.debian.org as theirs.
    sources = [f"deb http://deb.debian.org/debian {suite} main",
               f"deb http://deb.debian.org/debian {suite}-updates main",
               f"deb http://deb.debian.org/debian-security {suite}-security main"]
    # --variant=apt: the Essential packages and apt (for the Dockerfile's apt-get).
    return ["mmdebstrap", "--variant=apt", "--include=" + ",".join(BASE_PACKAGES), *hooks,
            suite, str(tarball), *sources]


def _local_base_tag(suite: str) -> str:
    # The tag names the recipe, so a changed recipe (or CA) makes a new base, not a stale one.
    recipe = hashlib.sha256(json.dumps([_mmdebstrap_command(suite, Path("-")),
                                        BASE_CHANGES]).encode())
    for ca in sorted(LOCAL_CAS.glob("*.crt")):
        recipe.update(ca.read_bytes())
    return f"{BASE_REPOSITORY}:{suite}-{recipe.hexdigest()[:12]}"


def _local_base(engine: str, image: str, scratch: Path) -> str:
    """A Debian stand-in for ``image``: kept from an earlier run, else made now."""
    suite = _suite(image)
    tag = _local_base_tag(suite)
    if run_child([engine, "image", "inspect", tag], timeout=60.0).returncode == 0:
        return tag
    tarball = scratch / f"{suite}.tar"
    made = run_child(_mmdebstrap_command(suite, tarball), timeout=900.0)
    assert made.returncode == 0, f"mmdebstrap: {tail(made.stderr, 2000)}"
    # Quoted, as a Dockerfile's LABEL with spaces must be (docker import reads it so too).
    label = f'LABEL org.opencontainers.image.description="stand-in for {image} made by ' \
            'tests/sched/test_images.py (kept between runs; podman rmi it at will)"'
    changes = [arg for change in (*BASE_CHANGES, label) for arg in ("--change", change)]
    imported = run_child([engine, "import", *changes, str(tarball), tag], timeout=600.0)
    tarball.unlink()
    assert imported.returncode == 0, f"{engine} import: {tail(imported.stderr, 2000)}"
    # One stand-in kept, not one per recipe ever made.
    listed = run_child([engine, "images", "--format", "{{.Repository}}:{{.Tag}}",
                        BASE_REPOSITORY], timeout=60.0)
    stale = [name for name in listed.stdout.split() if name != tag]
    if stale:
        run_child([engine, "rmi", *stale], timeout=120.0)
    return tag


@dataclass(frozen=True)
class Built:
    engine: Engine
    tag: str
    base: str


@pytest.fixture
def built(request: pytest.FixtureRequest, wheel: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    dockerfile = DOCKER / request.param
    name = _engine()
    base = base_image(dockerfile)
    missing = _pull_failure(name, base)
    if missing is not None:
        if dockerfile.name != "Dockerfile":
            pytest.skip(f"the base image {missing}; no stand-in is made for a CUDA base")
        if shutil.which("mmdebstrap") is None:
            pytest.skip(f"the base image {missing}; and mmdebstrap (make install-test) "
                        "is not installed to make a Debian stand-in")
        base = _local_base(name, base, tmp_path_factory.mktemp("base"))
    engine = _startable(name, base)
    tag = f"localhost/bench-agent-test:{uuid.uuid4().hex[:12]}"
    # podman commits each step as an unnamed image that a failed build would leave
    # behind; --layers=false commits only the last, so removing the tag removes all.
    layers = ("--layers=false",) if name == "podman" else ("--force-rm",)
    try:
        done = run_child(engine("build", *layers, *engine.limits,
                                "--build-arg", f"BASE_IMAGE={base}",
                                "-f", str(dockerfile), "-t", tag, str(wheel.parent)),
                         timeout=BUILD_TIMEOUT_S)
        assert done.returncode == 0, tail(done.stderr or done.stdout, 2000)
        yield Built(engine, tag, base)
    finally:
        run_child(engine("rmi", "-f", tag), timeout=120.0)


@pytest.mark.parametrize("built", ["Dockerfile", "Dockerfile.cuda"], indirect=True)
def test_image_runs_bench_agent(built: Built) -> None:
    engine, tag = built.engine, built.tag
    version = run_child(engine.run(tag, "--version"), timeout=120.0)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"bench-agent {__version__}"
    listing = run_child(engine.run(tag, "list"), timeout=120.0)
    assert listing.returncode == 0, listing.stderr
    assert "checks:" in listing.stdout and "inventory" in listing.stdout
    assert "acceptance" in listing.stdout
    # The passive health suite, as the DaemonSet runs it: no load, a few seconds.
    health = run_child(engine.run(tag, "health", "--no-sign", "--json", "--state",
                                  "/tmp/s.json", "--output", "/tmp/r"), timeout=300.0)
    assert health.returncode in (0, 1), \
        f"exit {health.returncode}: {tail(health.stderr or health.stdout, 2000)}"
    report = json.loads(health.stdout)
    assert report["suite"]["name"] == "health"
    assert report["agent_version"] == __version__
    # 0 for PASS and WARN, 1 for FAIL (bench_agent/cli/health.py).
    assert health.returncode == (1 if report["status"] == "FAIL" else 0), report["status"]
    # The package runs from the image's virtual environment, not the base's Python.
    assert report["suite"]["path"].startswith("/opt/bench-agent/lib/"), report["suite"]
    assert "no state file /tmp/s.json: first health run" in health.stderr, health.stderr


def test_base_images_are_pinned() -> None:
    # A tag, not `latest`: the same Dockerfile builds the same base next year.
    for name in ("Dockerfile", "Dockerfile.cuda"):
        image = base_image(DOCKER / name)
        assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), image


def test_the_cpu_base_names_the_debian_release_of_its_stand_in() -> None:
    # The stand-in is made of the release the registry's base is built on.
    assert _suite(base_image(DOCKER / "Dockerfile")) == "bookworm"
