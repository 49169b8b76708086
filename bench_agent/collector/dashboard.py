"""The dashboard: server-rendered HTML, Jinja2 with autoescape on, no JavaScript.

    /                   the fleet, one page of it: counts by status and state (each a
                        filter), filters, sort, search; per node its state, status,
                        newest result per suite and profile, failing metrics with
                        value and threshold, GPU model, labels, last run
    /nodes/{name}       one node: its results, state history, key metrics of every
                        domain over time with threshold lines, fleet outliers, burn-in
                        series, inventory, reports, keys, repair bundle link
    /reports/{id}       one report: every verdict and measurement with its source,
                        the inventory, the signed envelope to download
    /reports/{id}/envelope.json   that envelope, as received

Node names come from signed reports but are still untrusted text (a node may be
named "<script>"); autoescaping escapes every interpolation, and URLs are built
with the `q` filter (percent-encoding with nothing left safe).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from sqlalchemy import select

from bench_agent.collector import db, fleet_view, lifecycle, page_data, queries, status
from bench_agent.collector.access import need
from bench_agent.collector.roles import READ, Token
from bench_agent.report import plots as svg_plots

router = APIRouter()
Reader = Annotated[Token, Depends(need(READ))]

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
def fleet(request: Request, _who: Reader) -> HTMLResponse:
    settings = request.app.state.settings
    try:
        query = fleet_view.FleetQuery.from_params(dict(request.query_params))
    except ValueError as exc:
        return _page("missing.html", status=400, what=f"such filter ({exc})")
    with request.app.state.database.engine.connect() as conn:
        page = fleet_view.fleet_page(conn, query, _now(), settings.validity_s)
        menus = fleet_view.choices(conn)
    return _page("fleet.html", page=page, query=query, menus=menus,
                 statuses=status.STATUSES, states=lifecycle.STATES, sorts=fleet_view.SORTS,
                 link=lambda **changes: "?" + urlencode(query.params(**changes)),
                 validity_days=settings.validity_s / 86400)


@router.get("/nodes/{name:path}", response_class=HTMLResponse)
def node_page(request: Request, name: str, _who: Reader) -> HTMLResponse:
    settings = request.app.state.settings
    with request.app.state.database.engine.connect() as conn:
        node = queries.get_node(conn, name, _now(), limit=200,
                                validity_s=settings.validity_s)
        if node is None:
            return _page("missing.html", status=404, what=f"node {name}")
        node_id = conn.execute(select(db.nodes.c.id).where(db.nodes.c.name == name)
                               ).scalar_one()
        series = page_data.key_series(conn, node_id)
        odd = page_data.outliers(conn, node_id, [(s.metric, s.device) for s in series])
        burnin = queries.latest_burnin_series(conn, name)
        newest = page_data.signed_report(conn, node["last_report_id"]) \
            if node["last_report_id"] else None
    plots = [
        {"domain": s.domain, "metric": s.metric, "device": s.device, "unit": s.unit,
         "points": len(s.points), "threshold": s.threshold,
         # plots.py escapes every text it writes: its SVG is markup, not text.
         "svg": Markup(svg_plots.time_plot(
             s.points, s.unit, f"{s.metric}{' ' + s.device if s.device else ''} over time",
             s.limits))}
        for s in series
    ]
    # Each series' unit is the one its report records (report.series_units).
    units = burnin.units if burnin else {}
    burnin_plots = [
        {"name": key, "svg": Markup(svg_plots.time_plot(
            points, units.get(key, ""), f"burn-in {key}"))}
        for key, points in (burnin.series.items() if burnin else [])
    ]
    inventory = page_data.inventory_sections(newest.get("inventory") if newest else None)
    return _page("node.html", node=node, plots=plots, burnin=burnin, burnin_plots=burnin_plots,
                 outliers=odd, inventory=inventory, states=lifecycle.STATES)


@router.get("/reports/{report_id}", response_class=HTMLResponse)
def report_page(request: Request, report_id: int, _who: Reader) -> HTMLResponse:
    with request.app.state.database.engine.connect() as conn:
        report = queries.get_report(conn, report_id)
        verdicts = queries.report_verdicts(conn, report_id) if report else []
    if report is None:
        return _page("missing.html", status=404, what=f"report {report_id}")
    signed = report["report"]
    return _page("report.html", report=report, verdicts=verdicts,
                 measurements=signed.get("measurements", []),
                 inventory=page_data.inventory_sections(signed.get("inventory")))


@router.get("/reports/{report_id}/envelope.json")
def report_envelope(request: Request, report_id: int, _who: Reader) -> Response:
    """The signed envelope exactly as the node sent it, to verify offline."""
    if not 0 < report_id <= queries.MAX_ID:
        return _page("missing.html", status=404, what=f"report {report_id}")
    with request.app.state.database.engine.connect() as conn:
        found = page_data.envelope_bytes(conn, report_id)
    if found is None:
        return _page("missing.html", status=404, what=f"report {report_id}")
    return Response(found[0], media_type="application/json", headers={
        "Content-Disposition": f'attachment; filename="report-{report_id}.envelope.json"'})
