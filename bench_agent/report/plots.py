"""The one plotting path: SVG line plots and histograms, written as text.

Used by the collector's dashboard (inline in its pages), by burn-in (one .svg file
per series beside the report) and by the fleet page (a histogram per metric). No
JavaScript, no CDN, no plotting library: the dashboard must work on a cluster's
management network without internet, and a node needs nothing installed to
draw its burn-in plots. No web-stack import either (the node has none): every
text that reaches the SVG goes through html.escape (its five entities are also
XML's, so a standalone file is well-formed), numbers are formatted here, so
nothing else is interpolated. The caller that embeds a plot in a Jinja2 page
marks it safe (markupsafe.Markup) itself.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from datetime import datetime

from bench_agent.core.units import Unit, format_value

WIDTH, HEIGHT = 560, 170
# Room for the value labels on the left and the dates below.
LEFT, RIGHT, TOP, BOTTOM = 78, 12, 12, 28
# A dot (with its tooltip) per point up to this many; a burn-in of a day at 5 s
# has 17,280 points, whose dots would only blot the line and weigh megabytes.
MAX_DOTS = 200
# The look, inside each SVG: the same in a dashboard page and in a file opened alone.
STYLE = (".plot .frame{fill:#fafafa;stroke:#ccc}"
         ".plot .line{fill:none;stroke:#0969da;stroke-width:1.5}"
         ".plot .dot,.plot .bar{fill:#0969da}.plot .mark{stroke:#b00;stroke-width:1}"
         ".plot .axis{font-size:11px;fill:#555;font-family:sans-serif}"
         ".plot .limit{stroke:#cf222e;stroke-width:1;stroke-dasharray:4 3}"
         ".plot .limit-text{font-size:10px;fill:#cf222e;font-family:sans-serif}")


def _text(value: object) -> str:
    return html.escape(str(value), quote=True)


def label(value: float, unit: str) -> str:
    """A value with its unit for people ("1.3 TFLOP/s"; "45 °C" for a unit not in Unit)."""
    try:
        return format_value(value, Unit(unit))
    except ValueError:
        return f"{value:.4g} {unit}".rstrip()


def _open(title: str, plot_w: int, plot_h: int) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{WIDTH}" '
        f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{_text(title)}">',
        f"<title>{_text(title)}</title>",
        f"<style>{STYLE}</style>",
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" class="frame"/>',
    ]


def _axes(top: str, bottom: str, left: str, right: str) -> list[str]:
    plot_h = HEIGHT - TOP - BOTTOM
    return [
        f'<text x="{LEFT - 6}" y="{TOP + 10}" text-anchor="end" class="axis">{_text(top)}</text>',
        f'<text x="{LEFT - 6}" y="{TOP + plot_h}" text-anchor="end" class="axis">'
        f"{_text(bottom)}</text>",
        f'<text x="{LEFT}" y="{HEIGHT - 8}" class="axis">{_text(left)}</text>',
        f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 8}" text-anchor="end" class="axis">'
        f"{_text(right)}</text>",
    ]


def line_plot(xs: Sequence[float], values: Sequence[float], x_text: Sequence[str],
              unit: str, title: str, limits: Sequence[float] = ()) -> str:
    """An SVG plot of values over x (oldest first), ``x_text`` naming each x.

    The first and last x name the x axis; each dot's tooltip is "x: value". A
    point whose x or value is not finite is left out (it has no place on an axis).
    Empty: no point to plot. ``limits`` (thresholds, in ``unit``) are drawn as
    dashed lines with their value, and the value axis stretches to show them.
    """
    points = [(x, v, t) for x, v, t in zip(xs, values, x_text, strict=True)
              if math.isfinite(x) and math.isfinite(v)]
    if not points:
        return ""
    limits = [v for v in limits if math.isfinite(v)]
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    v0 = min([p[1] for p in points] + limits)
    v1 = max([p[1] for p in points] + limits)
    if v0 == v1:  # a flat line sits in the middle, with room above and below
        pad = abs(v0) * 0.1 or 1.0
        v0, v1 = v0 - pad, v1 + pad
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t: float) -> float:
        return LEFT + (plot_w / 2 if x1 == x0 else (t - x0) / (x1 - x0) * plot_w)

    def y(v: float) -> float:
        return TOP + (1 - (v - v0) / (v1 - v0)) * plot_h

    coords = [(x(t), y(v)) for t, v, _ in points]
    parts = _open(title, plot_w, plot_h) + _axes(label(v1, unit), label(v0, unit),
                                                 points[0][2], points[-1][2])
    for limit in limits:
        ly = y(limit)
        parts.append(f'<line x1="{LEFT}" y1="{ly:.1f}" x2="{WIDTH - RIGHT}" y2="{ly:.1f}" '
                     f'class="limit"/><text x="{WIDTH - RIGHT - 2}" y="{ly - 3:.1f}" '
                     f'text-anchor="end" class="limit-text">threshold '
                     f"{_text(label(limit, unit))}</text>")
    if len(coords) > 1:
        path = " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy in coords)
        parts.append(f'<polyline points="{path}" class="line"/>')
    if len(coords) <= MAX_DOTS:
        for (cx, cy), (_, value, when) in zip(coords, points, strict=True):
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3" class="dot">'
                         f"<title>{_text(f'{when}: {label(value, unit)}')}</title></circle>")
    parts.append("</svg>")
    return "".join(parts)


def time_plot(points: Sequence[tuple[datetime, float]], unit: str, title: str,
              limits: Sequence[float] = ()) -> str:
    """A line plot of (UTC time, value) points, oldest first (the dashboard's)."""
    # Positions from the datetimes themselves: timestamp() of a naive datetime
    # would read it as local time, and the collector's are naive UTC.
    origin = min((t for t, _ in points), default=datetime(1970, 1, 1))
    return line_plot([(t - origin).total_seconds() for t, _ in points],
                     [v for _, v in points],
                     [t.strftime("%Y-%m-%d %H:%M") + "Z" for t, _ in points], unit, title,
                     limits)


def series_plot(points: Sequence[Sequence[float]], unit: str, title: str) -> str:
    """A line plot of a burn-in series: [seconds since the start, value] points."""
    return line_plot([float(p[0]) for p in points], [float(p[1]) for p in points],
                     [f"+{float(p[0]):.0f} s" for p in points], unit, title)


def histogram(values: Sequence[float], unit: str, title: str,
              marks: Sequence[float] = (), counted: str = "nodes") -> str:
    """An SVG histogram of ``values``, with a red line at each of ``marks`` (outliers).

    sqrt(n) bins, at least 5 and at most 50 (the square-root choice, as numpy's
    histogram_bin_edges "sqrt"); non-finite values are left out.
    """
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return ""
    bins = min(50, max(5, int(math.sqrt(len(finite)))))
    lo, hi = min(finite), max(finite)
    if lo == hi:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    width = (hi - lo) / bins
    counts = [0] * bins
    for v in finite:
        counts[min(bins - 1, int((v - lo) / width))] += 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    tallest = max(counts)
    parts = _open(title, plot_w, plot_h) + _axes(f"{tallest} {counted}", "0",
                                                 label(lo, unit), label(hi, unit))
    bar_w = plot_w / bins
    for index, count in enumerate(counts):
        if count:
            bar_h = count / tallest * plot_h
            low = lo + index * width
            parts.append(
                f'<rect x="{LEFT + index * bar_w:.1f}" y="{TOP + plot_h - bar_h:.1f}" '
                f'width="{max(bar_w - 1, 0.5):.1f}" height="{bar_h:.1f}" class="bar">'
                f"<title>{_text(f'{label(low, unit)} to {label(low + width, unit)}: {count}')}"
                "</title></rect>")
    for mark in marks:
        if math.isfinite(mark) and lo <= mark <= hi:
            mx = LEFT + (mark - lo) / (hi - lo) * plot_w
            parts.append(f'<line x1="{mx:.1f}" y1="{TOP}" x2="{mx:.1f}" y2="{TOP + plot_h}" '
                         f'class="mark"><title>{_text(label(mark, unit))}</title></line>')
    parts.append("</svg>")
    return "".join(parts)


def svg_file(svg: str) -> str:
    """A plot as the text of a standalone .svg file."""
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + svg + "\n"
