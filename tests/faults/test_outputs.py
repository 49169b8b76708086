"""The fault code in the verdict table, JUnit, the Prometheus textfile, `bench-agent
faults`, and docs/faults.md being current."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from bench_agent.core.inventory import Inventory
from bench_agent.core.model import NamedDigest, Report, Status, Verdict
from bench_agent.core.units import Unit
from bench_agent.faults.doc import render
from bench_agent.report.display import print_table, table_rows
from bench_agent.report.exports import to_junit, to_prometheus
from tests.paths import REPO


def _report() -> Report:
    fail = Verdict(check="gpu.health", status=Status.FAIL, metric="gpu.xid_events", value=1,
                   unit=Unit.COUNT, device="gpu3", threshold="<= 0", message="1 does not meet",
                   fault_code="BA-GPU-XID-79", component="GPU 3 serial 1652822012345",
                   remediation="reboot")
    flaky = Verdict(check="inventory", status=Status.WARN, metric="inventory.logical_cpus",
                    value=64, unit=Unit.COUNT, message="flaky: ...", attempts=2, flaky=True,
                    fault_code="BA-NODE-CPU-COUNT", component="node n", remediation="reboot")
    ok = Verdict(check="inventory", status=Status.PASS, metric="inventory.gpu_count", value=8,
                 unit=Unit.COUNT)
    return Report("id-1", "0.1", "n", Inventory(), NamedDigest("s", "0"), NamedDigest("p", "0"),
                  "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z", [], [fail, flaky, ok])


def test_the_table_shows_the_code_and_leads_the_note_with_component_and_remediation(
) -> None:
    rows = table_rows(_report())
    assert rows[0][5].startswith("GPU 3 serial 1652822012345 [reboot]: 1 does")
    assert rows[1][5].startswith("node n [reboot] (flaky, 2 attempts): ")
    assert "BA-" not in rows[2][5]
    # The code has a column of its own, beside the status (not repeated in the note).
    out = io.StringIO()
    print_table(_report(), out)
    lines = out.getvalue().splitlines()
    assert "fault" in lines[1].split()
    xid = next(line for line in lines if "gpu.xid_events" in line)
    assert xid.count("BA-GPU-XID-79") == 1


def test_junit_and_prometheus_carry_the_code() -> None:
    suite = ET.fromstring(to_junit(_report())).find("testsuite")
    assert suite is not None
    failure = suite.find("testcase/failure")
    assert failure is not None
    assert failure.get("message") == "BA-GPU-XID-79: 1 does not meet"
    assert "fault: BA-GPU-XID-79 (GPU 3 serial 1652822012345), remediation reboot" in (
        failure.text or "")
    prom = to_prometheus(_report())
    assert ('bench_agent_fault{check="gpu.health",code="BA-GPU-XID-79",component="GPU 3 serial'
            ' 1652822012345",device="gpu3",metric="gpu.xid_events",remediation="reboot"} 1.0'
            in prom)
    assert 'code="BA-NODE-CPU-COUNT"' in prom and 'flaky="true"' in prom
    assert prom.count("bench_agent_fault{") == 2


def test_bench_agent_faults_lists_the_catalog() -> None:
    done = subprocess.run([sys.executable, "-m", "bench_agent", "faults", "--json"],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    records = json.loads(done.stdout)
    xid79 = next(r for r in records if r["code"] == "BA-GPU-XID-79")
    assert xid79["remediation"] == "reboot" and xid79["component"] == "gpu"
    table = subprocess.run([sys.executable, "-m", "bench_agent", "faults"],
                           capture_output=True, text=True, cwd=REPO, timeout=60)
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split() == ["code", "severity", "remediation",
                                                    "component", "title"]
    assert any(line.startswith("BA-IB-LINK-DOWN ") for line in table.stdout.splitlines())


def test_the_compiled_catalog_is_current_and_read_only_while_it_matches(tmp_path: Path) -> None:
    from bench_agent.faults import catalog as faults

    raw = faults.CATALOG_PATH.read_bytes()
    assert faults.COMPILED_PATH.read_text(encoding="utf-8") == faults.compiled_text(raw), (
        "bench_agent/faults/catalog.compiled.json is stale: run scripts/gen-faults-doc")
    compiled = tmp_path / "catalog.compiled.json"
    compiled.write_bytes(faults.COMPILED_PATH.read_bytes())
    # The compiled document is the YAML's, to the XIDs' whole-number keys.
    document = faults._compiled_document(raw, compiled)
    assert document is not None and 79 in document["xids"]
    assert faults.parse_catalog(document, "x") == faults.load_catalog_text(raw, "x")
    # One byte more in the YAML: the compiled form is not its own any more.
    assert faults._compiled_document(raw + b"\n", compiled) is None
    compiled.write_text("{not json", encoding="utf-8")
    assert faults._compiled_document(raw, compiled) is None


def test_docs_faults_md_is_generated_from_the_catalog() -> None:
    page = REPO / "docs" / "faults.md"
    assert page.read_text(encoding="utf-8") == render(), (
        "docs/faults.md is stale: run scripts/gen-faults-doc")
    assert "### BA-GPU-XID-79" in render()
