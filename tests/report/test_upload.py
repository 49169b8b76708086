"""The uploader against a real HTTP server on loopback that answers as scripted."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

import pytest

from bench_agent.report.attest import NodeKey, sign_report
from bench_agent.report.upload import Backoff, pending_reports, upload_spool
from tests.cli_support import run_cli
from tests.paths import REPO

REPO = REPO


# In a scripted body, stands for the digest of the report just received: the answer
# the real collector gives (bench_agent/collector/api.py post_report).
ACK = "<digest of the received report>"


def digest_of(envelope: bytes) -> str:
    """The collector's idempotency key: sha256 of the base64-decoded DSSE payload."""
    return hashlib.sha256(base64.b64decode(json.loads(envelope)["payload"])).hexdigest()


class LoopbackServer:
    """A threaded HTTP server on a free loopback port, served while the with-block runs."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # shutdown() waits for serve_forever to look at its flag, every poll_interval
        # (0.5 s by default: half a second per test, socketserver docs).
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,),
                                       daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class ScriptedCollector(LoopbackServer):
    """Answers POST /v1/reports from a script of (status, headers, body) in order;
    the last entry repeats. Records every body it received. ``ACK`` in a body is
    replaced by the received report's digest."""

    def __init__(self, script: list[tuple[int, dict[str, str], dict[str, str]]]):
        self.script = list(script)
        self.received: list[bytes] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                outer.received.append(self.rfile.read(length))
                status, headers, body = (outer.script.pop(0) if len(outer.script) > 1
                                         else outer.script[0])
                if ACK in body.values():
                    body = {k: digest_of(outer.received[-1]) if v == ACK else v
                            for k, v in body.items()}
                payload = json.dumps(body).encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                pass

        super().__init__(Handler)


def spool_with(tmp_path: Path, count: int, host: str = "node-1") -> list[Path]:
    key = NodeKey.generate()
    folder = tmp_path / "results" / host
    folder.mkdir(parents=True)
    paths = []
    for i in range(count):
        report = {"host": host, "inventory": {}, "report_id": f"r{i}"}
        path = folder / f"20261127T10000{i}Z-quick.json"
        path.write_text(json.dumps(sign_report(report, key)))
        paths.append(path)
    return paths


class NoSleep:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def no_sleep() -> Iterator[NoSleep]:
    yield NoSleep()


def test_delivered_reports_move_to_sent_oldest_first(tmp_path: Path, no_sleep: NoSleep) -> None:
    paths = spool_with(tmp_path, 3)
    paths.reverse()  # written newest first: the upload must still go oldest first
    for age, path in enumerate(paths):
        os.utime(path, (1_000_000 + age, 1_000_000 + age))
    paths.reverse()
    (tmp_path / "results" / "schema").mkdir()
    (tmp_path / "results" / "schema" / "report-v1.schema.json").write_text("{}")
    with ScriptedCollector([(201, {}, {"id": "1", "digest": ACK}),
                            (200, {}, {"id": "1", "digest": ACK}),
                            (201, {}, {"id": "3", "digest": ACK})]) as server:
        result = upload_spool(tmp_path / "results", server.url, backoff=Backoff(sleep=no_sleep))
        received = list(server.received)
    # Sent oldest first, byte for byte as written by `run`.
    assert [p.name for p in result.delivered] == [p.name for p in paths]
    assert received == [p.read_bytes() for p in result.delivered]
    assert all(p.parent.name == "sent" and p.exists() for p in result.delivered)
    assert pending_reports(tmp_path / "results") == []
    assert result.exit_code == 0 and result.skipped == []


def test_collector_down_leaves_everything_waiting(tmp_path: Path, no_sleep: NoSleep) -> None:
    paths = spool_with(tmp_path, 2)
    with ScriptedCollector([(201, {}, {})]) as server:
        url = server.url
    # The server is gone: connection refused on every attempt.
    result = upload_spool(tmp_path / "results", url,
                          backoff=Backoff(attempts=3, sleep=no_sleep))
    assert result.delivered == [] and result.rejected == []
    assert result.pending == paths
    assert all(p.exists() for p in paths)
    assert "cannot reach" in result.stopped_because
    assert len(no_sleep.waits) == 2  # 3 attempts, 2 waits, then it stops
    assert result.exit_code == 2


def test_retry_after_is_honoured_and_429_is_retried(tmp_path: Path, no_sleep: NoSleep) -> None:
    spool_with(tmp_path, 1)
    with ScriptedCollector([(429, {"Retry-After": "7"}, {"error": "busy"}),
                            (503, {}, {}), (201, {}, {"digest": ACK})]) as server:
        result = upload_spool(tmp_path / "results", server.url,
                              backoff=Backoff(sleep=no_sleep, base=0.5))
    assert len(result.delivered) == 1
    assert no_sleep.waits[0] == 7.0
    assert 0 <= no_sleep.waits[1] <= 1.0  # full jitter of base * 2**1


def test_a_4xx_moves_the_report_to_rejected_with_the_reason(
    tmp_path: Path, no_sleep: NoSleep
) -> None:
    paths = spool_with(tmp_path, 2)
    with ScriptedCollector([(422, {}, {"error": "bad_signature", "detail": "does not verify"}),
                            (201, {}, {"digest": ACK})]) as server:
        result = upload_spool(tmp_path / "results", server.url, backoff=Backoff(sleep=no_sleep))
    assert len(result.rejected) == 1
    rejected, reason = result.rejected[0]
    assert rejected == paths[0].parent / "rejected" / paths[0].name
    assert reason == "HTTP 422: bad_signature: does not verify"
    assert rejected.with_name(rejected.name + ".reason").read_text().strip() == reason
    assert [p.name for p in result.delivered] == [paths[1].name]
    assert result.exit_code == 1


@pytest.mark.parametrize("status", [401, 404])
def test_an_unknown_key_or_wrong_url_leaves_everything_waiting(
    tmp_path: Path, no_sleep: NoSleep, status: int
) -> None:
    """Before the node's key is enrolled (401), or behind a wrong URL (404), nothing
    is the reports' fault: they wait for the next upload instead of being rejected."""
    paths = spool_with(tmp_path, 2)
    with ScriptedCollector([(status, {}, {"error": "unknown_key"})]) as server:
        result = upload_spool(tmp_path / "results", server.url, backoff=Backoff(sleep=no_sleep))
        assert len(server.received) == 1  # no retries, and not the second report
    assert result.pending == paths and result.rejected == []
    assert all(p.exists() for p in paths)
    assert no_sleep.waits == []
    assert result.exit_code == 2


def test_two_uploads_at_once_send_each_report_once(tmp_path: Path) -> None:
    """A timer's upload and `run --upload` overlapping: the spool lock serializes them."""
    import concurrent.futures

    spool_with(tmp_path, 6)
    with ScriptedCollector([(201, {}, {"digest": ACK})]) as server:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            results = list(pool.map(
                lambda _: upload_spool(tmp_path / "results", server.url,
                                       backoff=Backoff(sleep=NoSleep())), range(2)))
        received = list(server.received)
    assert len(received) == 6 and len(set(received)) == 6
    assert sorted(len(r.delivered) for r in results) == [0, 6]
    assert len(list((tmp_path / "results").glob("*/sent/*.json"))) == 6


def test_unsigned_reports_are_skipped_not_lost(tmp_path: Path, no_sleep: NoSleep) -> None:
    folder = tmp_path / "results" / "node-1"
    folder.mkdir(parents=True)
    unsigned = folder / "20261127T100000Z-quick.json"
    unsigned.write_text(json.dumps({"schema_version": 1}))
    with ScriptedCollector([(201, {}, {})]) as server:
        result = upload_spool(tmp_path / "results", server.url, backoff=Backoff(sleep=no_sleep))
        assert server.received == []
    assert result.skipped == [(unsigned, "not signed (the collector accepts signed reports only)")]
    assert unsigned.exists()


def test_cli_upload_and_run_upload(tmp_path: Path) -> None:
    env = {**os.environ, "BENCH_AGENT_KEY": str(tmp_path / "node.key")}
    with ScriptedCollector([(201, {}, {"id": "x", "digest": ACK})]) as server:
        run = run_cli("run", "inventory", "--output", str(tmp_path / "out"), "--upload",
                      server.url, timeout=120, cwd=REPO, env=env)
        assert len(server.received) == 1
    assert "upload: 1 delivered, 0 rejected, 0 waiting" in run.stderr
    assert len(list((tmp_path / "out").glob("*/sent/*.json"))) == 1
    missing = run_cli("upload", "--output", str(tmp_path / "out"), timeout=60, cwd=REPO,
                      env={**env, "BENCH_AGENT_COLLECTOR": ""})
    assert missing.returncode == 3 and "no collector" in missing.stderr


@pytest.mark.e2e
def test_run_upload_to_a_real_auto_enrolling_collector(tmp_path: Path) -> None:
    """End to end: run, sign, upload to `collector serve --auto-enroll`, stored once."""
    pytest.importorskip("fastapi")
    from tests.collector_support import Collector

    collector = Collector(f"sqlite:///{tmp_path / 'c.db'}", tmp_path / "collector.log",
                          "--auto-enroll").start()
    try:
        env = {**os.environ, "BENCH_AGENT_KEY": str(tmp_path / "node.key")}
        run = subprocess.run(
            [sys.executable, "-m", "bench_agent.cli", "run", "inventory", "--output",
             str(tmp_path / "out"), "--upload", collector.url],
            capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
        assert "upload: 1 delivered, 0 rejected, 0 waiting" in run.stderr, run.stderr
        again = subprocess.run(
            [sys.executable, "-m", "bench_agent.cli", "upload", "--collector", collector.url,
             "--output", str(tmp_path / "out")],
            capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
        assert again.returncode == 0  # nothing left to send
        listing = json.loads(collector.get("/v1/reports").body)
        assert len(listing["reports"]) == 1
        # Moved to sent/ on the collector's word naming this very report.
        [sent] = list((tmp_path / "out").glob("*/sent/*.json"))
        assert listing["reports"][0]["digest"] == digest_of(sent.read_bytes())
    finally:
        collector.stop()


JSON_ANSWERS: dict[str, dict[str, object]] = {
    "no-digest": {"ok": True, "id": 1},
    "other-digest": {"id": 1, "digest": "0" * 64, "status": "stored"},
    "list": {"reports": []},
}


class MisbehavingServer(LoopbackServer):
    """A real HTTP server on loopback that answers POST /v1/reports wrongly, as a
    misconfigured URL (a redirect, a web page) or a broken proxy (a cut answer) does.

    ``mode``: "301".."308" answer that redirect to GET /landing, which answers 200
    like the collector's listing; "html" a 200 web page; "json-<name>" a 201 JSON
    body from JSON_ANSWERS; "truncated" the headers of a 1000-byte answer, then
    closes; "garbage" a status line that is not HTTP; "silent" closes without a
    word. ``then_ack``: after that many bad answers, answer as the collector does.
    Records every request as (method, path)."""

    def __init__(self, mode: str, then_ack: int | None = None) -> None:
        self.requests: list[tuple[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(("GET", self.path))
                self._send(200, "application/json", b'{"reports": []}')

            def do_POST(self) -> None:
                outer.requests.append(("POST", self.path))
                body = self.rfile.read(int(self.headers["Content-Length"]))
                posts = sum(1 for method, _ in outer.requests if method == "POST")
                if then_ack is not None and posts > then_ack:
                    ack = {"id": posts, "digest": digest_of(body), "status": "stored"}
                    self._send(201, "application/json", json.dumps(ack).encode())
                elif mode.isdigit():
                    self.send_response(int(mode))
                    self.send_header("Location", f"{outer.url}/landing")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif mode == "html":
                    self._send(200, "text/html", b"<html><body>Welcome to nginx!</body></html>")
                elif mode.startswith("json-"):
                    answer = json.dumps(JSON_ANSWERS[mode[5:]]).encode()
                    self._send(201, "application/json", answer)
                elif mode == "truncated":
                    self.send_response(201)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "1000")
                    self.end_headers()
                    self.close_connection = True
                elif mode == "garbage":
                    self.wfile.write(b"SPDY/9 what is this\r\n\r\n")
                    self.close_connection = True
                else:  # silent
                    self.close_connection = True

            def _send(self, status: int, content_type: str, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                pass

        super().__init__(Handler)


def sent_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "results").glob("*/sent/*.json"))


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_never_followed_and_nothing_counts_as_delivered(
    tmp_path: Path, no_sleep: NoSleep, status: int
) -> None:
    """urllib turns a POST answered 301/302/303 into a GET of the Location; a GET
    /v1/reports answers 200: that was counted as delivery, and the collector stored
    nothing. A redirect is a wrong collector URL: stop, everything waits."""
    paths = spool_with(tmp_path, 3)
    with MisbehavingServer(str(status)) as server:
        result = upload_spool(tmp_path / "results", server.url, backoff=Backoff(sleep=no_sleep))
        requests = list(server.requests)
        landing = f"{server.url}/landing"
    assert requests == [("POST", "/v1/reports")]  # not followed, not retried, not the 2nd
    assert result.delivered == [] and result.rejected == []
    assert result.pending == paths and all(p.exists() for p in paths)
    assert sent_files(tmp_path) == []
    assert result.stopped_because == (
        f"HTTP {status}: {server.url}/v1/reports redirects to {landing}; a report is never "
        "sent on after a redirect: give the collector's own URL")
    assert no_sleep.waits == []
    assert result.exit_code == 2


@pytest.mark.parametrize(("mode", "why"), [
    ("html", "the answer is not JSON (text/html): <html><body>Welcome to nginx!</body></html>"),
    ("json-no-digest", 'the answer names no digest: {"ok": true, "id": 1}'),
    ("json-list", 'the answer names no digest: {"reports": []}'),
    ("json-other-digest", f"the answer names digest {'0' * 64}"),
])
def test_a_2xx_that_does_not_name_the_report_is_not_delivery(
    tmp_path: Path, no_sleep: NoSleep, mode: str, why: str
) -> None:
    """A web server or proxy at the URL answers 200 to anything: only an answer that
    names the report's digest (what the collector stores it under) is delivery."""
    paths = spool_with(tmp_path, 2)
    with MisbehavingServer(mode) as server:
        result = upload_spool(tmp_path / "results", server.url, backoff=Backoff(sleep=no_sleep))
        posts = len(server.requests)
    assert posts == 1  # stops at the first: the same URL answers the same to all
    assert result.delivered == [] and result.rejected == []
    assert result.pending == paths and sent_files(tmp_path) == []
    digest = digest_of(paths[0].read_bytes())
    assert result.stopped_because.startswith(
        f"HTTP {200 if mode == 'html' else 201} from {server.url}/v1/reports does not "
        f"acknowledge {paths[0].name} (digest {digest}): {why}"), result.stopped_because
    assert result.exit_code == 2


@pytest.mark.parametrize(("mode", "error"), [
    ("truncated", "IncompleteRead(0 bytes read, 1000 more expected)"),
    ("garbage", "BadStatusLine('SPDY/9 what is this\\r\\n')"),
    ("silent", "RemoteDisconnected('Remote end closed connection without response')"),
])
def test_an_answer_cut_short_leaves_the_reports_waiting(
    tmp_path: Path, no_sleep: NoSleep, mode: str, error: str
) -> None:
    """Headers then a closed connection, or a status line that is not HTTP: the
    report may or may not be stored, so it is sent again (the collector answers 200
    to a repeat) and, when every attempt is cut, it waits."""
    paths = spool_with(tmp_path, 2)
    with MisbehavingServer(mode) as server:
        result = upload_spool(tmp_path / "results", server.url,
                              backoff=Backoff(attempts=3, sleep=no_sleep))
        posts = len(server.requests)
    assert posts == 3 and len(no_sleep.waits) == 2  # retried, then it stops
    assert result.pending == paths and sent_files(tmp_path) == []
    assert result.stopped_because == f"no complete answer from {server.url}/v1/reports: {error}"
    assert result.exit_code == 2


def test_unreadable_spool_files_are_counted_and_not_all_delivered(
    tmp_path: Path, no_sleep: NoSleep
) -> None:
    """Files that cannot be sent stay in the spool, are counted, and make the exit
    code 2: 'all delivered' (0) would be a lie."""
    paths = spool_with(tmp_path, 2)
    folder = paths[0].parent
    broken = folder / "20261127T100005Z-quick.json"
    broken.write_text('{"payloadType": "applic')  # cut short by a full disk
    unsigned = folder / "20261127T100006Z-quick.unsigned.json"
    unsigned.write_text(json.dumps({"schema_version": 1}))
    with ScriptedCollector([(201, {}, {"digest": ACK})]) as server:
        result = upload_spool(tmp_path / "results", server.url, backoff=Backoff(sleep=no_sleep))
        assert len(server.received) == 2
    assert [p.name for p in result.delivered] == [p.name for p in paths]
    assert [(p, why.split(":")[0]) for p, why in result.unreadable] == [
        (broken, "not a readable JSON file")]
    assert result.unsigned == [unsigned]
    assert broken.exists() and unsigned.exists()
    assert result.summary() == "2 delivered, 0 rejected, 0 waiting, 1 unreadable, 1 unsigned"
    assert result.exit_code == 2


def test_unreadable_files_behind_a_stop_are_counted_too(
    tmp_path: Path, no_sleep: NoSleep
) -> None:
    paths = spool_with(tmp_path, 1)
    broken = paths[0].parent / "20261127T100005Z-quick.json"
    broken.write_bytes(b"\xff\xfe not utf-8")
    with ScriptedCollector([(503, {}, {"error": "database_unavailable"})]) as server:
        result = upload_spool(tmp_path / "results", server.url,
                              backoff=Backoff(attempts=2, sleep=no_sleep))
    assert result.pending == paths
    assert [p for p, _ in result.unreadable] == [broken]
    assert result.summary() == ("0 delivered, 0 rejected, 1 waiting, 1 unreadable "
                                "(HTTP 503: database_unavailable)")
    assert result.exit_code == 2


def cli_upload(tmp_path: Path, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BENCH_AGENT_KEY": str(tmp_path / "absent.key")}
    return run_cli("upload", "--collector", url, "--output", str(tmp_path / "results"),
                   timeout=120, cwd=REPO, env=env)


def test_cli_upload_to_a_redirect_waits_and_exits_2(tmp_path: Path) -> None:
    paths = spool_with(tmp_path, 3)
    with MisbehavingServer("302") as server:
        done = cli_upload(tmp_path, server.url)
        url = server.url
    assert "Traceback" not in done.stderr
    assert done.returncode == 2, done.stderr
    assert (f"upload: 0 delivered, 0 rejected, 3 waiting (HTTP 302: {url}/v1/reports "
            f"redirects to {url}/landing;") in done.stderr
    assert all(p.exists() for p in paths) and sent_files(tmp_path) == []


@pytest.mark.parametrize(("mode", "error"), [("truncated", "IncompleteRead"),
                                             ("garbage", "BadStatusLine")])
def test_cli_upload_survives_an_answer_cut_short(tmp_path: Path, mode: str, error: str) -> None:
    """Once cut short, then acknowledged: no traceback and no exit 1 ("refused"),
    the retry delivers it."""
    paths = spool_with(tmp_path, 1)
    with MisbehavingServer(mode, then_ack=1) as server:
        done = cli_upload(tmp_path, server.url)
        url = server.url
    assert "Traceback" not in done.stderr
    assert done.returncode == 0, done.stderr
    assert f"{paths[0].name}: no complete answer from {url}/v1/reports: {error}(" in done.stderr
    assert "upload: 1 delivered, 0 rejected, 0 waiting\n" in done.stderr
    assert [p.name for p in sent_files(tmp_path)] == [paths[0].name]


def test_cli_upload_counts_unreadable_files_in_its_exit_code(tmp_path: Path) -> None:
    paths = spool_with(tmp_path, 1)
    broken = paths[0].parent / "20261127T100005Z-quick.json"
    broken.write_text("")
    with ScriptedCollector([(201, {}, {"digest": ACK})]) as server:
        done = cli_upload(tmp_path, server.url)
    assert "Traceback" not in done.stderr
    assert done.returncode == 2, done.stderr
    assert f"upload: skipped {broken}: not a readable JSON file" in done.stderr
    assert "upload: 1 delivered, 0 rejected, 0 waiting, 1 unreadable\n" in done.stderr
    assert broken.exists()


@pytest.mark.parametrize("hint", ["nan", "inf", "-inf"])
def test_a_retry_after_that_is_no_finite_number_is_no_hint(hint: str) -> None:
    from bench_agent.report.upload import _retry_after

    assert _retry_after({"retry-after": hint}) is None
    assert _retry_after({"retry-after": "7"}) == 7.0
