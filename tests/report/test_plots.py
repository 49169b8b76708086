"""report/plots.py: the one plotting path (dashboard, burn-in files, fleet page).

Every SVG is parsed back as XML: a title or a name that reaches it escaped wrongly
would make the file unreadable, or the page run markup it was given.
"""

from __future__ import annotations

import math
import sys
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta

import pytest

from bench_agent.report import plots

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = "<script>alert('x')</script> & \"q\""


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def test_line_plot_escapes_the_title_and_reads_back_as_svg() -> None:
    svg = plots.line_plot([0, 1, 2], [1.0, 3.0, 2.0], ["a", "b", HOSTILE], "FLOP/s", HOSTILE)
    root = parse(svg)
    assert "<script>" not in svg
    assert root.get("aria-label") == HOSTILE
    assert root.find(f"{SVG}title").text == HOSTILE  # type: ignore[union-attr]
    axis = [t.text for t in root.iter(f"{SVG}text")]
    assert axis == ["3 FLOP/s", "1 FLOP/s", "a", HOSTILE]
    tips = [c.find(f"{SVG}title").text for c in root.iter(f"{SVG}circle")]  # type: ignore[union-attr]
    assert tips == ["a: 1 FLOP/s", "b: 3 FLOP/s", f"{HOSTILE}: 2 FLOP/s"]


def test_line_plot_geometry() -> None:
    root = parse(plots.line_plot([0, 10, 20], [1.0, 2.0, 3.0], ["0", "1", "2"], "s", "t"))
    points = [tuple(map(float, p.split(",")))
              for p in root.find(f"{SVG}polyline").get("points", "").split()]  # type: ignore[union-attr]
    assert [x for x, _ in points] == [plots.LEFT, plots.LEFT + 235.0, plots.WIDTH - plots.RIGHT]
    assert [y for _, y in points] == [plots.HEIGHT - plots.BOTTOM, 77.0, plots.TOP]


def test_non_finite_points_are_left_out() -> None:
    svg = plots.line_plot([0, 1, 2, math.inf], [1.0, math.nan, 2.0, 5.0], ["a", "b", "c", "d"],
                          "W", "power")
    assert len(list(parse(svg).iter(f"{SVG}circle"))) == 2
    assert "nan" not in svg and "inf" not in svg
    assert plots.line_plot([0], [math.nan], ["a"], "W", "power") == ""
    assert plots.line_plot([], [], [], "W", "power") == ""


def test_a_flat_line_and_a_single_point_have_room() -> None:
    root = parse(plots.line_plot([5], [0.0], ["t"], "degC", "flat"))
    assert [t.text for t in root.iter(f"{SVG}text")][:2] == ["1 °C", "-1 °C"]
    assert root.find(f"{SVG}polyline") is None
    assert root.find(f"{SVG}circle").get("cx") == f"{plots.LEFT + 235.0:.1f}"  # type: ignore[union-attr]


def test_a_long_series_has_its_line_but_no_dots() -> None:
    n = plots.MAX_DOTS + 1
    root = parse(plots.series_plot([[i * 5.0, float(i % 7)] for i in range(n)], "W", "p"))
    assert list(root.iter(f"{SVG}circle")) == []
    assert len(root.find(f"{SVG}polyline").get("points", "").split()) == n  # type: ignore[union-attr]


def test_time_plot_labels_utc_times() -> None:
    start = datetime(2026, 3, 1, 10, 0)
    root = parse(plots.time_plot([(start, 1e12), (start + timedelta(hours=2), 1.3e12)],
                                 "FLOP/s", "gemm"))
    assert [t.text for t in root.iter(f"{SVG}text")] == [
        "1.3 TFLOP/s", "1 TFLOP/s", "2026-03-01 10:00Z", "2026-03-01 12:00Z"]


def test_series_plot_names_seconds_since_start() -> None:
    root = parse(plots.series_plot([[0, 40.0], [3600, 71.5]], "°C", "gpu0.temp_c"))
    assert [t.text for t in root.iter(f"{SVG}text")] == ["71.5 °C", "40 °C", "+0 s", "+3600 s"]


def test_histogram_counts_and_marks() -> None:
    values = [float(v) for v in range(100)] + [math.nan]
    root = parse(plots.histogram(values, "IOPS", HOSTILE, marks=[5.0, 1e9]))
    bars = list(root.iter(f"{SVG}rect"))[1:]  # the first is the frame
    assert len(bars) == 10  # sqrt(100) bins
    counts = [int(b.find(f"{SVG}title").text.rsplit(": ", 1)[1]) for b in bars]  # type: ignore[union-attr]
    assert counts == [10] * 10
    assert len(list(root.iter(f"{SVG}line"))) == 1  # the mark outside the range is left out
    assert [t.text for t in root.iter(f"{SVG}text")][:2] == ["10 nodes", "0"]
    assert plots.histogram([math.inf], "IOPS", "x") == ""


def test_svg_file_is_a_standalone_document() -> None:
    text = plots.svg_file(plots.series_plot([[0, 1.0], [1, 2.0]], "W", "p"))
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<svg ')
    root = ET.fromstring(text.encode())
    assert root.find(f"{SVG}style") is not None  # styled when opened alone


def test_plots_import_no_web_stack_or_plotting_library() -> None:
    import subprocess

    code = ("import sys, bench_agent.report.plots; "
            "print(sorted(m for m in ('markupsafe', 'jinja2', 'fastapi', 'matplotlib') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("unit", ["", "load average"])
def test_label_of_a_unit_outside_the_catalog(unit: str) -> None:
    assert plots.label(1.5, unit) == f"1.5 {unit}".rstrip()
