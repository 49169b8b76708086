"""Hostile tool outputs: each one is a ParseError that quotes the tool's words,
never a figure (duplicate keys, second tables, trailing garbage, 0-s latencies,
deep nesting, huge numbers, NaN), and long inputs are read in linear time.

The documents are the captured outputs of tests/data, changed the way a broken
or doctored tool output would be.
"""

from __future__ import annotations

import json
import re

import pytest

from bench_agent.core import strict_json
from bench_agent.core.errors import ParseError
from bench_agent.tools import fio
from bench_agent.tools.iperf3 import parse_iperf3
from bench_agent.tools.nccl_tests import parse_nccl_tests
from bench_agent.tools.perftest import parse_perftest, parse_perftest_output
from bench_agent.tools.qperf import parse_qperf
from bench_agent.tools.sockperf import parse_sockperf
from tests.paths import DATA

DATA = DATA
MB = 2**20


def read(path: str) -> str:
    return (DATA / path).read_text(encoding="utf-8")


FIO = "fio/randread_4k_libaio_numjobs2_grouped.json"
IPERF3 = "network/iperf3_3.12_tcp_P2_omit1_loopback.json"
PERFTEST_BW = "network/ib_write_bw_from_format_gbits.txt"
PERFTEST_JSON = "network/ib_write_bw_out_json_quoted.json"
SOCKPERF = "network/sockperf_3.7_pingpong_tcp_loopback.txt"
QPERF = "network/qperf_0.4.11_tcp_udp_lat_vv_loopback.txt"
NCCL = "nccl/all_reduce_v2.19_4gpu.txt"


# --- duplicate keys and second results (issue item 9) --------------------------------


def test_fio_doctored_duplicate_iops_is_refused() -> None:
    raw = read(FIO)
    first_iops = re.search(r'"iops" : ([0-9.]+),', raw)
    assert first_iops is not None
    doctored = raw.replace(first_iops.group(0), f'"iops" : 4070000.0,\n{first_iops.group(0)}', 1)
    # Python's own reader would keep the last value silently:
    assert json.loads(doctored)["jobs"][0]["read"]["iops"] == float(first_iops.group(1))
    with pytest.raises(ParseError, match=r"duplicate key 'iops' at jobs\[0\]\.read "
                                         r"\(values '4070000\.0', '"
                                         + re.escape(first_iops.group(1))):
        fio.parse_fio(doctored)


def test_iperf3_duplicate_bits_per_second_is_refused() -> None:
    doc = read(IPERF3)
    received = doc.index('"sum_received"')
    key = doc.index('"bits_per_second"', received)
    doctored = doc[:key] + '"bits_per_second": 9e15,\n' + doc[key:]
    with pytest.raises(ParseError, match=r"duplicate key 'bits_per_second' at "
                                         r"end\.sum_received \(values '9000000000000000\.0'"):
        parse_iperf3(doctored)


def test_two_perftest_tables_with_other_figures_are_refused() -> None:
    text = read(PERFTEST_BW)
    header = next(line for line in text.splitlines() if line.lstrip().startswith("#bytes"))
    second = f"{header}\n 65536      5000           201800.00          201800.00   0.374414\n"
    with pytest.raises(ParseError, match=r"a second result table with other figures "
                                         r"\(2 tables; the second begins '65536 5000 201800"):
        parse_perftest(text + second)


def test_perftest_out_json_with_two_results_or_a_key_twice_is_refused() -> None:
    text = read(PERFTEST_JSON)
    twice = text.replace('"BW_average": 196.30,', '"BW_average": 196.30,\n"BW_average": 201800,')
    with pytest.raises(ParseError, match=r"results key 'BW_average' given twice in --out_json "
                                         r"\(196\.30 and 201800\)"):
        parse_perftest_output(twice)
    again = text.rstrip()[:-1] + ',\n"results": {"BW_average": 201800}\n}'
    with pytest.raises(ParseError, match=r"2 'results' sections in one --out_json file: "
                                         r"'\"results\": \{\"BW_average\": 201800"):
        parse_perftest_output(again)


def test_qperf_two_documents_are_refused() -> None:
    text = read(QPERF)
    with pytest.raises(ParseError, match=r"test 'tcp_lat' printed twice"):
        parse_qperf(text + text)


def test_sockperf_second_summary_of_the_same_server_is_refused() -> None:
    text = read(SOCKPERF)
    second = "sockperf: ====> avg-latency=0.100 (std-dev=0.001)\n"
    with pytest.raises(ParseError, match=r"a second summary for server 0: "
                                         r"'====> avg-latency=0\.100"):
        parse_sockperf(text + second)
    with pytest.raises(ParseError, match=r"a second summary for server 0: "
                                         r"'====> avg-latency=157\.593"):
        parse_sockperf(text + text)
    no_summary = "sockperf: ========= Printing statistics for Server No: 0\n"
    with pytest.raises(ParseError, match=r"statistics for server No: 0 printed twice"):
        parse_sockperf(text + no_summary)


def test_nccl_second_run_of_the_same_collective_or_second_header_is_refused() -> None:
    text = read(NCCL)
    with pytest.raises(ParseError, match=r"a second all_reduce run in one output"):
        parse_nccl_tests(text + text)
    header = "#       size         count      type   redop    root     time   algbw   busbw"
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("# Out of bounds"))
    doubled = "\n".join([*lines[:at], header, *lines[at:]])
    with pytest.raises(ParseError, match=r"a second result table in one run: '#  +size"):
        parse_nccl_tests(doubled)
    row = next(line for line in lines if line.strip().startswith("4294967296"))
    repeated = "\n".join([*lines[:at], row.replace("400.00", "900.00"), *lines[at:]])
    with pytest.raises(ParseError, match=r"size 4294967296 \(float, sum\) printed twice"):
        parse_nccl_tests(repeated)


# --- a valid document followed by garbage: all six parsers -----------------------------


def test_fio_valid_document_then_garbage() -> None:
    with pytest.raises(ParseError, match=r"text after the JSON document: 'garbage \{\"iops\""):
        fio.parse_fio(read(FIO) + 'garbage {"iops": 1}\n')


def test_iperf3_valid_document_then_garbage() -> None:
    with pytest.raises(ParseError, match=r"text after the JSON document: '\}\\n'"):
        parse_iperf3(read(IPERF3) + "}\n")
    # a second document is garbage too: iperf3 -J prints one
    with pytest.raises(ParseError, match=r"text after the JSON document: '\{"):
        parse_iperf3(read(IPERF3) + read(IPERF3))


def test_perftest_valid_table_then_a_garbage_row() -> None:
    lines = read(PERFTEST_BW).splitlines()
    at = next(i for i, line in enumerate(lines) if line.lstrip().startswith("65536")) + 1
    garbage = "\n".join([*lines[:at], " 65536      5000    196.32  garbage  0.374414", *lines[at:]])
    with pytest.raises(ParseError, match=r"a row with a field that is no number: "
                                         r"'65536      5000    196\.32  garbage"):
        parse_perftest(garbage)
    with pytest.raises(ParseError, match=r"a row with 3 fields under a header of 5 columns: "
                                         r"'65536 5000 1'"):
        parse_perftest("\n".join([*lines[:at], " 65536 5000 1", *lines[at:]]))


def test_perftest_out_json_then_garbage() -> None:
    with pytest.raises(ParseError, match=r"text after the --out_json object: "
                                         r"'\{\"results\": \{\"BW_average\": 9e9\}\}'"):
        parse_perftest_output(read(PERFTEST_JSON) + '{"results": {"BW_average": 9e9}}')


def test_sockperf_valid_summary_then_a_garbage_line() -> None:
    text = read(SOCKPERF).replace("sockperf: ---> percentile 50.000 =   16.800",
                                  "sockperf: ---> percentile 50.000 =   garbage")
    assert "garbage" in text
    with pytest.raises(ParseError, match=r"a summary line that is no percentile or observation:"
                                         r" 'sockperf: ---> percentile 50\.000 =   garbage'"):
        parse_sockperf(text)


def test_qperf_valid_document_then_garbage() -> None:
    with pytest.raises(ParseError, match=r"a line qperf does not print: 'garbage 1 2 3'"):
        parse_qperf(read(QPERF) + "garbage 1 2 3\n")
    with pytest.raises(ParseError, match=r"the tcp_lat result is no 'figure unit': "
                                         r"'latency  =  26\.1 us extra'"):
        parse_qperf("tcp_lat:\n    latency  =  26.1 us extra\n")


def test_nccl_valid_table_then_a_garbage_row() -> None:
    with pytest.raises(ParseError, match=r"a result row that does not fit the header "
                                         r"\(13 columns\): '8589934592 garbage'"):
        parse_nccl_tests(read(NCCL) + "8589934592 garbage\n")


# --- latencies of 0 s -------------------------------------------------------------------


def test_sockperf_zero_latency_is_refused() -> None:
    text = read(SOCKPERF).replace("avg-latency=157.593", "avg-latency=0.000")
    with pytest.raises(ParseError, match=r"average latency 0\.000 us is no latency: "
                                         r"'====> avg-latency=0\.000"):
        parse_sockperf(text)
    text = read(SOCKPERF).replace("percentile 99.000 = 3780.326", "percentile 99.000 = 0.000")
    with pytest.raises(ParseError, match=r"p99\.000 latency 0\.000 us is no latency"):
        parse_sockperf(text)


def test_qperf_zero_latency_is_refused() -> None:
    with pytest.raises(ParseError, match=r"a latency of 0 us: 'latency  =  0 us'"):
        parse_qperf("tcp_lat:\n    latency  =  0 us\n")
    with pytest.raises(ParseError, match=r"no number in 'latency = 1\.2\.3 us'"):
        parse_qperf("tcp_lat:\n    latency = 1.2.3 us\n")


def test_perftest_zero_latency_is_refused() -> None:
    text = read("network/ib_write_lat_from_format_mlx5_0.txt")
    zero = text.replace(" 2       1000          1.61           5.42         1.65",
                        " 2       1000          1.61           5.42         0.00")
    assert zero != text
    with pytest.raises(ParseError, match=r"a latency of 0 us \(t_typical\[usec\]\)"):
        parse_perftest(zero)


# --- deep nesting, huge and non-finite numbers (issue item 13) --------------------------


@pytest.mark.parametrize("parse", [fio.parse_fio, parse_iperf3], ids=["fio", "iperf3"])
def test_deep_array_nesting_is_a_parse_error(parse: object) -> None:
    assert callable(parse)
    with pytest.raises(ParseError, match=r"JSON nested more than 64 levels deep"):
        parse('{"jobs": ' + "[" * 100_000)
    # nested below Python's recursion limit but deeper than any report
    with pytest.raises(ParseError, match=r"JSON nested more than 64 levels deep "
                                         r"\(at a\.a\.a\.a\.a\.a\.a\.a…\)"):
        parse('{"a": ' * 100 + "1" + "}" * 100)


@pytest.mark.parametrize("parse", [fio.parse_fio, parse_iperf3], ids=["fio", "iperf3"])
def test_lines_of_open_braces_are_a_parse_error(parse: object) -> None:
    assert callable(parse)
    with pytest.raises(ParseError, match=r"broken JSON at line 2 column 1: Expecting property "
                                         r"name enclosed in double quotes: '\{\\n\{\\n"):
        parse("{\n" * 100_000)


@pytest.mark.parametrize("parse", [fio.parse_fio, parse_iperf3], ids=["fio", "iperf3"])
def test_a_5000_digit_integer_is_a_parse_error(parse: object) -> None:
    assert callable(parse)
    with pytest.raises(ParseError, match=r"an integer of 5,000 digits \('99999"):
        parse('{"jobs": [{"read": {"iops": ' + "9" * 5000 + "}}]}")


def test_fio_bins_key_of_5000_digits_is_not_a_crash() -> None:
    doc = json.loads(read("fio/randread_4k_iouring_numjobs2_ungrouped_jsonplus.json"))
    doc["jobs"][0]["read"]["clat_ns"]["bins"]["9" * 5000] = 1
    report = fio.parse_fio_report(json.dumps(doc))
    assert all(len(str(k)) < 30 for k in report.jobs[0].directions["read"].bins)


@pytest.mark.parametrize(("value", "words"), [
    ("-1", r"end\.sum_received\.bits_per_second is negative \(-1\)"),
    ("NaN", r"NaN is not a JSON number \(JSON has no NaN or Infinity\)"),
    ("Infinity", r"Infinity is not a JSON number"),
    ("-Infinity", r"-Infinity is not a JSON number"),
    ("1e400", r"the number '1e400' is too large for a float"),
    ('"fast"', r"end\.sum_received\.bits_per_second is '\"fast\"', not a number"),
])
def test_iperf3_negative_and_non_finite_figures(value: str, words: str) -> None:
    doc = read(IPERF3)
    received = doc.index('"sum_received"')
    key = doc.index('"bits_per_second"', received)
    end = doc.index(",", key)
    with pytest.raises(ParseError, match=words):
        parse_iperf3(doc[:key] + f'"bits_per_second": {value}' + doc[end:])


@pytest.mark.parametrize(("key", "value", "words"), [
    ("retransmits", "-3", r"end\.sum_sent\.retransmits is negative \(-3\)"),
    ("retransmits", "2.5", r"end\.sum_sent\.retransmits is 2\.5, not a whole count"),
])
def test_iperf3_counts_must_be_whole_and_not_negative(key: str, value: str, words: str) -> None:
    doc = json.loads(read(IPERF3))
    doc["end"]["sum_sent"][key] = json.loads(value)
    with pytest.raises(ParseError, match=words):
        parse_iperf3(json.dumps(doc))


def test_iperf3_section_of_the_wrong_type_is_a_parse_error() -> None:
    doc = json.loads(read(IPERF3))
    doc["end"]["sum_sent"] = [1, 2]
    with pytest.raises(ParseError, match=r"end\.sum_sent is '\[1, 2\]', not an object"):
        parse_iperf3(json.dumps(doc))


def test_an_output_over_the_size_limit_is_refused_unread() -> None:
    huge = " " * (strict_json.MAX_CHARS + 1)
    for parse in (fio.parse_fio, parse_iperf3, parse_sockperf, parse_qperf, parse_perftest,
                  parse_nccl_tests):
        with pytest.raises(ParseError, match=r"the output has 67,108,865 characters, more "
                                             r"than the 67,108,864"):
            parse(huge)


# --- the stream reader of burn-in's fio (same rules, fed line by line) ------------------


def test_stream_reads_status_interval_reports_line_by_line() -> None:
    raw = read("fio/seqread_1m_status_interval_docs.json")
    whole, _ = strict_json.read_documents(raw, "fio", several=True,
                                          duplicates=fio.duplicate_policy)
    stream = strict_json.DocumentStream("fio", duplicates=fio.duplicate_policy)
    fed = [doc for line in ("note: a warning {x}\n" + raw).splitlines(keepends=True)
           for doc in stream.feed(line)]
    assert len(whole) == 3 and fed == whole


def test_stream_refuses_garbage_between_reports_and_duplicates() -> None:
    raw = read("fio/seqread_1m_status_interval_docs.json")
    end = raw.index("\n}\n") + 3
    stream = strict_json.DocumentStream("fio", duplicates=fio.duplicate_policy)
    assert len(stream.feed(raw[:end])) == 1
    with pytest.raises(ParseError, match=r"text after the JSON documents: 'garbage"):
        stream.feed("garbage\n" + raw[end:])
    stream = strict_json.DocumentStream("fio", duplicates=fio.duplicate_policy)
    with pytest.raises(ParseError, match=r"duplicate key 'iops' at the top level"):
        stream.feed('{"iops": 1, "iops": 2}\n')


# --- long lines: the readers finish, and say what is wrong ------------------------------
# (how long they take is measured by benchmarks/bench_parsers.py, not asserted here)


def test_one_megabyte_lines() -> None:
    line = "a" * MB
    with pytest.raises(ParseError, match=r"a line qperf does not print: 'aaaa"):
        parse_qperf("tcp_lat:\n" + line + ": failedto\n")
    with pytest.raises(ParseError, match=r"no result table"):
        parse_perftest(" #bytes " + "a a[" * (MB // 4) + "\n")
    with pytest.raises(ParseError, match=r"no 'results' in the --out_json file"):
        parse_perftest_output("{" + "a" * MB + "}")
    with pytest.raises(ParseError, match=r"no 'avg-lat'"):
        parse_sockperf("sockperf: ---> percentile " + " " * MB + "\n")
    with pytest.raises(ParseError, match=r"no perftest|no result table"):
        parse_perftest("\n" * MB)
    with pytest.raises(ParseError, match=r"no nccl-tests result table"):
        parse_nccl_tests("\n" * MB + "# nThread 1\n" * 10_000)
    with pytest.raises(ParseError, match=r"no fio JSON report in the output \(fio: \{"):
        fio.parse_fio("fio: {" * (MB // 6) + "\n")
