"""The dashboard's inline SVG plots (collector/svg.py line_plot): where the points
land, what the axes say, a flat or single-point series, and titles from reports
(node names, metric names) that carry markup."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime

import pytest

pytest.importorskip("markupsafe")

from bench_agent.collector.svg import HEIGHT, WIDTH, line_plot

NS = {"s": "http://www.w3.org/2000/svg"}
T0, T1, T2 = (datetime(2026, 1, 1, 10, 0), datetime(2026, 1, 1, 11, 0),
              datetime(2026, 1, 1, 12, 0))


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # well-formed XML, or this raises
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert (root.get("width"), root.get("height")) == (str(WIDTH), str(HEIGHT))
    return root


def axis_labels(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.findall("s:text", NS)]


def dots(root: ET.Element) -> list[tuple[float, float, str]]:
    return [(float(c.get("cx", "nan")), float(c.get("cy", "nan")),
             c.findtext("s:title", "", NS)) for c in root.findall("s:circle", NS)]


def test_points_span_the_frame_oldest_left_lowest_at_the_bottom() -> None:
    root = parse(line_plot([(T0, 1e12), (T1, 3e12), (T2, 2e12)], "FLOP/s", "cpu.gemm"))
    frame = root.find("s:rect", NS)
    assert frame is not None
    left, top = float(frame.get("x", "0")), float(frame.get("y", "0"))
    right, bottom = left + float(frame.get("width", "0")), top + float(frame.get("height", "0"))
    assert dots(root) == [
        (left, bottom, "2026-01-01 10:00Z: 1 TFLOP/s"),
        ((left + right) / 2, top, "2026-01-01 11:00Z: 3 TFLOP/s"),
        (right, (top + bottom) / 2, "2026-01-01 12:00Z: 2 TFLOP/s"),
    ]
    line = root.find("s:polyline", NS)
    assert line is not None
    assert line.get("points") == " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in dots(root))
    # max and min on the value axis, first and last time on the time axis, in units
    assert axis_labels(root) == ["3 TFLOP/s", "1 TFLOP/s", "2026-01-01 10:00",
                                 "2026-01-01 12:00"]
    assert root.findtext("s:title", "", NS) == "cpu.gemm"


def test_a_flat_series_sits_in_the_middle_with_room_above_and_below() -> None:
    root = parse(line_plot([(T0, 50.0), (T2, 50.0)], "count", "gpus"))
    frame = root.find("s:rect", NS)
    assert frame is not None
    middle = float(frame.get("y", "0")) + float(frame.get("height", "0")) / 2
    assert [y for _, y, _ in dots(root)] == [middle, middle]
    assert axis_labels(root)[:2] == ["55", "45"]  # +-10 % of the value


def test_one_point_is_a_dot_in_the_centre_and_no_line() -> None:
    root = parse(line_plot([(T1, 0.0)], "count", "xids"))
    frame = root.find("s:rect", NS)
    assert frame is not None
    centre = (float(frame.get("x", "0")) + float(frame.get("width", "0")) / 2,
              float(frame.get("y", "0")) + float(frame.get("height", "0")) / 2)
    assert [(x, y) for x, y, _ in dots(root)] == [centre]
    assert root.find("s:polyline", NS) is None
    assert axis_labels(root)[:2] == ["1", "-1"]  # zero: a pad of 1, not of 0


def test_no_points_no_plot() -> None:
    assert str(line_plot([], "count", "nothing")) == ""


def test_a_unit_the_agent_does_not_know_is_printed_as_given() -> None:
    root = parse(line_plot([(T0, 1234.5678), (T1, 2.0)], "furlongs/fortnight", "odd"))
    assert axis_labels(root)[:2] == ["1235 furlongs/fortnight", "2 furlongs/fortnight"]


def test_markup_in_a_title_is_text_not_svg() -> None:
    hostile = 'node"><script>alert(1)</script><g a="'
    svg = str(line_plot([(T0, 1.0), (T1, 2.0)], "count", hostile))
    assert "<script" not in svg
    root = parse(svg)
    assert root.get("aria-label") == hostile and root.findtext("s:title", "", NS) == hostile
    assert [child.tag.split("}")[1] for child in root] == [
        "title", "rect", "text", "text", "text", "text", "polyline", "circle", "circle"]
