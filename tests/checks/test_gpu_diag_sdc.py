"""gpu.sdc on CPU torch: the real GEMM and MLP steps, hashed; one rank perturbed through
the seam is named by serial and UUID, across repeats and across GPUs of a model."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from bench_agent.checks.base import CheckContext
from bench_agent.checks.gpu.sdc import SdcCheck, SdcParams, compare, use_perturbation
from bench_agent.config.loader import load_profile_named
from bench_agent.core.model import Measurement, Status
from bench_agent.core.thresholds import evaluate
from bench_agent.tools import nvml
from tests.checks.gpu_diag_support import cpu_runner, gpu_list
from tests.fake_nvml import FakeGpu, FakeNvml

torch = pytest.importorskip("torch")

SMALL = SdcParams(repeats=3, n=64, width=32, depth=3, batch=8, steps=2)


def perturb(rank: int, repeats: set[int], kind: str = "gemm") -> Any:
    """One ulp-sized change (the lowest mantissa bit of one element) on ``rank``."""
    def hook(name: str, repeat: int, tensor: Any) -> None:
        if name == kind and repeat in repeats:
            bits = tensor.view(torch.int16 if tensor.element_size() == 2 else torch.int32)
            bits.view(-1)[7] ^= 1

    def around(r: int) -> Any:
        return use_perturbation(hook) if r == rank else contextlib.nullcontext()

    return around


def run(nv: FakeNvml, around: Any = None, gpus: int = 4) -> list[Measurement]:
    check = SdcCheck(runner=cpu_runner(around=around), gpus=gpu_list(gpus))
    with nvml.use_loader(lambda: nv):
        return check.run(CheckContext(timeout=300), SMALL)


def status(out: list[Measurement]) -> dict[str, Status]:
    profile = load_profile_named("gpu-node")
    return {v.device: v.status for v in evaluate(out, profile.thresholds, {"gpu.sdc"})
            if v.metric == "gpu.sdc_mismatches"}


def test_healthy_gpus_agree_bit_for_bit() -> None:
    out = run(FakeNvml())
    assert {m.device: m.value for m in out} == {f"gpu{i}": 0 for i in range(4)}
    hashes = {m.params["first_hashes"]["gemm"] for m in out}
    assert len(hashes) == 1 and len(hashes.pop()) == 16
    assert set(status(out).values()) == {Status.PASS}


def test_one_rank_wrong_on_one_repeat_is_named() -> None:
    out = run(FakeNvml(), around=perturb(2, {1}))
    bad = {m.device: m for m in out}
    assert bad["gpu2"].value == 1
    assert bad["gpu2"].params["repeats_differing"] == {"gemm": [1], "mlp": []}
    assert bad["gpu2"].params["serial"] == "1654321002"
    assert bad["gpu2"].params["gpu"] == ("gpu2 (serial 1654321002, "
                                         "GPU-00000002-1111-2222-3333-444444444444)")
    assert [m.value for d, m in sorted(bad.items()) if d != "gpu2"] == [0, 0, 0]
    assert status(out) == {"gpu0": Status.PASS, "gpu1": Status.PASS, "gpu2": Status.FAIL,
                           "gpu3": Status.PASS}


def test_a_gpu_consistently_wrong_differs_from_its_model() -> None:
    """Every repeat agrees with itself, but not with the other GPUs of the model."""
    out = run(FakeNvml(), around=perturb(0, {0, 1, 2}, kind="mlp"))
    bad = {m.device: m for m in out}
    assert bad["gpu0"].params["repeats_differing"] == {"gemm": [], "mlp": []}
    assert set(bad["gpu0"].params["differs_from_model"]) == {"mlp"}
    assert bad["gpu0"].value == 1 and status(out)["gpu0"] is Status.FAIL
    assert status(out)["gpu3"] is Status.PASS


def test_gpus_of_different_models_are_not_compared_with_each_other() -> None:
    nv = FakeNvml(gpus=[FakeGpu(), FakeGpu(name="NVIDIA L40S")])
    found = compare({0: {"gemm": ["a", "a"], "mlp": ["m", "m"]},
                     1: {"gemm": ["b", "b"], "mlp": ["n", "n"]}},
                    {0: "NVIDIA H100 80GB HBM3", 1: "NVIDIA L40S"})
    assert found[0]["across"] == {} and found[1]["across"] == {}
    assert "the only NVIDIA L40S here" in found[1]["notes"][0]
    out = run(nv, gpus=2)
    assert [m.params["model"] for m in out] == ["NVIDIA H100 80GB HBM3", "NVIDIA L40S"]


def test_two_gpus_that_disagree_are_both_suspect() -> None:
    found = compare({0: {"gemm": ["a"], "mlp": ["m"]}, 1: {"gemm": ["b"], "mlp": ["m"]}},
                    {0: "H", 1: "H"})
    assert set(found[0]["across"]) == set(found[1]["across"]) == {"gemm"}
    assert any("no majority" in n for n in found[0]["notes"] + found[1]["notes"])


def test_deterministic_mode_is_restored_after_the_kernel() -> None:
    assert not torch.are_deterministic_algorithms_enabled()
    run(FakeNvml(), gpus=1)
    assert not torch.are_deterministic_algorithms_enabled()
