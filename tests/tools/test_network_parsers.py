"""Parsers of iperf3, sockperf, qperf and perftest on captured and written outputs.

tests/data/network/README.md says how each fixture was made; the public samples
in ../shared/samples are used when present.
"""

from __future__ import annotations

import json

import pytest

from bench_agent.checks import metric_catalog
from bench_agent.core.errors import ParseError, ToolFailed
from bench_agent.core.metrics import PARSED_ONLY
from bench_agent.core.model import Measurement
from bench_agent.core.units import Unit
from bench_agent.tools import PARSERS, parse_tool_output
from bench_agent.tools.iperf3 import measurements_of, parse_iperf3, parse_iperf3_result
from bench_agent.tools.perftest import (
    header_columns,
    parse_perftest,
    parse_perftest_json,
    parse_perftest_output,
)
from bench_agent.tools.qperf import parse_qperf
from bench_agent.tools.sockperf import clean_text, parse_sockperf
from tests.paths import DATA, SAMPLES

# The metric catalog, as the checks declare it.
METRICS = metric_catalog()

DATA = DATA / "network"
SAMPLES = SAMPLES


def read(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def sample(name: str) -> str:
    path = SAMPLES / name
    if not path.is_file():
        pytest.skip(f"sample {name} not present")
    return path.read_text(encoding="utf-8")


def by_metric(measurements: list[Measurement]) -> dict[str, Measurement]:
    found = {m.metric: m for m in measurements}
    assert len(found) == len(measurements), "one measurement per metric"
    for m in measurements:
        if m.metric in PARSED_ONLY:  # read by the parser, run by no check
            continue
        assert m.metric in METRICS, m.metric
        assert METRICS[m.metric].unit is m.unit, m.metric
    return found


# --- iperf3 --------------------------------------------------------------------------


def test_iperf3_parallel_streams_receiver_side() -> None:
    m = by_metric(parse_iperf3(read("iperf3_3.12_tcp_P2_omit1_loopback.json")))
    doc = json.loads(read("iperf3_3.12_tcp_P2_omit1_loopback.json"))
    assert m["network.tcp_bandwidth"].value == doc["end"]["sum_received"]["bits_per_second"]
    assert m["network.tcp_bandwidth"].unit is Unit.BITS_PER_SECOND
    assert m["network.tcp_bandwidth"].tool_version == "3.12"
    assert m["network.tcp_bandwidth"].params["streams_per_process"] == 2
    assert m["network.tcp_retransmits"].unit is Unit.COUNT


def test_iperf3_reverse_is_its_own_metric() -> None:
    m = by_metric(parse_iperf3(read("iperf3_3.12_tcp_P2_reverse_loopback.json")))
    assert set(m) == {"network.tcp_bandwidth_reverse", "network.tcp_retransmits_reverse"}
    assert m["network.tcp_bandwidth_reverse"].value == pytest.approx(25718366238.25)


def test_iperf3_bidir_gives_both_directions() -> None:
    m = by_metric(parse_iperf3(read("iperf3_3.12_tcp_bidir_loopback.json")))
    assert m["network.tcp_bandwidth"].value == pytest.approx(14290844492.34)
    assert m["network.tcp_bandwidth_reverse"].value == pytest.approx(12054744570.68)
    assert m["network.tcp_retransmits"].value == 2


def test_iperf3_udp() -> None:
    m = by_metric(parse_iperf3(read("iperf3_3.12_udp_loopback.json")))
    assert m["network.udp_bandwidth"].value == pytest.approx(99987438.575)
    assert m["network.udp_jitter"].value == pytest.approx(3.0236e-6, rel=1e-3)
    assert m["network.udp_lost_packets"].value == 0


@pytest.mark.parametrize("name", ["iperf3_3.12_error_connection_refused.json"])
def test_iperf3_error_with_exit_zero(name: str) -> None:
    with pytest.raises(ToolFailed, match="Connection refused"):
        parse_iperf3(read(name))


def test_iperf3_several_processes_are_summed() -> None:
    one = parse_iperf3_result(read("iperf3_3.12_tcp_P2_omit1_loopback.json"))
    m = by_metric(measurements_of([one, one, one]))
    assert m["network.tcp_bandwidth"].value == pytest.approx(3 * one.received_bps)
    assert len(m["network.tcp_bandwidth"].samples) == 3
    assert m["network.tcp_bandwidth"].params["processes"] == 3


def test_iperf3_noise_before_the_document_and_garbage() -> None:
    text = "iperf3: warning - something\n" + read("iperf3_3.12_tcp_P2_omit1_loopback.json")
    assert parse_iperf3(text)
    with pytest.raises(ParseError):
        parse_iperf3("iperf3: error - unable to start\n")
    with pytest.raises(ParseError, match="end"):
        parse_iperf3('{"start": {}, "intervals": [], "end": {}}')


def test_iperf3_samples() -> None:
    m = by_metric(parse_iperf3(sample("iperf3_iperf3python_tcp_3.0.11_gfloat.json")))
    assert m["network.tcp_bandwidth"].value == pytest.approx(934268000.0)
    assert m["network.tcp_bandwidth"].tool_version == "3.0.11"
    m = by_metric(parse_iperf3(sample("iperf3_cloudpilot_tcp_wan_omit3_3.9.json")))
    assert m["network.tcp_retransmits"].value == 752
    assert m["network.tcp_bandwidth"].value == pytest.approx(1.8228e9, rel=1e-4)
    m = by_metric(parse_iperf3(sample("iperf3_openwisp_udp_loopback_3.9.json")))
    assert m["network.udp_bandwidth"].value == pytest.approx(1048569.7, rel=1e-6)
    assert by_metric(parse_iperf3(sample("iperf3_openwisp_tcp_loopback_3.9.json")))
    with pytest.raises(ToolFailed, match="Connection refused"):
        parse_iperf3(sample("iperf3_openwisp_error_connection_refused_3.7.json"))


# --- sockperf ------------------------------------------------------------------------


def test_sockperf_tcp_one_way_in_seconds() -> None:
    m = by_metric(parse_sockperf(read("sockperf_3.7_pingpong_tcp_loopback.txt")))
    assert set(m) == {"network.tcp_latency", "network.tcp_latency_p50",
                      "network.tcp_latency_p99", "network.tcp_latency_p99_9"}
    text = clean_text(read("sockperf_3.7_pingpong_tcp_loopback.txt"))
    avg_us = float(text.split("avg-latency=")[1].split()[0])
    assert m["network.tcp_latency"].value == pytest.approx(avg_us * 1e-6)
    assert m["network.tcp_latency"].tool_version == "3.7-no.git"
    assert m["network.tcp_latency_p50"].value <= m["network.tcp_latency_p99"].value


def test_sockperf_udp_and_full_rtt_are_different_metrics() -> None:
    one_way = by_metric(parse_sockperf(read("sockperf_3.7_pingpong_udp_loopback.txt")))
    assert "network.udp_latency" in one_way
    rtt = by_metric(parse_sockperf(read("sockperf_3.7_pingpong_udp_fullrtt_loopback.txt")))
    assert "network.udp_round_trip" in rtt and "network.udp_latency" not in rtt
    assert rtt["network.udp_round_trip"].params["full_rtt"] is True


@pytest.mark.parametrize(("name", "words"), [
    ("sockperf_3.7_tcp_refused.txt", "Connection refused"),
    ("sockperf_3.7_udp_no_server.txt", "No messages were received"),
])
def test_sockperf_failures_with_exit_zero(name: str, words: str) -> None:
    with pytest.raises(ToolFailed, match=words):
        parse_sockperf(read(name))


def test_sockperf_samples_bom_ansi_and_35_wording() -> None:
    m = by_metric(parse_sockperf(sample("sockperf_virtualclient_pingpong_fullrtt.txt")))
    assert m["network.udp_round_trip"].value == pytest.approx(101.926e-6)
    assert m["network.udp_round_trip_p99_9"].value == pytest.approx(192.845e-6)
    m = by_metric(parse_sockperf(sample("sockperf_doc_pingpong_tcp_ethernet_3.5.txt")))
    assert m["network.tcp_latency"].value == pytest.approx(9.017e-6)
    assert m["network.tcp_latency_p50"].value == pytest.approx(6.222e-6)
    assert m["network.tcp_latency"].stats["max"] == pytest.approx(98.777e-6)
    m = by_metric(parse_sockperf(sample("sockperf_doc_pingpong_udp_vma_3.5.txt")))
    assert m["network.udp_latency"].value < 2e-6
    assert by_metric(parse_sockperf(sample("sockperf_doc_pingpong_udp_ipoib_multicast_3.5.txt")))


def test_sockperf_garbage_is_a_parse_error() -> None:
    with pytest.raises(ParseError):
        parse_sockperf("\ufeffsockperf: == version #3.7 ==\n")


# --- qperf ---------------------------------------------------------------------------


def test_qperf_units_are_normalized() -> None:
    vv = by_metric(parse_qperf(read("qperf_0.4.11_tcp_udp_lat_vv_loopback.txt")))
    assert vv["network.tcp_latency"].value == pytest.approx(7.04e-6)
    assert vv["network.udp_latency"].value == pytest.approx(4.98e-6)
    uu = by_metric(parse_qperf(read("qperf_0.4.11_tcp_udp_lat_bw_uu_loopback.txt")))
    assert uu["network.tcp_latency"].value == pytest.approx(10419e-9)
    assert uu["network.tcp_bandwidth"].value == pytest.approx(4036591616 * 8)


def test_qperf_results_carry_the_check_that_ran_it() -> None:
    """The parser needs no catalog: the check names itself; `bench-agent parse` (no
    check) names each result after its metric, which is its check's name too."""
    text = read("qperf_0.4.11_tcp_udp_lat_bw_uu_loopback.txt")
    assert {(m.metric, m.check) for m in parse_qperf(text)} == {
        ("network.tcp_latency", "network.tcp_latency"),
        ("network.udp_latency", "network.udp_latency"),
        ("network.tcp_bandwidth", "network.tcp_bandwidth")}
    assert {m.check for m in parse_qperf(text, check="network.udp_latency")} == {
        "network.udp_latency"}


@pytest.mark.parametrize(("line", "seconds"), [("2.5 ns", 2.5e-9), ("26.1 us", 26.1e-6),
                                               ("1.2 ms", 1.2e-3), ("1.5 sec", 1.5)])
def test_qperf_time_units(line: str, seconds: float) -> None:
    m = parse_qperf(f"tcp_lat:\n    latency  =  {line}\n")
    assert m[0].value == pytest.approx(seconds)


def test_qperf_failures_and_samples() -> None:
    with pytest.raises(ToolFailed, match="failed to connect"):
        parse_qperf(read("qperf_0.4.11_refused.txt"))
    with pytest.raises(ToolFailed, match="RTR"):
        parse_qperf(sample("qperf_learningRDMA_rc_error_client.txt"))
    m = by_metric(parse_qperf(sample("qperf_learningRDMA_tcp_bw_tcp_lat_vm.txt")))
    assert m["network.tcp_bandwidth"].value == pytest.approx(5.78e9 * 8)
    assert m["network.tcp_latency"].value == pytest.approx(26.1e-6)
    m = by_metric(parse_qperf(sample("qperf_learningRDMA_udp_bw_udp_lat_vm.txt")))
    assert m["network.udp_bandwidth"].value == pytest.approx(846e6 * 8)
    with pytest.raises(ParseError):
        parse_qperf("tcp_lat:\n    latency  =  3 fortnights\n")


# --- perftest ------------------------------------------------------------------------


def test_perftest_header_columns() -> None:
    lat = (" #bytes #iterations    t_min[usec]    t_max[usec]  t_typical[usec]    t_avg[usec]"
           "    t_stdev[usec]   99% percentile[usec]   99.9% percentile[usec] ")
    assert len(header_columns(lat)) == 9
    bw = " #bytes     #iterations    BW peak[Gb/sec]    BW average[Gb/sec]   MsgRate[Mpps]"
    assert header_columns(bw)[3] == "BW average[Gb/sec]"


def test_perftest_write_latency_text() -> None:
    m = by_metric(parse_perftest(read("ib_write_lat_from_format_mlx5_0.txt")))
    assert m["network.rdma_write_latency"].value == pytest.approx(1.65e-6)  # t_typical
    assert m["network.rdma_write_latency_avg"].value == pytest.approx(1.67e-6)
    assert m["network.rdma_write_latency_p99"].value == pytest.approx(1.94e-6)
    assert m["network.rdma_write_latency_p99_9"].value == pytest.approx(5.42e-6)
    assert m["network.rdma_write_latency"].device == "mlx5_0"


def test_perftest_read_latency_sweep_takes_smallest_size() -> None:
    m = by_metric(parse_perftest(read("ib_read_lat_sweep_from_format_mlx5_1.txt")))
    assert m["network.rdma_read_latency"].value == pytest.approx(2.86e-6)
    assert m["network.rdma_read_latency"].params["size"] == 2


@pytest.mark.parametrize(("name", "bits"), [
    ("ib_write_bw_from_format_MiBsec.txt", 23785.40 * 2**20 * 8),
    ("ib_write_bw_from_format_gbits.txt", 196.30e9),
])
def test_perftest_bandwidth_units(name: str, bits: float) -> None:
    m = by_metric(parse_perftest(read(name)))
    assert m["network.rdma_write_bandwidth"].value == pytest.approx(bits)


def test_perftest_out_json_quoted_and_unquoted() -> None:
    lat = by_metric(parse_perftest_json(read("ib_write_lat_6.06_out_json_unquoted.json")))
    assert lat["network.rdma_write_latency"].value == pytest.approx(1.65e-6)
    assert lat["network.rdma_write_latency"].device == "mlx5_0"
    bw = by_metric(parse_perftest_json(read("ib_write_bw_out_json_quoted.json"), gbits=True))
    assert bw["network.rdma_write_bandwidth"].value == pytest.approx(196.30e9)
    assert parse_perftest_output(read("ib_write_lat_6.06_out_json_unquoted.json"))


def test_perftest_failures() -> None:
    with pytest.raises(ToolFailed, match="Did not detect devices"):
        parse_perftest(read("ib_write_lat_6.06_no_device.txt"))
    with pytest.raises(ParseError):
        parse_perftest(" #bytes #iterations t_min[usec]\n 2 1000 1.0 2.0\n")  # wrong count
    with pytest.raises(ParseError):
        parse_perftest_json('{"test_info": {}}')


def test_perftest_samples() -> None:
    m = by_metric(parse_perftest(sample("ib_write_lat_elizabetht_spark_roce_dgxspark_client.txt")))
    assert m["network.rdma_write_latency"].value == pytest.approx(1.98e-6)
    assert m["network.rdma_write_latency_p99_9"].value == pytest.approx(3.37e-6)
    assert m["network.rdma_write_latency"].device == "rocep1s0f0"
    m = by_metric(parse_perftest(
        sample("ib_write_bw_elizabetht_spark_roce_dgxspark_client_MBsec.txt")))
    assert m["network.rdma_write_bandwidth"].value == pytest.approx(11031.60 * 2**20 * 8)
    m = by_metric(parse_perftest(
        sample("ib_write_bw_nvidia_dgxspark_playbook_run_infinitely_gbits.txt")))
    assert m["network.rdma_write_bandwidth"].value == pytest.approx(92.57e9)
    assert len(m["network.rdma_write_bandwidth"].samples) == 5
    # server and client interleaved in one stream: duplicated tables, same figures
    m = by_metric(parse_perftest(sample("ib_write_bw_superbench_loopback_8M.txt")))
    assert m["network.rdma_write_bandwidth"].value == pytest.approx(24056.72 * 2**20 * 8)
    m = by_metric(parse_perftest(sample("ib_write_bw_superbench_loopback_all_sizes.txt")))
    assert m["network.rdma_write_bandwidth"].params["size"] == 8388608


# --- the `parse` registry --------------------------------------------------------------


@pytest.mark.parametrize(("tool", "name"), [
    ("iperf3", "iperf3_3.12_tcp_bidir_loopback.json"),
    ("sockperf", "sockperf_3.7_pingpong_tcp_loopback.txt"),
    ("qperf", "qperf_0.4.11_tcp_udp_lat_vv_loopback.txt"),
    ("perftest", "ib_write_lat_from_format_mlx5_0.txt"),
    ("ib_write_bw", "ib_write_bw_from_format_gbits.txt"),
])
def test_parse_registry(tool: str, name: str) -> None:
    assert tool in PARSERS
    assert parse_tool_output(tool, DATA / name)


def test_perftest_rows_with_negative_or_nan_figures_are_not_read() -> None:
    # A negative t_typical would pass a "< 10 us" threshold; such rows are dropped.
    text = read("ib_write_lat_from_format_mlx5_0.txt")
    bad = text.replace(" 2       1000          1.61           5.42         1.65",
                       " 2       1000          1.61           5.42         -1.65")
    assert bad != text
    with pytest.raises(ParseError):
        parse_perftest(bad)
    with pytest.raises(ParseError):
        parse_perftest(text.replace("1.67", "nan"))
    with pytest.raises(ParseError, match="negative"):
        parse_perftest_json('{"results": {"MsgSize": 2, "t_typical": -1.65}}')


def test_sockperf_percentiles_come_from_the_first_servers_block() -> None:
    # With several servers (-f), each prints its own summary; the second one's
    # percentiles must not replace the first one's.
    text = read("sockperf_3.7_pingpong_tcp_loopback.txt")
    second = ("sockperf: ========= Printing statistics for Server No: 1\n"
              "sockperf: ====> avg-latency=900.000 (std-dev=1.000)\n"
              "sockperf: ---> percentile 99.000 = 999.000\n"
              "sockperf: ---> percentile 50.000 = 900.000\n")
    one = by_metric(parse_sockperf(text))
    both = by_metric(parse_sockperf(text + second))
    assert both["network.tcp_latency_p99"].value == one["network.tcp_latency_p99"].value
    assert both["network.tcp_latency_p99"].value == pytest.approx(3780.326e-6)
    assert both["network.tcp_latency"].value == pytest.approx(157.593e-6)


def test_an_old_perftest_latency_table_without_percentiles_is_read() -> None:
    """Older perftest releases print only t_min, t_max and t_typical (no t_avg or
    percentile columns): t_typical is judged, the rest is simply absent."""
    from bench_agent.tools.perftest import parse_perftest

    text = (
        "---------------------------------------------------------------------------------------\n"
        "                    RDMA_Write Latency Test\n"
        " Dual-port       : OFF\t\tDevice         : mlx5_0\n"
        "---------------------------------------------------------------------------------------\n"
        " #bytes #iterations    t_min[usec]    t_max[usec]  t_typical[usec]\n"
        " 2       1000          0.89           5.10         0.92\n"
        "---------------------------------------------------------------------------------------\n"
    )
    out = {m.metric: m for m in parse_perftest(text)}
    assert set(out) == {"network.rdma_write_latency"}
    latency = out["network.rdma_write_latency"]
    assert latency.value == pytest.approx(0.92e-6)
    assert latency.stats == {"min": pytest.approx(0.89e-6), "max": pytest.approx(5.10e-6)}
    assert latency.device == "mlx5_0"
