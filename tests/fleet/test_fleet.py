"""Fleet comparison and baselines on generated fleets of 1,000 reports."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import REPO

pd = pytest.importorskip("pandas")

from bench_agent.config.loader import load_profile  # noqa: E402
from bench_agent.core.thresholds import Comparator  # noqa: E402
from bench_agent.fleet import analysis as fleet  # noqa: E402
from bench_agent.report.attest import NodeKey, sign_report  # noqa: E402
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


def test_an_unreachable_collector_is_a_report_error() -> None:
    from bench_agent.core.errors import ReportError

    with pytest.raises(ReportError, match="cannot read reports from the collector"):
        fleet.load_collector("http://127.0.0.1:9", timeout=5)


def test_csv_and_html_outputs(fleets: dict[str, Path]) -> None:
    result = fleet.compare(fleet.node_metric_table(fleet.load_dir(fleets["planted"])))
    rows = list(csv.DictReader(io.StringIO(fleet.render_csv(result))))
    assert len(rows) == 4000
    flagged = {(r["node"], r["metric"]) for r in rows if r["outlier"] == "true"}
    assert flagged == {(f"node-{i:05d}", m) for i, m in SLOW.items()}
    page = fleet.render_html(result)
    assert page.count("<img") == 4 and "node-00017" in page
    assert "http://" not in page and "https://" not in page  # works with no internet


def test_baseline_generate_is_a_profile_the_thresholds_engine_uses(
    fleets: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "baselines" / "fleet-a.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "bench_agent.cli", "baseline", "generate",
         str(fleets["clean"]), "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=REPO)
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
    planted = subprocess.run(
        [sys.executable, "-m", "bench_agent.cli", "fleet", "compare", str(fleets["planted"])],
        capture_output=True, text=True, timeout=120, cwd=REPO)
    assert planted.returncode == 1
    assert "OUTLIER node-00017: cpu.gemm_fp64_all_cores" in planted.stdout
    clean = subprocess.run(
        [sys.executable, "-m", "bench_agent.cli", "fleet", "compare", str(fleets["clean"]),
         "--format", "html", "--out", str(tmp_path / "f.html")],
        capture_output=True, text=True, timeout=120, cwd=REPO)
    assert clean.returncode == 0
    assert (tmp_path / "f.html").read_text().startswith("<!doctype html>")
