"""Collector ingest: a burst of 4,096 signed reports from 4,096 enrolled nodes.

    python benchmarks/bench_ingest.py [--reports N] [--concurrency C] [--no-postgres]

For SQLite (a file in a temporary folder) and then PostgreSQL (a throwaway database
at 127.0.0.1:5432, skipped when unreachable):

  in-process  ingest() called in a loop, no HTTP: signature check + one transaction
              per report. The limit that the HTTP path is compared with.
  http        `bench-agent collector serve` (uvicorn, one process) fed by a load
              generator of C keep-alive connections (asyncio, raw HTTP/1.1, so the
              client costs the shared 2 cores as little as possible).

Keys and envelopes are made before any timing. Each run starts on an empty
database with every key enrolled. Reported: reports/s, p50 and p99 latency of
one POST, how many the database holds afterwards (nothing may be lost), and the
HTTP rate as a share of the in-process rate, and the CPU seconds the ingesting
process used (this process in-process; the server's, from /proc/PID/stat, over
HTTP): on a shared machine the wall time moves with others' load, the CPU time
much less, so compare runs by both. Target (issues 7 and 17): the whole burst
stored in under 10 s on SQLite. It reports and does not assert.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_agent.collector import db, enrollment
from bench_agent.collector.ingest import ingest
from bench_agent.report.attest import NodeKey, sign_report
from tests.collector_support import (
    Collector,
    make_report,
    postgres_available,
    postgres_database,
)

TARGET_SECONDS = 10.0


@dataclass
class Row:
    backend: str
    mode: str
    sent: int
    seconds: float
    latencies: list[float]
    stored: int
    statuses: Counter[int]
    cpu_seconds: float = float("nan")

    @property
    def rate(self) -> float:
        return self.sent / self.seconds

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3


def prepare(count: int) -> tuple[list[NodeKey], list[bytes]]:
    import json

    keys = [NodeKey.generate() for _ in range(count)]
    start = datetime(2026, 11, 27, tzinfo=UTC)
    bodies = [json.dumps(sign_report(make_report(f"bench-{i:05d}", when=start
                                                 + timedelta(seconds=i)), key)).encode()
              for i, key in enumerate(keys)]
    return keys, bodies


def fresh_database(url: str, keys: list[NodeKey]) -> None:
    database = db.Database(url)
    database.migrate()
    with database.engine.begin() as conn:
        for i, key in enumerate(keys):
            enrollment.enroll_in(conn, f"bench-{i:05d}", key.public)
    database.dispose()


def stored_count(url: str) -> int:
    from bench_agent.collector import queries

    database = db.Database(url)
    with database.engine.connect() as conn:
        count = queries.stored_reports(conn)
    database.dispose()
    return count


def run_in_process(backend: str, url: str, keys: list[NodeKey], bodies: list[bytes]) -> Row:
    fresh_database(url, keys)
    # As the server runs it: SQLite checkpoints in a background thread.
    database = db.Database(url, background_checkpoint=True)
    latencies = []
    started, cpu_started = time.perf_counter(), time.process_time()
    for body in bodies:
        t0 = time.perf_counter()
        ingest(database, body)
        latencies.append(time.perf_counter() - t0)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    database.dispose()
    return Row(backend, "in-process", len(bodies), seconds, latencies, stored_count(url),
               Counter({201: len(bodies)}), cpu)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (proc(5): fields 14 and 15 of
    /proc/PID/stat, in clock ticks); NaN where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    # The command name (field 2) is in parentheses and may hold spaces.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _worker(port: int, queue: asyncio.Queue[bytes], latencies: list[float],
                  statuses: Counter[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while True:
            try:
                body = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            while True:
                t0 = time.perf_counter()
                writer.write(b"POST /v1/reports HTTP/1.1\r\nHost: bench\r\n"
                             b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%b"
                             % (len(body), body))
                status, retry_after = await _read_response(reader)
                latencies.append(time.perf_counter() - t0)
                statuses[status] += 1
                if status != 429:
                    break
                await asyncio.sleep(retry_after)
    finally:
        writer.close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, float]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(":") for line in lines[1:] if line)}
    await reader.readexactly(int(headers.get("content-length", "0")))
    return status, float(headers.get("retry-after", "0") or 0)


def run_http(backend: str, url: str, keys: list[NodeKey], bodies: list[bytes],
             concurrency: int, log: Path) -> Row:
    fresh_database(url, keys)
    server = Collector(url, log, "--no-access-log").start()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()

    async def burst() -> float:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        for body in bodies:
            queue.put_nowait(body)
        started = time.perf_counter()
        await asyncio.gather(*(_worker(server.port, queue, latencies, statuses)
                               for _ in range(concurrency)))
        return time.perf_counter() - started

    assert server.proc is not None  # started
    pid = server.proc.pid
    try:
        cpu_started = process_cpu_seconds(pid)
        seconds = asyncio.run(burst())
        cpu = process_cpu_seconds(pid) - cpu_started
    finally:
        server.stop()
    return Row(backend, f"http x{concurrency}", len(bodies), seconds, latencies,
               stored_count(url), statuses, cpu)


@contextlib.contextmanager
def backends(tmp: Path, with_postgres: bool) -> Iterator[list[tuple[str, str, str]]]:
    """(name, url for the in-process run, url for the HTTP run) of each backend."""
    found = [("sqlite", f"sqlite:///{tmp / 'inproc.db'}", f"sqlite:///{tmp / 'http.db'}")]
    with contextlib.ExitStack() as stack:
        if with_postgres and postgres_available():
            found.append(("postgresql", stack.enter_context(postgres_database()),
                          stack.enter_context(postgres_database())))
        yield found


def print_table(rows: list[Row]) -> None:
    limit = {r.backend: r.rate for r in rows if r.mode == "in-process"}
    print(f"{'backend':<11} {'mode':<11} {'reports':>7} {'seconds':>8} {'reports/s':>10} "
          f"{'p50 ms':>8} {'p99 ms':>8} {'stored':>7} {'of limit':>9} {'CPU s':>6}  statuses")
    for r in rows:
        share = f"{r.rate / limit[r.backend]:.0%}" if r.backend in limit else "-"
        codes = " ".join(f"{k}:{v}" for k, v in sorted(r.statuses.items()))
        print(f"{r.backend:<11} {r.mode:<11} {r.sent:>7} {r.seconds:>8.2f} {r.rate:>10.0f} "
              f"{r.percentile(0.50):>8.1f} {r.percentile(0.99):>8.1f} {r.stored:>7} "
              f"{share:>9} {r.cpu_seconds:>6.2f}  {codes}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reports", type=int, default=4096)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    keys, bodies = prepare(args.reports)
    print(f"prepared {len(bodies)} keys and envelopes ({statistics.mean(map(len, bodies)):.0f}"
          f" bytes each) in {time.perf_counter() - started:.1f} s; {os.cpu_count()} CPUs")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp, \
            backends(Path(tmp), not args.no_postgres) as found:
        for name, inproc_url, http_url in found:
            rows.append(run_in_process(name, inproc_url, keys, bodies))
            rows.append(run_http(name, http_url, keys, bodies, args.concurrency,
                                 Path(tmp) / f"{name}.log"))
    print_table(rows)
    sqlite_http = next(r for r in rows if r.backend == "sqlite" and r.mode != "in-process")
    verdict = "met" if sqlite_http.seconds < TARGET_SECONDS and \
        sqlite_http.stored == sqlite_http.sent else "NOT met"
    print(f"target (SQLite over HTTP, {args.reports} reports stored in < {TARGET_SECONDS:.0f} s,"
          f" none lost): {verdict} ({sqlite_http.seconds:.2f} s, {sqlite_http.stored} stored)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
