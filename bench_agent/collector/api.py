"""The JSON API (/v1/...), /metrics and /healthz.

Refusals are JSON objects {"error": <reason code>, "detail": <human message>}
with the status codes listed in ingest.py, and from here: 408 body_timeout (the
body did not arrive whole within settings.body_timeout_s), 413 body_too_large,
429 overloaded (max_in_flight posts are being verified or stored), 503
database_unavailable. Every refusal is logged with its reason and counted in
/metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

import anyio
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from bench_agent.collector import db, enrollment, metrics, queries
from bench_agent.collector.access import challenge, need
from bench_agent.collector.ingest import Stored, ingest
from bench_agent.collector.roles import ADMIN, READ, Token
from bench_agent.collector.settings import Settings
from bench_agent.core.errors import EnrollmentError, Refused
from bench_agent.core.model import Status

log = logging.getLogger("bench_agent.collector")
router = APIRouter()
Reader = Annotated[Token, Depends(need(READ))]
Admin = Annotated[Token, Depends(need(ADMIN))]

RETRY_AFTER_SECONDS = 2
# A refusal sent before the whole body was read closes the connection: the rest of
# the body would otherwise be read as the next request. RFC 9110 15.5.9: a server
# that sends 408 "SHOULD send the 'close' connection option"; uvicorn closes the
# transport after a response that carries it.
CLOSE = {"Connection": "close"}


class InFlight:
    """Posts being verified or stored (settings.max_in_flight). A slot is taken only
    once the whole body is in: a slow body holds a connection, never a slot."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self._lock = threading.Lock()

    def enter(self) -> bool:
        with self._lock:
            if self.count >= self.limit:
                return False
            self.count += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.count -= 1


def refusal(status: int, reason: str, detail: str,
            headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": reason, "detail": detail}, status_code=status,
                        headers=headers)


def _state(request: Request) -> tuple[db.Database, Settings, metrics.Counters]:
    state = request.app.state
    return state.database, state.settings, state.counters


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


KEY_BODY_LIMIT = 16 * 1024


async def _read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The whole body, read within ``timeout_s`` seconds in all.

    Refused(413) once it exceeds ``limit`` bytes (without reading the rest),
    Refused(408) when it is not all in by the deadline. The deadline is on the
    whole read, not on each chunk: a client that trickles one byte every few
    seconds never trips a per-read timeout, and uvicorn has no body timeout.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Refused(413, "body_too_large", f"the body is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        with anyio.fail_after(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise Refused(413, "body_too_large",
                                  f"the body is over the limit of {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise Refused(408, "body_timeout", f"the body did not arrive within {timeout_s:g} s "
                      f"({size} bytes in)") from None
    return b"".join(chunks)


async def _in_thread(executor: ThreadPoolExecutor, call: Callable[[], Stored]) -> Stored:
    """``call()`` in one of the ingest threads, awaited to its end.

    asyncio's executor, not anyio.to_thread: its limiter, cancel scope and context
    lookups cost about 60 us of CPU per call against 20 us (measured here, 32 calls
    in flight), a twentieth of an ingest. As anyio's run_sync does by default, a
    cancelled request still waits for the thread: the report is stored or refused
    whole, and its in-flight slot is given back only then.
    """
    future = asyncio.get_running_loop().run_in_executor(executor, call)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await future
        raise


# The header is read from the request, not declared as a Header() parameter: FastAPI's
# dependency solving for it was a twentieth of the event loop's time per post
# (profiled, issue 17). openapi_extra still describes it.
OFFERED_KEY_HEADER = {
    "name": "X-Bench-Agent-Public-Key", "in": "header", "required": False,
    "schema": {"type": "string"},
    "description": "base64 of the raw 32-byte Ed25519 public key that signed the "
                   "envelope; read only when the collector runs with --auto-enroll"}


@router.post("/v1/reports", openapi_extra={"parameters": [OFFERED_KEY_HEADER]})
async def post_report(request: Request) -> Response:
    """The route /v1/openapi.json describes; served, posts take ReportsFastPath."""
    return await receive_report(request)


class ReportsFastPath:
    """ASGI: POST /v1/reports straight to receive_report, everything else to the app.

    Posts are the collector's load (a fleet's reports in a burst). FastAPI's stack
    around a route (its telemetry check, body-limit, exception and exit-stack
    middlewares, routing, dependency solving) cost the event loop about as much
    CPU per post as the SQL of storing it (issue 17, measured with
    benchmarks/bench_ingest.py). Everything that stack does for this route is done
    here: the application's state (scope["app"]), the 503 of a database that is
    down (database_unavailable, as the app's handler), and a 500 for anything else,
    re-raised for uvicorn to log, as Starlette's ServerErrorMiddleware does. The
    route itself answers the same where the app runs without this (TestClient).
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" \
                or scope["path"] != "/v1/reports":
            await self.app(scope, receive, send)
            return
        scope["app"] = self.app
        request = Request(scope, receive)
        try:
            response = await receive_report(request)
        except (OperationalError, InterfaceError) as exc:
            response = database_unavailable(request, exc)
        except Exception:
            await PlainTextResponse("Internal Server Error", status_code=500)(
                scope, receive, send)
            raise
        await response(scope, receive, send)


async def receive_report(request: Request) -> Response:
    """Verify and store a posted report (ingest.py), answering with its id and digest
    or with the refusal."""
    offered_key = request.headers.get("x-bench-agent-public-key")
    database, settings, counters = _state(request)
    client = request.client.host if request.client else "?"
    in_flight: InFlight = request.app.state.in_flight
    try:
        body = await _read_body(request, settings.max_body_bytes, settings.body_timeout_s)
    except Refused as exc:
        counters.refused(exc.reason)
        log.warning("refused report from %s: %d %s: %s", client, exc.http_status, exc.reason,
                    exc.detail)
        return refusal(exc.http_status, exc.reason, exc.detail, headers=CLOSE)
    # The slot is taken with the body in hand: what it bounds is the verifying and
    # storing (threads, database connections), which only a whole body needs.
    if not in_flight.enter():
        counters.refused("overloaded")
        log.warning("refused report from %s: 429 overloaded", client)
        return refusal(429, "overloaded", "too many reports in flight; retry later",
                       headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    try:
        # Signature checks and database writes block: run them off the event loop.
        stored: Stored = await _in_thread(request.app.state.ingest_executor, functools.partial(
            ingest, database, body, offered_key=offered_key, auto_enroll=settings.auto_enroll,
            policy=request.app.state.policy))
    except Refused as exc:
        counters.refused(exc.reason)
        log.warning("refused report from %s: %d %s: %s", client, exc.http_status, exc.reason,
                    exc.detail)
        return refusal(exc.http_status, exc.reason, exc.detail)
    except EnrollmentError as exc:
        # Auto-enroll refused in the write transaction (enrollment.enroll_in): the
        # node has had a key before (a revoked one too), or another first key of
        # it won a race at the database's one-active-key-per-node index.
        counters.refused(exc.reason)
        log.warning("refused report from %s: 403 %s: %s", client, exc.reason, exc)
        return refusal(403, exc.reason, str(exc))
    finally:
        in_flight.leave()
    counters.accepted("created" if stored.created else "duplicate")
    return JSONResponse(
        {"id": stored.report_id, "digest": stored.digest, "node": stored.node,
         "status": "stored" if stored.created else "already stored"},
        status_code=201 if stored.created else 200,
        headers={"Location": f"/v1/reports/{stored.report_id}"},
    )


@router.get("/v1/nodes", response_model=None)
def get_nodes(
    request: Request,
    _who: Reader,
    limit: Annotated[int, Query(ge=1, le=queries.MAX_NODES_PAGE)] = queries.NODES_PAGE,
    after: str | None = None,
) -> JSONResponse:
    """One page of nodes by name: {"nodes": [...], "next": NAME or null}; the next page
    is ?after=NAME. Also said in a Link header (RFC 8288, rel="next")."""
    database, settings, _ = _state(request)
    if after is not None and not queries.valid_name(after):
        return refusal(400, "bad_query", f"after={after!r:.80} is not a node name")
    with database.engine.connect() as conn:
        nodes, following = queries.nodes_page(conn, _now(), settings.validity_s,
                                              limit=limit, after=after)
    link = None if following is None else \
        f"/v1/nodes?{urlencode({'limit': limit, 'after': following})}"
    return JSONResponse({"nodes": nodes, "next": following},
                        headers={"Link": f'<{link}>; rel="next"'} if link else None)


@router.get("/v1/nodes/{name:path}", response_model=None)
def get_node(request: Request, name: str, _who: Reader) -> dict[str, Any] | JSONResponse:
    database, settings, _ = _state(request)
    with database.engine.connect() as conn:
        node = queries.get_node(conn, name, _now(), validity_s=settings.validity_s)
    if node is None:
        return refusal(404, "not_found", f"no node named {name!r}")
    return node


@router.get("/v1/reports", response_model=None)
def get_reports(
    request: Request,
    _who: Reader,
    node: str | None = None,
    since: str | None = None,
    status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any] | JSONResponse:
    database, _, _ = _state(request)
    since_at = None
    if since is not None:
        try:
            since_at = datetime.fromisoformat(since)
            if since_at.tzinfo is not None:
                since_at = since_at.astimezone(UTC).replace(tzinfo=None)
        except (ValueError, OverflowError):
            return refusal(400, "bad_query", f"since={since!r} is not an ISO 8601 time")
    if status is not None and status not in Status.__members__:
        return refusal(400, "bad_query", f"status={status!r} is not one of "
                       f"{', '.join(Status.__members__)}")
    with database.engine.connect() as conn:
        found = queries.list_reports(conn, node=node, since=since_at, status=status,
                                     limit=limit)
    return {"reports": found}


@router.get("/v1/reports/{report_id}", response_model=None)
def get_report(request: Request, report_id: int, _who: Reader
               ) -> dict[str, Any] | JSONResponse:
    database, _, _ = _state(request)
    with database.engine.connect() as conn:
        report = queries.get_report(conn, report_id)
    if report is None:
        return refusal(404, "not_found", f"no report with id {report_id}")
    return report


def denied(request: Request, exc: Exception) -> Response:
    """The answer to a Refused that escapes a handler (access.need's role check): the
    refusal, with the challenge of a 401."""
    assert isinstance(exc, Refused)
    return refusal(exc.http_status, exc.reason, exc.detail,
                   headers=challenge(request) if exc.http_status == 401 else None)


@router.post("/v1/keys", response_model=None)
async def post_key(request: Request, who: Admin) -> JSONResponse:
    _, settings, _ = _state(request)
    # A key enrollment is a few hundred bytes: no reason to read more.
    try:
        body = await _read_body(request, KEY_BODY_LIMIT, settings.body_timeout_s)
    except Refused as exc:
        return refusal(exc.http_status, exc.reason, exc.detail, headers=CLOSE)
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return refusal(400, "malformed_json", "the body is not JSON")
    if not isinstance(data, dict) or not isinstance(data.get("node"), str) \
            or not isinstance(data.get("public_key"), str) \
            or not isinstance(data.get("replace", False), bool):
        return refusal(422, "invalid_key", 'expected {"node": NAME, "public_key": PEM of an '
                       'Ed25519 key, "replace": false|true}')
    database, _, _ = _state(request)
    try:
        keyid, created = await run_in_threadpool(functools.partial(
            enrollment.enroll, database, data["node"], data["public_key"],
            replace=data.get("replace", False)))
    except EnrollmentError as exc:
        status = 409 if exc.reason in enrollment.CONFLICTS else 422
        return refusal(status, exc.reason, str(exc))
    log.info("enrolled key %s for node %r (by %s)", keyid, data["node"], who.name)
    return JSONResponse({"keyid": keyid, "node": data["node"]},
                        status_code=201 if created else 200)


@router.delete("/v1/keys/{keyid}", response_model=None)
@router.post("/v1/keys/{keyid}/revoke", response_model=None)
def revoke_key(request: Request, keyid: str, who: Admin) -> JSONResponse:
    database, _, _ = _state(request)
    revoked_at = enrollment.revoke(database, keyid)
    if revoked_at is None:
        return refusal(404, "not_found", f"no enrolled key {keyid}")
    log.info("revoked key %s (by %s)", keyid, who.name)
    return JSONResponse({"keyid": keyid, "revoked_at": queries.iso(revoked_at)})


def database_unavailable(request: Request, exc: Exception) -> Response:
    """503 with Retry-After when the database cannot be reached or is locked.

    Not a 500: nothing is wrong with the request, and an uploader keeps the
    report and retries (bench_agent/report/upload.py RETRY_STATUSES).
    """
    log.error("%s %s: database unavailable: %s", request.method, request.url.path,
              str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    if request.url.path == "/v1/reports" and request.method == "POST":
        request.app.state.counters.refused("database_unavailable")
    return refusal(503, "database_unavailable", "the collector's database is unavailable; "
                   "retry later", headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


@router.get("/metrics")
def get_metrics(request: Request, _who: Reader) -> PlainTextResponse:
    database, settings, counters = _state(request)
    with database.engine.connect() as conn:
        text = metrics.render(conn, counters, _now(), settings.validity_s)
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")


@router.get("/healthz")
def healthz(request: Request) -> dict[str, Any]:
    database, _, _ = _state(request)
    with database.engine.connect() as conn:
        stored = queries.stored_reports(conn)
    return {"ok": True, "reports": stored}
