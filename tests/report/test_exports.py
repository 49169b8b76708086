"""JUnit XML, the Prometheus textfile and CSV, read back by the tools that consume them.

The JUnit file is validated against the schema of Jenkins' xUnit plugin
(tests/data/junit/junit-10.xsd, see its provenance comment); the textfile with
Debian's promtool and scraped from a real prometheus-node-exporter (the Makefile
installs both; the tests skip, saying so, only where the binary is absent).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from junitparser import Error, Failure, JUnitXml, Skipped
from prometheus_client.parser import text_string_to_metric_families

from bench_agent.checks import metric_catalog
from bench_agent.core.errors import ReportError
from bench_agent.core.inventory import Inventory
from bench_agent.core.model import Measurement, NamedDigest, Report, Status, Verdict
from bench_agent.core.units import Unit
from bench_agent.report.attest import load_report
from bench_agent.report.exports import (
    prom_name,
    to_csv,
    to_junit,
    to_prometheus,
    write_prometheus,
)
from tests.cli_support import run_cli
from tests.paths import REPO

# The metric catalog, as the checks declare it.
METRICS = metric_catalog()

REPO = REPO
JUNIT_XSD = REPO / "tests" / "data" / "junit" / "junit-10.xsd"
# Names that break naive exporters: quote, backslash, brackets, a path, HTML,
# non-ASCII. Control characters (newline, ESC) never reach an exporter: the report
# model refuses them in names (test_model); the escapers still handle them
# (test_escapers_handle_control_characters).
AWKWARD = ['say "hi"', "back\\slash", "[bracket]", "/dev/nvme0n1",
           "<b>html</b> & co", "ünïcødé ✓ 温度"]


def make_report(fail: bool = True) -> Report:
    measurements = [
        Measurement("inventory", "inventory.logical_cpus", 2, Unit.COUNT),
        Measurement("memory.stream", "memory.stream_triad", 3.2e10, Unit.BYTES_PER_SECOND),
        Measurement("network.tcp_bandwidth", "network.tcp_bandwidth", 2.5e10,
                    Unit.BITS_PER_SECOND, device="eth0"),
        Measurement("network.tcp_latency", "network.tcp_latency", 1.1e-5, Unit.SECONDS),
    ]
    verdicts = [
        # Two rules on one metric: the profile's minimum, and a tier that it meets.
        Verdict("inventory", Status.FAIL if fail else Status.PASS, "inventory.logical_cpus", 2,
                Unit.COUNT, ">= 32", "guide, CPU-Based Computing",
                "2 does not meet >= 32" if fail else "", threshold_id="cpus-min"),
        Verdict("inventory", Status.PASS, "inventory.logical_cpus", 2, Unit.COUNT, ">= 1",
                "tier", "", threshold_id="cpus-any"),
        Verdict("network.tcp_bandwidth", Status.WARN, "network.tcp_bandwidth", 2.5e10,
                Unit.BITS_PER_SECOND, ">= 25 Gbit/s", "guide", "within 10% of the limit",
                device="eth0", threshold_id="tcp-bw"),
        Verdict("storage.randread", Status.SKIP, message="fio is not installed"),
    ]
    if fail:
        verdicts.append(Verdict("cpu.gemm", Status.ERROR, message="timed out after 60 s"))
    return Report(
        report_id="6f1c2b8e-6a51-4a51-9d2e-1c5d3f7a9b10", agent_version="0.1.0", host="node-1",
        inventory=Inventory(), suite=NamedDigest("quick", "a" * 64),
        profile=NamedDigest("p", "b" * 64),
        started_at="2026-11-27T10:00:00Z", finished_at="2026-11-27T10:01:30Z",
        measurements=measurements, verdicts=verdicts,
        check_seconds={"inventory": 1.25, "memory.stream": 12.5, "network.tcp_bandwidth": 30.0,
                       "network.tcp_latency": 10.0, "storage.randread": 0.125,
                       "cpu.gemm": 60.5},
    )


def awkward_report() -> Report:
    """Every awkward string as a device (two thresholds on each) and a check name."""
    measurements = [Measurement("storage.randread", "storage.randread_4k_iops_per_device",
                                1000.0 + i, Unit.IOPS, device=name)
                    for i, name in enumerate(AWKWARD)]
    verdicts = [Verdict("storage.randread", status, m.metric, m.value, m.unit, rule, "guide",
                        f"{m.device} {status}", device=m.device, threshold_id=tid)
                for m in measurements
                for tid, rule, status in (("iops-min", "> 500 IOPS", Status.PASS),
                                          ("iops-tier", "> 1.001 kIOPS", Status.WARN))]
    verdicts += [Verdict(name, Status.ERROR, message=f"{name} failed") for name in AWKWARD]
    return Report(
        report_id="6f1c2b8e-6a51-4a51-9d2e-1c5d3f7a9b10", agent_version="0.1.0",
        host="node <&> \"1\"", inventory=Inventory(), suite=NamedDigest("storage", "a" * 64),
        profile=NamedDigest("p", "b" * 64), started_at="2026-11-27T10:00:00Z",
        finished_at="2026-11-27T10:01:30Z", measurements=measurements, verdicts=verdicts,
        check_seconds={"storage.randread": 42.0, **{name: 0.5 for name in AWKWARD}},
    )


def series(text: str) -> list[tuple[str, frozenset[tuple[str, str]], float]]:
    """(name, labels, value) of each sample; an empty label is no label, as in
    Prometheus (node_exporter pads a family's missing labels with "")."""
    return [(s.name, frozenset((k, v) for k, v in s.labels.items() if v), s.value)
            for f in text_string_to_metric_families(text) for s in f.samples]


def test_junit_has_one_testcase_per_verdict_with_the_right_outcome(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    path.write_text(to_junit(make_report()))
    xml = JUnitXml.fromfile(str(path))
    suites = list(xml)
    assert len(suites) == 1
    suite = suites[0]
    assert (suite.name, suite.tests, suite.failures, suite.errors, suite.skipped) == (
        "bench-agent.quick", 5, 1, 1, 1)
    assert suite.time == 90.0
    outcomes = {case.name: case.result for case in suite}
    failure = outcomes["inventory.logical_cpus (cpus-min)"][0]
    assert isinstance(failure, Failure) and failure.message == "2 does not meet >= 32"
    assert "threshold: >= 32" in (failure.text or "")
    assert "threshold id: cpus-min" in (failure.text or "")
    # The other rule on the same metric passes, as its own testcase.
    assert outcomes["inventory.logical_cpus (cpus-any)"] == []
    error = outcomes["cpu.gemm"][0]
    assert isinstance(error, Error) and error.message == "timed out after 60 s"
    skipped = outcomes["storage.randread"][0]
    assert isinstance(skipped, Skipped) and skipped.message == "fio is not installed"
    assert outcomes["network.tcp_bandwidth [eth0] (tcp-bw) [WARN]"] == []  # passes, marked


def test_junit_testcase_names_are_unique_and_warn_is_visible() -> None:
    """Two thresholds on one metric were one name that both failed and passed."""
    root = ET.fromstring(to_junit(make_report()))
    suite = root.find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    names = [c.attrib["name"] for c in cases]
    assert len(names) == len(set(names)) == 5
    warn = next(c for c in cases if c.attrib["name"].endswith("[WARN]"))
    assert warn.attrib["classname"] == "network.tcp_bandwidth"
    system_out = warn.find("system-out")
    assert system_out is not None and system_out.text == (
        "WARN: value: 25 Gbit/s\nthreshold: >= 25 Gbit/s\nthreshold id: tcp-bw\nsource: guide\n"
        "within 10% of the limit")
    assert warn.find("failure") is None and warn.find("error") is None
    properties = {p.attrib["name"]: p.attrib["value"] for p in suite.iter("property")}
    assert properties["warnings"] == "1"
    # A repeated verdict (a suite that ran one check twice) is numbered, not merged.
    report = make_report()
    report.verdicts.append(Verdict("cpu.gemm", Status.ERROR, message="again"))
    again = ET.fromstring(to_junit(report)).iter("testcase")
    assert [c.attrib["name"] for c in again if c.attrib["classname"] == "cpu.gemm"] == [
        "cpu.gemm", "cpu.gemm #2"]


def test_junit_time_is_the_checks_time() -> None:
    root = ET.fromstring(to_junit(make_report()))
    times = {c.attrib["name"]: c.attrib["time"] for c in root.iter("testcase")}
    assert times == {
        "inventory.logical_cpus (cpus-min)": "1.250",
        "inventory.logical_cpus (cpus-any)": "1.250",
        "network.tcp_bandwidth [eth0] (tcp-bw) [WARN]": "30.000",
        "storage.randread": "0.125",
        "cpu.gemm": "60.500",
    }
    # A report with no time for a check (older, burn-in) says nothing rather than 0.
    report = make_report()
    report.check_seconds = {}
    assert all("time" not in c.attrib for c in ET.fromstring(to_junit(report)).iter("testcase"))


def test_junit_shape_is_what_ci_reporters_read() -> None:
    """testsuites > testsuite[name tests failures errors skipped time] > testcase."""
    root = ET.fromstring(to_junit(make_report()))
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    assert suite is not None
    for attribute in ("name", "tests", "failures", "errors", "skipped", "time", "timestamp"):
        assert attribute in suite.attrib
    cases = suite.findall("testcase")
    assert len(cases) == int(suite.attrib["tests"]) == int(root.attrib["tests"])
    assert all({"classname", "name", "time"} <= set(c.attrib) for c in cases)
    assert sum(1 for c in cases if c.find("failure") is not None) == int(suite.attrib["failures"])
    assert sum(1 for c in cases if c.find("error") is not None) == int(suite.attrib["errors"])
    assert sum(1 for c in cases if c.find("skipped") is not None) == int(suite.attrib["skipped"])


@pytest.mark.parametrize("report", [make_report(), make_report(fail=False), awkward_report()],
                         ids=["failed", "passed", "awkward-names"])
def test_junit_is_valid_against_the_jenkins_schema(report: Report) -> None:
    import xmlschema

    schema = xmlschema.XMLSchema(str(JUNIT_XSD))
    text = to_junit(report)
    errors = [f"{e.reason} at {e.path}" for e in schema.iter_errors(text)]
    assert errors == []
    schema.validate(text)


def test_junit_keeps_awkward_names_readable() -> None:
    root = ET.fromstring(to_junit(awkward_report()))  # a control character would not parse
    names = [c.attrib["name"] for c in root.iter("testcase")]
    assert len(names) == len(set(names)) == 3 * len(AWKWARD)
    assert 'storage.randread_4k_iops_per_device [say "hi"] (iops-min)' in names
    assert "storage.randread_4k_iops_per_device [[bracket]] (iops-tier) [WARN]" in names
    assert {c.attrib["classname"] for c in root.iter("testcase")} >= {
        "<b>html</b> & co", "ünïcødé ✓ 温度", "[bracket]"}
    suite = root.find("testsuite")
    assert suite is not None and suite.attrib["hostname"] == 'node <&> "1"'


def test_prometheus_textfile_parses_and_follows_the_naming_rules() -> None:
    families = {f.name: f for f in text_string_to_metric_families(to_prometheus(make_report()))}
    assert set(families) == {
        "bench_agent_inventory_logical_cpus",
        "bench_agent_memory_stream_triad_bytes_per_second",
        "bench_agent_network_tcp_bandwidth_bytes_per_second",
        "bench_agent_network_tcp_latency_seconds",
        "bench_agent_verdict",
        "bench_agent_run_status",
        "bench_agent_check_duration_seconds",
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
    durations = {s.labels["check"]: s.value
                 for s in families["bench_agent_check_duration_seconds"].samples}
    assert durations["cpu.gemm"] == 60.5
    # A failed run has no last-success time of its own.
    assert "bench_agent_last_success_timestamp_seconds" not in families
    for family in families.values():
        assert family.type == "gauge"
        assert family.name.startswith("bench_agent_")
        for sample in family.samples:
            assert set(sample.labels) <= {"device", "check", "metric", "status", "threshold_id"}


def test_prometheus_two_thresholds_on_one_metric_are_two_series() -> None:
    samples = series(to_prometheus(make_report()))
    keys = [(name, labels) for name, labels, _ in samples]
    assert len(keys) == len(set(keys))
    firing = {dict(labels).get("threshold_id", ""): dict(labels)["status"]
              for name, labels, value in samples
              if name == "bench_agent_verdict" and dict(labels).get("metric")
              == "inventory.logical_cpus" and value == 1}
    assert firing == {"cpus-min": "FAIL", "cpus-any": "PASS"}
    # A verdict repeated with no threshold id (a check run twice) is numbered.
    report = make_report()
    report.verdicts.append(Verdict("cpu.gemm", Status.ERROR, message="again"))
    again = [dict(labels) for name, labels, value in series(to_prometheus(report))
             if name == "bench_agent_verdict" and dict(labels)["check"] == "cpu.gemm"
             and value == 1]
    assert again == [{"check": "cpu.gemm", "status": "ERROR"},
                     {"check": "cpu.gemm", "status": "ERROR", "occurrence": "2"}]


def test_prometheus_label_values_are_escaped() -> None:
    text = to_prometheus(awkward_report())
    samples = series(text)
    assert len({(n, labels) for n, labels, _ in samples}) == len(samples)
    iops = {dict(labels)["device"]: value for name, labels, value in samples
            if name == "bench_agent_storage_randread_4k_per_device_iops"}
    assert iops == {name: 1000.0 + i for i, name in enumerate(AWKWARD)}
    assert '{device="say \\"hi\\""}' in text
    assert '{device="back\\\\slash"}' in text
    errored = {dict(labels)["check"] for name, labels, value in samples
               if name == "bench_agent_verdict" and dict(labels)["status"] == "ERROR" and value}
    assert errored == set(AWKWARD)
    # Every sample is one line: no raw newline escaped a label.
    assert all(line.startswith(("# HELP ", "# TYPE ", "bench_agent_"))
               for line in text.splitlines())


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


def test_prom_names_use_base_units_and_the_unit_once() -> None:
    assert prom_name("storage.randread_4k_latency_p99", Unit.SECONDS) == (
        "bench_agent_storage_randread_4k_latency_p99_seconds")
    assert prom_name("inventory.memory_total", Unit.BYTES) == (
        "bench_agent_inventory_memory_total_bytes")
    assert prom_name("gpu.temp", Unit.CELSIUS) == "bench_agent_gpu_temp_celsius"
    assert prom_name("storage.randread_4k_iops", Unit.IOPS) == (
        "bench_agent_storage_randread_4k_iops")
    assert prom_name("storage.randread_4k_iops_per_device", Unit.IOPS) == (
        "bench_agent_storage_randread_4k_per_device_iops")
    # _count is the suffix of a histogram's or summary's count, not of a gauge.
    assert prom_name("inventory.gpu_count", Unit.COUNT) == "bench_agent_inventory_gpus"
    assert prom_name("gpu.count", Unit.COUNT) == "bench_agent_gpus"
    assert prom_name("x.batch_count", Unit.COUNT) == "bench_agent_x_batches"
    assert prom_name("x.errors_total", Unit.COUNT) == "bench_agent_x_errors_total_value"
    assert prom_name("gpu.matmulBF16/x", Unit.FLOPS) == "bench_agent_gpu_matmulbf16_x_flops"


def test_every_registered_metric_has_its_own_name() -> None:
    names = {prom_name(metric, info.unit): metric for metric, info in METRICS.items()}
    assert len(names) == len(METRICS)


def every_metric_report() -> Report:
    """One measurement of each registered metric, each judged by two thresholds."""
    measurements = [Measurement(info.check, metric, 1.0, info.unit, device="d0")
                    for metric, info in METRICS.items()]
    verdicts = [Verdict(m.check, Status.PASS, m.metric, 1.0, m.unit, ">= 1", "guide",
                        device=m.device, threshold_id=tid)
                for m in measurements for tid in ("a", "b")]
    base = awkward_report()
    base.measurements += measurements
    base.verdicts += verdicts
    return base


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package "
                    "prometheus; `make test` installs it)")
def test_promtool_check_metrics_accepts_the_textfile() -> None:
    assert PROMTOOL is not None
    for report in (make_report(), make_report(fail=False), every_metric_report()):
        checked = subprocess.run([PROMTOOL, "check", "metrics"], input=to_prometheus(report),
                                 capture_output=True, text=True, timeout=60)
        assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")


def test_promtool_test_can_fail() -> None:
    """The promtool test above is not vacuous: promtool rejects a _count gauge."""
    if PROMTOOL is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    bad = "# HELP x_count n\n# TYPE x_count gauge\nx_count 1\n"
    checked = subprocess.run([PROMTOOL, "check", "metrics"], input=bad, capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode != 0
    assert '"_count" suffix' in checked.stdout + checked.stderr


NODE_EXPORTER = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def node_exporter(textfile_dir: Path, log: Path) -> Iterator[str]:
    """A real node_exporter with only the textfile collector, on a loopback port;
    yields its /metrics URL and stops it (our child only) on the way out."""
    assert NODE_EXPORTER is not None
    for _attempt in range(3):  # the free port may be taken before it binds
        port = _free_port()
        with log.open("w") as out:
            proc = subprocess.Popen(
                [NODE_EXPORTER, "--collector.disable-defaults", "--collector.textfile",
                 f"--collector.textfile.directory={textfile_dir}",
                 f"--web.listen-address=127.0.0.1:{port}"],
                stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/metrics"
        try:
            deadline = time.monotonic() + 30
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    # The landing page, read to the end: a scrape cut short would
                    # log write errors, and the test reads that log.
                    with urllib.request.urlopen(url.removesuffix("metrics"), timeout=5) as r:
                        r.read()
                        break
                except OSError:
                    time.sleep(0.1)
            if proc.poll() is None:
                yield url
                return
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    raise AssertionError(f"node_exporter did not start: {log.read_text()}")


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        text: str = response.read().decode("utf-8")
        return text


@pytest.mark.skipif(NODE_EXPORTER is None, reason="prometheus-node-exporter not installed "
                    "(Debian package prometheus-node-exporter; `make test` installs it)")
@pytest.mark.parametrize("report", [make_report(), every_metric_report()],
                         ids=["failed", "every-metric-awkward-names"])
def test_node_exporter_scrapes_every_series(tmp_path: Path, report: Report) -> None:
    textfiles = tmp_path / "textfile"
    write_prometheus(report, textfiles / "bench_agent.prom")
    ours = series(to_prometheus(report))
    log = tmp_path / "node_exporter.log"
    with node_exporter(textfiles, log) as url:
        scraped = series(scrape(url))
    errors = {name: value for name, labels, value in scraped
              if name == "node_textfile_scrape_error"}
    assert errors == {"node_textfile_scrape_error": 0.0}
    assert "collected before" not in log.read_text()
    assert "error" not in log.read_text().lower(), log.read_text()
    exported = {(name, labels): value for name, labels, value in scraped
                if name.startswith("bench_agent_")}
    assert exported == {(name, labels): value for name, labels, value in ours}


def test_report_carries_check_seconds_and_threshold_ids() -> None:
    report = make_report()
    data = json.loads(report.to_json())
    assert data["check_seconds"]["cpu.gemm"] == 60.5
    assert data["verdicts"][0]["threshold_id"] == "cpus-min"
    again = Report.from_dict(data)
    assert again.check_seconds == report.check_seconds
    assert [v.threshold_id for v in again.verdicts] == [v.threshold_id for v in report.verdicts]
    # Older reports have neither.
    del data["check_seconds"]
    for verdict in data["verdicts"]:
        del verdict["threshold_id"]
    old = Report.from_dict(data)
    assert old.check_seconds == {} and {v.threshold_id for v in old.verdicts} == {""}
    with pytest.raises(ReportError, match="check_seconds"):
        Report.from_dict({**data, "check_seconds": {"cpu.gemm": -1}})
    with pytest.raises(ReportError, match="check_seconds"):
        Report.from_dict({**data, "check_seconds": {"cpu.gemm": "fast"}})


def test_csv_has_verdicts_and_unjudged_measurements() -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(make_report()))))
    by_metric = {(r["check"], r["metric"]): r for r in rows if r["threshold"] != ">= 1"}
    cpus = by_metric[("inventory", "inventory.logical_cpus")]
    assert (cpus["status"], cpus["value"], cpus["unit"], cpus["threshold"]) == (
        "FAIL", "2.0", "count", ">= 32")
    triad = by_metric[("memory.stream", "memory.stream_triad")]
    assert triad["status"] == "" and float(triad["value"]) == 3.2e10
    assert by_metric[("cpu.gemm", "")]["status"] == "ERROR"


def test_cli_writes_junit_and_prom_and_shows_csv(tmp_path: Path) -> None:
    env = {**os.environ, "BENCH_AGENT_KEY": str(tmp_path / "node.key")}
    run = run_cli("run", "inventory", "--output", str(tmp_path / "out"), "--junit",
                  str(tmp_path / "j.xml"), "--prom", str(tmp_path / "m.prom"),
                  timeout=120, cwd=REPO, env=env)
    assert run.returncode in (0, 1), run.stderr
    assert len(list(JUnitXml.fromfile(str(tmp_path / "j.xml")))) == 1
    names = {f.name for f in text_string_to_metric_families((tmp_path / "m.prom").read_text())}
    assert "bench_agent_inventory_logical_cpus" in names
    report_file = next((tmp_path / "out").glob("*/*.json"))
    # The runner records how long the check ran, and the testcases carry it.
    seconds = load_report(report_file).check_seconds["inventory"]
    assert seconds > 0
    cases = list(ET.parse(tmp_path / "j.xml").getroot().iter("testcase"))
    ran = [c for c in cases if c.attrib["classname"] == "inventory"]
    assert ran and {c.attrib["time"] for c in ran} == {f"{seconds:.3f}"}
    # The profile's thresholds on checks this suite did not run are SKIP rows with no
    # time of their own (not a made-up 0).
    others = [c for c in cases if c.attrib["classname"] != "inventory"]
    assert others and all("time" not in c.attrib and c.find("skipped") is not None
                          for c in others)
    shown = run_cli("report", "show", str(report_file), "--format", "csv", timeout=60, cwd=REPO)
    header = shown.stdout.splitlines()[0]
    assert header == "check,metric,device,status,value,unit,threshold,source,message"
    assert any(line.startswith("inventory,inventory.logical_cpus,") for line in
               shown.stdout.splitlines())


def test_escapers_handle_control_characters() -> None:
    from bench_agent.report.exports import _label, _xml

    assert _label("two\nlines") == "two\\nlines"
    assert _label('a"b\\c') == 'a\\"b\\\\c'
    assert _xml("esc\x1bape") == "esc\\x{1b}ape"
