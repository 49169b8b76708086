"""The uploader against a real HTTP server on loopback that answers as scripted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench_agent.attest import NodeKey, sign_report
from bench_agent.upload import Backoff, pending_reports, upload_spool

REPO = Path(__file__).resolve().parent.parent


class ScriptedCollector:
    """Answers POST /v1/reports from a script of (status, headers, body) in order;
    the last entry repeats. Records every body it received."""

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
                payload = json.dumps(body).encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedCollector:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


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
    with ScriptedCollector([(201, {}, {"id": "1"}), (200, {}, {"id": "1"}),
                            (201, {}, {"id": "3"})]) as server:
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
                            (503, {}, {}), (201, {}, {})]) as server:
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
                            (201, {}, {})]) as server:
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
    with ScriptedCollector([(201, {}, {})]) as server:
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
    with ScriptedCollector([(201, {}, {"id": "x"})]) as server:
        run = subprocess.run(
            [sys.executable, "-m", "bench_agent.cli", "run", "inventory", "--output",
             str(tmp_path / "out"), "--upload", server.url],
            capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
        assert len(server.received) == 1
    assert "upload: 1 delivered, 0 rejected, 0 waiting" in run.stderr
    assert len(list((tmp_path / "out").glob("*/sent/*.json"))) == 1
    missing = subprocess.run([sys.executable, "-m", "bench_agent.cli", "upload", "--output",
                              str(tmp_path / "out")], capture_output=True, text=True,
                             timeout=60, cwd=REPO, env={**env, "BENCH_AGENT_COLLECTOR": ""})
    assert missing.returncode == 3 and "no collector" in missing.stderr


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
    finally:
        collector.stop()
