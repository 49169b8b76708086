"""The torch.distributed collective benchmark on the CPU (gloo), launched by torchrun
the way the agent launches it on GPUs (nccl)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from bench_agent.checks.base import CheckContext
from bench_agent.checks.nccl.checks import (
    AllReduceCheck,
    CollectiveParams,
    ReduceScatterCheck,
)
from bench_agent.checks.nccl.collective import busbw, cap_sizes, size_sweep, torchrun_command
from bench_agent.core.errors import NotApplicable
from bench_agent.core.model import Status
from bench_agent.core.thresholds import evaluate

MIB = 1 << 20


def test_size_sweep_and_memory_cap() -> None:
    assert size_sweep(MIB, 8 << 30) == [MIB << i for i in range(14)]  # 1 MiB .. 8 GiB
    assert size_sweep(MIB, 5 * MIB, 2) == [MIB, 2 * MIB, 4 * MIB]
    fit, dropped = cap_sizes([MIB, 4 * MIB, 16 * MIB], budget_bytes=12 * MIB, buffers=3)
    assert (fit, dropped) == ([MIB, 4 * MIB], [16 * MIB])
    with pytest.raises(ValueError):
        size_sweep(0, MIB)


def test_busbw_formulas() -> None:
    # nccl-tests: all_reduce 2(n-1)/n, all_gather and reduce_scatter (n-1)/n
    assert busbw("all_reduce", 8 << 30, 1.0, 8) == pytest.approx((8 << 30) * 14 / 8)
    assert busbw("all_gather", 1000, 1.0, 4) == pytest.approx(750.0)
    assert busbw("reduce_scatter", 1000, 2.0, 2) == pytest.approx(250.0)
    # The A100 sample: 10 GiB in 80646.8 us on 8 ranks is 133.14 / 233.00 GB/s.
    assert busbw("all_reduce", 10737418240, 80646.8e-6, 8) / 1e9 == pytest.approx(233.0, abs=0.01)


def test_torchrun_command_single_and_multi_node(tmp_path: Path) -> None:
    one = torchrun_command(tmp_path / "r.json", 8)
    assert one[1:4] == ["-m", "torch.distributed.run", "--nproc-per-node=8"]
    assert "--standalone" in one
    many = torchrun_command(tmp_path / "r.json", 8, nnodes=2, rdzv_endpoint="node1:29400",
                            rdzv_id="job7")
    assert {"--nnodes=2", "--rdzv-backend=c10d", "--rdzv-endpoint=node1:29400",
            "--rdzv-id=job7"} <= set(many)
    with pytest.raises(ValueError, match="rendezvous"):
        torchrun_command(tmp_path / "r.json", 8, nnodes=2)


def test_nccl_backend_without_gpu_is_not_applicable() -> None:
    pytest.importorskip("torch")
    with pytest.raises(NotApplicable, match="GPU"):
        AllReduceCheck().run(CheckContext(timeout=60), CollectiveParams())


@pytest.mark.e2e
def test_all_reduce_world_size_2_gloo() -> None:
    pytest.importorskip("torch")
    params = CollectiveParams(backend="gloo", nproc=2, min_bytes=MIB, max_bytes=4 * MIB,
                              warmup=1, iterations=3)
    out = AllReduceCheck().run(CheckContext(timeout=120), params)
    m = {x.metric: x for x in out}
    assert set(m) == {"nccl.all_reduce_busbw", "nccl.all_reduce_algbw", "nccl.all_reduce_wrong",
                      "nccl.all_reduce_avg_busbw"}
    rows = m["nccl.all_reduce_busbw"].params["rows"]
    assert [r["size_bytes"] for r in rows] == [MIB, 2 * MIB, 4 * MIB]
    for r in rows:
        assert r["algbw"] == pytest.approx(r["size_bytes"] / r["time_s_max"])
        assert r["busbw"] == pytest.approx(r["algbw"] * 2 * (2 - 1) / 2)
        assert r["time_s_max"] >= r["time_s_mean"] > 0
    assert m["nccl.all_reduce_wrong"].value == 0
    assert m["nccl.all_reduce_busbw"].params["ranks"] == 2
    assert m["nccl.all_reduce_busbw"].params["size_bytes"] == 4 * MIB
    assert m["nccl.all_reduce_busbw"].value == rows[-1]["busbw"]


@pytest.mark.e2e
def test_world_size_4_counts_a_corrupted_rank(tmp_path: Path) -> None:
    """Rank 1 adds 1000 to 10 elements: every rank's result is wrong there (4 x 10),
    reduce_scatter only on the rank owning those elements (10); busbw uses (n-1)/n."""
    pytest.importorskip("torch")
    from bench_agent.checks.nccl.collective import launch

    request = {"backend": "gloo", "collectives": ["all_reduce", "all_gather", "reduce_scatter"],
               "min_bytes": MIB, "max_bytes": 2 * MIB, "warmup": 1, "iterations": 2,
               "corrupt_rank": 1}
    result, tail = launch(request, nproc=4, timeout=150)
    assert result is not None, tail
    assert result["world_size"] == 4
    res = result["results"]
    assert [r["wrong"] for r in res["all_reduce"]] == [40, 40]
    assert [r["wrong"] for r in res["all_gather"]] == [40, 40]
    assert [r["wrong"] for r in res["reduce_scatter"]] == [10, 10]
    for r in res["all_gather"] + res["reduce_scatter"]:
        assert r["busbw"] == pytest.approx(r["algbw"] * 3 / 4)
    for r in res["all_reduce"]:
        assert r["busbw"] == pytest.approx(r["algbw"] * 6 / 4)
    # The report: #wrong fails the profile.
    from bench_agent.config.loader import load_profile_named

    check = ReduceScatterCheck()
    out = check.measurements(result)
    wrong = next(x for x in out if x.metric == "nccl.reduce_scatter_wrong")
    assert wrong.value == 20
    profile = load_profile_named("gpu-node")
    [verdict] = evaluate([wrong], [t for t in profile.thresholds if t.metric == wrong.metric],
                         {"nccl.reduce_scatter"})
    assert verdict.status is Status.FAIL


def _pids_with(token: str) -> set[int]:
    """Live processes whose environment carries ``token`` (proc(5), /proc/PID/environ)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if token.encode() in environ and state not in "ZX":
            found.add(int(entry.name))
    return found


@pytest.mark.e2e
def test_a_torchrun_past_its_time_limit_is_gone_with_its_ranks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Real torchrun, two gloo ranks busy far longer than the limit. torchrun starts
    each rank in a session of its own (torch/distributed/elastic/multiprocessing/
    subprocess_handler: start_new_session=True), so a kill of torchrun's group
    alone left them running and the read of the output waiting for them (the
    issue: launch(timeout=15) returned after 47 s). Every process of the run is
    found by a token in its environment, here and after."""
    pytest.importorskip("torch")
    import os
    import signal
    import threading
    import time
    import uuid

    from bench_agent.checks.nccl.collective import launch

    token = f"gpufix-{uuid.uuid4().hex}"
    monkeypatch.setenv("BENCH_AGENT_TEST_RUN", token)
    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.append(len(_pids_with(token)))
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    request = {"backend": "gloo", "collectives": ["all_reduce"], "min_bytes": 16 * MIB,
               "max_bytes": 16 * MIB, "warmup": 0, "iterations": 10**7}
    started = time.monotonic()
    try:
        result, tail = launch(request, nproc=2, timeout=30)
        elapsed = time.monotonic() - started
        stop.set()
        watcher.join()
        assert result is None and tail.startswith("timed out after 30 s"), tail
        # torchrun and both ranks were running (3 processes or more carry the token) ...
        assert max(seen) >= 3, seen
        # ... and the limit held: 30 s, then TERM + 3 s grace + KILL + reaping and
        # draining the pipes (core/process.py TOOL_GRACE_S, REAP_S, DRAIN_S).
        assert elapsed < 30 + 3 + 5 + 2 + 5, elapsed
        assert _pids_with(token) == set()
    finally:
        stop.set()
        for pid in _pids_with(token):  # a failed run must not leave ranks behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_init_process_group_gets_the_time_limit_and_the_device() -> None:
    from datetime import timedelta

    from bench_agent.checks.nccl.collective import init_kwargs

    assert init_kwargs("gloo", "cpu", 27.0) == {"backend": "gloo",
                                                "timeout": timedelta(seconds=27)}
    assert init_kwargs("nccl", "cuda:3", 5) == {"backend": "nccl", "device_id": "cuda:3",
                                                "timeout": timedelta(seconds=5)}
    assert init_kwargs("gloo", "cpu", None) == {"backend": "gloo"}


RSS_PROBE = """
import resource, sys
import torch, torch.distributed as dist
from bench_agent.checks.nccl.collective import run_collective
size = int(sys.argv[1])
dist.init_process_group("gloo", init_method="tcp://127.0.0.1:" + sys.argv[2], world_size=1,
                        rank=0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
[row] = run_collective(torch, dist, sys.argv[3], [size], "float32", 0, 1, torch.device("cpu"))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(row["wrong"], (peak - before) / size)
dist.destroy_process_group()
"""


@pytest.mark.slow
@pytest.mark.parametrize("collective", ["all_reduce", "all_gather"])
def test_the_pattern_and_its_check_take_little_beside_the_buffers(collective: str) -> None:
    """256 MiB per rank: the buffers themselves are 2x (all_reduce: send + recv);
    the int64/float64 temporaries of the old pattern took the peak to about 10x."""
    pytest.importorskip("torch")
    import socket
    import subprocess
    import sys

    with socket.socket() as s:  # a free loopback port for the store
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = subprocess.run([sys.executable, "-c", RSS_PROBE, str(256 * MIB), str(port),
                           collective], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    wrong, ratio = done.stdout.split()
    assert wrong == "0"
    assert float(ratio) < 3.5, ratio
