"""Collector fleet pages at fleet scale: 10,000 nodes with 30 reports each.

    python benchmarks/bench_collector_fleet.py [--nodes N] [--reports R] [--requests K]
                                               [--no-postgres]

For SQLite (a file in a temporary folder) and PostgreSQL (a throwaway database at
127.0.0.1:5432, skipped when unreachable), the fleet is written by
tests/collector/fleet_generator.py (rows as ingest leaves them; 2 % failing with
fault codes, 3 % stale), then each page is requested K times through the real
application in-process (Starlette's TestClient: routing, role check, SQL, Jinja2,
no socket) and its server time taken: median and p99.

    fleet         /                                        the first page
    filtered      /?status=FAIL&gpu_model=...              two filters, sorted by status
    fault code    /?fault_code=BA-GPU-XID-79               an EXISTS over verdicts
    search        /?q=gpu-0123                             a LIKE over names
    api           /v1/fleet?state=quarantined&per_page=500 the JSON API, a larger page

Target (issue 17): the first page under 1 s. It reports and does not assert.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_agent.collector import db
from bench_agent.collector.app import create_app
from bench_agent.collector.settings import Settings
from tests.collector.fleet_generator import GPU_MODELS, generate
from tests.collector_support import postgres_available, postgres_database

PAGES = {
    "fleet": "/",
    "filtered": f"/?status=FAIL&gpu_model={GPU_MODELS[0].replace(' ', '+')}&sort=status"
                "&order=desc",
    "fault code": "/?fault_code=BA-GPU-XID-79",
    "search": "/?q=gpu-0123",
    "api": "/v1/fleet?state=quarantined&per_page=500",
}
TARGET_S = 1.0


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


@contextlib.contextmanager
def _sqlite() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as folder:
        yield f"sqlite:///{Path(folder) / 'collector.db'}"


def run(backend: str, url: str, nodes: int, reports: int, requests: int) -> None:
    from fastapi.testclient import TestClient

    database = db.Database(url)
    database.migrate()
    started = time.perf_counter()
    generated = generate(database, nodes, reports, datetime.now(UTC).replace(tzinfo=None))
    print(f"\n{backend}: {nodes} nodes x {reports} reports = {generated.reports} reports "
          f"written in {time.perf_counter() - started:.0f} s")
    app = create_app(Settings(db_url=url), database)
    print(f"  {'page':<11} {'median':>9} {'p99':>9} {'bytes':>9}  reference")
    with TestClient(app) as client:
        for name, path in PAGES.items():
            client.get(path)  # warm: caches, compiled statements, templates
            times, size = [], 0
            for _ in range(requests):
                t0 = time.perf_counter()
                reply = client.get(path)
                times.append(time.perf_counter() - t0)
                assert reply.status_code == 200, (path, reply.status_code, reply.text[:200])
                size = len(reply.content)
            median, p99 = statistics.median(times), _p99(times)
            print(f"  {name:<11} {median * 1000:7.0f} ms {p99 * 1000:7.0f} ms {size:9d}  "
                  f"target < {TARGET_S:g} s {'ok' if p99 < TARGET_S else 'OVER'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--reports", type=int, default=30)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    with _sqlite() as url:
        run("SQLite", url, args.nodes, args.reports, args.requests)
    if args.no_postgres or not postgres_available():
        print("\nPostgreSQL: skipped")
        return
    with postgres_database() as url:
        run("PostgreSQL", url, args.nodes, args.reports, args.requests)


if __name__ == "__main__":
    main()
