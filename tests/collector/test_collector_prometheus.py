"""Prometheus and Grafana: a real `prometheus` (Debian's package) scrapes a real
collector and loads the shipped alert rules; promtool checks and unit-tests them; the
Grafana dashboard's JSON only asks for series the collector exports."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")

from bench_agent.report.attest import NodeKey
from tests.collector_support import Collector, envelope_bytes, free_port, http, make_report
from tests.paths import REPO

RULES = REPO / "deploy" / "prometheus" / "bench-agent-collector.rules.yml"
RULE_TESTS = REPO / "deploy" / "prometheus" / "bench-agent-collector.rules.test.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "bench-agent-fleet.json"
PROMETHEUS, PROMTOOL = shutil.which("prometheus"), shutil.which("promtool")
needs_promtool = pytest.mark.skipif(not PROMTOOL, reason="needs Debian's prometheus (promtool)")


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    done = subprocess.run([str(PROMTOOL), "check", "rules", str(RULES)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 3 rules found" in done.stdout


@needs_promtool
def test_promtool_unit_tests_of_the_rules_pass() -> None:
    done = subprocess.run([str(PROMTOOL), "test", "rules", str(RULE_TESTS)],
                          capture_output=True, text=True, timeout=60, cwd=RULE_TESTS.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[Collector, str]]:
    if not PROMETHEUS:
        pytest.skip("needs Debian's prometheus package")
    server = Collector(f"sqlite:///{tmp_path / 'collector.db'}", tmp_path / "collector.log",
                       "--auto-enroll", "--no-access-log").start()
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({  # YAML is a superset of JSON
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "bench-agent-collector",
                            "static_configs": [{"targets": [f"127.0.0.1:{server.port}"]}]}],
    }))
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={config}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        server.stop()


def _api(base: str, path: str, **params: str) -> Any:
    reply = http("GET", f"{base}/api/v1/{path}?{urllib.parse.urlencode(params)}", timeout=5)
    assert reply.status == 200, reply.body
    return reply.json()["data"]


def _wait(base: str, query: str, want: int, timeout: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    result: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        try:
            result = _api(base, "query", query=query)["result"]
        except OSError:
            result = []
        if len(result) >= want:
            return result
        time.sleep(0.5)
    raise AssertionError(f"prometheus has no {query!r} after {timeout} s: {result}")


@pytest.mark.e2e
def test_a_real_prometheus_scrapes_the_collector_and_loads_the_alerts(
        prometheus: tuple[Collector, str]) -> None:
    server, base = prometheus
    # Every refusal reason is exported at 0 before any: the first refusal is an increase.
    zeros = _wait(base, "bench_agent_collector_reports_refused_total", 14)
    assert {r["value"][1] for r in zeros} == {"0"}
    good, bad = NodeKey.generate(), NodeKey.generate()
    for node, key, status, gemm in (("prom-ok", good, "PASS", 1.25e12),
                                    ("prom-bad", bad, "FAIL", 2e11)):
        reply = server.post(envelope_bytes(make_report(node, status=status, gemm=gemm), key),
                            {"X-Bench-Agent-Public-Key": base64.b64encode(key.public.raw)
                             .decode()})
        assert reply.status == 201, reply.body
    forged = json.loads(envelope_bytes(make_report("prom-ok"), good))
    forged["signatures"][0]["sig"] = base64.b64encode(b"\0" * 64).decode()
    assert server.post(json.dumps(forged).encode()).status == 422

    failing = _wait(base, "bench_agent_collector_node_failing == 1", 1)
    assert [(r["metric"]["node"], r["metric"]["status"]) for r in failing] == [
        ("prom-bad", "FAIL")]
    by_verdict = {r["metric"]["verdict"]: r["value"][1]
                  for r in _wait(base, "bench_agent_collector_nodes", 7)}
    assert (by_verdict["FAIL"], by_verdict["PASS"], by_verdict["ERROR"]) == ("1", "1", "0")
    gemm = _wait(base, 'bench_agent_collector_measurement{metric="cpu.gemm_fp64_all_cores"}', 2)
    assert {r["metric"]["node"]: float(r["value"][1]) for r in gemm} == {
        "prom-ok": 1.25e12, "prom-bad": 2e11}
    assert {r["metric"]["unit"] for r in gemm} == {"FLOP/s"}
    refused = _wait(base, "bench_agent_collector_reports_refused_total > 0", 1)
    assert [(r["metric"]["reason"], r["value"][1]) for r in refused] == [("bad_signature", "1")]

    targets = _api(base, "targets")["activeTargets"]
    assert [t["health"] for t in targets] == ["up"]
    rules = [rule for group in _api(base, "rules")["groups"] for rule in group["rules"]]
    assert {r["name"]: r["health"] for r in rules} == {
        "BenchAgentNodeFailing": "ok", "BenchAgentNodeLastPassTooOld": "ok",
        "BenchAgentCollectorRefusingReports": "ok"}
    # Evaluated on the scraped series: the failing node's alert is pending (for: 10m).
    deadline = time.monotonic() + 30
    alerts: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        alerts = _api(base, "alerts")["alerts"]
        if {a["labels"]["alertname"] for a in alerts} >= {
                "BenchAgentNodeFailing", "BenchAgentCollectorRefusingReports"}:
            break
        time.sleep(0.5)
    by_name = {a["labels"]["alertname"]: a for a in alerts}
    assert by_name["BenchAgentNodeFailing"]["labels"]["node"] == "prom-bad"
    assert by_name["BenchAgentNodeFailing"]["state"] == "pending"
    assert by_name["BenchAgentCollectorRefusingReports"]["labels"]["reason"] == "bad_signature"


def test_the_grafana_dashboard_asks_only_for_exported_series() -> None:
    from bench_agent.collector import metrics

    dashboard = json.loads(DASHBOARD.read_text())
    assert (dashboard["uid"], dashboard["title"]) == ("bench-agent-fleet", "bench-agent fleet")
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    titles = " | ".join(p["title"] for p in panels)
    # Fleet status, per-metric distributions, per-node trends (issue 17).
    assert "Nodes by status" in titles and "Distribution of $metric" in titles
    assert "$metric per node over time" in titles
    assert {p["type"] for p in panels} >= {"stat", "histogram", "timeseries", "table"}
    exported = set(re.findall(r"# TYPE (\S+) ", Path(metrics.__file__).read_text()
                              .replace('{PREFIX}', metrics.PREFIX)))
    exported = {name.removeprefix("f").strip('"') for name in exported} | set(re.findall(
        r"(bench_agent_collector_\w+)", Path(metrics.__file__).read_text()
        .replace("{PREFIX}", metrics.PREFIX)))
    exprs = [t["expr"] for p in panels for t in p["targets"]] + [
        v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    used = {name for expr in exprs for name in re.findall(r"bench_agent_collector_\w+", expr)}
    assert used and used <= exported, used - exported
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        assert panel["datasource"]["uid"] == "${datasource}"
