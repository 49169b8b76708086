"""The parent's side of the GPU children: start one per device, each given its GPU
by UUID, meet them at a file barrier, collect their results (kernels.py is the
child's side and its ``main``).

A child that ends, fails or never reaches the barrier releases it (FileBarrier),
and the barrier waits at most BARRIER_SHARE of the run's time limit: one bad GPU
must not make its siblings time out. Each child sees one GPU, named by its UUID
in CUDA_VISIBLE_DEVICES: an index would be read against the child's own view,
not the parent's, which Slurm and Kubernetes restrict (CUDA_VISIBLE_DEVICES=4,5,6,7
or a list of UUIDs).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# Share of a run's time limit the barrier may wait: the timed work gets the rest.
BARRIER_SHARE = 0.5


class FileBarrier:
    """Where the children of one run meet before their timed work: a folder with a
    file per rank that arrived (``ready-N``) and one per child's pid (``pid-N``,
    written by the parent).

    A rank that finished, failed or skipped all its work calls ``leave`` (main()
    does, whatever happened), which counts as arriving; a sibling whose process is
    gone (crashed, killed) counts too: one bad GPU must not hold the others until
    the timeout. The wait is bounded by ``timeout``; past it the rank goes on (its
    timed work overlaps its siblings' less) and ``report`` says so.
    """

    def __init__(self, folder: Path, rank: int, parties: int, timeout: float) -> None:
        self.folder, self.rank, self.parties, self.timeout = folder, rank, parties, timeout
        self.waited: float | None = None
        self.timed_out = False
        self.gone: list[int] = []

    def _ended(self, rank: int) -> bool:
        """Whether sibling ``rank``'s process has ended (a zombie until the parent reaps it)."""
        from bench_agent.core.proctree import stat_of

        try:
            pid = int((self.folder / f"pid-{rank}").read_text())
        except (OSError, ValueError):
            return False  # not written yet: the parent is still starting it
        stat = stat_of(pid)
        return stat is None or stat.state in "ZX"

    def _arrived(self) -> int:
        ready = {int(p.name.split("-", 1)[1]) for p in self.folder.glob("ready-*")}
        self.gone = sorted(r for r in range(self.parties)
                           if r not in ready and r != self.rank and self._ended(r))
        return len(ready) + len(self.gone)

    def __call__(self) -> None:
        (self.folder / f"ready-{self.rank}").touch()
        started = time.monotonic()
        deadline = started + self.timeout
        while self._arrived() < self.parties:
            if time.monotonic() > deadline:
                self.timed_out = True
                break
            time.sleep(0.05)
        self.waited = time.monotonic() - started

    def leave(self) -> None:
        (self.folder / f"ready-{self.rank}").touch()

    def report(self) -> dict[str, Any]:
        return {"waited_s": None if self.waited is None else round(self.waited, 3),
                "timed_out": self.timed_out, "timeout_s": self.timeout,
                "siblings_gone": self.gone}


def cuda_uuids() -> list[str]:
    """The UUIDs of the GPUs this process sees, in torch's order, in the form
    CUDA_VISIBLE_DEVICES takes ("GPU-<uuid>"; CUDA C Programming Guide, "CUDA
    Environment Variables")."""
    import torch

    out = []
    for index in range(torch.cuda.device_count()):
        uuid = str(torch.cuda.get_device_properties(index).uuid)
        out.append(uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}")
    return out


def child_cuda_env(device: str, env: dict[str, str],
                   uuids: Callable[[], list[str]]) -> tuple[dict[str, str], str]:
    """(the child's environment, the device it uses) for parent device ``device``.

    "cuda:N" is this process's N-th GPU, which under a CUDA_VISIBLE_DEVICES of its
    own (Slurm's 4,5,6,7, Kubernetes' UUIDs) is not physical GPU N: the child gets
    that GPU's UUID, so it measures the GPU the parent means. "cuda:GPU-..." is
    passed on as it is; any other device is left alone.
    """
    if not device.startswith("cuda:"):
        return env, device
    which = device.split(":", 1)[1]
    if which.isdigit():
        visible = uuids()
        if int(which) >= len(visible):
            raise ValueError(f"{device}: this process sees {len(visible)} GPU(s)")
        which = visible[int(which)]
    return {**env, "CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": which}, "cuda:0"


def run_on_devices(devices: Sequence[str], task: dict[str, Any], timeout: float,
                   python: str = sys.executable,
                   uuids: Callable[[], list[str]] = cuda_uuids) -> list[dict[str, Any]]:
    """Run ``task`` (its ``kernel`` names a @gpu_kernel function as "module:function")
    on every device at once, one child process each; results in order.

    Each child sees one GPU, by UUID (child_cuda_env), so no process creates a
    context on another GPU. A child that fails returns {"device": ..., "error": its
    stderr tail}. The children run through the subprocess seam: at the timeout, or
    if this process is interrupted, each is stopped with whatever it started. The
    barrier they meet at waits at most BARRIER_SHARE of ``timeout``.
    """
    import contextlib
    import functools

    from bench_agent.checks.gpu.kernels import resolve_kernel
    from bench_agent.core.process import DEVNULL, TOOL_GRACE_S, Child, spawn

    resolve_kernel(str(task.get("kernel", "")))  # a wrong name fails here, not per child
    visible = functools.cache(uuids)  # asked once, and only for "cuda:N" devices
    barrier_timeout = max(1.0, timeout * BARRIER_SHARE)

    with tempfile.TemporaryDirectory(prefix="bench-agent-gpu-") as tmp, \
            contextlib.ExitStack() as owned:
        folder = Path(tmp)
        children: list[tuple[str, Child, Path]] = []
        for rank, device in enumerate(devices):
            env, child_device = child_cuda_env(device, dict(os.environ), visible)
            out = folder / f"result-{rank}.json"
            request = {**task, "device": child_device}
            cmd = [python, "-m", "bench_agent.checks.gpu.kernels", "--task", json.dumps(request),
                   "--out", str(out), "--barrier", str(folder), "--rank", str(rank),
                   "--parties", str(len(devices)), "--barrier-timeout", f"{barrier_timeout:g}"]
            child = owned.enter_context(spawn(cmd, env=env, stdout=DEVNULL, grace=TOOL_GRACE_S))
            (folder / f"pid-{rank}").write_text(str(child.pid))
            children.append((device, child, out))
        results: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        for device, child, out in children:
            done = child.finish(timeout=max(1.0, deadline - time.monotonic()))
            if done.timed_out:
                results.append({"device": device, "error": f"timed out after {timeout:g} s"})
                continue
            if done.returncode != 0 or not out.is_file():
                tail = done.stderr.strip()[-800:] or f"exit code {done.returncode}"
                results.append({"device": device, "error": tail})
                continue
            data = json.loads(out.read_text())
            data["device"] = device
            results.append(data)
        return results
