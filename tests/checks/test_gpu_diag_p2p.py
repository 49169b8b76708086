"""gpu.p2p_bandwidth: the copy kernel on CPU torch between CPU "devices" with a fake copy
timer that gives each pair its rate (no NVLink here); the matrix, the weakest pair
named, the baseline fraction, and the verdicts."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from bench_agent.checks.base import CheckContext
from bench_agent.checks.gpu.p2p import P2pBandwidthCheck, P2pParams
from bench_agent.config.loader import load_profile_named
from bench_agent.core.errors import NotApplicable
from bench_agent.core.model import Measurement, Status
from bench_agent.core.thresholds import evaluate
from bench_agent.tools import nvml
from tests.checks.gpu_diag_support import cpu_runner, gpu_list
from tests.fake_nvml import FakeGpu, FakeNvml

pytest.importorskip("torch")

SIZE = 1 << 16
COPIES = 2


class PairTimer:
    """Durations by pair: the kernel times the ordered pairs (0,1), (0,2), ... one way,
    then the pairs (0,1), (0,2), ... both ways, one measure() call each; this timer
    answers each call with the duration that gives that pair's rate."""

    def __init__(self, gpus: int, rate: Callable[[str, int, int], float]) -> None:
        order = ([("oneway", a, b) for a, b in itertools.permutations(range(gpus), 2)]
                 + [("bidir", a, b) for a, b in itertools.combinations(range(gpus), 2)])
        self.rates = [rate(*key) for key in order]

    def measure(self, fn: Callable[[int], None], iterations: int) -> list[float]:
        rate = self.rates.pop(0)
        moved = SIZE * COPIES
        out = []
        for i in range(iterations):
            fn(i)  # the real copies, on the CPU
            out.append(moved / rate)
        return out


# A baseline file as suites/baselines/ holds them, with this check's two figures: the
# NVLink rate of an H100 SXM per direction and both ways (NVLink 900 GB/s per GPU,
# both directions counted, https://www.nvidia.com/en-us/data-center/h100/).
H100_P2P = """\
model: H100 SXM5 80GB
nvml_names: ["NVIDIA H100 80GB HBM3"]
figures:
  gpu.p2p_oneway_min: {value: 450 GB/s, source: "https://www.nvidia.com/en-us/data-center/h100/"}
  gpu.p2p_bidir_min: {value: 900 GB/s, source: "https://www.nvidia.com/en-us/data-center/h100/"}
"""


@pytest.fixture
def h100(tmp_path: Path) -> Path:
    (tmp_path / "h100.yaml").write_text(H100_P2P)
    return tmp_path


def run(rate: Callable[[str, int, int], float], folder: Path, gpus: int = 4,
        nv: FakeNvml | None = None) -> list[Measurement]:
    timer = PairTimer(gpus, rate)
    check = P2pBandwidthCheck(runner=cpu_runner(timer=lambda device, parties: timer),
                              gpus=gpu_list(gpus), baselines_folder=folder)
    fake = nv or FakeNvml()
    with nvml.use_loader(lambda: fake):
        out = check.run(CheckContext(timeout=120),
                        P2pParams(bytes=SIZE, copies_per_call=COPIES, warmup=1, iterations=2,
                                  cpu_devices=gpus))
    assert timer.rates == []  # every pair was timed, each once
    return out


def healthy(kind: str, a: int, b: int) -> float:
    """380 GB/s a call, one way: 0.84 of the H100's 450 GB/s per direction; a
    bidirectional call moves twice the bytes in that time (760 GB/s)."""
    return 380e9


def statuses(out: list[Measurement]) -> dict[str, Status]:
    profile = load_profile_named("gpu-node")
    return {v.metric: v.status for v in evaluate(out, profile.thresholds,
                                                 {"gpu.p2p_bandwidth"})
            if v.metric.startswith("gpu.p2p")}


def by(out: list[Measurement], metric: str) -> dict[str, Measurement]:
    return {m.device: m for m in out if m.metric == metric}


def test_every_pair_is_measured_and_the_node_passes(h100: Path) -> None:
    out = run(healthy, h100)
    node = by(out, "gpu.p2p_oneway_min")[""]
    assert node.value == pytest.approx(380e9)
    assert len(node.params["matrix"]) == 12 and "gpu0->gpu3" in node.params["matrix"]
    bidir = by(out, "gpu.p2p_bidir_min")[""]
    assert len(bidir.params["matrix"]) == 6 and "gpu1<->gpu2" in bidir.params["matrix"]
    # the bidirectional call moves 2 x SIZE x COPIES bytes in SIZE x COPIES / rate seconds
    assert bidir.value == pytest.approx(2 * 380e9)
    # The fake NVML names the GPUs "NVIDIA H100 80GB HBM3": the H100 figures apply.
    fractions = by(out, "gpu.p2p_oneway_min_baseline_fraction")
    assert fractions[""].value == pytest.approx(380 / 450)
    assert by(out, "gpu.p2p_bidir_min_baseline_fraction")[""].value == pytest.approx(760 / 900)
    assert node.params["model"] == "NVIDIA H100 80GB HBM3"
    assert statuses(out) == {"gpu.p2p_oneway_min_baseline_fraction": Status.PASS,
                             "gpu.p2p_bidir_min_baseline_fraction": Status.PASS}


def test_without_a_figure_the_fraction_is_unjudged_not_passed(h100: Path) -> None:
    out = run(healthy, h100, gpus=2, nv=FakeNvml(gpus=[FakeGpu(name="NVIDIA L40S"),
                                                       FakeGpu(name="NVIDIA L40S")]))
    assert "gpu.p2p_oneway_min_baseline_fraction" not in {m.metric for m in out}
    assert statuses(out)["gpu.p2p_oneway_min_baseline_fraction"] is Status.SKIP


def test_the_weakest_pair_is_named_and_fails_against_the_h100_figure(h100: Path) -> None:
    def one_slow_link(kind: str, a: int, b: int) -> float:
        if {a, b} == {1, 3}:
            return 200e9  # a degraded NVLink, both directions
        return healthy(kind, a, b)

    out = run(one_slow_link, h100)
    node = by(out, "gpu.p2p_oneway_min")[""]
    assert node.value == pytest.approx(200e9)
    assert node.params["weakest_pair"] in ("gpu1->gpu3", "gpu3->gpu1")
    per_gpu = {d: m.value for d, m in by(out, "gpu.p2p_oneway_min_per_gpu").items()}
    assert per_gpu == {"gpu0": pytest.approx(380e9), "gpu1": pytest.approx(200e9),
                       "gpu2": pytest.approx(380e9), "gpu3": pytest.approx(200e9)}
    assert by(out, "gpu.p2p_oneway_min_per_gpu")["gpu1"].params["serial"] == "1654321001"
    assert by(out, "gpu.p2p_bidir_min")[""].params["weakest_pair"] == "gpu1<->gpu3"
    assert by(out, "gpu.p2p_oneway_min_baseline_fraction")[""].value == pytest.approx(
        200 / 450)
    assert statuses(out) == {"gpu.p2p_oneway_min_baseline_fraction": Status.FAIL,
                             "gpu.p2p_bidir_min_baseline_fraction": Status.FAIL}


def test_a_single_gpu_has_no_pair() -> None:
    check = P2pBandwidthCheck(runner=cpu_runner(), gpus=gpu_list(1))
    with pytest.raises(NotApplicable, match="no pair"):
        check.run(CheckContext(), P2pParams())


# slow: the real kernel child importing torch (seconds of CPU on a 2-core VM); the
# pairs and their judging are tested in-process above.
@pytest.mark.slow
def test_the_all_gpu_child_failing_is_an_error_with_its_words() -> None:
    """The real child (python -m bench_agent.checks.gpu.kernels) on this CUDA-less
    torch: it cannot select cuda:0, and the check says so instead of passing."""
    from bench_agent.core.errors import ToolFailed

    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a real GPU is here")
    check = P2pBandwidthCheck(gpus=gpu_list(2))
    with nvml.use_loader(lambda: FakeNvml()), pytest.raises(ToolFailed) as exc:
        check.run(CheckContext(timeout=120), P2pParams(bytes=SIZE))
    assert "gpu p2p copy" in str(exc.value)
    assert "CUDA" in str(exc.value) or "cuda" in str(exc.value)


def test_the_shipped_h100_figures_pass_a_healthy_node_and_fail_a_slow_link() -> None:
    # suites/baselines/h100-sxm5-80gb.yaml: 371 GB/s one way and 739 both ways, the
    # weakest pairs of a public p2pBandwidthLatencyTest run (NVIDIA/nccl issue 1264).
    from bench_agent.config.baselines import baselines_dir

    out = run(healthy, baselines_dir())
    assert by(out, "gpu.p2p_oneway_min_baseline_fraction")[""].value == pytest.approx(380 / 371)
    assert by(out, "gpu.p2p_bidir_min_baseline_fraction")[""].value == pytest.approx(760 / 739)
    assert set(statuses(out).values()) == {Status.PASS}

    def one_x8_link(kind: str, a: int, b: int) -> float:
        return 190e9 if {a, b} == {0, 2} else 380e9

    slow = run(one_x8_link, baselines_dir())
    assert by(slow, "gpu.p2p_oneway_min_baseline_fraction")[""].value == pytest.approx(190 / 371)
    assert statuses(slow)["gpu.p2p_oneway_min_baseline_fraction"] is Status.FAIL
