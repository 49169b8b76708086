"""Shared by the collector tests and benchmarks/bench_ingest.py: signed reports, a real
collector process on loopback, a throwaway PostgreSQL database."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench_agent.core.errors import ReportError
from bench_agent.core.model import Report
from bench_agent.report.attest import NodeKey, make_statement, sign_payload, sign_report
from tests.paths import REPO

REPO = REPO
PG_ADMIN_URL = os.environ.get("BENCH_AGENT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def make_report(host: str, *, when: datetime | None = None, gemm: float = 1.2e12,
                stream: float = 8.0e10, status: str = "PASS", n_extra: int = 0
                ) -> dict[str, Any]:
    """A report dict that model.Report.from_dict accepts (and the schema validates)."""
    when = when or datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    gemm_status = status if status in ("PASS", "WARN", "FAIL") else "PASS"
    measurements = [
        {"check": "cpu-gemm", "metric": "cpu.gemm_fp64_all_cores", "value": gemm,
         "unit": "FLOP/s", "samples": [gemm] * 3, "unstable": False, "device": "",
         "tool": "numpy", "tool_version": "2.0", "params": {"n": 4096}, "stats": {}},
        {"check": "cpu-stream", "metric": "memory.stream_triad", "value": stream,
         "unit": "bytes/s", "samples": [stream], "unstable": False, "device": "",
         "tool": "numpy", "tool_version": "2.0", "params": {}, "stats": {}},
    ]
    for i in range(n_extra):
        measurements.append({"check": "storage", "metric": f"storage.read_iops_{i}",
                             "value": 1e5 + i, "unit": "IOPS", "device": f"nvme{i}n1"})
    verdicts = [
        {"check": "cpu-gemm", "status": gemm_status, "metric": "cpu.gemm_fp64_all_cores",
         "value": gemm, "unit": "FLOP/s", "threshold": ">= 1 TFLOP/s",
         "source": "guide 3.1", "message": "", "device": ""},
        {"check": "cpu-stream", "status": "PASS", "metric": "memory.stream_triad",
         "value": stream, "unit": "bytes/s", "threshold": ">= 50 GB/s", "source": "guide 3.2",
         "message": "", "device": ""},
    ]
    if status == "ERROR":
        verdicts.append({"check": "gpu-burn", "status": "ERROR", "message": "nvml: no driver"})
    report = {
        "schema_version": 1,
        "report_id": str(uuid.uuid4()),
        "agent_version": "0.1.0",
        "host": host,
        "status": "PASS",
        "interrupted": False,
        "started_at": (when - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "finished_at": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "suite": {"name": "quick", "sha256": "a" * 64, "path": ""},
        "profile": {"name": "guide-minimum", "sha256": "b" * 64, "path": ""},
        "inventory": {"host": {"hostname": host}, "cpu": {"logical_cpus": 64}},
        "measurements": measurements,
        "verdicts": verdicts,
    }
    report["status"] = Report.from_dict(report).status.value
    return report


def envelope_bytes(report: dict[str, Any], key: NodeKey) -> bytes:
    """The envelope of ``report`` signed as the agent signs it (sign_report), or, for
    a report the agent would refuse to sign (NaN: model.dumps_finite), as a node
    that signs it anyway: the collector must refuse it on its own."""
    try:
        envelope = sign_report(report, key)
    except ReportError:
        payload = json.dumps(make_statement(report), sort_keys=True).encode()
        envelope = sign_payload(payload, key)
    return json.dumps(envelope).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(method: str, url: str, body: bytes | None = None,
         headers: dict[str, str] | None = None, timeout: float = 10) -> Reply:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return Reply(reply.status, {k.lower(): v for k, v in reply.headers.items()},
                         reply.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read())


class Collector:
    """`bench-agent collector serve` as a child process on a free loopback port."""

    def __init__(self, db_url: str, log_path: Path, *extra: str) -> None:
        self.db_url = db_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> Collector:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench_agent.cli", "collector", "serve", "--db",
             self.db_url, "--port", str(self.port), *self.extra],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
            # A server that hangs at start is sent SIGABRT below: faulthandler then
            # writes every thread's stack into the log.
            env={**os.environ, "PYTHONFAULTHANDLER": "1"},
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"collector exited {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError):
                if http("GET", self.url + "/healthz", timeout=1).status == 200:
                    return self
            time.sleep(0.05)
        self.kill(signal.SIGABRT)
        raise RuntimeError(f"collector not ready in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> Reply:
        return http("POST", self.url + "/v1/reports", body,
                    {"Content-Type": "application/json", **(headers or {})})

    def get(self, path: str) -> Reply:
        return http("GET", self.url + path)


def postgres_available() -> bool:
    try:
        import psycopg
    except ImportError:
        return False
    try:
        with psycopg.connect(_libpq(PG_ADMIN_URL), connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database named test_collector_<random>, dropped afterwards; its URL."""
    import psycopg

    name = f"test_collector_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(PG_ADMIN_URL), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(_libpq(PG_ADMIN_URL), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_backends() -> list[Any]:
    """pytest params for a test on both databases: SQLite always, PostgreSQL when
    the server at 127.0.0.1:5432 answers (skipped with the reason otherwise)."""
    import pytest

    return ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
        not postgres_available(), reason="PostgreSQL is not reachable at 127.0.0.1:5432"))]


@contextlib.contextmanager
def migrated_database(backend: str, folder: Path) -> Iterator[Any]:
    """A collector Database of ``backend`` ("sqlite" in ``folder``, or a fresh
    PostgreSQL database), migrated to the newest schema, disposed after."""
    from bench_agent.collector import db

    sqlite_url = contextlib.nullcontext(f"sqlite:///{folder / 'collector.db'}")
    with postgres_database() if backend == "postgresql" else sqlite_url as url:
        database = db.Database(url)
        database.migrate()
        try:
            yield database
        finally:
            database.dispose()
