"""The nccl-tests parser on fixtures written from FORMAT_SPEC.txt, and on the shared
samples when they are present."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench_agent.core.errors import ParseError, ToolFailed
from bench_agent.core.model import Measurement
from bench_agent.tools.nccl_tests import bus_factor, parse_nccl_tests
from tests.paths import DATA, SAMPLES

DATA = DATA / "nccl"
SAMPLES = SAMPLES / "nccl-tests"


def parse(name: str) -> dict[str, Measurement]:
    return {m.metric: m for m in parse_nccl_tests((DATA / name).read_text())}


def test_new_header_four_gpus() -> None:
    m = parse("all_reduce_v2.19_4gpu.txt")
    busbw = m["nccl.all_reduce_busbw"]
    assert busbw.value == 400e9 and busbw.unit.value == "bytes/s"
    assert busbw.check == "nccl.all_reduce"
    assert m["nccl.all_reduce_algbw"].value == 266.67e9
    assert m["nccl.all_reduce_wrong"].value == 0
    assert m["nccl.all_reduce_avg_busbw"].value == 294.603e9
    p = busbw.params
    assert p["ranks"] == 4 and p["collective_from"] == "header"
    assert p["size_bytes"] == 4294967296
    assert p["time_us"] == 16106  # a wide figure printed without decimals
    assert p["header"]["iters"] == "20" and p["header"]["warmup_iters"] == "5"
    assert len(p["rows"]) == 7  # the NCCL INFO line among the rows is ignored
    assert p["rows"][0]["in-place"]["busbw"] == 75.0


def test_old_error_column_without_root() -> None:
    m = parse("all_gather_old_error_column_noroot.txt")
    # No name anywhere: busbw/algbw = 7/8 on 8 ranks, redop none -> all_gather.
    busbw = m["nccl.all_gather_busbw"]
    assert busbw.params["collective_from"] == "bus factor"
    assert busbw.params["error_column"] == "error"
    assert busbw.value == 91.87e9
    assert busbw.params["rows"][0]["root"] is None
    assert busbw.params["rows"][0]["out-of-place"]["error"] == 0.0
    # The old error column is a max delta, not a count: the footer's "Out of
    # bounds values" count is the correctness figure instead.
    wrong = m["nccl.all_gather_wrong"]
    assert wrong.value == 0.0 and wrong.params["wrong_from"] == "Out of bounds values"


def test_wrong_na_and_timestamps() -> None:
    m = parse("all_reduce_wrong_na_timestamp.txt")
    assert m["nccl.all_reduce_wrong"].value == 7  # N/A (not checked) is not counted
    assert m["nccl.all_reduce_busbw"].params["out_of_bounds_values"] == 1
    assert m["nccl.all_reduce_busbw"].value == 50e9


def test_failure_is_tool_failed_with_its_words() -> None:
    with pytest.raises(ToolFailed, match=r"Test NCCL failure common\.cu:958"):
        parse_nccl_tests((DATA / "nccl_failure.txt").read_text())


def test_garbage_is_parse_error() -> None:
    with pytest.raises(ParseError, match="no nccl-tests result table"):
        parse_nccl_tests("hello\nworld\n")


def test_bus_factors() -> None:
    assert bus_factor("all_reduce", 8) == 14 / 8
    assert bus_factor("reduce_scatter", 8) == 7 / 8
    assert bus_factor("broadcast", 8) == 1.0


def test_parse_cli(tmp_path: Path) -> None:
    from bench_agent.cli.main import main

    assert main(["parse", "nccl-tests", str(DATA / "all_reduce_v2.19_4gpu.txt")]) == 0
    assert main(["parse", "nccl-tests", str(DATA / "nccl_failure.txt")]) == 2


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="shared nccl-tests samples not present")
def test_shared_samples() -> None:
    a100 = {m.metric: m for m in parse_nccl_tests(
        (SAMPLES / "all_reduce_perf_8xA100-SXM4-40GB_1node_10GiB_oci.txt").read_text())}
    assert a100["nccl.all_reduce_busbw"].value == 233.00e9
    assert a100["nccl.all_reduce_busbw"].params["ranks"] == 8
    assert a100["nccl.all_reduce_avg_busbw"].value == 233.168e9
    h100 = {m.metric: m for m in parse_nccl_tests(
        (SAMPLES / "all_reduce_perf_2node_16xH100_gcp-a3mega_sweep_8B-8GiB.txt").read_text())}
    busbw = h100["nccl.all_reduce_busbw"]
    assert busbw.params["ranks"] == 16 and busbw.params["size_bytes"] == 8589934592
    assert busbw.value == 338.82e9
    # no "Collective test starting" line in this older header: the command names it
    assert busbw.params["collective_from"] == "command line"
    for row in busbw.params["rows"]:
        out = row["out-of-place"]
        if out["algbw"] and out["algbw"] > 1:
            assert out["busbw"] == pytest.approx(out["algbw"] * 30 / 16, rel=0.01)


@pytest.mark.parametrize("figure", ["-nan", "nan", "inf"])
def test_avg_bus_bandwidth_without_a_figure_is_not_a_crash(figure: str) -> None:
    text = (DATA / "all_reduce_v2.19_4gpu.txt").read_text()
    bad = text.replace("# Avg bus bandwidth    : 294.603", f"# Avg bus bandwidth    : {figure}")
    assert bad != text
    m = {x.metric: x for x in parse_nccl_tests(bad)}
    assert "nccl.all_reduce_avg_busbw" not in m
    assert m["nccl.all_reduce_busbw"].value == 400e9


@pytest.mark.parametrize("figure", ["garbage", "-294.603", "9" * 400, "1e400", "2\x0094.603"])
def test_avg_bus_bandwidth_that_is_not_a_figure_is_refused(figure: str) -> None:
    """Not what nccl-tests prints for a run that went wrong (-nan, inf): a doctored
    or corrupted line, so no figure of the output is read."""
    text = (DATA / "all_reduce_v2.19_4gpu.txt").read_text()
    bad = text.replace("# Avg bus bandwidth    : 294.603", f"# Avg bus bandwidth    : {figure}")
    with pytest.raises(ParseError, match=r"the average bus bandwidth is not a figure: "
                                         r"'Avg bus bandwidth    : "):
        parse_nccl_tests(bad)
