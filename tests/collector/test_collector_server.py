"""A real collector (`bench-agent collector serve`, uvicorn) on loopback, SQLite and
PostgreSQL: the HTTP contract the uploader relies on, the read API, keys, metrics."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from bench_agent.collector.api import ReportsFastPath
from bench_agent.report.attest import NodeKey, PublicKey, verify_envelope
from tests.collector_support import (
    REPO,
    Collector,
    envelope_bytes,
    http,
    make_report,
    postgres_available,
    postgres_database,
)

TOKEN = "test-admin-token-0123456789"
LIMIT = 64 * 1024
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not postgres_available(), reason="PostgreSQL is not reachable at 127.0.0.1:5432"))]


@pytest.fixture(scope="module", params=BACKENDS)
def collector(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[Collector]:
    """One server per backend for the module: starting one costs about a second."""
    tmp = tmp_path_factory.mktemp(f"collector-{request.param}")
    token_file = tmp / "token"
    token_file.write_text(TOKEN + "\n")
    sqlite = contextlib.nullcontext(f"sqlite:///{tmp / 'collector.db'}")
    with postgres_database() if request.param == "postgresql" else sqlite as url:
        server = Collector(url, tmp / "server.log", "--admin-token-file", str(token_file),
                           "--max-body-bytes", str(LIMIT))
        try:
            yield server.start()
        finally:
            server.stop()


def admin(collector: Collector, method: str, path: str, data: object = None,
          token: str = TOKEN) -> tuple[int, dict[str, object]]:
    body = json.dumps(data).encode() if data is not None else None
    reply = http(method, collector.url + path, body,
                 {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    return reply.status, reply.json()


def enroll(collector: Collector, node: str) -> NodeKey:
    key = NodeKey.generate()
    status, body = admin(collector, "POST", "/v1/keys",
                         {"node": node, "public_key": key.public.pem()})
    assert status == 201, body
    assert body["keyid"] == key.public.keyid
    return key


def test_post_stores_once_and_the_read_api_returns_it(collector: Collector) -> None:
    key = enroll(collector, "api-node")
    report = make_report("api-node", when=datetime(2026, 5, 1, 12, tzinfo=UTC))
    body = envelope_bytes(report, key)
    first = collector.post(body)
    assert first.status == 201, first.body
    created = first.json()
    assert set(created) >= {"id", "digest"}
    again = collector.post(body)
    assert again.status == 200 and again.json()["id"] == created["id"]

    stored = collector.get(f"/v1/reports/{created['id']}").json()
    assert stored["report"] == report
    assert stored["node"] == "api-node" and stored["digest"] == created["digest"]
    # What the collector keeps still verifies with the node's key.
    statement = verify_envelope(stored["envelope"], PublicKey.from_pem(key.public.pem()))
    assert statement["predicate"]["report_id"] == report["report_id"]

    listed = collector.get("/v1/reports?node=api-node").json()["reports"]
    assert [r["id"] for r in listed] == [created["id"]]
    assert collector.get("/v1/reports?node=api-node&since=2026-05-02T00:00:00Z"
                         ).json()["reports"] == []
    assert collector.get("/v1/reports?node=api-node&status=FAIL").json()["reports"] == []
    assert collector.get("/v1/reports?since=not-a-time").status == 400
    assert collector.get("/v1/reports/999999").status == 404

    node = collector.get("/v1/nodes/api-node").json()
    assert node["last_status"] == "PASS" and node["last_report_id"] == created["id"]
    assert [k["keyid"] for k in node["keys"]] == [key.public.keyid]
    names = [n["name"] for n in collector.get("/v1/nodes").json()["nodes"]]
    assert "api-node" in names
    assert collector.get("/v1/nodes/no-such-node").status == 404


def test_the_node_list_pages_by_name(collector: Collector) -> None:
    for name in ("page-e", "page-a", "page-c", "page-b", "page-d"):
        assert collector.post(envelope_bytes(make_report(name), enroll(collector, name))
                              ).status == 201
    everyone = collector.get("/v1/nodes").json()
    # The default page (1000) holds this module's few nodes: old clients see them all.
    assert everyone["next"] is None
    names = [n["name"] for n in everyone["nodes"]]
    assert names == sorted(names) and {f"page-{c}" for c in "abcde"} <= set(names)
    # Two at a time from the start: every node once, in order, each page pointing on.
    walked, path, pages = [], "/v1/nodes?limit=2", 0
    while True:
        reply = collector.get(path)
        page = reply.json()
        pages += 1
        assert len(page["nodes"]) <= 2
        walked += [n["name"] for n in page["nodes"]]
        if page["next"] is None:
            assert "link" not in reply.headers
            break
        assert page["next"] == page["nodes"][-1]["name"]
        path = f"/v1/nodes?limit=2&after={quote(page['next'], safe='')}"
        assert reply.headers["link"] == f'<{path}>; rel="next"'
    assert walked == names and pages == -(-len(names) // 2)
    # After a name, whether or not a node has it; past the last, an empty last page.
    assert [n["name"] for n in collector.get("/v1/nodes?limit=2&after=page-bb")
            .json()["nodes"]] == [n for n in names if n > "page-bb"][:2]
    assert collector.get(f"/v1/nodes?after={quote(names[-1])}").json() == {
        "nodes": [], "next": None}
    for bad in ("limit=0", "limit=10001", "limit=many"):
        assert collector.get(f"/v1/nodes?{bad}").status == 422, bad
    refused = collector.get("/v1/nodes?after=a%00b")
    assert (refused.status, refused.json()["error"]) == (400, "bad_query")


def test_every_refusal_over_http(collector: Collector) -> None:
    key = enroll(collector, "refused-node")
    report = make_report("refused-node")
    good = json.loads(envelope_bytes(report, key))
    before = collector.get("/healthz").json()["reports"]

    def refused(body: bytes) -> tuple[int, str]:
        reply = collector.post(body)
        data = reply.json()
        assert set(data) == {"error", "detail"} and data["detail"]
        return reply.status, data["error"]

    assert refused(b'{"payloadType": ') == (400, "malformed_json")
    assert refused(json.dumps(report).encode()) == (400, "not_envelope")
    assert refused(envelope_bytes(report, NodeKey.generate())) == (401, "unknown_key")
    payload = base64.b64decode(good["payload"]).replace(b"refused-node", b"refused-nodf", 1)
    tampered = {**good, "payload": base64.b64encode(payload).decode()}
    assert refused(json.dumps(tampered).encode()) == (422, "bad_signature")
    invalid = {**report, "verdicts": [{"check": "x", "status": "PASS"}]}  # PASS, no value
    assert refused(envelope_bytes(invalid, key)) == (422, "invalid_report")
    assert refused(envelope_bytes(make_report("someone-else"), key)) == (403,
                                                                        "subject_mismatch")
    huge = make_report("refused-node", n_extra=600)
    assert len(envelope_bytes(huge, key)) > LIMIT
    assert refused(envelope_bytes(huge, key)) == (413, "body_too_large")

    status, _ = admin(collector, "POST", f"/v1/keys/{key.public.keyid}/revoke")
    assert status == 200
    assert refused(envelope_bytes(report, key)) == (403, "key_revoked")

    assert collector.get("/healthz").json()["reports"] == before  # nothing stored
    metrics = collector.get("/metrics").body.decode()
    for reason in ("malformed_json", "not_envelope", "unknown_key", "bad_signature",
                   "invalid_report", "subject_mismatch", "body_too_large", "key_revoked"):
        # Exported at 0 from the start (metrics.KNOWN_REFUSALS): each was counted.
        assert re.search(rf'^bench_agent_collector_reports_refused_total\{{reason="{reason}"\}} '
                         r"[1-9]\d*$", metrics, re.MULTILINE), reason
    log = collector.log()
    assert "refused report from 127.0.0.1: 403 key_revoked" in log
    assert "413 body_too_large" in log


def test_admin_endpoints_need_the_token(collector: Collector) -> None:
    key = NodeKey.generate()
    data = {"node": "admin-node", "public_key": key.public.pem()}
    assert admin(collector, "POST", "/v1/keys", data, token="wrong-token")[0] == 401
    assert http("POST", collector.url + "/v1/keys", json.dumps(data).encode()).status == 401
    assert admin(collector, "POST", "/v1/keys", data)[0] == 201
    assert admin(collector, "POST", "/v1/keys", data)[0] == 200  # idempotent
    status, body = admin(collector, "POST", "/v1/keys", {**data, "node": "other"})
    assert (status, body["error"]) == (409, "key_conflict")
    status, body = admin(collector, "POST", "/v1/keys", {"node": "x", "public_key": "junk"})
    assert (status, body["error"]) == (422, "invalid_key")
    assert admin(collector, "DELETE", f"/v1/keys/{key.public.keyid}", token="nope")[0] == 401
    assert admin(collector, "DELETE", f"/v1/keys/{key.public.keyid}")[0] == 200
    assert admin(collector, "DELETE", f"/v1/keys/{'0' * 64}")[0] == 404
    # An enrollment body is small: a huge one is refused before it is read whole.
    status, body = admin(collector, "POST", "/v1/keys",
                         {"node": "big", "public_key": "x" * (64 * 1024)})
    assert (status, body["error"]) == (413, "body_too_large")


@pytest.mark.e2e
def test_cli_enroll_and_revoke_on_the_running_collectors_database(
        collector: Collector, tmp_path: Path) -> None:
    key = NodeKey.generate()
    pem = tmp_path / "node.pub"
    pem.write_text(key.public.pem())

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bench_agent.cli", "collector", *args],
                              capture_output=True, text=True, cwd=REPO, timeout=60)

    done = cli("enroll", "--db", collector.db_url, "--node", "cli-node", "--pubkey", str(pem))
    assert done.returncode == 0, done.stderr
    assert key.public.keyid in done.stdout
    assert collector.post(envelope_bytes(make_report("cli-node"), key)).status == 201
    done = cli("revoke", "--db", collector.db_url, key.public.keyid)
    assert done.returncode == 0, done.stderr
    later = make_report("cli-node", when=datetime.now(UTC) - timedelta(minutes=5))
    assert collector.post(envelope_bytes(later, key)).status == 403
    assert cli("revoke", "--db", collector.db_url, "f" * 64).returncode == 3


def test_metrics_count_nodes_by_last_verdict_and_their_age(collector: Collector) -> None:
    key = enroll(collector, 'metrics"node')
    when = datetime.now(UTC) - timedelta(hours=1)
    reply = collector.post(envelope_bytes(make_report('metrics"node', when=when,
                                                      status="FAIL"), key))
    assert reply.status == 201
    text = collector.get("/metrics").body.decode()
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines()
                 if line and not line.startswith("#"))
    assert int(lines['bench_agent_collector_nodes{verdict="FAIL"}']) >= 1
    age = float(lines['bench_agent_collector_node_last_report_age_seconds{node="metrics\\"node"}'])
    assert 3500 < age < 3700
    assert int(lines['bench_agent_collector_reports_accepted_total{outcome="created"}']) >= 1
    assert collector.get("/v1/nodes/metrics%22node").json()["failing_checks"] == ["cpu-gemm"]


def test_auto_enroll_mode(tmp_path: Path) -> None:
    server = Collector(f"sqlite:///{tmp_path / 'lab.db'}", tmp_path / "lab.log",
                       "--auto-enroll", "--no-access-log")
    try:
        server.start()
        key = NodeKey.generate()
        body = envelope_bytes(make_report("lab-node"), key)
        assert server.post(body).status == 401  # no key offered
        offered = {"X-Bench-Agent-Public-Key": base64.b64encode(key.public.raw).decode()}
        assert server.post(body, offered).status == 201
        # Once enrolled, the key is known: no header needed.
        assert server.post(envelope_bytes(make_report("lab-node"), key)).status == 201
        assert "auto-enroll is on" in server.log()
        assert f"database: sqlite:///{tmp_path / 'lab.db'}\n" in server.log()
    finally:
        server.stop()


def test_a_chunked_body_over_the_limit_is_refused_without_reading_it_all(
        collector: Collector) -> None:
    import http.client

    def chunks() -> Iterator[bytes]:
        for _ in range(LIMIT // 1024 * 4):
            yield b" " * 1024

    before = collector.log().count("413 body_too_large")
    conn = http.client.HTTPConnection("127.0.0.1", collector.port, timeout=10)
    try:
        conn.request("POST", "/v1/reports", body=chunks(), encode_chunked=True,
                     headers={"Content-Type": "application/json"})
        reply = conn.getresponse()
        assert reply.status == 413
        assert json.loads(reply.read())["error"] == "body_too_large"
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may close the connection before the client finishes writing
    finally:
        conn.close()
    assert collector.log().count("413 body_too_large") == before + 1


def test_hostile_reads_are_404_or_400_and_a_database_down_is_503(tmp_path: Path) -> None:
    # In process (Starlette's TestClient): 500s surface as responses, not exceptions.
    from fastapi.testclient import TestClient

    from bench_agent.collector import db
    from bench_agent.collector.app import create_app
    from bench_agent.collector.settings import Settings

    backends = [f"sqlite:///{tmp_path / 'c.db'}"]
    with contextlib.ExitStack() as stack:
        if postgres_available():
            backends.append(stack.enter_context(postgres_database()))
        for url in backends:
            database = db.Database(url)
            database.migrate()
            client = TestClient(create_app(Settings(db_url=url), database),
                                raise_server_exceptions=False)
            for path, status in (("/v1/reports/99999999999999999999", 404),
                                 ("/v1/reports/9999999999", 404),
                                 ("/reports/99999999999999999999", 404),
                                 ("/v1/nodes/a%00b", 404), ("/nodes/a%00b", 404),
                                 ("/v1/reports?node=a%00b", 200),
                                 ("/v1/reports?since=0001-01-01T00:00:00%2B01:00", 400)):
                assert client.get(path).status_code == status, (url, path)
            database.dispose()

    # Nothing listens on port 1: every request meets a database that is down. The
    # same through the route and through the fast path that serve uses for posts.
    down = "postgresql://postgres@127.0.0.1:1/test"
    report = envelope_bytes(make_report("node-a"), NodeKey.generate())
    for wrap in (_as_routed, ReportsFastPath):
        app = create_app(Settings(db_url=down), db.Database(down))
        with TestClient(wrap(app), raise_server_exceptions=False) as client:
            reply = client.post("/v1/reports", content=b"{}")  # refused before the database
            assert reply.status_code == 400
            for method, path, body in (("POST", "/v1/reports", report),
                                       ("GET", "/v1/nodes", None)):
                reply = client.request(method, path, content=body)
                assert reply.status_code == 503, (wrap, path, reply.text)
                assert reply.json()["error"] == "database_unavailable"
                assert reply.headers["Retry-After"]
            assert app.state.counters.snapshot()[1]["database_unavailable"] == 1


def _as_routed(app: Any) -> Any:
    return app


def test_the_fast_path_answers_posts_as_the_route_does(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    from fastapi.testclient import TestClient

    from bench_agent.collector import api, db, enrollment
    from bench_agent.collector.app import create_app
    from bench_agent.collector.settings import Settings

    answers = {}
    for wrap in (_as_routed, ReportsFastPath):
        url = f"sqlite:///{tmp_path / f'{wrap.__name__}.db'}"
        database = db.Database(url)
        database.migrate()
        key = NodeKey.generate()
        with database.engine.begin() as conn:
            enrollment.enroll_in(conn, "fast-1", key.public)
        body = envelope_bytes(make_report("fast-1", when=datetime(2026, 5, 1, tzinfo=UTC)),
                              key)
        with TestClient(wrap(create_app(Settings(db_url=url), database)),
                        raise_server_exceptions=False) as client:
            replies = [client.post("/v1/reports", content=b) for b in
                       (body, body, b"{", envelope_bytes(make_report("fast-1"),
                                                         NodeKey.generate()))]
            answers[wrap] = [(r.status_code, r.json().get("error", r.json().get("status")))
                             for r in replies]
            # Other paths go to the application.
            assert client.get("/v1/nodes").json()["nodes"][0]["name"] == "fast-1"
            # Anything unforeseen is a 500, as Starlette's ServerErrorMiddleware answers.
            with monkeypatch.context() as patched:
                patched.setattr(api, "ingest", _raise_unforeseen)
                failed = client.post("/v1/reports", content=body)
            assert (failed.status_code, failed.text) == (500, "Internal Server Error")
        database.dispose()
    assert answers[_as_routed] == answers[ReportsFastPath] == [
        (201, "stored"), (200, "already stored"), (400, "malformed_json"),
        (401, "unknown_key")]


def _raise_unforeseen(*_: Any, **__: Any) -> Any:
    raise RuntimeError("unforeseen")


@pytest.mark.slow
def test_slow_bodies_hold_no_slot_and_are_closed_at_their_deadline(tmp_path: Path) -> None:
    """40 clients trickling a byte every 0.2 s cannot starve 4 slots; each gets 408."""
    import select
    import socket
    import threading

    deadline_s = 4
    token = tmp_path / "token"
    token.write_text(TOKEN)
    server = Collector(f"sqlite:///{tmp_path / 'slow.db'}", tmp_path / "slow.log",
                       "--admin-token-file", str(token), "--no-access-log",
                       "--max-in-flight", "4", "--body-timeout", str(deadline_s))
    slow: list[socket.socket] = []
    stop = threading.Event()

    def trickle() -> None:
        # One byte at a time, never a whole body: a per-read timeout never trips.
        while not stop.wait(0.2):
            for sock in slow:
                if sock.fileno() < 0:  # closed by the test's own clean-up
                    continue
                try:
                    readable, _, _ = select.select([sock], [], [], 0)
                except (OSError, ValueError):  # closed between the test and the select
                    continue
                if not readable:  # no answer yet: keep it busy
                    with contextlib.suppress(OSError):
                        sock.send(b" ")

    trickler = threading.Thread(target=trickle, daemon=True)
    try:
        server.start()
        key = enroll(server, "slow-node")
        for _ in range(40):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=deadline_s + 20)
            sock.sendall(b"POST /v1/reports HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
            slow.append(sock)
        trickler.start()
        # Let the server take every slow request in before the real upload.
        stop.wait(0.5)
        reply = server.post(envelope_bytes(make_report("slow-node"), key))
        assert reply.status == 201, reply.body
        assert "408 body_timeout" not in server.log()  # they were still trickling
        answers = []
        for sock in slow:
            received = b""
            with contextlib.suppress(ConnectionResetError):
                while chunk := sock.recv(65536):  # until the server closes it
                    received += chunk
            answers.append(received.split(b"\r\n", 1)[0])
        assert answers == [b"HTTP/1.1 408 Request Timeout"] * 40
        assert server.log().count("408 body_timeout") == 40
        metrics = server.get("/metrics").body.decode()
        assert 'bench_agent_collector_reports_refused_total{reason="body_timeout"} 40' in metrics
    finally:
        stop.set()
        for sock in slow:
            sock.close()
        server.stop()
