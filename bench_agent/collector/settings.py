"""The collector's settings, read once by the CLI and handed to create_app()."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bench_agent.collector.roles import ADMIN, Token

# The database of every `bench-agent collector` command when --db is not given.
DB_ENV = "BENCH_AGENT_COLLECTOR_DB"
# Root runs the collector as a service: its state lives in /var/lib (FHS 3.0, 5.8
# "/var/lib: variable state information"). Anyone else: the XDG data folder
# (XDG Base Directory Specification: $XDG_DATA_HOME, else ~/.local/share).
SYSTEM_DB_PATH = Path("/var/lib/bench-agent/collector.db")
# A report of the full acceptance suite is tens of kB; 4 MiB leaves room for
# burn-in reports with many samples while bounding what one request can cost.
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
# Posts being verified or stored at once. Past this the collector sheds load with
# 429 and Retry-After rather than queueing bodies in memory without bound.
DEFAULT_MAX_IN_FLIGHT = 256
# The whole body of a post must arrive within this time, else 408 and the
# connection is closed: a client that trickles a byte now and then cannot hold a
# connection, a thread or memory for longer. 4 MiB in 30 s is about 140 kB/s.
DEFAULT_BODY_TIMEOUT_S = 30.0
# How long a result counts toward a node's status (queries.py). No standard fixes it:
# a fleet's own policy, set with --validity-days. 30 days is the default because a
# monthly re-acceptance is what the collector's README proposes; older results are
# shown as stale, and a failure stays until a newer run of its suite replaces it.
DEFAULT_VALIDITY_S = 30 * 86400.0


def default_db_path(environ: Mapping[str, str] | None = None,
                    euid: int | None = None) -> Path:
    """Where the collector's SQLite database lives when neither --db nor $DB_ENV says."""
    environ = os.environ if environ is None else environ
    euid = os.geteuid() if euid is None else euid
    if euid == 0:
        return SYSTEM_DB_PATH
    data_home = environ.get("XDG_DATA_HOME", "")
    # The spec: a relative $XDG_DATA_HOME is invalid and must be ignored.
    if not data_home or not Path(data_home).is_absolute():
        data_home = str(Path(environ.get("HOME") or Path.home()) / ".local" / "share")
    return Path(data_home) / "bench-agent" / "collector.db"


def as_db_url(value: str) -> str:
    """A database URL as given, or a file path turned into an SQLite URL."""
    if "://" in value:
        return value
    return f"sqlite:///{Path(value).expanduser().resolve()}"


def resolve_db_url(given: str | None, environ: Mapping[str, str] | None = None,
                   euid: int | None = None) -> str:
    """--db, else $BENCH_AGENT_COLLECTOR_DB, else default_db_path(): one rule for every
    collector command, so that serve and enroll meet in the same database."""
    environ = os.environ if environ is None else environ
    if given:
        return as_db_url(given)
    if environ.get(DB_ENV):
        return as_db_url(environ[DB_ENV])
    return as_db_url(str(default_db_path(environ, euid)))


@dataclass(frozen=True, slots=True)
class Settings:
    db_url: str
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # None: the admin endpoints (POST /v1/keys, revocation) answer 403.
    admin_token: str | None = None
    # Labs only: accept an unknown key on first use when the request carries it.
    auto_enroll: bool = False
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    # roles.py: read/operate/admin tokens, and whether reads need one.
    tokens: tuple[Token, ...] = ()
    reads_need_token: bool = False
    validity_s: float = DEFAULT_VALIDITY_S
    # lifecycle.py: the suites whose PASS accepts a node, and those whose results
    # never quarantine one (a burn-in FAIL of a node in service is judged by a person).
    acceptance_suites: tuple[str, ...] = ("acceptance",)
    burnin_suites: tuple[str, ...] = ("burnin",)

    @property
    def all_tokens(self) -> tuple[Token, ...]:
        """The role tokens, and the single admin token as an admin named "admin"."""
        if self.admin_token is None:
            return self.tokens
        return (*self.tokens, Token(ADMIN, "admin", self.admin_token))

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1024:
            raise ValueError(f"max_body_bytes {self.max_body_bytes} is too small (< 1024)")
        if self.admin_token is not None and len(self.admin_token) < 16:
            raise ValueError("the admin token must be at least 16 characters")
        if self.max_in_flight < 1:
            raise ValueError(f"max_in_flight {self.max_in_flight} must be at least 1")
        if not 0 < self.body_timeout_s <= 3600:
            raise ValueError(f"body_timeout_s {self.body_timeout_s} must be in (0, 3600]")
        if not 0 < self.validity_s <= 10 * 366 * 86400:
            raise ValueError(f"the validity window of {self.validity_s / 86400:g} days must "
                             "be more than 0 and at most ten years")
        if self.reads_need_token and not self.all_tokens:
            raise ValueError("reads need a token, but no token is configured "
                             "(--tokens-file or $BENCH_AGENT_COLLECTOR_TOKENS)")
