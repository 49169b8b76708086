"""Node keys: enroll (CLI, POST /v1/keys, auto-enroll), revoke, look up.

A key is enrolled for one node name; a node may hold several keys (a reinstalled
node gets a new key before the old one is revoked). A revoked key stays in the
table, so its reports keep their provenance and it cannot be enrolled again.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, insert, select, update

from bench_agent.attest import PublicKey
from bench_agent.collector import db
from bench_agent.errors import BenchAgentError
from bench_agent.model import REFUSED_IN_NAMES


class EnrollmentError(BenchAgentError):
    """A key cannot be enrolled: bad PEM, bad node name, or enrolled for another node.

    ``reason`` is the API's reason code: invalid_key, invalid_node, key_conflict,
    key_revoked.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class EnrolledKey:
    keyid: str
    node_name: str
    public: PublicKey
    enrolled_at: datetime
    revoked_at: datetime | None


def check_node_name(name: str) -> str:
    """Any Unicode text of 1 to NAME_LENGTH characters without control characters."""
    if not isinstance(name, str) or not name or len(name) > db.NAME_LENGTH:
        raise EnrollmentError(f"a node name must have 1 to {db.NAME_LENGTH} characters",
                              "invalid_node")
    # Control and format characters (NUL, which PostgreSQL text cannot hold; the
    # bidirectional overrides, which reverse the name on the dashboard) and lone
    # surrogates (not UTF-8) never name a host: model.REFUSED_IN_NAMES.
    if any(unicodedata.category(c) in REFUSED_IN_NAMES for c in name):
        raise EnrollmentError(f"the node name {name!r} contains a control character or is "
                              "not valid Unicode", "invalid_node")
    return name


def enroll(database: db.Database, node_name: str, public_pem: str | bytes) -> tuple[str, bool]:
    """Enroll a PEM public key for a node: (keyid, created). Re-enrolling is a no-op."""
    check_node_name(node_name)
    try:
        public = PublicKey.from_pem(public_pem)
    except (BenchAgentError, UnicodeEncodeError) as exc:
        raise EnrollmentError(str(exc), "invalid_key") from exc
    with database.writing(), database.engine.begin() as conn:
        return enroll_in(conn, node_name, public)


def enroll_in(conn: Connection, node_name: str, public: PublicKey) -> tuple[str, bool]:
    existing = lookup_in(conn, public.keyid)
    if existing is not None:
        if existing.node_name != node_name:
            raise EnrollmentError(f"key {public.keyid[:16]} is enrolled for node "
                                  f"{existing.node_name!r}, not {node_name!r}", "key_conflict")
        if existing.revoked_at is not None:
            raise EnrollmentError(f"key {public.keyid[:16]} was revoked; create a new node key",
                                  "key_revoked")
        return public.keyid, False
    conn.execute(insert(db.keys).values(
        keyid=public.keyid, node_name=node_name, public_raw=public.raw,
        enrolled_at=db.utcnow(), revoked_at=None,
    ))
    return public.keyid, True


def revoke(database: db.Database, keyid: str) -> datetime | None:
    """Revoke a key; its revocation time (the first one if already revoked), None if unknown."""
    with database.writing(), database.engine.begin() as conn:
        existing = lookup_in(conn, keyid)
        if existing is None:
            return None
        if existing.revoked_at is not None:
            return existing.revoked_at
        now = db.utcnow()
        conn.execute(update(db.keys).where(db.keys.c.keyid == keyid).values(revoked_at=now))
        return now


_LOOKUP = select(db.keys).where(db.keys.c.keyid == bindparam("b_keyid"))
_LOOKUP_FOR_SHARE = _LOOKUP.with_for_update(read=True)
# Every keyid is the hex sha256 of the key (attest.keyid_for_public_bytes). Anything
# else from an envelope or a URL cannot be enrolled, and is not sent to the
# database, where a NUL or a lone surrogate would raise.
_KEYID = re.compile(r"[0-9a-f]{64}")


def lookup_in(conn: Connection, keyid: str, *, for_share: bool = False
              ) -> EnrolledKey | None:
    if not isinstance(keyid, str) or not _KEYID.fullmatch(keyid):
        return None
    row = conn.execute(_LOOKUP_FOR_SHARE if for_share else _LOOKUP,
                       {"b_keyid": keyid}).first()
    if row is None:
        return None
    return EnrolledKey(row.keyid, row.node_name, PublicKey(bytes(row.public_raw)),
                       row.enrolled_at, row.revoked_at)


def node_has_active_key(conn: Connection, node_name: str) -> bool:
    row = conn.execute(select(db.keys.c.keyid).where(
        db.keys.c.node_name == node_name, db.keys.c.revoked_at.is_(None)).limit(1)).first()
    return row is not None


def keys_of(conn: Connection, node_name: str) -> list[EnrolledKey]:
    rows = conn.execute(select(db.keys).where(db.keys.c.node_name == node_name)
                        .order_by(db.keys.c.enrolled_at)).all()
    return [EnrolledKey(r.keyid, r.node_name, PublicKey(bytes(r.public_raw)), r.enrolled_at,
                        r.revoked_at) for r in rows]
