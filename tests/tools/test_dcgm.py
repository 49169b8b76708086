"""tools/dcgm.py and tools/dcgm_table.py on captured `dcgmi diag` outputs of several DCGM
versions (../shared/samples/dcgm, see its PROVENANCE.txt), on hand-made inputs
(tests/data/dcgm) and on hostile ones."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bench_agent.core.errors import ParseError, ToolFailed
from bench_agent.core.model import Measurement
from bench_agent.tools import parse_failures, parse_tool_output
from bench_agent.tools.dcgm import (
    FAIL,
    PASS,
    SKIP,
    WHOLE_NODE,
    Diag,
    DiagWarning,
    diag_from_document,
    diag_measurements,
    parse_dcgm,
    parse_diag,
)
from tests.paths import DATA, SAMPLES

DCGM_SAMPLES = SAMPLES / "dcgm"
needs_samples = pytest.mark.skipif(not DCGM_SAMPLES.is_dir(),
                                   reason="../shared/samples is absent")
HANDMADE = DATA / "dcgm" / "dcgmi_diag_r3_4x_2gpu_fail_warn_handmade.json"


def sample(name: str) -> str:
    return (DCGM_SAMPLES / name).read_text(encoding="utf-8")


def by(diag: Diag) -> dict[tuple[str, str], str]:
    return {(r.test, r.entity): r.status for r in diag.results}


def metric(measurements: list[Measurement], name: str, device: str = "") -> Measurement:
    return next(m for m in measurements if m.metric == name and m.device == device)


# --- the public samples -------------------------------------------------------------


@needs_samples
def test_nvvs_1_7_fixture_failures_skips_and_error_codes() -> None:
    diag = parse_diag(sample("dcgm_nvvs1.7_json_4gpu_skip_warnings_error_ids_dcgm_fixture.json"))
    assert (diag.form, diag.version) == ("json", "1.7")
    assert len(diag.results) == 4 * 10 + 4 * 7  # 10 deployment tests x 4 GPUs, 7 per-GPU tests
    status = by(diag)
    assert status[("Denylist", "gpu3")] == PASS
    assert status[("memory", "gpu0")] == SKIP and status[("memory", "gpu1")] == PASS
    assert [(r.test, r.entity) for r in diag.failures] == [
        ("sm_stress", "gpu0"), ("sm_stress", "gpu2"), ("sm_stress", "gpu3")]
    failure = diag.failures[1]
    assert [(w.error_id, w.category, w.severity) for w in failure.warnings] == [(50, 9, 1)]
    assert failure.info == ("GPU 2 temperature average:\t30 C",)
    measurements = diag_measurements(diag, 3)
    fail = metric(measurements, "gpu.dcgm_diag_fail", "gpu2/sm_stress")
    assert fail.value == 1
    assert fail.params["error_ids"] == [50]
    assert fail.params["note"] == (
        "DCGM diag test 'sm_stress' on GPU2: Fail; DCGM error 50 DCGM_FR_STRESS_LEVEL "
        "(severity 1 monitor, category 9): Max stress level of 1096.5 did not exceed desired "
        "stress level of 3000.0 for GPU 2")
    assert metric(measurements, "gpu.dcgm_diag_fail", "gpu1/sm_stress").value == 0
    # A Skip with DCGM's reason is no warning of the GPU: it is counted as skipped.
    assert metric(measurements, "gpu.dcgm_diag_warn", "gpu0/memory").value == 0
    assert metric(measurements, "gpu.dcgm_diag_skipped").value == 1 + 4 + 4 + 4 + 4
    assert metric(measurements, "gpu.dcgm_diag_results").params["level"] == 3


@needs_samples
def test_dcgm_3_1_real_output_with_nulls_and_a_line_before_the_json() -> None:
    diag = parse_diag(sample("dcgm_3.1.0_nvvs_json_8gpu_nulls_warning_prefix.json"))
    assert diag.version == "3.1.0"
    assert len(diag.results) == 9 * 8 + 8  # "0,1,...,7" for each Deployment test, then software
    assert {r.status for r in diag.results} == {PASS}
    assert diag.notes == ["8 null entries between the Deployment tests (DCGM 3.1 prints them),"
                          " skipped", "text before the JSON: 'WARNING: THIS SHOULD NOT HAPPEN'"]
    assert parse_failures("dcgm", parse_dcgm(sample(
        "dcgm_3.1.0_nvvs_json_8gpu_nulls_warning_prefix.json"))) == []


@needs_samples
def test_dcgm_3x_results_without_gpu_ids_are_the_nodes_and_info_is_one_string() -> None:
    diag = parse_diag(sample("dcgmi_diag_r2_json_dcgm3x_1gpu_pass_virtualclient.json"))
    assert diag.version is None
    status = by(diag)
    assert status[("Denylist", WHOLE_NODE)] == PASS
    assert status[("PCIe", "gpu0")] == PASS
    memory = next(r for r in diag.results if r.test == "GPU Memory")
    assert memory.info == ("GPU 0 Allocated 15206918958 bytes (97.3%)",)
    level3 = parse_diag(sample("dcgmi_diag_r3_json_dcgm3x_1gpu_eud_skip_virtualclient.json"))
    assert by(level3)[("EUD Test", "gpu0")] == SKIP
    assert not level3.failures
    skipped = metric(diag_measurements(level3), "gpu.dcgm_diag_skipped")
    assert (skipped.value, skipped.params["skipped"]) == (1, ["gpu0/EUD Test"])


@needs_samples
def test_dcgm_4x_fragment_is_a_clear_error_and_its_test_object_reads() -> None:
    text = sample("dcgmi_diag_json_dcgm4_diagnostic_test_fragment_8gpu_info_cap_issue215.json")
    with pytest.raises(ParseError, match=r"text after the JSON document: ',\\n'"):
        parse_diag(text)
    test = json.loads(text.strip().removesuffix(","))
    diag = diag_from_document({"DCGM Diagnostic": {"test_categories": [
        {"category": "Hardware", "tests": [test]}]}})
    assert [r.entity for r in diag.results] == [f"gpu{i}" for i in range(8)]
    assert {r.status for r in diag.results} == {PASS}
    info = {r.entity: r.info for r in diag.results}
    assert info["gpu2"] == ("Allocated space for 138 output matricies from 76077622886 bytes "
                            "available.", "Running with precisions: FP64 1, FP32 1, FP16 1")
    assert info["gpu3"] == ()


@needs_samples
def test_table_3_3_all_pass() -> None:
    diag = parse_diag(sample("dcgmi_diag_r2_table_3.3.3_8xA100-80GB_p4de_pass_awsome.txt"))
    assert (diag.form, diag.version, diag.driver) == ("table", "3.3.3", "535.104.12")
    assert len(diag.results) == 11
    assert by(diag)[("PCIe", WHOLE_NODE)] == PASS
    assert not diag.failures and not diag.notes


@needs_samples
def test_table_4_4_pcie_fails_as_a_whole_while_every_gpu_passes() -> None:
    diag = parse_diag(sample("dcgmi_diag_r2_table_4.4.1_8xB200_pcie_fail_warning_issue253.txt"))
    assert (diag.version, diag.driver) == ("4.4.1", "570.172.08")
    status = by(diag)
    assert all(status[("pcie", f"gpu{i}")] == PASS for i in range(8))
    [failure] = diag.failures
    assert (failure.test, failure.entity, failure.category) == ("pcie", WHOLE_NODE, "Integration")
    # The 45-column pieces are joined back into DCGM's words (blanks at a cut kept).
    assert [w.message for w in failure.warnings] == [
        "There was an internal error during the test: 'Output of child process (11167) "
        "couldn't be parsed: '* Line 1, Column 1   Syntax error: value, object or array "
        "expected. '' Check DCGM and system logs for errors. Reset GPU. Restart DCGM. "
        "Rerun diagnostics."]
    fail = metric(diag_measurements(diag), "gpu.dcgm_diag_fail", "all/pcie")
    assert fail.value == 1 and fail.params["note"].startswith(
        "DCGM diag test 'pcie' on the node: Fail; DCGM warning: There was an internal error")


@needs_samples
def test_table_4_2_cut_short_is_read_with_a_note() -> None:
    diag = parse_diag(sample(
        "dcgmi_diag_table_4.2.3_4xL40S_pcie_fail_internal_error_warnings_issue253.txt"))
    [failure] = diag.failures
    assert len(failure.warnings) == 4
    assert failure.warnings[0].message == (
        "There was an internal error during the test: 'A child process (152) exited with "
        "non-zero status 1' Check DCGM and system logs for errors. Reset GPU. Restart DCGM. "
        "Rerun diagnostics.")
    assert diag.notes == ["the table has no closing border: the output may be cut short, "
                          "later tests may be missing"]


@needs_samples
@pytest.mark.parametrize("name", sorted(p.name for p in DCGM_SAMPLES.glob("*"))
                         if DCGM_SAMPLES.is_dir() else [])
def test_every_sample_reads_or_gives_a_clear_error(name: str) -> None:
    try:
        measurements = parse_tool_output("dcgm", DCGM_SAMPLES / name)
    except ParseError as exc:
        assert "fragment" in name, exc  # only the pasted fragment is no document
        return
    assert measurements
    assert {m.check for m in measurements} == {"gpu.dcgm_diag"}


# --- hand-made 4.x document -----------------------------------------------------------


def test_handmade_4x_failures_warnings_node_results_and_not_run() -> None:
    diag = parse_diag(HANDMADE.read_text(encoding="utf-8"))
    assert (diag.version, diag.driver) == ("4.4.1", "570.172.08")
    status = by(diag)
    assert status[("memory", "gpu1")] == FAIL
    assert ("memory", WHOLE_NODE) not in status  # its summary adds nothing to GPU 1's Fail
    assert status[("pcie", WHOLE_NODE)] == FAIL  # the summary failed while both GPUs passed
    assert status[("targeted_power", "gpu1")] == SKIP
    assert status[("pulse_test", WHOLE_NODE)] == "Not Run"
    measurements = parse_dcgm(HANDMADE.read_text(encoding="utf-8"))
    warn = metric(measurements, "gpu.dcgm_diag_warn", "gpu0/targeted_power")
    assert warn.value == 1 and warn.params["error_ids"] == [63]
    assert metric(measurements, "gpu.dcgm_diag_fail", "gpu0/memory").value == 0
    assert parse_failures("dcgm", measurements) == [
        "DCGM diag test 'memory' on GPU1: Fail; DCGM error 52 DCGM_FR_FAULTY_MEMORY "
        "(severity 2 isolate, category 10): hand-made: memory test found 3 bad cells on GPU 1",
        "DCGM diag test 'pcie' on the node: Fail; DCGM error 44 DCGM_FR_INTERNAL "
        "(severity 1 monitor, category 16): hand-made: a child process of the plugin exited "
        "with status 1"]


def test_runtime_error_is_the_tools_failure_in_its_words() -> None:
    with pytest.raises(ToolFailed, match=r"the diagnostic did not run: Error: Unable to complete"
                                         r" diagnostic\. Return: \(-37\)"):
        parse_tool_output("dcgm", DATA / "dcgm" / "dcgmi_diag_runtime_error_handmade.json")


# --- hostile ------------------------------------------------------------------------------


def _doc(result: str, name: str = "memory") -> str:
    return ('{"DCGM Diagnostic": {"test_categories": [{"category": "Hardware", "tests": '
            f'[{{"name": "{name}", "results": [{result}]}}]}}]}}}}')


@pytest.mark.parametrize(("text", "message"), [
    ("", r"no JSON object in the output \('empty output'\)"),
    ("Error: unable to establish a connection to the specified host: localhost",
     r"no JSON object in the output \('Error: unable to establish"),
    (HANDMADE.read_text()[:900], r"broken JSON at line"),
    (HANDMADE.read_text() + "\n{}", r"text after the JSON document"),
    ('{"DCGM Diagnostic": {"test_categories": []}, "DCGM Diagnostic": {}}',
     r"duplicate key 'DCGM Diagnostic'"),
    (_doc('{"entity_id": 0, "status": "Pass", "status": "Fail"}'),
     r"duplicate key 'status'"),
    ('{"tests": []}', r"not a dcgmi diag document: it has no root key"),
    (HANDMADE.read_text().replace('"error_id"', '"error_id\\u0000"', 1),
     r"a JSON key holds a control character: 'error_id\\x00'"),
    ('{"DCGM Diagnostic": {"test_categories": []}, "DCGM GPU Diagnostic": {}}',
     r"both root keys"),
    ('{"DCGM Diagnostic": {"version": "4.4.1"}}', r"has no test_categories"),
    (_doc('{"entity_id": 0, "status": "Passed OK"}'),
     r"the status 'Passed OK' is none of Pass, Fail, Warn, Skip, Not Run"),
    (_doc('{"entity_id": 0, "status": "Pass"}, {"entity_id": 0, "status": "Fail"}'),
     r"test 'memory' reports gpu0 twice"),
    (_doc('{"gpu_ids": "0,x", "status": "Pass"}'), r"gpu_ids is not a list of GPU ids"),
    (_doc('{"entity_id": -1, "status": "Pass"}'), r"entity_id is not a code"),
    (_doc('{"entity_id": 0, "status": "Fail", "warnings": [{"warning": "w", "error_id": null}]}'),
     r"error_id is null"),
    (_doc('{"entity_id": 0, "status": "Fail", "warnings": [{"warning": "w", "error_id": -4}]}'),
     r"error_id is not a code"),
    (_doc('{"entity_id": 0, "status": "Fail", "warnings": [{"error_id": 4}]}'),
     r"is no warning"),
    (_doc('{"entity_id": 0, "status": NaN}'), r"NaN is not a JSON number"),
    (_doc('{"entity_id": 0, "status": "Pass"}', name="gpu0\\u001b[2J"),
     r"device name .* contains U\+001B"),
])
def test_hostile_json_is_a_parse_error_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_dcgm(text)


TABLE = """+---------------------------+------------------------------------------------+
| Diagnostic                | Result                                         |
+===========================+================================================+
|-----  Deployment  --------+------------------------------------------------|
| software                  | Pass                                           |
|                           | GPU0: Pass                                     |
+-----  Hardware  ----------+------------------------------------------------+
| memory                    | {status}                                       |
|                           | GPU0: {gpu0}                                   |
+---------------------------+------------------------------------------------+
"""


def table(status: str = "Pass", gpu0: str = "Pass") -> str:
    # The stencil pads to the column; a longer word widens the row, as dcgmi's does.
    text = TABLE.replace("{status}" + " " * 8, status.ljust(16)[:max(16, len(status))])
    return text.replace("{gpu0}" + " " * 6, gpu0.ljust(12))


def test_small_table_reads_and_a_warn_is_a_warning() -> None:
    diag = parse_diag(table("Warn", "Warn"))
    assert by(diag) == {("software", "gpu0"): PASS, ("memory", "gpu0"): "Warn"}
    assert metric(diag_measurements(diag), "gpu.dcgm_diag_warn", "gpu0/memory").value == 1


@pytest.mark.parametrize(("text", "message"), [
    (table("Maybe"), r"test 'memory': the result 'Maybe' is none of"),
    (table(gpu0="Pass") + "| stray                     | Pass                        |\n",
     r"text after the table's closing border"),
    (table().replace("|                           | GPU0: Pass    ",
                     "|                           | GPU7 Passed   ", 1),
     r"a row of test 'software' that is neither a result nor part of a warning"),
    (table().replace("| software ", "garbage    ", 1), r"a line that is no table row"),
    (table().replace("| memory      ", "| software    ", 1), r"test 'software' is reported twice"),
])
def test_hostile_table_is_a_parse_error(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_diag(text)


OLD_TABLE = """Successfully ran diagnostic for group.
+---------------------------+------------------------------------------------+
| Diagnostic                | Result                                         |
+===========================+================================================+
|-----  Deployment  --------+------------------------------------------------|
| Denylist                  | Pass                                           |
+-----  Stress  ------------+------------------------------------------------+
| Targeted Stress           | Fail - GPU: 0, 2                               |
| Warning                   | GPU 0 hand-made: max stress level 1096.5 did n |
|                           | ot reach 3000.0                                |
| Memory Bandwidth          | Skip - All                                     |
+---------------------------+------------------------------------------------+
"""


def test_old_table_lists_failed_gpus_and_their_warnings() -> None:
    diag = parse_diag(OLD_TABLE)
    assert by(diag) == {("Denylist", WHOLE_NODE): PASS, ("Targeted Stress", "gpu0"): FAIL,
                        ("Targeted Stress", "gpu2"): FAIL, ("Memory Bandwidth", WHOLE_NODE): SKIP}
    assert [w.message for w in diag.failures[0].warnings] == [
        "GPU 0 hand-made: max stress level 1096.5 did not reach 3000.0"]


def test_error_codes_are_named_from_dcgm_errors_h() -> None:
    from bench_agent.tools.dcgm_codes import NAMES, error_name, severity_name

    assert len(NAMES) == 112  # DCGM_FR_OK = 0 ... DCGM_FR_NAN_VALUE = 111
    assert (error_name(50), error_name(55), error_name(111)) == (
        "DCGM_FR_STRESS_LEVEL", "DCGM_FR_ECC_DISABLED", "DCGM_FR_NAN_VALUE")
    assert error_name(112) is None and severity_name(9) is None
    assert severity_name(2) == "isolate"
    warning = DiagWarning("w", error_id=4000, severity=2)
    assert warning.describe() == "DCGM error 4000 (severity 2 isolate): w"


def test_a_table_with_no_test_is_an_error() -> None:
    header = "\n".join(TABLE.splitlines()[:3]) + "\n"
    with pytest.raises(ParseError, match="a diag table with no test in it"):
        parse_diag(header)
    assert re.search(r"\| Diagnostic", header)


def test_bench_agent_parse_dcgm_exit_codes(tmp_path: Path) -> None:
    from tests.test_hostile_corpus import run_cli

    failed = run_cli("parse", "dcgm", str(HANDMADE))
    assert failed.returncode == 1
    assert json.loads(failed.stdout)[0]["check"] == "gpu.dcgm_diag"
    assert failed.stderr.splitlines() == [
        "bench-agent: dcgm: DCGM diag test 'memory' on GPU1: Fail; DCGM error 52 "
        "DCGM_FR_FAULTY_MEMORY (severity 2 isolate, category 10): hand-made: memory test "
        "found 3 bad cells on GPU 1",
        "bench-agent: dcgm: DCGM diag test 'pcie' on the node: Fail; DCGM error 44 "
        "DCGM_FR_INTERNAL (severity 1 monitor, category 16): hand-made: a child process of "
        "the plugin exited with status 1"]
    passing = tmp_path / "pass.json"
    passing.write_text(_doc('{"entity_id": 0, "status": "Pass"}'))
    ok = run_cli("parse", "dcgm", str(passing))
    assert (ok.returncode, ok.stderr) == (0, "")
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("Segmentation fault\n")
    bad = run_cli("parse", "dcgm", str(garbage))
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr == ("bench-agent: cannot read dcgmi output: no JSON object in the output "
                          "('Segmentation fault'); output began: 'Segmentation fault'\n")
