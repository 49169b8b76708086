"""Inline SVG line plots of one metric over time, rendered on the server.

No JavaScript and no CDN: the dashboard must work on a cluster's management
network without internet. Every text that reaches the SVG goes through
markupsafe.escape; numbers are formatted here, so nothing else is interpolated.
"""

from __future__ import annotations

from datetime import datetime

from markupsafe import Markup, escape

from bench_agent.core.units import Unit, format_value

WIDTH, HEIGHT = 560, 170
# Room for the value labels on the left and the dates below.
LEFT, RIGHT, TOP, BOTTOM = 78, 12, 12, 28


def _label(value: float, unit: str) -> str:
    try:
        return format_value(value, Unit(unit))
    except ValueError:
        return f"{value:.4g} {unit}"


def line_plot(points: list[tuple[datetime, float]], unit: str, title: str) -> Markup:
    """An SVG plot of (time, value) points, oldest first; a dot per report."""
    if not points:
        return Markup("")
    times = [t.timestamp() for t, _ in points]
    values = [v for _, v in points]
    t0, t1 = min(times), max(times)
    v0, v1 = min(values), max(values)
    if v0 == v1:  # a flat line sits in the middle, with room above and below
        pad = abs(v0) * 0.1 or 1.0
        v0, v1 = v0 - pad, v1 + pad
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t: float) -> float:
        return LEFT + (plot_w / 2 if t1 == t0 else (t - t0) / (t1 - t0) * plot_w)

    def y(v: float) -> float:
        return TOP + (1 - (v - v0) / (v1 - v0)) * plot_h

    coords = [(x(t), y(v)) for t, v in zip(times, values, strict=True)]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{WIDTH}" '
        f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" class="frame"/>',
        f'<text x="{LEFT - 6}" y="{TOP + 10}" text-anchor="end" class="axis">'
        f"{escape(_label(v1, unit))}</text>",
        f'<text x="{LEFT - 6}" y="{TOP + plot_h}" text-anchor="end" class="axis">'
        f"{escape(_label(v0, unit))}</text>",
        f'<text x="{LEFT}" y="{HEIGHT - 8}" class="axis">'
        f"{escape(points[0][0].strftime('%Y-%m-%d %H:%M'))}</text>",
        f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 8}" text-anchor="end" class="axis">'
        f"{escape(points[-1][0].strftime('%Y-%m-%d %H:%M'))}</text>",
    ]
    if len(coords) > 1:
        path = " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy in coords)
        parts.append(f'<polyline points="{path}" class="line"/>')
    for (cx, cy), (when, value) in zip(coords, points, strict=True):
        tip = f"{when.strftime('%Y-%m-%d %H:%M')}Z: {_label(value, unit)}"
        parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3" class="dot">'
                     f"<title>{escape(tip)}</title></circle>")
    parts.append("</svg>")
    return Markup("".join(parts))
