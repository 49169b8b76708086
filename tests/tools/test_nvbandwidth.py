"""tools/nvbandwidth.py on captured outputs of several nvbandwidth versions
(../shared/samples/nvbandwidth, see its PROVENANCE.txt), on hand-made inputs
(tests/data/nvbandwidth) and on hostile ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench_agent.core.errors import ParseError
from bench_agent.core.model import Measurement
from bench_agent.tools import parse_failures, parse_tool_output
from bench_agent.tools.nvbandwidth import (
    ERROR,
    PASSED,
    WAIVED,
    Bandwidth,
    parse_nvbandwidth,
    parse_output,
)
from tests.paths import DATA, SAMPLES

NVB_SAMPLES = SAMPLES / "nvbandwidth"
needs_samples = pytest.mark.skipif(not NVB_SAMPLES.is_dir(),
                                   reason="../shared/samples is absent")
TEXT = DATA / "nvbandwidth" / "nvbandwidth_v0.8_text_2gpu_handmade.txt"
JSON = DATA / "nvbandwidth" / "nvbandwidth_v0.8_json_2gpu_handmade.json"


def sample(name: str) -> Bandwidth:
    return parse_output((NVB_SAMPLES / name).read_text(encoding="utf-8"))


def values(measurements: list[Measurement]) -> dict[str, float]:
    return {m.metric: m.value for m in measurements}


@needs_samples
def test_readme_fragment_zero_diagonal_is_no_figure() -> None:
    run = sample("nvbandwidth_readme-v0.8_d2d_write_ce_8gpu_fragment_zero_diagonal.txt")
    [case] = run.testcases
    assert (case.name, case.status, case.unit, len(case.matrix)) == (
        "device_to_device_memcpy_write_ce", PASSED, "GB/s", 8)
    assert case.matrix[0][0] == 0.0 and case.total is None  # a fragment: no SUM line
    measured = parse_nvbandwidth(
        (NVB_SAMPLES / "nvbandwidth_readme-v0.8_d2d_write_ce_8gpu_fragment_zero_diagonal.txt")
        .read_text())
    weakest = next(m for m in measured if m.metric.endswith("write_ce"))
    # The 0.00 diagonal is not the weakest pair: 274.89 (row 6, column 0) is.
    assert weakest.value == pytest.approx(274.89e9)
    assert weakest.params["weakest"] == "GPU6 <- GPU0"


@needs_samples
def test_v0_8_single_testcase_with_header_and_notes() -> None:
    run = sample("nvbandwidth_v0.8_issue42_A100-SXM4-40GB_h2d_memcpy_sm.txt")
    assert run.header == {"version": "v0.8", "git": "v0.8", "cuda_runtime": "12060",
                          "cuda_driver": "12060", "driver": "560.35.05"}
    assert run.devices == ["NVIDIA A100-SXM4-40GB (00000000:99:00)"]
    [case] = run.testcases
    assert (case.name, case.matrix, case.total) == ("host_to_device_memcpy_sm", [[25.13]], 25.13)
    assert run.notes[0] == "command: ./nvbandwidth -t host_to_device_memcpy_sm -b 512"


@needs_samples
def test_pcie_matrix_sum_agrees_and_weakest_pair_is_named() -> None:
    run = sample("nvbandwidth_v0.8_issue50_6xRTX-A6000_d2d_read_ce_pcie_elided.txt")
    [case] = run.testcases
    assert case.name == "device_to_device_memcpy_read_ce"  # named by its SUM line
    assert case.total == 715.53 and len(case.matrix) == 6
    assert run.notes == ["the output was elided by whoever saved it ('...' line)"]
    measured = {m.metric: m for m in parse_nvbandwidth(
        (NVB_SAMPLES / "nvbandwidth_v0.8_issue50_6xRTX-A6000_d2d_read_ce_pcie_elided.txt")
        .read_text())}
    weakest = measured["gpu.nvbandwidth_device_to_device_memcpy_read_ce"]
    assert (weakest.value, weakest.params["weakest"]) == (21.80e9, "GPU0 -> GPU5")


@needs_samples
def test_assert_is_an_error_of_its_testcase() -> None:
    run = sample("nvbandwidth_v0.7_issue34_8xA100-SXM4-80GB_d2d_read_ce_ASSERT_pattern_error.txt")
    assert len(run.devices) == 8
    [case] = run.testcases
    assert (case.name, case.status) == ("device_to_device_memcpy_read_ce", ERROR)
    assert case.message.startswith("Invalid value when checking the pattern at 0x70a640000000"
                                   " Current offset : 11136 ASSERT in expression h_errorFlag")
    measured = parse_tool_output("nvbandwidth", NVB_SAMPLES / (
        "nvbandwidth_v0.7_issue34_8xA100-SXM4-80GB_d2d_read_ce_ASSERT_pattern_error.txt"))
    assert values(measured) == {"gpu.nvbandwidth_failed_testcases": 1}
    [failure] = parse_failures("nvbandwidth", measured)
    assert failure.startswith("device_to_device_memcpy_read_ce: Error: Invalid value")


@needs_samples
def test_gb300_c2c_elided_output() -> None:
    run = sample("nvbandwidth_stas00_DGX-Station-GB300_c2c_h2d_d2h_bidir_elided.txt")
    assert [(c.name, c.matrix, c.total) for c in run.testcases] == [
        ("host_to_device_memcpy_ce", [[359.05]], 359.05),
        ("device_to_host_memcpy_ce", [[377.15]], 377.15),
        ("host_to_device_bidirectional_memcpy_ce", [[175.38]], 175.38),
        ("device_to_host_bidirectional_memcpy_ce", [[171.76]], None)]
    assert run.notes.count("the output was elided by whoever saved it ('...' line)") == 2


@needs_samples
def test_v0_5_json_waived_and_latency() -> None:
    run = sample("nvbandwidth_v0.5_json_1gpu_waived_dcgm_fixture.json")
    assert run.form == "json" and run.header["version"] == "v0.5"
    statuses = {c.name: c.status for c in run.testcases}
    assert len(statuses) == 32
    assert statuses["device_to_device_memcpy_read_ce"] == WAIVED
    assert list(statuses.values()).count(WAIVED) == 17
    measured = values(parse_nvbandwidth(
        (NVB_SAMPLES / "nvbandwidth_v0.5_json_1gpu_waived_dcgm_fixture.json").read_text()))
    assert measured["gpu.nvbandwidth_host_to_device_memcpy_ce"] == pytest.approx(12.3964e9)
    assert measured["gpu.nvbandwidth_host_device_latency_sm"] == pytest.approx(649.879e-9)
    assert measured["gpu.nvbandwidth_waived_testcases"] == 17
    assert measured["gpu.nvbandwidth_failed_testcases"] == 0


@needs_samples
@pytest.mark.parametrize("name", sorted(p.name for p in NVB_SAMPLES.glob("*"))
                         if NVB_SAMPLES.is_dir() else [])
def test_every_sample_reads(name: str) -> None:
    measured = parse_tool_output("nvbandwidth", NVB_SAMPLES / name)
    assert {m.check for m in measured} == {"gpu.nvbandwidth"}
    assert "gpu.nvbandwidth_failed_testcases" in values(measured)


# --- hand-made ---------------------------------------------------------------------------


def test_handmade_text_and_json() -> None:
    text = parse_output(TEXT.read_text())
    assert [(c.name, c.status) for c in text.testcases] == [
        ("host_to_device_memcpy_ce", PASSED), ("device_to_device_memcpy_read_ce", PASSED),
        ("one_to_all_write_sm", WAIVED)]
    assert text.testcases[1].matrix == [[None, 389.12], [26.35, None]]
    assert text.testcases[2].message == "hand-made: this testcase needs more GPUs"
    measured = values(parse_nvbandwidth(TEXT.read_text()))
    assert measured["gpu.nvbandwidth_host_to_device_memcpy_ce"] == 54.98e9
    doc = parse_output(JSON.read_text())
    assert [(c.name, c.status) for c in doc.testcases] == [
        ("device_to_device_memcpy_write_ce", PASSED), ("device_to_device_memcpy_read_sm", ERROR),
        ("all_to_one_read_ce", WAIVED)]
    assert doc.testcases[1].message == "hand-made: Invalid value when checking the pattern"
    measured = values(parse_nvbandwidth(JSON.read_text()))
    assert measured["gpu.nvbandwidth_device_to_device_memcpy_write_ce"] == 388.25e9
    assert measured["gpu.nvbandwidth_failed_testcases"] == 1


# --- hostile -------------------------------------------------------------------------------


def _text(old: str, new: str) -> str:
    original = TEXT.read_text()
    assert old in original
    return original.replace(old, new, 1)


@pytest.mark.parametrize(("text", "message"), [
    ("", r"no testcase in the output"),
    ("Segmentation fault\n", r"no testcase in the output \(\"not read: 'Segmentation fault'\"\)"),
    (_text("SUM device_to_device_memcpy_read_ce 415.47",
           "SUM device_to_device_memcpy_read_ce 915.47"),
     r"the SUM 915.47 does not agree with its cells, which add up to 415.47"),
    (_text(" 1    26.35       N/A", " 1    nan       N/A"), r"'nan' is not a figure"),
    (_text(" 1    26.35       N/A", " 1    -26.35       N/A"), r"'-26.35' is not a figure"),
    (_text(" 1    26.35       N/A", " 1    1e400       N/A"), r"'1e400' is not a figure"),
    (_text(" 1    26.35       N/A", " 1    " + "9" * 5000 + "       N/A"), r"is not a figure"),
    (_text(" 1    26.35       N/A", " 1    26.35"), r"does not fit its 2 columns"),
    (_text(" 1    26.35       N/A", " 7    26.35       N/A"), r"does not fit its 2 columns"),
    (_text("           0         1\n 0       N/A", "           0         3\n 0       N/A"),
     r"column header .* is not 0, 1, \.\.\."),
    (TEXT.read_text() + TEXT.read_text(), r"testcase host_to_device_memcpy_ce is reported twice"),
    (TEXT.read_text()[:TEXT.read_text().index(" 1    26.35")],
     r"the output ends inside the matrix of 'device_to_device_memcpy_read_ce' \(1 rows\)"),
    (TEXT.read_text()[:TEXT.read_text().index("26.35") + 3],
     r"a row of 'device_to_device_memcpy_read_ce' that does not fit its 2 columns: ' 1    26.'"),
    (TEXT.read_text()[:TEXT.read_text().index("memcpy CE GPU(row)")],
     r"testcase device_to_device_memcpy_read_ce started and the output ends before its result"),
    (_text("SUM host_to_device_memcpy_ce 110.19", "SUM device_to_host_memcpy_ce 110.19"),
     r"the SUM of device_to_host_memcpy_ce follows the matrix of host_to_device_memcpy_ce"),
    (_text("Driver", "Dri\x00ver"), r"a NUL character in the output"),
    ('{"nvbandwidth": {"testcases": [], "version": "v0.8", "version": "v0.9"}}',
     r"duplicate key 'version'"),
    ('{"nvbandwidth": {"testcases": []}}', r"no testcase and no error"),
    (JSON.read_text().replace('"sum"', '"sum\\u0000"'), r"a JSON key holds a control character"),
    ('{"nvbandwidth": {"testcases": [{"name": "a", "status": "Passed"}]}}',
     r"testcase a passed without a bandwidth matrix"),
    ('{"nvbandwidth": {"testcases": [{"name": "a", "status": "Done"}]}}',
     r"the status 'Done' is none of"),
    ('{"nvbandwidth": {"testcases": [{"name": "a", "status": "Waived"}, '
     '{"name": "a", "status": "Waived"}]}}', r"testcase a is reported twice"),
    (JSON.read_text().replace('"388.25"', '"Infinity"'), r"'Infinity' is not a figure"),
    (JSON.read_text().replace('"sum" : 779.75', '"sum" : null'), r"the sum 'None' is not a figure"),
    (JSON.read_text()[:400], r"broken JSON"),
])
def test_hostile_output_is_a_parse_error_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_nvbandwidth(text)


def test_json_run_error_counts_as_a_failure() -> None:
    measured = parse_nvbandwidth(json.dumps({"nvbandwidth": {
        "error": "hand-made: cuInit failed", "testcases": [], "version": "v0.8"}}))
    assert values(measured)["gpu.nvbandwidth_failed_testcases"] == 1
    assert parse_failures("nvbandwidth", measured) == ["the run: hand-made: cuInit failed"]


def test_bench_agent_parse_nvbandwidth_exit_codes(tmp_path: Path) -> None:
    from tests.test_hostile_corpus import run_cli

    failed = run_cli("parse", "nvbandwidth", str(JSON))
    assert failed.returncode == 1
    assert failed.stderr == ("bench-agent: nvbandwidth: device_to_device_memcpy_read_sm: Error:"
                             " hand-made: Invalid value when checking the pattern\n")
    ok = run_cli("parse", "nvbandwidth", str(TEXT))
    assert (ok.returncode, ok.stderr) == (0, "")
    assert {m["metric"] for m in json.loads(ok.stdout)} >= {
        "gpu.nvbandwidth_host_to_device_memcpy_ce"}
    cut = tmp_path / "cut.txt"
    cut.write_text(TEXT.read_text()[:300])
    bad = run_cli("parse", "nvbandwidth", str(cut))
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("bench-agent: cannot read nvbandwidth output: ")
