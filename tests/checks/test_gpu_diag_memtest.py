"""gpu.memtest on CPU torch: every pattern over real memory, a bit flipped through the
corruption seam counted at its address, the budget's leftovers shown, the verdicts."""

from __future__ import annotations

from typing import Any

import pytest

from bench_agent.checks.base import CheckContext
from bench_agent.checks.gpu.memtest import (
    PATTERNS,
    MemtestCheck,
    MemtestParams,
    run_patterns,
    use_corruption,
)
from bench_agent.config.loader import load_profile_named
from bench_agent.core.model import Measurement, Status
from bench_agent.core.thresholds import evaluate
from bench_agent.tools import nvml
from tests.checks.gpu_diag_support import cpu_runner, gpu_list
from tests.fake_nvml import FakeNvml

torch = pytest.importorskip("torch")

KIB = 1 << 10


def flip(pattern: str, block_index: int, word: int, bit: int) -> Any:
    """A hook that flips one bit of one word the first time ``pattern`` writes that block,
    as a weak cell of real memory would lose it."""
    done = []

    def hook(name: str, block: Any, index: int) -> None:
        if name == pattern and index == block_index and not done:
            done.append(True)
            flat = block.view(torch.int32)
            flat[word] ^= torch.tensor(1 << bit, dtype=torch.int32)

    return hook


def test_clean_memory_passes_every_pattern() -> None:
    buffer = torch.empty(256 * KIB, dtype=torch.uint8)
    found = run_patterns(torch, buffer, list(PATTERNS), seconds=60, block_bytes=64 * KIB,
                         seed=7)
    assert found["errors"] == 0 and found["bad_addresses"] == [] and found["not_run"] == []
    assert list(found["patterns"]) == list(PATTERNS)
    assert found["patterns"]["walking_ones"]["passes"] == 32
    assert found["patterns"]["moving_inversions"]["passes"] == 2
    # 32 passes, each every byte written once and read once.
    assert found["patterns"]["walking_zeros"]["bytes_moved"] == 32 * 2 * 256 * KIB
    # moving inversions: fill, then read+write up, read+write down, for 2 values.
    assert found["patterns"]["moving_inversions"]["bytes_moved"] == 2 * 5 * 256 * KIB


@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_flipped_bit_is_found_at_its_address(pattern: str) -> None:
    buffer = torch.empty(256 * KIB, dtype=torch.uint8)
    # Block 2 (64 KiB blocks), int32 word 100: byte offset 2 * 64 KiB + 400.
    # (address works on int64 words: int32 word 100 is the low half of int64 word 50,
    # whose byte offset is the same 400.)
    with use_corruption(flip(pattern, 2, 100, 17)):
        found = run_patterns(torch, buffer, [pattern], seconds=60, block_bytes=64 * KIB,
                             seed=3)
    assert found["bad_addresses"] == [2 * 64 * KIB + 400]
    assert found["errors"] == 1 == found["patterns"][pattern]["errors"]


def test_a_corrupted_word_seen_by_two_patterns_is_one_bad_address() -> None:
    buffer = torch.empty(128 * KIB, dtype=torch.uint8)

    def stuck(name: str, block: Any, index: int) -> None:
        if index == 0:
            block.view(torch.int32)[3] = 0x0BAD  # a word stuck at one value
    with use_corruption(stuck):
        found = run_patterns(torch, buffer, ["walking_ones", "random"], seconds=60,
                             block_bytes=64 * KIB, seed=1)
    assert found["bad_addresses"] == [12]
    assert found["patterns"]["walking_ones"]["errors"] == 32  # 0x0BAD is never 1 << b
    assert found["patterns"]["random"]["errors"] == 1


def test_the_time_budget_leaves_patterns_out_and_says_so() -> None:
    buffer = torch.empty(64 * KIB, dtype=torch.uint8)
    found = run_patterns(torch, buffer, list(PATTERNS), seconds=0, block_bytes=64 * KIB,
                         seed=1)
    assert found["not_run"] == list(PATTERNS) and found["patterns"] == {}


def run_check(nv: FakeNvml, around: Any = None, **params: Any) -> list[Measurement]:
    check = MemtestCheck(runner=cpu_runner(around=around), gpus=gpu_list(3))
    with nvml.use_loader(lambda: nv):
        return check.run(CheckContext(timeout=300),
                         MemtestParams(bytes=128 * KIB, block_bytes=32 * KIB, **params))


def verdicts(out: list[Measurement]) -> dict[tuple[str, str], Status]:
    profile = load_profile_named("gpu-node")
    return {(v.metric, v.device): v.status
            for v in evaluate(out, profile.thresholds, {"gpu.memtest"})
            if v.metric.startswith("gpu.memtest")}


def test_check_fails_the_gpu_with_a_bad_address_naming_serial_and_uuid() -> None:
    def around(rank: int) -> Any:
        import contextlib

        if rank == 1:
            return use_corruption(flip("random", 1, 5, 0))
        return contextlib.nullcontext()

    out = run_check(FakeNvml(), around=around)
    bad = {m.device: m for m in out if m.metric == "gpu.memtest_bad_addresses"}
    assert {d: m.value for d, m in bad.items()} == {"gpu0": 0, "gpu1": 1, "gpu2": 0}
    assert bad["gpu1"].params["first_bad_offsets"] == [hex(32 * KIB + 20)]
    assert bad["gpu1"].params["serial"] == "1654321001"
    assert bad["gpu1"].params["uuid"] == "GPU-00000001-1111-2222-3333-444444444444"
    assert bad["gpu1"].params["errors_by_pattern"]["random"] == 1
    tested = {m.device: m.value for m in out if m.metric == "gpu.memtest_bytes_tested"}
    assert tested == {"gpu0": 128 * KIB, "gpu1": 128 * KIB, "gpu2": 128 * KIB}
    statuses = verdicts(out)
    assert statuses[("gpu.memtest_bad_addresses", "gpu1")] is Status.FAIL
    assert statuses[("gpu.memtest_bad_addresses", "gpu0")] is Status.PASS
    assert statuses[("gpu.memtest_patterns_not_run", "gpu1")] is Status.PASS


def test_check_without_time_for_every_pattern_warns() -> None:
    out = run_check(FakeNvml(), seconds=1e-9)
    not_run = {m.device: m for m in out if m.metric == "gpu.memtest_patterns_not_run"}
    assert not_run["gpu0"].value >= 4  # at most the first pattern started in time
    assert verdicts(out)[("gpu.memtest_patterns_not_run", "gpu0")] is Status.WARN


def test_unknown_pattern_is_refused() -> None:
    with pytest.raises(ValueError, match="walking_ones"):
        MemtestParams(patterns=["checkerboard"])  # type: ignore[list-item]


# slow: four child processes, each importing torch (seconds of CPU); the kernels
# themselves are tested in-process above.
@pytest.mark.slow
def test_the_diagnostic_kernels_run_in_their_own_child_processes() -> None:
    """Through run_on_devices, as on a node: each child imports the kernel's module
    first (not checks.py), so the modules must import without a cycle."""
    from bench_agent.checks.gpu.kernels import resolve_kernel, run_on_devices
    from bench_agent.checks.gpu.p2p import P2pBandwidthCheck
    from bench_agent.checks.gpu.pcie import PcieBandwidthCheck
    from bench_agent.checks.gpu.power import PowerStressCheck
    from bench_agent.checks.gpu.sdc import SdcCheck

    for check in (MemtestCheck, SdcCheck, PowerStressCheck, PcieBandwidthCheck,
                  P2pBandwidthCheck):
        assert resolve_kernel(check.kernel).__name__ == check.kernel.split(":")[1]
    memtest = run_on_devices(["cpu", "cpu"], {"kernel": MemtestCheck.kernel,
                                              "bytes": 64 * KIB, "block_bytes": 16 * KIB,
                                              "seconds": 30}, timeout=120)
    assert [r["memtest"]["errors"] for r in memtest] == [0, 0]
    assert [r["memtest"]["bytes_tested"] for r in memtest] == [64 * KIB, 64 * KIB]
    sdc = run_on_devices(["cpu", "cpu"], {"kernel": SdcCheck.kernel, "repeats": 2, "n": 32,
                                          "width": 16, "depth": 2, "batch": 4, "steps": 1},
                         timeout=120)
    # Two processes, the same bits.
    assert sdc[0]["sdc"] == sdc[1]["sdc"] and len(sdc[0]["sdc"]["gemm"]) == 2
