"""The collector's read side (collector/queries.py) on a real SQLite database filled
by the real ingest: a node's state is the worst of the newest report of each suite
it ran, its failing checks are those of these reports, and the report lists filter
and order as the API documents."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("alembic")

from bench_agent.collector import db, enrollment, queries
from bench_agent.collector.ingest import ingest
from bench_agent.report.attest import NodeKey
from tests.collector_support import envelope_bytes, make_report

DAY = datetime(2026, 11, 27, tzinfo=UTC)
NOW = datetime(2026, 11, 27, 13, 0)  # naive UTC, as the collector stores and compares


@dataclass
class Fleet:
    database: db.Database
    ids: dict[str, int]  # label -> the stored report's id
    reports: dict[str, dict[str, Any]]
    keys: dict[str, NodeKey]


def _report(host: str, hour: float, suite: str, status: str = "PASS", gemm: float = 1.2e12,
            **extra: Any) -> dict[str, Any]:
    report = make_report(host, when=DAY + timedelta(hours=hour), status=status, gemm=gemm)
    report["suite"]["name"] = suite
    report.update(extra)
    return report


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    path: Path = tmp_path_factory.mktemp("queries") / "collector.db"
    database = db.Database(f"sqlite:///{path}")
    database.migrate()
    keys = {name: NodeKey.generate() for name in ("node-a", "node-b", "node-c")}
    for name, key in keys.items():
        enrollment.enroll(database, name, key.public.pem())
    reports = {
        # node-a: its acceptance run failed; a later quick run passing does not clear it
        "a-acceptance": _report("node-a", 10, "acceptance", "FAIL", gemm=0.4e12),
        "a-quick": _report("node-a", 11, "quick", "PASS", gemm=1.3e12),
        # node-b: a failed quick run superseded by a passing quick run
        "b-quick-old": _report("node-b", 9, "quick", "FAIL", gemm=0.5e12),
        "b-quick": _report("node-b", 12, "quick", "PASS"),
        # node-c: could not measure; then a burn-in with its series
        "c-quick": _report("node-c", 10.5, "quick", "ERROR"),
        "c-burnin": _report("node-c", 8, "burnin", "PASS", series={
            "burnin.cpu_matmul": [[0, 1.0e11], [10, 1.1e11], [20, 0.9e11]]}),
    }
    # Arrival order is not finish order: node-b's older report arrives last.
    order = ["a-acceptance", "a-quick", "b-quick", "c-burnin", "c-quick", "b-quick-old"]
    ids = {}
    for label in order:
        report = reports[label]
        ids[label] = ingest(database, envelope_bytes(report, keys[report["host"]])).report_id
    yield Fleet(database, ids, reports, keys)
    database.dispose()


def test_node_state_is_the_worst_of_each_suites_newest_report(fleet: Fleet) -> None:
    with fleet.database.engine.connect() as conn:
        nodes = queries.list_nodes(conn, NOW)
    summary = {n["name"]: (n["status"], n["last_status"], n["failing_checks"],
                           [(s["suite"], s["status"]) for s in n["suites"]]) for n in nodes}
    assert summary == {
        "node-a": ("FAIL", "PASS", ["cpu-gemm"], [("acceptance", "FAIL"), ("quick", "PASS")]),
        "node-b": ("PASS", "PASS", [], [("quick", "PASS")]),
        "node-c": ("ERROR", "ERROR", ["gpu-burn"], [("burnin", "PASS"), ("quick", "ERROR")]),
    }
    assert [n["name"] for n in nodes] == ["node-a", "node-b", "node-c"]
    by_name = {n["name"]: n for n in nodes}
    assert by_name["node-b"]["last_report_id"] == fleet.ids["b-quick"]  # newest finished
    assert by_name["node-b"]["last_finished_at"] == "2026-11-27T12:00:00Z"
    assert by_name["node-b"]["age_seconds"] == 3600.0
    assert by_name["node-a"]["suites"][0] == {
        "suite": "acceptance", "profile": "guide-minimum", "status": "FAIL",
        "report_id": fleet.ids["a-acceptance"], "finished_at": "2026-11-27T10:00:00Z",
        "stale": False, "counts_as": "FAIL"}
    assert by_name["node-a"]["failing"] == [{
        "check": "cpu-gemm", "metric": "cpu.gemm_fp64_all_cores", "device": "",
        "status": "FAIL", "value": 0.4e12, "unit": "FLOP/s", "threshold": ">= 1 TFLOP/s",
        "fault_code": "", "component": "", "remediation": "", "message": "",
        "report_id": fleet.ids["a-acceptance"]}]


def test_outside_the_window_a_pass_is_stale_and_a_failure_stays(fleet: Fleet) -> None:
    # One hour of validity at 13:00: node-a's acceptance (10:00) and quick (11:00)
    # runs are both older; the acceptance FAIL still counts, the quick PASS is stale.
    with fleet.database.engine.connect() as conn:
        nodes = {n["name"]: n for n in queries.list_nodes(conn, NOW, validity_s=3600)}
        counts = queries.nodes_by_status(conn, NOW, validity_s=3600)
    a, b = nodes["node-a"], nodes["node-b"]
    assert [(s["suite"], s["stale"], s["counts_as"]) for s in a["suites"]] == [
        ("acceptance", True, "FAIL"), ("quick", True, "STALE")]
    assert (a["status"], a["stale"]) == ("FAIL", True)
    assert (b["status"], b["stale"]) == ("PASS", False)  # 12:00 is within the hour
    with fleet.database.engine.connect() as conn:
        b_later = queries.list_nodes(conn, NOW + timedelta(hours=1), validity_s=3600)
    assert {n["name"]: n["status"] for n in b_later}["node-b"] == "STALE"
    assert counts == {"FAIL": 1, "PASS": 1, "ERROR": 1}


def test_one_node_with_its_keys_and_reports_newest_first(fleet: Fleet) -> None:
    with fleet.database.engine.connect() as conn:
        node = queries.get_node(conn, "node-a", NOW)
        assert queries.get_node(conn, "node-z", NOW) is None
        assert queries.get_node(conn, "bad\x00name", NOW) is None  # a URL may carry anything
    assert node is not None
    assert (node["status"], node["failing_checks"]) == ("FAIL", ["cpu-gemm"])
    assert [k["keyid"] for k in node["keys"]] == [fleet.keys["node-a"].public.keyid]
    assert node["keys"][0]["revoked_at"] is None
    assert [r["id"] for r in node["reports"]] == [fleet.ids["a-quick"], fleet.ids["a-acceptance"]]
    assert [(r["suite"], r["status"], r["finished_at"]) for r in node["reports"]] == [
        ("quick", "PASS", "2026-11-27T11:00:00Z"), ("acceptance", "FAIL", "2026-11-27T10:00:00Z")]


def test_report_lists_filter_by_node_status_and_time(fleet: Fleet) -> None:
    with fleet.database.engine.connect() as conn:
        every = queries.list_reports(conn)
        failed = queries.list_reports(conn, status="FAIL")
        late = queries.list_reports(conn, since=datetime(2026, 11, 27, 11, 0))
        two = queries.list_reports(conn, limit=2)
        of_b = queries.list_reports(conn, node="node-b")
        nameless = queries.list_reports(conn, node="")
    assert [r["finished_at"][11:16] for r in every] == [
        "12:00", "11:00", "10:30", "10:00", "09:00", "08:00"]
    assert {r["id"] for r in failed} == {fleet.ids["a-acceptance"], fleet.ids["b-quick-old"]}
    assert [r["id"] for r in late] == [fleet.ids["b-quick"], fleet.ids["a-quick"]]
    assert two == every[:2]
    assert [r["id"] for r in of_b] == [fleet.ids["b-quick"], fleet.ids["b-quick-old"]]
    assert nameless == []
    first = every[0]
    assert (first["node"], first["report_id"], first["keyid"], first["profile"]) == (
        "node-b", fleet.reports["b-quick"]["report_id"], fleet.keys["node-b"].public.keyid,
        "guide-minimum")


def test_a_report_with_its_envelope_and_verdicts(fleet: Fleet) -> None:
    rid = fleet.ids["a-acceptance"]
    with fleet.database.engine.connect() as conn:
        report = queries.get_report(conn, rid)
        verdicts = queries.report_verdicts(conn, rid)
        assert queries.get_report(conn, 0) is None
        assert queries.get_report(conn, queries.MAX_ID + 1) is None
        assert queries.get_report(conn, max(fleet.ids.values()) + 1) is None
    assert report is not None
    assert report["report"]["report_id"] == fleet.reports["a-acceptance"]["report_id"]
    assert report["report"]["verdicts"][0]["status"] == "FAIL"
    assert report["envelope"]["payloadType"] == "application/vnd.in-toto+json"
    assert [(v["check"], v["status"], v["value"], v["threshold"]) for v in verdicts] == [
        ("cpu-gemm", "FAIL", 0.4e12, ">= 1 TFLOP/s"),
        ("cpu-stream", "PASS", 8.0e10, ">= 50 GB/s")]


def test_series_per_metric_oldest_first(fleet: Fleet) -> None:
    with fleet.database.engine.connect() as conn:
        series = queries.node_series(conn, "node-a")
        one = queries.node_series(conn, "node-a", limit=1)
        latest = queries.node_series(conn, "node-a", reports=1)
    gemm = next(s for s in series if s.metric == "cpu.gemm_fp64_all_cores")
    assert (gemm.unit, gemm.device) == ("FLOP/s", "")
    assert gemm.points == [(datetime(2026, 11, 27, 10, 0), 0.4e12),
                           (datetime(2026, 11, 27, 11, 0), 1.3e12)]
    assert sorted(s.metric for s in series) == ["cpu.gemm_fp64_all_cores", "memory.stream_triad"]
    assert len(one) == 1
    assert [p[1] for s in latest if s.metric == gemm.metric for p in s.points] == [1.3e12]


def test_fleet_counts_and_the_burnin_series(fleet: Fleet) -> None:
    with fleet.database.engine.connect() as conn:
        assert queries.nodes_by_status(conn, NOW) == {"FAIL": 1, "PASS": 1, "ERROR": 1}
        assert queries.nodes_by_state(conn) == {"burn-in": 3}
        assert queries.stored_reports(conn) == 6
        assert queries.node_last_finished(conn) == [
            ("node-a", datetime(2026, 11, 27, 11, 0)), ("node-b", datetime(2026, 11, 27, 12, 0)),
            ("node-c", datetime(2026, 11, 27, 10, 30))]
        burnin = queries.latest_burnin_series(conn, "node-c")
        assert queries.latest_burnin_series(conn, "node-a") is None  # no report has one
    assert burnin is not None and burnin.report_id == fleet.ids["c-burnin"]
    start = datetime(2026, 11, 27, 7, 59)  # make_report starts a minute before it ends
    assert burnin.started_at == start
    assert burnin.series == {"burnin.cpu_matmul": [
        (start, 1.0e11), (start + timedelta(seconds=10), 1.1e11),
        (start + timedelta(seconds=20), 0.9e11)]}


@pytest.mark.parametrize(("statuses", "worst"), [
    ([], None),
    (["PASS"], "PASS"),
    (["PASS", "WARN"], "WARN"),
    (["FAIL", "ERROR", "PASS"], "ERROR"),
    (["SKIP", "PASS"], "PASS"),  # a SKIP counts only when every suite is SKIP
    (["SKIP", "SKIP"], "SKIP"),
    (["WARN", "SKIP"], "WARN"),
    (["STALE", "PASS"], "STALE"),
    (["STALE", "WARN"], "WARN"),
])
def test_worst_status(statuses: list[str], worst: str | None) -> None:
    assert queries.worst_status(statuses) == worst
