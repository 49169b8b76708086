"""What `bench-agent collector serve|init|enroll|revoke|node` runs (bench_agent/cli/main.py parses).

Every command finds its database by one rule (settings.resolve_db_url: --db, else
$BENCH_AGENT_COLLECTOR_DB, else the default path) and says on stderr which one it
used. Only serve and init create a database; enroll and revoke refuse one that
does not exist or has no collector schema, since a key written into a new empty
database is a key no collector ever reads.

Exit codes follow bench_agent/cli/main.py: 0 done, 3 usage (unknown key), 4 configuration
(bad or missing database, token file, PEM).
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench_agent.core.errors import ConfigError, Refused

if TYPE_CHECKING:
    from bench_agent.collector import db

ADMIN_TOKEN_ENV = "BENCH_AGENT_COLLECTOR_TOKEN"
TOKENS_ENV = "BENCH_AGENT_COLLECTOR_TOKENS"
# The commands run() handles with the whole parsed namespace (cli/main.py dispatches).
HANDLED = ("serve", "node")


def read_admin_token(path: Path | None) -> str | None:
    """The token from --admin-token-file, else $BENCH_AGENT_COLLECTOR_TOKEN, else None.

    A file, not an option: a token on the command line is visible in `ps`.
    """
    if path is None:
        return os.environ.get(ADMIN_TOKEN_ENV) or None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the admin token file {path}: {exc.strerror}") from exc
    if len(token) < 16:
        raise ConfigError(f"{path}: the admin token must be at least 16 characters")
    return token


def shown_url(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError as exc:
        raise ConfigError(f"--db {url!r} is neither a database URL nor a path") from exc


def _database_of(given: str | None) -> str:
    from bench_agent.collector.settings import resolve_db_url

    url = resolve_db_url(given)
    print(f"database: {shown_url(url)}", file=sys.stderr, flush=True)
    return url


def _cannot_open(url: str, exc: Exception) -> ConfigError:
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ConfigError(f"cannot open the collector database {shown_url(url)}: {first}")


def _open_existing(url: str) -> db.Database:
    """The database at ``url``, migrated, or ConfigError when it is not a collector's.

    Checked before connecting: connecting to SQLite creates the file.
    """
    from sqlalchemy import inspect
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from bench_agent.collector import db

    hint = ("start the collector on it once (`bench-agent collector serve`) or create it "
            "with `bench-agent collector init`, or name the collector's database with --db "
            "or $BENCH_AGENT_COLLECTOR_DB")
    parsed = make_url(db.normalize_url(url))
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:") \
            and not Path(str(parsed.database)).is_file():
        raise ConfigError(f"there is no collector database at {parsed.database}; {hint}")
    try:
        database = db.Database(url)
    except SQLAlchemyError as exc:
        raise _cannot_open(url, exc) from exc
    try:
        with database.engine.connect() as conn:
            has_schema = inspect(conn).has_table("alembic_version")
        if not has_schema:
            raise ConfigError(f"the database {shown_url(url)} has no collector schema; {hint}")
        database.migrate()
    except ConfigError:
        database.dispose()
        raise
    except SQLAlchemyError as exc:
        database.dispose()
        raise _cannot_open(url, exc) from exc
    return database


def read_tokens(path: Path | None) -> tuple[Any, ...]:
    """The role tokens of --tokens-file, else of $BENCH_AGENT_COLLECTOR_TOKENS, else ()."""
    from bench_agent.collector.roles import parse_tokens

    if path is None:
        text = os.environ.get(TOKENS_ENV, "")
        return parse_tokens(text, f"${TOKENS_ENV}") if text else ()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the tokens file {path}: {exc.strerror}") from exc
    return parse_tokens(text, str(path))


def run(args: argparse.Namespace) -> int:
    """`collector serve` and `collector node` from the parsed command line."""
    if args.collector_command == "node":
        return node(db_url=args.db, name=args.name, state=args.state, why=args.why,
                    as_json=args.json)
    return serve(db_url=args.db, host=args.host, port=args.port, auto_enroll=args.auto_enroll,
                 admin_token_file=args.admin_token_file, max_body_bytes=args.max_body_bytes,
                 max_in_flight=args.max_in_flight, body_timeout_s=args.body_timeout_s,
                 access_log=args.access_log, tokens_file=args.tokens_file,
                 reads_need_token=args.reads_need_token, validity_days=args.validity_days,
                 acceptance_suites=args.acceptance_suite, burnin_suites=args.burnin_suite)


def node(*, db_url: str | None, name: str, state: str | None, why: str | None,
         as_json: bool = False) -> int:
    """Show a node's state, status and history; with ``state``, move it (needs ``why``).

    The actor recorded is the local user: whoever can open the database with its
    credentials is an operator (the API's equivalent needs an operate token).
    """
    from datetime import UTC, datetime

    from bench_agent.collector import lifecycle, queries

    if state is not None and not (why or "").strip():
        print("bench-agent: --state needs --why (the reason is recorded)", file=sys.stderr)
        return 3
    database = _open_existing(_database_of(db_url))
    try:
        if state is not None:
            try:
                before, after = lifecycle.set_state(database, name, state, why or "",
                                                    f"cli:{getpass.getuser()}")
            except Refused as exc:
                print(f"bench-agent: {exc.detail}", file=sys.stderr)
                return 3
            print(f"{name}: {before} -> {after}")
        with database.engine.connect() as conn:
            found = queries.get_node(conn, name, datetime.now(UTC).replace(tzinfo=None))
    finally:
        database.dispose()
    if found is None:
        print(f"bench-agent: no node named {name!r}", file=sys.stderr)
        return 3
    if as_json:
        print(json.dumps({k: found[k] for k in ("name", "state", "status", "stale",
                                                 "suites", "failing", "history")}, indent=2))
        return 0
    if state is None:
        print(f"{found['name']}: state {found['state']}, status {found['status'] or 'none'}"
              f"{' (stale results)' if found['stale'] else ''}")
        for move in found["history"]:
            print(f"  {move['at']}  {move['from']} -> {move['to']}  by {move['actor']}: "
                  f"{move['why']}")
    return 0


def serve(*, db_url: str | None, host: str, port: int, auto_enroll: bool = False,
          admin_token_file: Path | None = None, max_body_bytes: int | None = None,
          max_in_flight: int | None = None, body_timeout_s: float | None = None,
          access_log: bool = True, tokens_file: Path | None = None,
          reads_need_token: bool = False, validity_days: float | None = None,
          acceptance_suites: list[str] | None = None,
          burnin_suites: list[str] | None = None) -> int:
    import uvicorn

    from bench_agent.collector.api import ReportsFastPath
    from bench_agent.collector.app import create_app
    from bench_agent.collector.settings import (
        DEFAULT_BODY_TIMEOUT_S,
        DEFAULT_MAX_BODY_BYTES,
        DEFAULT_MAX_IN_FLIGHT,
        DEFAULT_VALIDITY_S,
        Settings,
    )

    url = _database_of(db_url)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    # Alembic says each step at INFO; one line per start is enough.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        settings = Settings(db_url=url, admin_token=read_admin_token(admin_token_file),
                            auto_enroll=auto_enroll,
                            max_body_bytes=max_body_bytes or DEFAULT_MAX_BODY_BYTES,
                            max_in_flight=max_in_flight or DEFAULT_MAX_IN_FLIGHT,
                            body_timeout_s=body_timeout_s or DEFAULT_BODY_TIMEOUT_S,
                            tokens=read_tokens(tokens_file), reads_need_token=reads_need_token,
                            validity_s=validity_days * 86400 if validity_days is not None
                            else DEFAULT_VALIDITY_S,
                            acceptance_suites=tuple(acceptance_suites or ("acceptance",)),
                            burnin_suites=tuple(burnin_suites or ("burnin",)))
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    app = create_app(settings)
    if auto_enroll:
        logging.getLogger("bench_agent.collector").warning(
            "auto-enroll is on: any node's first key is trusted on first use (labs only)")
    # One process: SQLite wants a single writer, and ingest is bounded by the
    # signature checks and the database, not by the event loop.
    uvicorn.run(ReportsFastPath(app), host=host, port=port, access_log=access_log,
                log_level="info", timeout_graceful_shutdown=5)
    return 0


def init(*, db_url: str | None) -> int:
    """Create the database (SQLite) or its schema, or bring it to the newest revision."""
    from sqlalchemy.exc import SQLAlchemyError

    from bench_agent.collector import db

    url = _database_of(db_url)
    try:
        database = db.Database(url)
        try:
            database.migrate()
        finally:
            database.dispose()
    except SQLAlchemyError as exc:
        raise _cannot_open(url, exc) from exc
    print(f"ready: {shown_url(url)}")
    return 0


def enroll(*, db_url: str | None, node: str, pubkey: Path, replace: bool = False) -> int:
    from bench_agent.collector.enrollment import enroll as enroll_key
    from bench_agent.core.errors import EnrollmentError

    url = _database_of(db_url)
    try:
        pem = pubkey.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {pubkey}: {exc.strerror}") from exc
    database = _open_existing(url)
    try:
        keyid, created = enroll_key(database, node, pem, replace=replace)
    except EnrollmentError as exc:
        raise ConfigError(str(exc)) from exc
    finally:
        database.dispose()
    print(f"{'enrolled' if created else 'already enrolled'}: node {node!r} keyid {keyid}")
    return 0


def revoke(*, db_url: str | None, keyid: str) -> int:
    from bench_agent.collector.enrollment import revoke as revoke_key

    url = _database_of(db_url)
    database = _open_existing(url)
    try:
        revoked_at = revoke_key(database, keyid)
    finally:
        database.dispose()
    if revoked_at is None:
        print(f"bench-agent: no enrolled key {keyid}", file=sys.stderr)
        return 3
    print(f"revoked: keyid {keyid} at {revoked_at.isoformat()}Z")
    return 0
