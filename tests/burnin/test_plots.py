"""Burn-in's plots: one SVG per series beside the report, through report/plots.py."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from bench_agent.burnin.engine import draw_plots
from bench_agent.core.inventory import Inventory
from bench_agent.core.model import NamedDigest, Report
from bench_agent.core.units import Unit

SVG = "{http://www.w3.org/2000/svg}"


def _report(series: dict[str, list[list[float]]],
            units: dict[str, str] | None = None) -> Report:
    return Report(report_id="00000000-0000-4000-8000-000000000001", agent_version="0",
                  host="node<1>", inventory=Inventory(), suite=NamedDigest("burnin", "0" * 64, ""),
                  profile=NamedDigest("p", "0" * 64, ""), started_at="2026-01-01T00:00:00Z",
                  finished_at="2026-01-01T01:00:00Z", measurements=[], verdicts=[],
                  series=series, series_units=units or {})


def test_one_svg_per_series_beside_the_report(tmp_path: Path) -> None:
    # Series named by metric and device, each unit from the report's series_units.
    report = _report({"burnin.gpu_temperature[gpu0]": [[0, 40.0], [5, 41.5], [10, 43.0]],
                      "burnin.cpu_matmul": [[0, 1e12], [5, 1.1e12]],
                      "burnin.nvme_temperature[/dev/nvme0n1]": [[0, 35.0]]},
                     {"burnin.gpu_temperature[gpu0]": Unit.CELSIUS.value,
                      "burnin.cpu_matmul": Unit.FLOPS.value,
                      "burnin.nvme_temperature[/dev/nvme0n1]": Unit.CELSIUS.value})
    paths = draw_plots(report, tmp_path, "burnin-node")
    assert [p.name for p in paths] == ["burnin-node.burnin.cpu_matmul.svg",
                                       "burnin-node.burnin.gpu_temperature[gpu0].svg",
                                       "burnin-node.burnin.nvme_temperature[_dev_nvme0n1].svg"]
    assert sorted(tmp_path.iterdir()) == sorted(paths)  # no PNG
    temp = ET.parse(paths[1]).getroot()
    assert temp.find(f"{SVG}title").text == (  # type: ignore[union-attr]
        "node<1>: burnin.gpu_temperature[gpu0]")
    assert [t.text for t in temp.iter(f"{SVG}text")] == ["43 °C", "40 °C", "+0 s", "+10 s"]
    load = ET.parse(paths[0]).getroot()
    assert [t.text for t in load.iter(f"{SVG}text")][:2] == ["1.1 TFLOP/s", "1 TFLOP/s"]


def test_an_old_reports_series_are_plotted_in_the_units_their_names_held(
        tmp_path: Path) -> None:
    # A report signed before series_units: the units come from the legacy names.
    old = Report.from_dict({**_report({"gpu.gpu0.temp_c": [[0, 40.0], [10, 43.0]]}).to_dict(),
                            "series_units": None})
    (path,) = draw_plots(old, tmp_path, "old")
    texts = [t.text for t in ET.parse(path).getroot().iter(f"{SVG}text")]
    assert texts == ["43 °C", "40 °C", "+0 s", "+10 s"]


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
