"""The fleet list's filters, sort and pages on a generated fleet, in real SQLite and
PostgreSQL, checked against what was generated; and the plans of its queries use the
indexes made for them (EXPLAIN)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sqlalchemy")

from sqlalchemy.dialects import postgresql, sqlite

from bench_agent.collector import db, fleet_view
from bench_agent.collector.settings import DEFAULT_VALIDITY_S
from tests.collector.fleet_generator import FAULTS, GPU_MODELS, Generated, generate
from tests.collector_support import postgres_available, postgres_database

# The 2,000-node fleet in PostgreSQL is the slow tier (seconds to load and query on
# a 2-core VM); the same assertions run on SQLite in `make test-fast`.
BACKENDS = ["sqlite", pytest.param("postgresql", marks=[pytest.mark.skipif(
    not postgres_available(), reason="PostgreSQL is not reachable at 127.0.0.1:5432"),
    pytest.mark.slow])]
NOW = datetime(2026, 12, 1, 12, 0)
NODES = 2000


@pytest.fixture(scope="module", params=BACKENDS)
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[db.Database, Generated]]:
    path: Path = tmp_path_factory.mktemp("fleet") / "collector.db"
    sqlite_url = contextlib.nullcontext(f"sqlite:///{path}")
    with postgres_database() if request.param == "postgresql" else sqlite_url as url:
        database = db.Database(url)
        database.migrate()
        generated = generate(database, NODES, 6, NOW)
        try:
            yield database, generated
        finally:
            database.dispose()


def page(database: db.Database, **params: str) -> dict[str, Any]:
    query = fleet_view.FleetQuery.from_params(params)
    with database.engine.connect() as conn:
        return fleet_view.fleet_page(conn, query, NOW, DEFAULT_VALIDITY_S)


def names(result: dict[str, Any]) -> list[str]:
    return [n["name"] for n in result["nodes"]]


def test_counts_are_of_the_whole_fleet_and_each_filters(
        fleet: tuple[db.Database, Generated]) -> None:
    database, generated = fleet
    everything = page(database)
    counts = everything["counts"]["status"]
    assert sum(counts.values()) == everything["total"] == NODES
    assert counts["FAIL"] == len(generated.failing)
    assert counts["STALE"] > 0 and counts["ERROR"] > 0
    failing = page(database, status="FAIL", per_page="1000")
    assert sorted(names(failing)) == sorted(generated.failing)
    assert failing["total"] == counts["FAIL"]
    assert {n["status"] for n in failing["nodes"]} == {"FAIL"}
    states = everything["counts"]["state"]
    assert states["quarantined"] == len(generated.failing)
    assert page(database, state="accepted")["total"] == states["accepted"]


def test_filters_by_fault_code_check_metric_suite_gpu_label_and_name(
        fleet: tuple[db.Database, Generated]) -> None:
    database, generated = fleet
    for code in FAULTS:
        found = page(database, fault_code=code, per_page="1000")
        assert sorted(names(found)) == sorted(generated.by_fault[code]), code
        assert all(any(f["fault_code"] == code for f in n["failing"]) for n in found["nodes"])
    by_check = page(database, check="cpu-gemm", per_page="1000")
    assert sorted(names(by_check)) == sorted(generated.failing)
    by_metric = page(database, metric="cpu.gemm_fp64_all_cores", per_page="1000")
    assert names(by_metric) == names(by_check)
    assert page(database, metric="memory.stream_triad")["total"] == 0  # passes everywhere
    assert page(database, suite="burnin")["total"] == NODES
    assert page(database, suite="nccl")["total"] == 0
    for gpu in GPU_MODELS:
        assert page(database, gpu_model=gpu)["total"] == generated.by_gpu[gpu]
    assert page(database, label="rack=r07")["total"] == NODES // 40
    assert names(page(database, q="gpu-0012")) == [f"gpu-{i:05d}" for i in range(120, 130)]
    # Search is literal: % and _ are not wildcards.
    assert page(database, q="%")["total"] == 0 and page(database, q="gpu_")["total"] == 0
    html = page(database, q="<img")
    assert names(html) == sorted(generated.html_names)
    combined = page(database, status="FAIL", gpu_model=GPU_MODELS[0], per_page="1000")
    assert combined["total"] == len([n for n in generated.failing
                                     if n in set(names(page(database, gpu_model=GPU_MODELS[0],
                                                            per_page="1000")))
                                     or int(n[-5:]) % 3 == 0])


def test_pages_and_sorts(fleet: tuple[db.Database, Generated]) -> None:
    database, _ = fleet
    first, second = page(database, per_page="50"), page(database, per_page="50", page="2")
    assert (first["pages"], len(first["nodes"])) == (NODES // 50, 50)
    assert not set(names(first)) & set(names(second))
    assert names(first) == sorted(names(first))
    worst = page(database, sort="status", order="desc", per_page="30")
    ranks = [n["status"] for n in worst["nodes"]]
    assert ranks[0] == "ERROR" and "PASS" not in ranks[:10]
    newest = page(database, sort="last_run", order="desc", per_page="20")
    runs = [n["last_finished_at"] for n in newest["nodes"]]
    assert runs == sorted(runs, reverse=True)
    beyond = page(database, page=str(NODES))
    assert beyond["nodes"] == [] and beyond["total"] == NODES


@pytest.mark.parametrize(("params", "why"), [
    ({"status": "BROKEN"}, "status='BROKEN' is not one of"),
    ({"per_page": "5000"}, "per_page='5000' is not a whole number in range"),
    ({"sort": "age; DROP"}, "sort='age; DROP' is not one of"),
    ({"colour": "red"}, "unknown parameter 'colour'"),
    ({"label": "rack"}, "label is KEY=VALUE"),
    ({"q": "a\x00b"}, "q is not a value this collector stores"),
])
def test_bad_parameters_are_named(params: dict[str, str], why: str) -> None:
    with pytest.raises(ValueError, match=why.replace("(", r"\(").replace("[", r"\[")):
        fleet_view.FleetQuery.from_params(params)


def _plan(database: db.Database, **params: str) -> str:
    query = fleet_view.FleetQuery.from_params(params)
    statement, rank = fleet_view._filtered(query, NOW)
    ordered = fleet_view._ordered(statement, rank, query).limit(100)
    dialect = postgresql.dialect() if database.engine.dialect.name == "postgresql" \
        else sqlite.dialect()
    compiled = ordered.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
    with database.engine.connect() as conn:
        if dialect.name == "postgresql":
            # With seq scans priced out, a plan without an index means no index fits.
            conn.exec_driver_sql("SET enable_seqscan = off")
            rows = conn.exec_driver_sql(f"EXPLAIN {compiled}").all()
        else:
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}").all()
    return "\n".join(str(r[-1]) for r in rows)


@pytest.mark.parametrize(("params", "index"), [
    ({"fault_code": "BA-GPU-XID-79"}, "ix_verdicts_fault_code"),
    ({"check": "cpu-gemm"}, "ix_verdicts_check_status"),
    ({"metric": "cpu.gemm_fp64_all_cores"}, "ix_verdicts_metric_status"),
    ({"label": "rack=r07"}, "node_labels"),
    # A GPU model or a state holds a third of the fleet here: the planner may rather
    # walk the name index (the page's order) and stop at 100 rows; either way, no
    # scan of reports or verdicts.
    ({"gpu_model": "NVIDIA H200"}, "nodes"),
    ({"state": "accepted"}, "nodes"),
    ({}, "nodes"),
])
def test_the_filtered_queries_use_their_indexes(fleet: tuple[db.Database, Generated],
                                                params: dict[str, str], index: str) -> None:
    database, _ = fleet
    plan = _plan(database, **params)
    assert index in plan, plan
    if database.engine.dialect.name == "sqlite":
        # No full scan of the big tables: verdicts and reports only through an index.
        assert "SCAN verdicts" not in plan and "SCAN reports" not in plan, plan
        if params:
            assert "USING INDEX" in plan or "USING COVERING INDEX" in plan \
                or "USING PRIMARY KEY" in plan, plan
    else:
        assert "Seq Scan on verdicts" not in plan and "Seq Scan on reports" not in plan, plan


def test_the_fault_code_menu_lists_the_current_codes_through_the_index(
        fleet: tuple[db.Database, Generated]) -> None:
    database, generated = fleet
    with database.engine.connect() as conn:
        menu = fleet_view.choices(conn)
    # Every code some node fails with now, once, sorted; never the empty code.
    assert menu["fault_code"] == sorted(c for c, nodes in generated.by_fault.items() if nodes)
    assert menu["gpu_model"] == sorted(m for m, count in generated.by_gpu.items() if count)
    is_pg = database.engine.dialect.name == "postgresql"
    compiled = fleet_view.CURRENT_FAULT_CODES.compile(
        dialect=postgresql.dialect() if is_pg else sqlite.dialect(),
        compile_kwargs={"literal_binds": True})
    assert "fault_code > ''" in str(compiled)
    with database.engine.connect() as conn:
        if is_pg:
            conn.exec_driver_sql("SET enable_seqscan = off")
            plan = "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {compiled}"))
            assert "Seq Scan on verdicts" not in plan, plan
            assert "ix_verdicts_fault_code" in plan, plan
        else:
            # SQLite walks the current results and looks their verdicts up instead.
            plan = "\n".join(str(r[-1]) for r in
                             conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}"))
            assert "SCAN verdicts" not in plan and "SEARCH verdicts USING" in plan, plan
