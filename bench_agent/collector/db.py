"""Tables, engines and migrations.

Tables are SQLAlchemy Core (not ORM): ingest writes many small rows per report and
the read side builds summaries, both simpler and faster with plain statements.

    keys          enrolled node keys (keyid -> node name, public key, revoked_at),
                  at most one not revoked per node
    nodes         one row per node name, with a pointer to its newest report
    reports       one row per report (distinct payload digest, and report id of a node),
                  with the envelope as received
    measurements  normalized rows of each report, for plots and queries
    verdicts      normalized rows of each report, for the fleet's failing checks
    node_results  the newest report of each (node, suite, profile)
    node_transitions  every lifecycle state change of a node, with who and why
    node_labels   operator labels

The schema itself is created by the Alembic migrations in migrations/versions,
run by migrate() at start; the Table objects here must stay in step with them
(tests/test_collector_ingest.py compares the two).
"""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    false,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

metadata = MetaData()

# Node names are host names; 255 is the DNS limit on a full name (RFC 1035 2.3.4).
NAME_LENGTH = 255

keys = Table(
    "keys", metadata,
    Column("keyid", String(64), primary_key=True),
    Column("node_name", String(NAME_LENGTH), nullable=False, index=True),
    Column("public_raw", LargeBinary(32), nullable=False),
    Column("enrolled_at", DateTime(), nullable=False),
    Column("revoked_at", DateTime(), nullable=True),
    # One active key per node, on both backends (migration 0002): two enrollments
    # that race cannot both leave an active key, whatever the isolation level.
    Index("uq_keys_node_active", "node_name", unique=True,
          sqlite_where=text("revoked_at IS NULL"), postgresql_where=text("revoked_at IS NULL")),
)

nodes = Table(
    "nodes", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(NAME_LENGTH), nullable=False, unique=True),
    Column("first_seen_at", DateTime(), nullable=False),
    # The newest report by its finish time (uploads may arrive out of order).
    Column("last_report_id", Integer, nullable=True),
    Column("last_finished_at", DateTime(), nullable=True),
    Column("last_status", String(8), nullable=True),
    # Lifecycle (lifecycle.py; migration 0004): one of lifecycle.STATES.
    Column("state", String(16), nullable=False, server_default="new"),
    Column("state_changed_at", DateTime(), nullable=True),
    # The GPU model(s) of the newest report's inventory, "" without GPUs.
    Column("gpu_model", String(NAME_LENGTH), nullable=False, server_default=""),
    Index("ix_nodes_state", "state"),
    Index("ix_nodes_gpu_model", "gpu_model"),
)

reports = Table(
    "reports", metadata,
    Column("id", Integer, primary_key=True),
    # sha256 of the payload bytes as received: the idempotency key. Unique, so two
    # concurrent uploads of one report cannot both be stored.
    Column("digest", String(64), nullable=False, unique=True),
    # The report's own id: stored once per node (ingest.py; migration 0003).
    Column("report_uuid", String(36), nullable=False),
    Column("node_id", Integer, ForeignKey("nodes.id"), nullable=False),
    Column("keyid", String(64), nullable=False),
    Column("status", String(8), nullable=False),
    Column("suite", String(NAME_LENGTH), nullable=False),
    Column("profile", String(NAME_LENGTH), nullable=False),
    Column("agent_version", String(64), nullable=False),
    Column("interrupted", Boolean, nullable=False),
    Column("started_at", DateTime(), nullable=False),
    Column("finished_at", DateTime(), nullable=False),
    Column("received_at", DateTime(), nullable=False),
    Column("envelope", LargeBinary, nullable=False),
    Column("gpu_model", String(NAME_LENGTH), nullable=False, server_default=""),
    Index("ix_reports_node_finished", "node_id", "finished_at"),
    Index("ix_reports_finished", "finished_at"),
    Index("uq_reports_report_uuid_node", "report_uuid", "node_id", unique=True),
)

measurements = Table(
    "measurements", metadata,
    Column("id", Integer, primary_key=True),
    Column("report_id", Integer, ForeignKey("reports.id"), nullable=False, index=True),
    Column("check_name", String(128), nullable=False),
    Column("metric", String(255), nullable=False),
    Column("device", String(255), nullable=False),
    Column("value", Float, nullable=False),
    Column("unit", String(16), nullable=False),
    Column("unstable", Boolean, nullable=False),
)

verdicts = Table(
    "verdicts", metadata,
    Column("id", Integer, primary_key=True),
    Column("report_id", Integer, ForeignKey("reports.id"), nullable=False, index=True),
    Column("check_name", String(128), nullable=False),
    Column("metric", String(255), nullable=False),
    Column("device", String(255), nullable=False),
    Column("status", String(8), nullable=False),
    Column("value", Float, nullable=True),
    Column("unit", String(16), nullable=True),
    Column("threshold", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("message", Text, nullable=False),
    # The fault contract (core/model.py Verdict); older reports lack them: defaults.
    Column("fault_code", String(64), nullable=False, server_default=""),
    Column("component", Text, nullable=False, server_default=""),
    Column("remediation", String(32), nullable=False, server_default=""),
    Column("attempts", Integer, nullable=False, server_default="1"),
    Column("flaky", Boolean, nullable=False, server_default=false()),
    # The dashboard's filters: nodes whose current results fail by code, check, metric.
    Index("ix_verdicts_fault_code", "fault_code", "report_id"),
    Index("ix_verdicts_check_status", "check_name", "status", "report_id"),
    Index("ix_verdicts_metric_status", "metric", "status", "report_id"),
)

node_transitions = Table(
    "node_transitions", metadata,
    Column("id", Integer, primary_key=True),
    Column("node_id", Integer, ForeignKey("nodes.id"), nullable=False),
    Column("at", DateTime(), nullable=False),
    Column("from_state", String(16), nullable=False),
    Column("to_state", String(16), nullable=False),
    # "report" for a signed report's move, else the operator's token name or user.
    Column("actor", String(NAME_LENGTH), nullable=False),
    Column("why", Text, nullable=False),
    Column("report_id", Integer, ForeignKey("reports.id"), nullable=True),
    Index("ix_node_transitions_node_at", "node_id", "at"),
)

# The newest report of each (node, suite, profile), kept by ingest: what a node's
# status is made of (queries.py), without ranking every report at read time.
node_results = Table(
    "node_results", metadata,
    Column("node_id", Integer, ForeignKey("nodes.id"), primary_key=True),
    Column("suite", String(NAME_LENGTH), primary_key=True),
    Column("profile", String(NAME_LENGTH), primary_key=True),
    Column("report_id", Integer, ForeignKey("reports.id"), nullable=False),
    Column("status", String(8), nullable=False),
    Column("finished_at", DateTime(), nullable=False),
    Index("ix_node_results_report", "report_id"),
    Index("ix_node_results_status", "status", "node_id"),
)

# Operator labels; a key is a Kubernetes-style label name part (63 characters,
# kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set).
node_labels = Table(
    "node_labels", metadata,
    Column("node_id", Integer, ForeignKey("nodes.id"), primary_key=True),
    Column("key", String(63), primary_key=True),
    Column("value", String(NAME_LENGTH), nullable=False),
    Index("ix_node_labels_key_value", "key", "value"),
)


def utcnow() -> datetime:
    """Naive UTC: SQLite keeps no time zone, so every stored time is UTC without one."""
    return datetime.now(UTC).replace(tzinfo=None)


def normalize_url(url: str) -> str:
    """postgresql:// means psycopg 3 here (the only PostgreSQL driver we install)."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


class Database:
    """An engine plus what the collector needs around it (the SQLite write lock)."""

    def __init__(self, url: str, *, background_checkpoint: bool = False) -> None:
        self.url = normalize_url(url)
        self.engine = _make_engine(self.url, background_checkpoint)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        # SQLite has one writer at a time; threads that meet its lock spin in its
        # busy handler (sleeps of up to 100 ms), which wrecks tail latency. One
        # in-process lock queues writers fairly instead. PostgreSQL needs none.
        self._write_lock = threading.Lock() if self.is_sqlite else None
        self._stop = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if background_checkpoint and self.is_sqlite:
            self._checkpointer = threading.Thread(target=self._checkpoint_loop,
                                                  name="sqlite-checkpoint", daemon=True)
            self._checkpointer.start()

    def _checkpoint_loop(self) -> None:
        """Copy the WAL into the database file off the request path.

        With automatic checkpoints, every ~1000 pages one unlucky commit does the
        copy and its fsyncs while holding the write lock: 15-30 ms measured here,
        the whole p99. PASSIVE never waits for readers or writers.
        """
        while not self._stop.wait(CHECKPOINT_INTERVAL_S):
            with contextlib.suppress(Exception), self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        if self._write_lock is None:
            yield
            return
        with self._write_lock:
            yield

    def migrate(self, revision: str = "head") -> None:
        migrate(self.engine, revision)

    def dispose(self) -> None:
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join(timeout=5)
        self.engine.dispose()


def _make_engine(url: str, background_checkpoint: bool) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=8,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        if background_checkpoint:
            event.listen(engine, "connect", _no_autocheckpoint)
        return engine
    # Enough connections for uvicorn's thread pool under a burst (40 threads).
    return create_engine(url, pool_size=16, max_overflow=32, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers (dashboard, API) never block the writer and vice versa.
    # synchronous=NORMAL in WAL mode loses no committed transaction when the
    # process is killed (only on power loss or an OS crash may the last ones roll
    # back), and skips an fsync per commit (sqlite.org/pragma.html#pragma_synchronous,
    # sqlite.org/wal.html). Acceptable for this ledger: an agent drops a report from
    # its spool only once the collector's answer names the report's digest, and
    # keeps the signed file in sent/ (report/upload.py), so a report lost that way
    # can be posted again, and a retry of one that survived is "already stored".
    # A collector that must keep every acknowledgement through a power cut runs on
    # PostgreSQL (an fsync per commit). docs/collector.md, "Ingest".
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _no_autocheckpoint(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")


class Prepared:
    """A Core statement compiled once and run on the DBAPI cursor, on SQLite.

    Ingest sends about ten small statements per report. On SQLite, where each runs
    in microseconds, SQLAlchemy's work around one execute (the cache key, an
    execution context, parameter and result set-up: about 30 us measured here
    against 6 us for the sqlite3 call) was a third of an ingest's CPU (profiled,
    issue 17). This compiles the statement once per set of parameter names and
    converts values with the columns' own bind and result processors
    (TypeEngine.bind_processor/result_processor, the conversions SQLAlchemy applies:
    a DateTime is the same text either way), so what is stored and read is the same
    as through Connection.execute. Rows come back as named tuples (row.id, as a Row).

    DBAPI errors are raised as SQLAlchemy's (DBAPIError.instance: IntegrityError,
    OperationalError), which ingest and the 503 handler catch, and listeners of
    before_cursor_execute still see each statement (the statement-count test).
    On PostgreSQL the statement goes through Connection.execute unchanged: there a
    statement is a round trip, and SQLAlchemy's disconnect handling (invalidating a
    connection the server dropped) is worth its cost.
    """

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, ...], _Plan] = {}
        columns = getattr(statement, "exported_columns", ())
        self._row = collections.namedtuple("Row", [c.key for c in columns]) \
            if len(columns) else None

    def _plan(self, conn: Connection, keys: tuple[str, ...]) -> _Plan:
        plan = self._compiled.get(keys)
        if plan is None:
            plan = self._compiled[keys] = _Plan(self.statement, conn.dialect, keys)
        return plan

    def rows(self, conn: Connection, params: dict[str, Any]) -> list[Any]:
        """The rows of one execution (a SELECT, or RETURNING)."""
        if conn.dialect.name != "sqlite":
            return list(conn.execute(self.statement, params).all())
        plan = self._plan(conn, tuple(params))
        cursor = self._cursor(conn, plan, plan.bind(params), False)
        try:
            fetched = cursor.fetchall()
        finally:
            cursor.close()
        row, convert = self._row, plan.results
        assert row is not None, "rows() of a statement that returns none"
        if any(convert):
            return [row(*[f(v) if f else v for f, v in zip(convert, r, strict=True)])
                    for r in fetched]
        return [row(*r) for r in fetched]

    def first(self, conn: Connection, params: dict[str, Any]) -> Any:
        found = self.rows(conn, params)
        return found[0] if found else None

    def run(self, conn: Connection, params: dict[str, Any] | list[dict[str, Any]]) -> None:
        """One execution, or an executemany of a list of parameter sets (same keys)."""
        if conn.dialect.name != "sqlite":
            conn.execute(self.statement, params)
            return
        many = isinstance(params, list)
        first: dict[str, Any] = params[0] if isinstance(params, list) else params
        plan = self._plan(conn, tuple(first))
        values = [plan.bind(p) for p in params] if isinstance(params, list) \
            else plan.bind(params)
        self._cursor(conn, plan, values, many).close()

    @staticmethod
    def _cursor(conn: Connection, plan: _Plan, values: Any, many: bool) -> Any:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        cursor = raw.cursor()
        for listen in conn.dispatch.before_cursor_execute:
            listen(conn, cursor, plan.sql, values, None, many)
        try:
            if many:
                cursor.executemany(plan.sql, values)
            else:
                cursor.execute(plan.sql, values)
        except conn.dialect.loaded_dbapi.Error as exc:
            cursor.close()
            raise DBAPIError.instance(plan.sql, values, exc,
                                      conn.dialect.loaded_dbapi.Error) from exc
        return cursor


class _Plan:
    """One statement's SQL for a dialect (qmark: SQLite), its parameters' order and
    bind processors, and its result columns' processors."""

    def __init__(self, statement: Any, dialect: Any, keys: tuple[str, ...]) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
        assert compiled.positional, "Prepared runs qmark (SQLite) statements only"
        self.sql: str = compiled.string
        self.order: tuple[str, ...] = tuple(compiled.positiontup or ())
        self.binds = tuple(compiled.binds[name].type.dialect_impl(dialect)
                           .bind_processor(dialect) for name in self.order)
        self.results = tuple(c.type.dialect_impl(dialect).result_processor(dialect, None)
                             for c in getattr(statement, "exported_columns", ()))

    def bind(self, params: dict[str, Any]) -> tuple[Any, ...]:
        return tuple([f(params[name]) if f else params[name]
                      for name, f in zip(self.order, self.binds, strict=True)])


CHECKPOINT_INTERVAL_S = 0.5
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Any constant: the key of the PostgreSQL advisory lock that serializes
# migrations when several collectors start at once against one database.
_MIGRATION_LOCK_KEY = 0x62656E6368


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``, by default the newest (idempotent)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"),
                               {"k": _MIGRATION_LOCK_KEY})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
