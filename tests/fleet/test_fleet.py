"""Fleet comparison and baselines on generated fleets of 1,000 reports."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tests.paths import REPO

pd = pytest.importorskip("pandas")

from bench_agent.config.loader import load_profile  # noqa: E402
from bench_agent.core.thresholds import Comparator  # noqa: E402
from bench_agent.fleet import analysis as fleet  # noqa: E402
from bench_agent.report.attest import NodeKey, sign_report  # noqa: E402
from tests.cli_support import run_cli  # noqa: E402
from tests.fleet_factory import METRICS, report, write_fleet  # noqa: E402

REPO = REPO
SLOW = {17: "cpu.gemm_fp64_all_cores", 404: "memory.stream_triad",
        777: "storage.randread_4k_iops", 901: "storage.randread_4k_latency_p99"}


@pytest.fixture(scope="module")
def fleets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    clean = tmp_path_factory.mktemp("clean")
    planted = tmp_path_factory.mktemp("planted")
    write_fleet(clean, 1000, seed=3)
    write_fleet(planted, 1000, slow=SLOW, seed=3)
    return {"clean": clean, "planted": planted}


def test_planted_slow_nodes_are_found_and_nothing_else(fleets: dict[str, Path]) -> None:
    data = fleet.load_dir(fleets["planted"])
    assert data.reports == 1000 and data.unreadable == []
    result = fleet.compare(fleet.node_metric_table(data))
    found = {(o.node, o.metric) for o in result.outliers}
    assert found == {(f"node-{i:05d}", m) for i, m in SLOW.items()}
    latency = next(o for o in result.outliers if o.metric.endswith("latency_p99"))
    assert latency.z > 3.5  # lower is better: the bad direction is up
    for outlier in result.outliers:
        assert abs(outlier.z) > 3.5


def test_a_clean_fleet_flags_none(fleets: dict[str, Path]) -> None:
    result = fleet.compare(fleet.node_metric_table(fleet.load_dir(fleets["clean"])))
    assert result.outliers == []
    stats = {s.metric: s for s in result.stats}
    assert stats["memory.stream_triad"].n == 1000
    assert stats["memory.stream_triad"].median == pytest.approx(3.0e11, rel=0.01)


def test_good_outliers_are_not_flagged(tmp_path: Path) -> None:
    write_fleet(tmp_path, 50, seed=5)
    fast = report("node-fast", {m: v[1] * (0.5 if "latency" in m else 1.8)
                                for m, v in METRICS.items()}, 99999)
    (tmp_path / "node-fast.json").write_text(json.dumps(fast))
    result = fleet.compare(fleet.node_metric_table(fleet.load_dir(tmp_path)))
    assert all(o.node != "node-fast" for o in result.outliers)


def test_newest_report_per_node_and_worst_device(tmp_path: Path) -> None:
    old = report("n1", {"storage.randread_4k_iops": 1.0}, 1)
    new = report("n1", {"storage.randread_4k_iops": 5e5}, 2)
    new["finished_at"] = "2026-11-28T00:00:00Z"
    new["measurements"].append(  # type: ignore[union-attr]
        {"check": "storage", "metric": "storage.randread_4k_iops", "value": 4e5,
         "unit": "IOPS", "device": "/dev/nvme1n1"})
    (tmp_path / "old.json").write_text(json.dumps(old))
    key = NodeKey.generate()
    (tmp_path / "new.json").write_text(json.dumps(sign_report(new, key)))  # signed
    (tmp_path / "junk.json").write_text("{nope")
    data = fleet.load_dir(tmp_path)
    table = fleet.node_metric_table(data)
    assert table.loc["n1", "storage.randread_4k_iops"] == 4e5
    assert len(data.unreadable) == 1 and "junk.json" in data.unreadable[0]


def test_a_report_with_an_unreadable_value_is_skipped_not_a_crash(tmp_path: Path) -> None:
    write_fleet(tmp_path, 3)
    bad = report("node-bad", {"storage.randread_4k_iops": 1.0}, 777)
    bad["measurements"][0]["value"] = "fast"  # type: ignore[index]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    data = fleet.load_dir(tmp_path)
    assert data.reports == 3
    assert len(data.unreadable) == 1 and "bad.json" in data.unreadable[0]


def test_reports_written_before_the_typed_inventory_are_compared(tmp_path: Path) -> None:
    """tests/data/reports/: a signed and an unsigned report of the older agent."""
    import shutil

    from tests.paths import DATA

    for old in (DATA / "reports").glob("*.json"):
        shutil.copy(old, tmp_path / old.name)
    data = fleet.load_dir(tmp_path)
    assert (data.reports, data.unreadable) == (2, [])
    cpus = sorted(r["value"] for r in data.rows if r["metric"] == "inventory.logical_cpus")
    assert cpus == [2.0, 128.0]


def test_an_unreachable_collector_is_a_report_error() -> None:
    from bench_agent.core.errors import ReportError

    with pytest.raises(ReportError, match="cannot read reports from the collector"):
        fleet.load_collector("http://127.0.0.1:9", timeout=5)


def test_the_collector_s_node_list_is_read_page_after_page() -> None:
    # GET /v1/nodes answers a page and the name to ask after; the loader follows it
    # to the end. A collector from before paging answers everything, without "next".
    pages = {"/v1/nodes": {"nodes": [{"name": "a"}, {"name": "b"}], "next": "b"},
             "/v1/nodes?after=b": {"nodes": [{"name": "c/d"}], "next": "c/d"},
             "/v1/nodes?after=c%2Fd": {"nodes": [], "next": None}}
    asked: list[str] = []

    def get(path: str) -> object:
        asked.append(path)
        return pages[path]

    assert [n["name"] for n in fleet._all_nodes(get)] == ["a", "b", "c/d"]
    assert asked == list(pages)
    for before_paging in ({"nodes": [{"name": "a"}]}, [{"name": "a"}]):
        assert list(fleet._all_nodes(lambda path, old=before_paging: old)) == [{"name": "a"}]


def test_csv_and_html_outputs(fleets: dict[str, Path]) -> None:
    result = fleet.compare(fleet.node_metric_table(fleet.load_dir(fleets["planted"])))
    rows = list(csv.DictReader(io.StringIO(fleet.render_csv(result))))
    assert len(rows) == 4000
    flagged = {(r["node"], r["metric"]) for r in rows if r["outlier"] == "true"}
    assert flagged == {(f"node-{i:05d}", m) for i, m in SLOW.items()}
    page = fleet.render_html(result)
    assert page.count("<svg") == 4 and "<img" not in page and "node-00017" in page
    # One red line per planted outlier, in its metric's histogram.
    assert page.count('class="mark"') == len(SLOW)
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page  # works with no internet


HOSTILE_NODES = ['gpu,"17"\nrack 4', "<script>alert(1)</script>", "a&b 'c'", "node-ok"]


def _fleet_of(names: list[str], tmp_path: Path) -> fleet.Comparison:
    for index, name in enumerate(names):
        values = {"memory.stream_triad": 3.0e11 * (0.5 if index == 0 else 1 + index / 100)}
        (tmp_path / f"{index}.json").write_text(json.dumps(report(name, values, index)))
    return fleet.compare(fleet.node_metric_table(fleet.load_dir(tmp_path)))


def test_csv_quotes_names_with_commas_quotes_and_newlines(tmp_path: Path) -> None:
    names = [*HOSTILE_NODES, "node-a", "node-b"]
    text = fleet.render_csv(_fleet_of(names, tmp_path))
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == list(fleet.CSV_COLUMNS)
    assert sorted(r[0] for r in rows[1:]) == sorted(names)
    assert all(len(r) == len(fleet.CSV_COLUMNS) for r in rows)
    hostile = next(r for r in rows if r[0] == HOSTILE_NODES[0])
    assert hostile[1:4] == ["memory.stream_triad", repr(1.5e11), "bytes/s"]
    assert hostile[7] == "true"  # the slow one, flagged in its own column
    assert '"gpu,""17""\nrack 4"' in text  # RFC 4180 quoting, the quote doubled


def test_html_escapes_node_names(tmp_path: Path) -> None:
    names = [*HOSTILE_NODES, "node-a", "node-b"]
    page = fleet.render_html(_fleet_of(names, tmp_path))
    assert "<script>" not in page
    # The slow node (the first) is the one outlier; its row holds its name escaped.
    assert "<td>gpu,&#34;17&#34;\nrack 4</td>" in page
    outliers = page[page.index('<table id="outliers">'):page.index("</table>")]
    assert outliers.count('<tr class="bad">') == 1


def test_html_escapes_an_outlier_named_like_markup(tmp_path: Path) -> None:
    names = ["<script>alert(1)</script>", "n1", "n2", "n3", "n4"]
    page = fleet.render_html(_fleet_of(names, tmp_path))
    assert "<script>" not in page
    assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>" in page


def test_baseline_generate_is_a_profile_the_thresholds_engine_uses(
    fleets: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "baselines" / "fleet-a.yaml"
    result = run_cli("baseline", "generate", str(fleets["clean"]), "--out", str(out),
                     timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    profile = load_profile(out)
    rules = {t.metric: t for t in profile.thresholds}
    triad = rules["memory.stream_triad"]
    assert triad.comparator is Comparator.GE
    assert 2.5e11 < triad.value < 3.0e11
    assert rules["storage.randread_4k_latency_p99"].comparator is Comparator.LE
    assert "median of 1000 nodes" in triad.source
    import yaml

    figures = yaml.safe_load(out.read_text())["figures"]
    assert figures["memory.stream_triad"]["fail_fraction"] == 0.0


@pytest.mark.e2e
def test_cli_fleet_compare_exit_codes(fleets: dict[str, Path], tmp_path: Path) -> None:
    planted = run_cli("fleet", "compare", str(fleets["planted"]), timeout=120, cwd=REPO)
    assert planted.returncode == 1
    assert "OUTLIER node-00017: cpu.gemm_fp64_all_cores" in planted.stdout
    clean = run_cli("fleet", "compare", str(fleets["clean"]), "--format", "html", "--out",
                    str(tmp_path / "f.html"), timeout=120, cwd=REPO)
    assert clean.returncode == 0
    assert (tmp_path / "f.html").read_text().startswith("<!doctype html>")
