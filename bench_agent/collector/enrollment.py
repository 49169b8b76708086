"""Node keys: enroll (CLI, POST /v1/keys, auto-enroll), revoke, look up.

A key is enrolled for one node name, and a node has at most one active (not
revoked) key: the database enforces it with a partial unique index
(keys.node_name WHERE revoked_at IS NULL, migration 0002), so two enrollments
racing on PostgreSQL cannot both win. A reinstalled node's new key replaces the
old one (replace=True revokes it in the same transaction). A revoked key stays in
the table, so its reports keep their provenance and it cannot be enrolled again.

Without an admin (auto-enroll), a key is accepted only as a node's first key
ever: once a node has had a key, even a revoked one, only an admin enrolls the
next, else whoever saw the revocation could take the node over with any key.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from bench_agent.collector import db
from bench_agent.core.errors import BenchAgentError, EnrollmentError
from bench_agent.core.model import REFUSED_IN_NAMES
from bench_agent.report.attest import PublicKey

# The reasons that mean "this key or node is taken": 409 on POST /v1/keys.
CONFLICTS = ("key_conflict", "key_revoked", "node_already_enrolled")


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


def enroll(database: db.Database, node_name: str, public_pem: str | bytes, *,
           replace: bool = False) -> tuple[str, bool]:
    """Enroll a PEM public key for a node (an admin's act): (keyid, created).

    Re-enrolling the same key is a no-op. A node that has another active key is
    refused (node_already_enrolled) unless ``replace``, which revokes that key.
    """
    check_node_name(node_name)
    try:
        public = PublicKey.from_pem(public_pem)
    except (BenchAgentError, UnicodeEncodeError) as exc:
        raise EnrollmentError(str(exc), "invalid_key") from exc
    with database.writing(), database.engine.begin() as conn:
        return enroll_in(conn, node_name, public, by_admin=True, replace=replace)


# ON CONFLICT DO NOTHING without a target covers every unique index, the partial
# one too (postgresql.org/docs/current/sql-insert.html "ON CONFLICT Clause";
# sqlite.org/lang_upsert.html): the loser of a race inserts nothing instead of
# raising, which on PostgreSQL would abort the caller's whole transaction.
_INSERT_KEY = {
    "postgresql": pg_insert(db.keys).on_conflict_do_nothing().returning(db.keys.c.keyid),
    "sqlite": sqlite_insert(db.keys).on_conflict_do_nothing().returning(db.keys.c.keyid),
}


def enroll_in(conn: Connection, node_name: str, public: PublicKey, *,
              by_admin: bool = False, replace: bool = False) -> tuple[str, bool]:
    """Enroll ``public`` for ``node_name`` in the caller's transaction: (keyid, created).

    Without ``by_admin`` (auto-enroll) only a node's first key ever is accepted.
    Raises EnrollmentError; the caller's transaction must then be rolled back
    (with ``replace`` the old key was already revoked in it).
    """
    existing = lookup_in(conn, public.keyid)
    if existing is not None:
        return _already(existing, node_name)
    if not by_admin and node_has_any_key(conn, node_name) \
            and active_keyid(conn, node_name) != public.keyid:
        raise EnrollmentError(f"node {node_name!r} has had a key before; auto-enroll only "
                              "accepts a node's first key, an admin enrolls the next",
                              "node_already_enrolled")
    active = active_keyid(conn, node_name)
    if active == public.keyid:
        # This very key was enrolled for this node by a transaction that committed
        # after the lookup above: two first reports of one node signed by one key
        # (auto-enroll) race here, and both are the node's first key.
        existing = lookup_in(conn, public.keyid)
        if existing is not None:
            return _already(existing, node_name)
    if active is not None:
        if not replace:
            raise EnrollmentError(f"node {node_name!r} already has the active key "
                                  f"{active[:16]}; revoke it first or replace it",
                                  "node_already_enrolled")
        conn.execute(update(db.keys).where(db.keys.c.node_name == node_name,
                                           db.keys.c.revoked_at.is_(None))
                     .values(revoked_at=db.utcnow()))
    inserted = conn.execute(_INSERT_KEY[conn.dialect.name], {
        "keyid": public.keyid, "node_name": node_name, "public_raw": public.raw,
        "enrolled_at": db.utcnow(), "revoked_at": None,
    }).first()
    if inserted is not None:
        return public.keyid, True
    # A concurrent transaction won, and has committed (PostgreSQL waits for it
    # before deciding there is a conflict): the same key, or another key of the node.
    existing = lookup_in(conn, public.keyid)
    if existing is not None:
        return _already(existing, node_name)
    raise EnrollmentError(f"node {node_name!r} was given another key at the same time; "
                          "a node has one active key", "node_already_enrolled")


def _already(existing: EnrolledKey, node_name: str) -> tuple[str, bool]:
    if existing.node_name != node_name:
        raise EnrollmentError(f"key {existing.keyid[:16]} is enrolled for node "
                              f"{existing.node_name!r}, not {node_name!r}", "key_conflict")
    if existing.revoked_at is not None:
        raise EnrollmentError(f"key {existing.keyid[:16]} was revoked; create a new node key",
                              "key_revoked")
    return existing.keyid, False


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


# Run on the DBAPI cursor on SQLite (db.Prepared): one per report ingested.
_LOOKUP_STATEMENT = select(db.keys).where(db.keys.c.keyid == bindparam("b_keyid"))
_LOOKUP = db.Prepared(_LOOKUP_STATEMENT)
_LOOKUP_FOR_SHARE = db.Prepared(_LOOKUP_STATEMENT.with_for_update(read=True))
# Every keyid is the hex sha256 of the key (attest.keyid_for_public_bytes). Anything
# else from an envelope or a URL cannot be enrolled, and is not sent to the
# database, where a NUL or a lone surrogate would raise.
_KEYID = re.compile(r"[0-9a-f]{64}")


def lookup_in(conn: Connection, keyid: str, *, for_share: bool = False
              ) -> EnrolledKey | None:
    if not isinstance(keyid, str) or not _KEYID.fullmatch(keyid):
        return None
    row = (_LOOKUP_FOR_SHARE if for_share else _LOOKUP).first(conn, {"b_keyid": keyid})
    if row is None:
        return None
    return EnrolledKey(row.keyid, row.node_name, PublicKey(bytes(row.public_raw)),
                       row.enrolled_at, row.revoked_at)


def active_keyid(conn: Connection, node_name: str) -> str | None:
    """The node's one active key (the partial unique index allows no second)."""
    keyid: str | None = conn.execute(select(db.keys.c.keyid).where(
        db.keys.c.node_name == node_name, db.keys.c.revoked_at.is_(None)).limit(1)).scalar()
    return keyid


def node_has_active_key(conn: Connection, node_name: str) -> bool:
    return active_keyid(conn, node_name) is not None


def node_has_any_key(conn: Connection, node_name: str) -> bool:
    """Whether the node has ever had a key, revoked or not."""
    row = conn.execute(select(db.keys.c.keyid).where(db.keys.c.node_name == node_name)
                       .limit(1)).first()
    return row is not None


def keys_of(conn: Connection, node_name: str) -> list[EnrolledKey]:
    rows = conn.execute(select(db.keys).where(db.keys.c.node_name == node_name)
                        .order_by(db.keys.c.enrolled_at)).all()
    return [EnrolledKey(r.keyid, r.node_name, PublicKey(bytes(r.public_raw)), r.enrolled_at,
                        r.revoked_at) for r in rows]
