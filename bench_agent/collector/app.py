"""create_app(settings): the collector as a FastAPI application.

The database is migrated when the application is built (before uvicorn accepts
a connection), so a collector never serves an old schema.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.exc import InterfaceError, OperationalError

from bench_agent import __version__
from bench_agent.collector import api, dashboard, db, docs, ledger_api, metrics
from bench_agent.collector.ingest import Policy
from bench_agent.collector.settings import Settings
from bench_agent.core.errors import Refused

SQLITE_INGEST_THREADS = 4
POSTGRES_INGEST_THREADS = 32


def create_app(settings: Settings, database: db.Database | None = None) -> FastAPI:
    """The application; ``database`` (already migrated) is for tests and benchmarks."""
    if database is None:
        database = db.Database(settings.db_url, background_checkpoint=True)
        database.migrate()
    owned = database

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Threads that verify and store posts. SQLite takes one writer at a time
        # and the signature checks hold the GIL: past a few threads they only
        # contend (4 vs 40 threads measured: +30% reports/s, p99 a third).
        # PostgreSQL commits in parallel and groups the fsyncs: more threads help.
        app.state.ingest_executor = ThreadPoolExecutor(
            SQLITE_INGEST_THREADS if owned.is_sqlite else POSTGRES_INGEST_THREADS,
            thread_name_prefix="ingest")
        try:
            yield
        finally:
            app.state.ingest_executor.shutdown(wait=True)
            owned.dispose()

    app = FastAPI(title="bench-agent collector", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url="/v1/openapi.json")
    app.state.settings = settings
    app.state.database = database
    app.state.counters = metrics.Counters()
    app.state.in_flight = api.InFlight(settings.max_in_flight)
    app.state.policy = Policy(settings.acceptance_suites, settings.burnin_suites)
    # A database that is down or locked answers 503, which uploaders retry.
    app.add_exception_handler(OperationalError, api.database_unavailable)
    app.add_exception_handler(InterfaceError, api.database_unavailable)
    app.add_exception_handler(Refused, api.denied)
    app.include_router(api.router)
    app.include_router(ledger_api.router)
    app.include_router(dashboard.router)
    docs.mount(app)
    return app
