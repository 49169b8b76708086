"""Burn-in's plots: one SVG per series beside the report, through report/plots.py."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from bench_agent.burnin.engine import draw_plots
from bench_agent.core.model import NamedDigest, Report

SVG = "{http://www.w3.org/2000/svg}"


def _report(series: dict[str, list[list[float]]]) -> Report:
    return Report(report_id="00000000-0000-4000-8000-000000000001", agent_version="0",
                  host="node<1>", inventory={}, suite=NamedDigest("burnin", "0" * 64, ""),
                  profile=NamedDigest("p", "0" * 64, ""), started_at="2026-01-01T00:00:00Z",
                  finished_at="2026-01-01T01:00:00Z", measurements=[], verdicts=[],
                  series=series)


def test_one_svg_per_series_beside_the_report(tmp_path: Path) -> None:
    report = _report({"gpu0.temp_c": [[0, 40.0], [5, 41.5], [10, 43.0]],
                      "load.cpu_matmul": [[0, 1e12], [5, 1.1e12]],
                      "nvme/dev/nvme0n1.temp_c": [[0, 35.0]]})
    paths = draw_plots(report, tmp_path, "burnin-node")
    assert [p.name for p in paths] == ["burnin-node.gpu0.temp_c.svg",
                                       "burnin-node.load.cpu_matmul.svg",
                                       "burnin-node.nvme_dev_nvme0n1.temp_c.svg"]
    assert sorted(tmp_path.iterdir()) == sorted(paths)  # no PNG
    temp = ET.parse(paths[0]).getroot()
    assert temp.find(f"{SVG}title").text == "node<1>: gpu0.temp_c"  # type: ignore[union-attr]
    assert [t.text for t in temp.iter(f"{SVG}text")] == ["43 °C", "40 °C", "+0 s", "+10 s"]
    load = ET.parse(paths[1]).getroot()
    assert [t.text for t in load.iter(f"{SVG}text")][:2] == ["1.1 TFLOP/s", "1 TFLOP/s"]


def test_no_series_no_plot(tmp_path: Path) -> None:
    assert draw_plots(_report({}), tmp_path, "x") == []
    assert draw_plots(_report({"gpu0.power_w": []}), tmp_path, "x") == []
    assert list(tmp_path.iterdir()) == []


def test_drawing_needs_no_matplotlib(tmp_path: Path) -> None:
    code = ("import sys; from pathlib import Path; from tests.burnin.test_plots import _report; "
            "from bench_agent.burnin.engine import draw_plots; "
            "draw_plots(_report({'a.power_w': [[0, 1.0], [1, 2.0]]}), "
            f"Path({str(tmp_path)!r}), 's'); "
            "print('matplotlib' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True, cwd=Path(__file__).resolve().parents[2])
    assert done.stdout.strip() == "False"
    assert [p.name for p in tmp_path.iterdir()] == ["s.a.power_w.svg"]
