"""The collector's settings, read once by the CLI and handed to create_app()."""

from __future__ import annotations

from dataclasses import dataclass

# SQLite in the working directory unless --db names another database.
DEFAULT_DB_URL = "sqlite:///collector.db"
# A report of the full acceptance suite is tens of kB; 4 MiB leaves room for
# burn-in reports with many samples while bounding what one request can cost.
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Settings:
    db_url: str = DEFAULT_DB_URL
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # None: the admin endpoints (POST /v1/keys, revocation) answer 403.
    admin_token: str | None = None
    # Labs only: accept an unknown key on first use when the request carries it.
    auto_enroll: bool = False

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1024:
            raise ValueError(f"max_body_bytes {self.max_body_bytes} is too small (< 1024)")
        if self.admin_token is not None and len(self.admin_token) < 16:
            raise ValueError("the admin token must be at least 16 characters")
