"""What `bench-agent collector serve|enroll|revoke` runs (bench_agent/cli.py parses).

Exit codes follow bench_agent/cli.py: 0 done, 3 usage (unknown key), 4 configuration
(bad database URL, token file, PEM).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from bench_agent.errors import ConfigError

ADMIN_TOKEN_ENV = "BENCH_AGENT_COLLECTOR_TOKEN"


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


def serve(*, db_url: str, host: str, port: int, auto_enroll: bool = False,
          admin_token_file: Path | None = None, max_body_bytes: int | None = None,
          access_log: bool = True) -> int:
    import uvicorn

    from bench_agent.collector.app import create_app
    from bench_agent.collector.settings import DEFAULT_MAX_BODY_BYTES, Settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    # Alembic says each step at INFO; one line per start is enough.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        settings = Settings(db_url=db_url, admin_token=read_admin_token(admin_token_file),
                            auto_enroll=auto_enroll,
                            max_body_bytes=max_body_bytes or DEFAULT_MAX_BODY_BYTES)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    app = create_app(settings)
    if auto_enroll:
        logging.getLogger("bench_agent.collector").warning(
            "auto-enroll is on: any node's first key is trusted on first use (labs only)")
    # One process: SQLite wants a single writer, and ingest is bounded by the
    # signature checks and the database, not by the event loop.
    uvicorn.run(app, host=host, port=port, access_log=access_log, log_level="info",
                timeout_graceful_shutdown=5)
    return 0


def enroll(*, db_url: str, node: str, pubkey: Path) -> int:
    from bench_agent.collector import db
    from bench_agent.collector.enrollment import EnrollmentError
    from bench_agent.collector.enrollment import enroll as enroll_key

    try:
        pem = pubkey.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {pubkey}: {exc.strerror}") from exc
    database = db.Database(db_url)
    try:
        database.migrate()
        keyid, created = enroll_key(database, node, pem)
    except EnrollmentError as exc:
        raise ConfigError(str(exc)) from exc
    finally:
        database.dispose()
    print(f"{'enrolled' if created else 'already enrolled'}: node {node!r} keyid {keyid}")
    return 0


def revoke(*, db_url: str, keyid: str) -> int:
    from bench_agent.collector import db
    from bench_agent.collector.enrollment import revoke as revoke_key

    database = db.Database(db_url)
    try:
        database.migrate()
        revoked_at = revoke_key(database, keyid)
    finally:
        database.dispose()
    if revoked_at is None:
        print(f"bench-agent: no enrolled key {keyid}", file=sys.stderr)
        return 3
    print(f"revoked: keyid {keyid} at {revoked_at.isoformat()}Z")
    return 0
