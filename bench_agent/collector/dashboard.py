"""The dashboard: server-rendered HTML, Jinja2 with autoescape on, no JavaScript.

    /                   the fleet: node, its state, the newest verdict of each suite,
                        failing checks, last run, age
    /nodes/{name}       one node: the same per suite, plots of its key metrics over
                        time, its reports
    /reports/{id}       one report: its verdict table

Node names come from signed reports but are still untrusted text (a node may be
named "<script>"); autoescaping escapes every interpolation, and URLs are built
with the `q` filter (percent-encoding with nothing left safe).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from bench_agent.collector import queries
from bench_agent.report import plots as svg_plots

router = APIRouter()

TEMPLATES = Path(__file__).resolve().parent / "templates"


def humanize_age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    minutes = int(seconds // 60)
    if minutes < 1:
        return f"{int(seconds)} s"
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    return f"{hours // 24} d {hours % 24} h"


def show_value(value: float | None, unit: str | None) -> str:
    if value is None:
        return ""
    if unit is None:
        return f"{value:.4g}"
    return svg_plots.label(value, unit)


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"], default_for_string=True, default=True),
    )
    env.filters["q"] = lambda value: quote(str(value), safe="")
    env.filters["age"] = humanize_age
    env.filters["value"] = show_value
    env.filters["when"] = lambda iso: (iso or "").replace("T", " ").removesuffix("Z")
    return env


ENV = _environment()


def _page(template: str, status: int = 200, **context: object) -> HTMLResponse:
    return HTMLResponse(ENV.get_template(template).render(**context), status_code=status)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@router.get("/", response_class=HTMLResponse)
def fleet(request: Request) -> HTMLResponse:
    with request.app.state.database.engine.connect() as conn:
        nodes = queries.list_nodes(conn, _now())
    counts: dict[str, int] = {}
    for node in nodes:
        counts[node["status"] or "NONE"] = counts.get(node["status"] or "NONE", 0) + 1
    return _page("fleet.html", nodes=nodes, counts=counts)


@router.get("/nodes/{name:path}", response_class=HTMLResponse)
def node_page(request: Request, name: str) -> HTMLResponse:
    with request.app.state.database.engine.connect() as conn:
        node = queries.get_node(conn, name, _now(), limit=200)
        series = queries.node_series(conn, name) if node else []
        burnin = queries.latest_burnin_series(conn, name) if node else None
    if node is None:
        return _page("missing.html", status=404, what=f"node {name}")
    plots = [
        {"metric": s.metric, "device": s.device, "unit": s.unit, "points": len(s.points),
         # plots.py escapes every text it writes: its SVG is markup, not text.
         "svg": Markup(svg_plots.time_plot(
             s.points, s.unit, f"{s.metric}{' ' + s.device if s.device else ''} over time"))}
        for s in series
    ]
    # Each series' unit is the one its report records (report.series_units).
    units = burnin.units if burnin else {}
    burnin_plots = [
        {"name": key, "svg": Markup(svg_plots.time_plot(
            points, units.get(key, ""), f"burn-in {key}"))}
        for key, points in (burnin.series.items() if burnin else [])
    ]
    return _page("node.html", node=node, plots=plots, burnin=burnin, burnin_plots=burnin_plots)


@router.get("/reports/{report_id}", response_class=HTMLResponse)
def report_page(request: Request, report_id: int) -> HTMLResponse:
    with request.app.state.database.engine.connect() as conn:
        report = queries.get_report(conn, report_id)
        verdicts = queries.report_verdicts(conn, report_id) if report else []
    if report is None:
        return _page("missing.html", status=404, what=f"report {report_id}")
    return _page("report.html", report=report, verdicts=verdicts)
