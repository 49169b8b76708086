"""gpu.dcgm_diag and gpu.nvbandwidth end to end: the runner's real worker child runs the
check, which runs a fake ``dcgmi`` / ``nvbandwidth`` found on PATH.

The fakes stand in for tools that need NVIDIA GPUs and the DCGM host engine, which
cannot exist here. Each is a script that prints a document from tests/data or the
samples and exits as the real tool does: dcgmi exits non-zero when a test fails
(NVIDIA/DCGM dcgmi/Diag.cpp GetFailureResult returns DCGM_ST_NVVS_ERROR), and
prints "Error: ..." without JSON when it cannot reach the host engine; nvbandwidth
exits non-zero after an ASSERT (NVIDIA/nvbandwidth error_handling.h). A hanging
fake records its pid, so the test sees that the deadline stopped it.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from bench_agent.checks import metric_catalog
from bench_agent.checks.base import CheckContext
from bench_agent.checks.gpu.dcgm import DcgmDiagCheck, NvbandwidthCheck
from bench_agent.config.loader import CheckPlan, Profile, Suite
from bench_agent.core.model import Report, Status, Verdict
from bench_agent.core.thresholds import Comparator, Severity, Threshold
from bench_agent.core.units import Unit
from bench_agent.run.runner import Runner
from tests.paths import DATA, SAMPLES
from tests.process_support import alive, pids_in, wait_until

FAKE = """#!{python}
import json, os, sys, time
with open(os.environ["FAKE_ARGS"], "a") as out:
    out.write(json.dumps(sys.argv[1:]) + "\\n")
with open(os.environ["FAKE_PIDS"], "a") as out:
    out.write(f"{{os.getpid()}}\\n")
if os.environ.get("FAKE_HANG"):
    time.sleep(600)
with open(os.environ["FAKE_OUTPUT"]) as document:
    sys.stdout.write(document.read())
sys.stderr.write(os.environ.get("FAKE_STDERR", ""))
sys.exit(int(os.environ.get("FAKE_RC", "0")))
"""


@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder first on PATH with fake dcgmi and nvbandwidth; PATH holds nothing else
    of theirs (the real tools, if installed, are hidden)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in ("dcgmi", "nvbandwidth"):
        script = folder / tool
        script.write_text(FAKE.format(python=sys.executable))
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_ARGS", str(tmp_path / "args"))
    monkeypatch.setenv("FAKE_PIDS", str(tmp_path / "pids"))
    return folder


def profile() -> Profile:
    catalog = metric_catalog()
    rules = [Threshold("dcgm-fail", "gpu.dcgm_diag_fail", Comparator.LE, 0, Unit.COUNT, "src"),
             Threshold("dcgm-warn", "gpu.dcgm_diag_warn", Comparator.LE, 0, Unit.COUNT, "src",
                       severity=Severity.WARN),
             Threshold("nvb-failed", "gpu.nvbandwidth_failed_testcases", Comparator.LE, 0,
                       Unit.COUNT, "src")]
    return Profile("test", "", [replace(t, checks=catalog[t.metric].checks,
                                        meaning=catalog[t.metric].meaning) for t in rules],
                   "", "1" * 64)


def run(tmp_path: Path, check: str, params: dict[str, object], timeout: float = 60) -> Report:
    suite = Suite("test", "", [CheckPlan(check, params, timeout, False)], "", "0" * 64)
    return Runner(suite, profile(), output_dir=tmp_path / "out", host="n1").run()


def verdicts(report: Report, check: str) -> list[Verdict]:
    return [v for v in report.verdicts if v.check == check]


def test_missing_dcgmi_and_nvbandwidth_skip_with_the_reason(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing there
    assert DcgmDiagCheck().available(CheckContext()) == (
        "dcgmi is not installed (install DCGM: the datacenter-gpu-manager-4-core package "
        "from NVIDIA's CUDA repository, https://docs.nvidia.com/datacenter/dcgm/latest/"
        "user-guide/getting-started.html)")
    report = run(tmp_path, "gpu.dcgm_diag", {"level": 1})
    check_level = next(v for v in report.verdicts if v.check == "gpu.dcgm_diag" and not v.metric)
    assert check_level.status is Status.SKIP
    assert check_level.message.startswith("dcgmi is not installed")
    judged = {v.threshold_id: v for v in verdicts(report, "gpu.dcgm_diag") if v.metric}
    assert judged["dcgm-fail"].status is Status.SKIP
    assert NvbandwidthCheck().available(CheckContext()).startswith("nvbandwidth is not installed")


def test_failing_diag_fails_naming_test_gpu_and_dcgm_error_code(
        tmp_path: Path, fake_bin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_OUTPUT", str(DATA / "dcgm" /
                                          "dcgmi_diag_r3_4x_2gpu_fail_warn_handmade.json"))
    monkeypatch.setenv("FAKE_RC", "226")  # DCGM_ST_NVVS_ERROR (-30) as an exit status
    report = run(tmp_path, "gpu.dcgm_diag", {"level": 3})
    assert json.loads((tmp_path / "args").read_text()) == ["diag", "-r", "3", "-j"]
    failed = [v for v in verdicts(report, "gpu.dcgm_diag") if v.status is Status.FAIL]
    assert [(v.device, v.threshold_id) for v in failed] == [("gpu1/memory", "dcgm-fail"),
                                                           ("all/pcie", "dcgm-fail")]
    assert failed[0].message == (
        "1 does not meet <= 0; DCGM diag test 'memory' on GPU1: Fail; DCGM error 52 "
        "DCGM_FR_FAULTY_MEMORY (severity 2 isolate, category 10): hand-made: memory test "
        "found 3 bad cells on GPU 1")
    warned = [v for v in verdicts(report, "gpu.dcgm_diag") if v.status is Status.WARN]
    assert [v.device for v in warned] == ["gpu0/targeted_power"]
    assert "DCGM error 63 DCGM_FR_TARGET_POWER" in warned[0].message
    passed = {v.device for v in verdicts(report, "gpu.dcgm_diag") if v.status is Status.PASS}
    assert {"gpu0/memory", "gpu0/software", "gpu1/software"} <= passed
    assert report.status is Status.FAIL


@pytest.mark.slow
def test_hung_dcgmi_is_an_error_within_the_deadline_and_is_stopped(
        tmp_path: Path, fake_bin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_HANG", "1")
    monkeypatch.setenv("FAKE_OUTPUT", "/nonexistent")
    started = time.monotonic()
    report = run(tmp_path, "gpu.dcgm_diag", {"level": 1}, timeout=8)
    elapsed = time.monotonic() - started
    assert elapsed < 8, elapsed  # the tool's budget (8 x 0.9 - 4 s) ends well before
    [check_level] = [v for v in verdicts(report, "gpu.dcgm_diag") if not v.metric]
    assert check_level.status is Status.ERROR
    assert check_level.message.startswith("dcgmi ran past 3.2 s (dcgmi diag -r 1 -j) and "
                                          "was stopped with its children")
    pids = pids_in(tmp_path / "pids")
    assert pids and wait_until(lambda: not any(alive(p) for p in pids), 10)


def test_dcgmi_without_json_is_an_error_with_its_words(
        tmp_path: Path, fake_bin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    words = tmp_path / "words.txt"
    words.write_text("Error: unable to establish a connection to the specified host: "
                     "localhost\nError: Unable to connect to host engine. Host engine "
                     "connection invalid/disconnected.\n")
    monkeypatch.setenv("FAKE_OUTPUT", str(words))
    monkeypatch.setenv("FAKE_RC", "255")
    report = run(tmp_path, "gpu.dcgm_diag", {"level": 2})
    [check_level] = [v for v in verdicts(report, "gpu.dcgm_diag") if not v.metric]
    assert check_level.status is Status.ERROR
    assert "dcgmi failed (exit code 255): dcgmi diag -r 2 -j printed no JSON: Error: unable " \
        "to establish a connection" in check_level.message


def test_dcgm_level_outside_1_to_4_is_refused(tmp_path: Path, fake_bin: Path) -> None:
    report = run(tmp_path, "gpu.dcgm_diag", {"level": 5})
    [check_level] = [v for v in verdicts(report, "gpu.dcgm_diag") if not v.metric]
    assert check_level.status is Status.ERROR
    assert "level" in check_level.message


@pytest.mark.skipif(not (SAMPLES / "nvbandwidth").is_dir(), reason="../shared/samples absent")
def test_nvbandwidth_assert_fails_the_run(tmp_path: Path, fake_bin: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_OUTPUT", str(
        SAMPLES / "nvbandwidth" /
        "nvbandwidth_v0.7_issue34_8xA100-SXM4-80GB_d2d_read_ce_ASSERT_pattern_error.txt"))
    monkeypatch.setenv("FAKE_RC", "1")
    # v0.7 knows -j, yet the sample is its text: the fake prints it whatever it is asked.
    report = run(tmp_path, "gpu.nvbandwidth", {"testcases": ["device_to_device_memcpy_read_ce"]})
    assert json.loads((tmp_path / "args").read_text().splitlines()[0]) == [
        "-j", "-t", "device_to_device_memcpy_read_ce"]
    [failed] = [v for v in verdicts(report, "gpu.nvbandwidth") if v.status is Status.FAIL]
    assert failed.threshold_id == "nvb-failed"
    assert "device_to_device_memcpy_read_ce: Error: Invalid value when checking the pattern" \
        in failed.message


def test_nvbandwidth_json_run_measures_the_weakest_pair(
        tmp_path: Path, fake_bin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_OUTPUT", str(DATA / "nvbandwidth" /
                                          "nvbandwidth_v0.8_text_2gpu_handmade.txt"))
    report = run(tmp_path, "gpu.nvbandwidth", {})
    by_metric = {m.metric: m for m in report.measurements}
    read = by_metric["gpu.nvbandwidth_device_to_device_memcpy_read_ce"]
    assert (read.value, read.unit) == (26.35e9, Unit.BYTES_PER_SECOND)
    assert read.params["weakest"] == "GPU1 -> GPU0"
    assert by_metric["gpu.nvbandwidth_waived_testcases"].value == 1
    [judged] = [v for v in verdicts(report, "gpu.nvbandwidth") if v.metric]
    assert (judged.status, judged.value) == (Status.PASS, 0.0)


def test_nvbandwidth_that_crashes_without_output_is_an_error(
        tmp_path: Path, fake_bin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("nvbandwidth Version: v0.8\n\nRunning host_to_device_memcpy_ce.\n")
    monkeypatch.setenv("FAKE_OUTPUT", str(empty))
    monkeypatch.setenv("FAKE_RC", "139")
    monkeypatch.setenv("FAKE_STDERR", "Segmentation fault\n")
    report = run(tmp_path, "gpu.nvbandwidth", {})
    [check_level] = [v for v in verdicts(report, "gpu.nvbandwidth") if not v.metric]
    assert check_level.status is Status.ERROR
    assert check_level.message == "nvbandwidth failed (exit code 139): Segmentation fault"
