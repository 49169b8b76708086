"""The fleet ledger's API: lifecycle moves, labels, the fleet list, repair bundles.

    GET  /v1/fleet?status=&state=&fault_code=&check=&metric=&suite=&gpu_model=&label=k=v
                  &q=&sort=&order=&page=&per_page=     one page of nodes, with counts
    POST /v1/states/{node}   {"state": S, "why": TEXT}  an operator's move (operate)
    PUT  /v1/labels/{node}   {"labels": {k: v}}         replace the node's labels (operate)
    GET  /v1/bundles/{node}                           the repair bundle, tar.gz (read)

The node's name is the last part of the path (names may hold '/'), so these live
under their own prefixes rather than under /v1/nodes/{name}.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from bench_agent.collector import bundle, fleet_view, lifecycle, queries
from bench_agent.collector.access import need
from bench_agent.collector.api import KEY_BODY_LIMIT, _read_body, refusal
from bench_agent.collector.roles import OPERATE, READ, Token
from bench_agent.core.errors import Refused

log = logging.getLogger("bench_agent.collector")
router = APIRouter()
Reader = Annotated[Token, Depends(need(READ))]
Operator = Annotated[Token, Depends(need(OPERATE))]
# Kubernetes label syntax, so the same labels can be copied both ways
# (kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set).
LABEL_KEY = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
MAX_LABELS = 64


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


async def _json_body(request: Request) -> dict[str, Any]:
    body = await _read_body(request, KEY_BODY_LIMIT, request.app.state.settings.body_timeout_s)
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise Refused(400, "malformed_json", "the body is not JSON") from exc
    if not isinstance(data, dict):
        raise Refused(422, "bad_request", "the body is not a JSON object")
    return data


@router.get("/v1/fleet", response_model=None)
def get_fleet(request: Request, _who: Reader) -> dict[str, Any] | JSONResponse:
    settings = request.app.state.settings
    try:
        query = fleet_view.FleetQuery.from_params(dict(request.query_params))
    except ValueError as exc:
        return refusal(400, "bad_query", str(exc))
    with request.app.state.database.engine.connect() as conn:
        return fleet_view.fleet_page(conn, query, _now(), settings.validity_s)


@router.post("/v1/states/{name:path}", response_model=None)
async def post_state(request: Request, name: str, who: Operator) -> JSONResponse:
    try:
        data = await _json_body(request)
    except Refused as exc:
        return refusal(exc.http_status, exc.reason, exc.detail)
    state, why = data.get("state"), data.get("why")
    if not isinstance(state, str) or not isinstance(why, str):
        return refusal(422, "bad_request", 'expected {"state": STATE, "why": TEXT}')
    try:
        before, after = await run_in_threadpool(
            lifecycle.set_state, request.app.state.database, name, state, why,
            f"{who.name} ({who.role} token)")
    except Refused as exc:
        return refusal(exc.http_status, exc.reason, exc.detail)
    log.info("node %r: %s -> %s by %s: %s", name, before, after, who.name, why)
    return JSONResponse({"node": name, "from": before, "to": after, "actor": who.name,
                         "why": why.strip()})


def check_labels(labels: Any) -> dict[str, str]:
    if not isinstance(labels, dict) or len(labels) > MAX_LABELS:
        raise ValueError(f'expected {{"labels": {{KEY: VALUE}}}} with at most {MAX_LABELS}')
    for key, value in labels.items():
        if not LABEL_KEY.fullmatch(key):
            raise ValueError(f"label key {key!r:.80} is not a label name (63 characters of "
                             "letters, digits, '-', '_', '.')")
        if not isinstance(value, str) or not LABEL_VALUE.fullmatch(value):
            raise ValueError(f"label {key}: value {value!r:.80} is not a label value")
    return dict(labels)


@router.put("/v1/labels/{name:path}", response_model=None)
async def put_labels(request: Request, name: str, who: Operator) -> JSONResponse:
    try:
        data = await _json_body(request)
        labels = check_labels(data.get("labels"))
    except Refused as exc:
        return refusal(exc.http_status, exc.reason, exc.detail)
    except ValueError as exc:
        return refusal(422, "bad_labels", str(exc))
    found = await run_in_threadpool(fleet_view.set_labels, request.app.state.database, name,
                                    labels)
    if not found:
        return refusal(404, "not_found", f"no node named {name!r}")
    log.info("node %r: labels set by %s: %s", name, who.name, labels)
    return JSONResponse({"node": name, "labels": labels})


@router.get("/v1/bundles/{name:path}", response_model=None)
def get_bundle(request: Request, name: str, _who: Reader) -> Response:
    with request.app.state.database.engine.connect() as conn:
        if not queries.valid_name(name):
            return refusal(404, "not_found", f"no node named {name!r}")
        data = bundle.build(conn, name, _now(), request.app.state.settings.validity_s)
    if data is None:
        return refusal(404, "not_found", f"no node named {name!r}")
    filename = bundle.filename(name)
    return Response(data, media_type="application/gzip", headers={
        "Content-Disposition": f'attachment; filename="{filename}"'})
