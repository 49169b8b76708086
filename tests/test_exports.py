"""JUnit XML, the Prometheus textfile and CSV, read back by the tools that consume them."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest
from junitparser import Error, Failure, JUnitXml, Skipped
from prometheus_client.parser import text_string_to_metric_families

from bench_agent.exports import (
    prom_name,
    to_csv,
    to_junit,
    to_prometheus,
    write_prometheus,
)
from bench_agent.model import Measurement, NamedDigest, Report, Status, Verdict
from bench_agent.units import Unit

REPO = Path(__file__).resolve().parent.parent


def make_report(fail: bool = True) -> Report:
    measurements = [
        Measurement("inventory", "inventory.logical_cpus", 2, Unit.COUNT),
        Measurement("memory.stream", "memory.stream_triad", 3.2e10, Unit.BYTES_PER_SECOND),
        Measurement("network.tcp_bandwidth", "network.tcp_bandwidth", 2.5e10,
                    Unit.BITS_PER_SECOND, device="eth0"),
        Measurement("network.tcp_latency", "network.tcp_latency", 1.1e-5, Unit.SECONDS),
    ]
    verdicts = [
        Verdict("inventory", Status.FAIL if fail else Status.PASS, "inventory.logical_cpus", 2,
                Unit.COUNT, ">= 32", "guide, CPU-Based Computing",
                "2 does not meet >= 32" if fail else ""),
        Verdict("network.tcp_bandwidth", Status.WARN, "network.tcp_bandwidth", 2.5e10,
                Unit.BITS_PER_SECOND, ">= 25 Gbit/s", "guide", "within 10% of the limit",
                device="eth0"),
        Verdict("storage.randread", Status.SKIP, message="fio is not installed"),
    ]
    if fail:
        verdicts.append(Verdict("cpu.gemm", Status.ERROR, message="timed out after 60 s"))
    return Report(
        report_id="6f1c2b8e-6a51-4a51-9d2e-1c5d3f7a9b10", agent_version="0.1.0", host="node-1",
        inventory={}, suite=NamedDigest("quick", "a" * 64), profile=NamedDigest("p", "b" * 64),
        started_at="2026-11-27T10:00:00Z", finished_at="2026-11-27T10:01:30Z",
        measurements=measurements, verdicts=verdicts,
    )


def test_junit_has_one_testcase_per_verdict_with_the_right_outcome(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    path.write_text(to_junit(make_report()))
    xml = JUnitXml.fromfile(str(path))
    suites = list(xml)
    assert len(suites) == 1
    suite = suites[0]
    assert (suite.name, suite.tests, suite.failures, suite.errors, suite.skipped) == (
        "bench-agent.quick", 4, 1, 1, 1)
    assert suite.time == 90.0
    outcomes = {case.name: case.result for case in suite}
    failure = outcomes["inventory.logical_cpus"][0]
    assert isinstance(failure, Failure) and failure.message == "2 does not meet >= 32"
    assert "threshold: >= 32" in (failure.text or "")
    error = outcomes["cpu.gemm"][0]
    assert isinstance(error, Error) and error.message == "timed out after 60 s"
    skipped = outcomes["storage.randread"][0]
    assert isinstance(skipped, Skipped) and skipped.message == "fio is not installed"
    assert outcomes["network.tcp_bandwidth [eth0]"] == []  # WARN passes, with a note


def test_junit_shape_is_what_ci_reporters_read() -> None:
    """testsuites > testsuite[name tests failures errors skipped time] > testcase."""
    root = ET.fromstring(to_junit(make_report()))
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    assert suite is not None
    for attribute in ("name", "tests", "failures", "errors", "skipped", "time", "timestamp"):
        assert attribute in suite.attrib
    cases = suite.findall("testcase")
    assert len(cases) == int(suite.attrib["tests"])
    assert all({"classname", "name", "time"} <= set(c.attrib) for c in cases)
    assert sum(1 for c in cases if c.find("failure") is not None) == int(suite.attrib["failures"])
    assert sum(1 for c in cases if c.find("error") is not None) == int(suite.attrib["errors"])
    warn = next(c for c in cases if c.attrib["name"] == "network.tcp_bandwidth [eth0]")
    system_out = warn.find("system-out")
    assert system_out is not None and (system_out.text or "").startswith("WARN:")


def test_prometheus_textfile_parses_and_follows_the_naming_rules() -> None:
    families = {f.name: f for f in text_string_to_metric_families(to_prometheus(make_report()))}
    assert set(families) >= {
        "bench_agent_inventory_logical_cpus",
        "bench_agent_memory_stream_triad_bytes_per_second",
        "bench_agent_network_tcp_bandwidth_bytes_per_second",
        "bench_agent_network_tcp_latency_seconds",
        "bench_agent_verdict",
        "bench_agent_run_status",
        "bench_agent_last_run_timestamp_seconds",
        "bench_agent_last_run_duration_seconds",
    }
    # bits are not a base unit: 25 Gbit/s is exported as 3.125e9 bytes/s
    bandwidth = families["bench_agent_network_tcp_bandwidth_bytes_per_second"].samples[0]
    assert bandwidth.value == pytest.approx(3.125e9)
    assert bandwidth.labels == {"device": "eth0"}
    assert families["bench_agent_network_tcp_latency_seconds"].samples[0].value == 1.1e-5
    status = {s.labels["status"]: s.value for s in families["bench_agent_run_status"].samples}
    assert status == {"PASS": 0, "WARN": 0, "SKIP": 0, "FAIL": 0, "ERROR": 1}
    # A failed run has no last-success time of its own.
    assert "bench_agent_last_success_timestamp_seconds" not in families
    for family in families.values():
        assert family.type == "gauge"
        assert family.name.startswith("bench_agent_")
        for sample in family.samples:
            assert set(sample.labels) <= {"device", "check", "metric", "status"}


def test_prometheus_keeps_the_last_success_across_a_failed_run(tmp_path: Path) -> None:
    path = tmp_path / "bench_agent.prom"
    write_prometheus(make_report(fail=False), path)
    first = {f.name: f for f in text_string_to_metric_families(path.read_text())}
    success = first["bench_agent_last_success_timestamp_seconds"].samples[0].value
    assert success == datetime(2026, 11, 27, 10, 1, 30, tzinfo=UTC).timestamp()
    write_prometheus(make_report(fail=True), path)
    second = {f.name: f for f in text_string_to_metric_families(path.read_text())}
    assert second["bench_agent_last_success_timestamp_seconds"].samples[0].value == success
    assert [p.name for p in tmp_path.iterdir()] == ["bench_agent.prom"]  # no temp files left


def test_prom_names_use_base_units() -> None:
    assert prom_name("storage.randread_4k_latency_p99", Unit.SECONDS) == (
        "bench_agent_storage_randread_4k_latency_p99_seconds")
    assert prom_name("inventory.memory_total", Unit.BYTES) == (
        "bench_agent_inventory_memory_total_bytes")
    assert prom_name("gpu.temp", Unit.CELSIUS) == "bench_agent_gpu_temp_celsius"


def test_csv_has_verdicts_and_unjudged_measurements() -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(make_report()))))
    by_metric = {(r["check"], r["metric"]): r for r in rows}
    cpus = by_metric[("inventory", "inventory.logical_cpus")]
    assert (cpus["status"], cpus["value"], cpus["unit"], cpus["threshold"]) == (
        "FAIL", "2.0", "count", ">= 32")
    triad = by_metric[("memory.stream", "memory.stream_triad")]
    assert triad["status"] == "" and float(triad["value"]) == 3.2e10
    assert by_metric[("cpu.gemm", "")]["status"] == "ERROR"


def test_cli_writes_junit_and_prom_and_shows_csv(tmp_path: Path) -> None:
    env = {**os.environ, "BENCH_AGENT_KEY": str(tmp_path / "node.key")}
    run = subprocess.run(
        [sys.executable, "-m", "bench_agent.cli", "run", "inventory", "--output",
         str(tmp_path / "out"), "--junit", str(tmp_path / "j.xml"), "--prom",
         str(tmp_path / "m.prom")],
        capture_output=True, text=True, timeout=120, cwd=REPO, env=env,
    )
    assert run.returncode in (0, 1), run.stderr
    assert len(list(JUnitXml.fromfile(str(tmp_path / "j.xml")))) == 1
    names = {f.name for f in text_string_to_metric_families((tmp_path / "m.prom").read_text())}
    assert "bench_agent_inventory_logical_cpus" in names
    report_file = next((tmp_path / "out").glob("*/*.json"))
    shown = subprocess.run(
        [sys.executable, "-m", "bench_agent.cli", "report", "show", str(report_file),
         "--format", "csv"], capture_output=True, text=True, timeout=60, cwd=REPO,
    )
    header = shown.stdout.splitlines()[0]
    assert header == "check,metric,device,status,value,unit,threshold,source,message"
    assert any(line.startswith("inventory,inventory.logical_cpus,") for line in
               shown.stdout.splitlines())
