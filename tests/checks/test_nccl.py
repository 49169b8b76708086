"""The torch.distributed collective benchmark on the CPU (gloo), launched by torchrun
the way the agent launches it on GPUs (nccl)."""

from __future__ import annotations

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
