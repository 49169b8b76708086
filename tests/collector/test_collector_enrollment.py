"""Node keys under concurrency, on real SQLite and PostgreSQL: one active key per node,
enforced by the database, and auto-enroll that trusts only a node's first key ever."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from sqlalchemy import inspect, select

from bench_agent.collector import db, enrollment
from bench_agent.core.errors import EnrollmentError
from bench_agent.report.attest import NodeKey
from tests.collector_support import (
    Collector,
    Reply,
    envelope_bytes,
    http,
    make_report,
    postgres_available,
    postgres_database,
)

TOKEN = "enrollment-admin-token-0123"
RACERS = 10
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not postgres_available(), reason="PostgreSQL is not reachable at 127.0.0.1:5432"))]
T = TypeVar("T")


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    sqlite = contextlib.nullcontext(f"sqlite:///{tmp_path / 'collector.db'}")
    with postgres_database() if request.param == "postgresql" else sqlite as url:
        yield url


def race(count: int, action: Callable[[int], T]) -> list[T | Exception]:
    """``action(i)`` in ``count`` threads released at once by a barrier."""
    barrier = threading.Barrier(count)
    results: list[T | Exception] = [RuntimeError("not run")] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = action(i)
        except Exception as exc:  # each outcome is asserted by the caller
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def active_keys(database: db.Database, node: str) -> list[str]:
    with database.engine.connect() as conn:
        return [k.keyid for k in enrollment.keys_of(conn, node) if k.revoked_at is None]


def test_admins_racing_to_enroll_keys_for_one_node_leave_one_active_key(db_url: str) -> None:
    # One Database per thread: as many collectors and CLI processes would, without
    # the in-process SQLite write lock that would serialize them here.
    databases = [db.Database(db_url) for _ in range(RACERS)]
    databases[0].migrate()
    try:
        for round_ in range(3):
            node = f"race-{round_}"
            keys = [NodeKey.generate() for _ in range(RACERS)]
            results = race(RACERS, lambda i, keys=keys, node=node: enrollment.enroll(
                databases[i], node, keys[i].public.pem()))
            won = [r for r in results if isinstance(r, tuple)]
            lost = [r for r in results if not isinstance(r, tuple)]
            assert [created for _, created in won] == [True], results
            assert all(isinstance(r, EnrollmentError)
                       and r.reason == "node_already_enrolled" for r in lost), lost
            assert active_keys(databases[0], node) == [won[0][0]]
    finally:
        for database in databases:
            database.dispose()


def test_the_database_itself_refuses_a_second_active_key(db_url: str) -> None:
    database = db.Database(db_url)
    database.migrate()
    try:
        indexes = {ix["name"]: ix for ix in inspect(database.engine).get_indexes("keys")}
        assert indexes["uq_keys_node_active"]["unique"]
        first, second = NodeKey.generate(), NodeKey.generate()
        enrollment.enroll(database, "n1", first.public.pem())
        # Past the code's own check, straight into the table: the index refuses it.
        from sqlalchemy.exc import IntegrityError

        with pytest.raises(IntegrityError), database.engine.begin() as conn:
            conn.execute(db.keys.insert().values(
                keyid=second.public.keyid, node_name="n1", public_raw=second.public.raw,
                enrolled_at=db.utcnow(), revoked_at=None))
        # A revoked key does not count: the node takes a new one.
        enrollment.revoke(database, first.public.keyid)
        assert enrollment.enroll(database, "n1", second.public.pem()) == (
            second.public.keyid, True)
    finally:
        database.dispose()


def test_an_admin_replaces_a_nodes_key_in_one_step(db_url: str) -> None:
    database = db.Database(db_url)
    database.migrate()
    try:
        old, new = NodeKey.generate(), NodeKey.generate()
        enrollment.enroll(database, "reinstalled", old.public.pem())
        with pytest.raises(EnrollmentError) as caught:
            enrollment.enroll(database, "reinstalled", new.public.pem())
        assert caught.value.reason == "node_already_enrolled"
        assert old.public.keyid[:16] in str(caught.value)
        assert active_keys(database, "reinstalled") == [old.public.keyid]
        assert enrollment.enroll(database, "reinstalled", new.public.pem(), replace=True) == (
            new.public.keyid, True)
        with database.engine.connect() as conn:
            keys = {k.keyid: k.revoked_at for k in enrollment.keys_of(conn, "reinstalled")}
        assert keys[new.public.keyid] is None and keys[old.public.keyid] is not None
    finally:
        database.dispose()


def test_the_migration_keeps_each_nodes_newest_active_key(db_url: str) -> None:
    from alembic import command
    from alembic.config import Config

    database = db.Database(db_url)
    try:
        config = Config()
        config.set_main_option("script_location", str(db.MIGRATIONS))
        with database.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0001")
        keys = [NodeKey.generate() for _ in range(3)]
        with database.engine.begin() as conn:
            for day, key in enumerate(keys):  # what the race left behind
                conn.execute(db.keys.insert().values(
                    keyid=key.public.keyid, node_name="twice", public_raw=key.public.raw,
                    enrolled_at=db.utcnow().replace(day=day + 1), revoked_at=None))
        database.migrate()
        assert active_keys(database, "twice") == [keys[2].public.keyid]
        with database.engine.connect() as conn:
            assert len(conn.execute(select(db.keys.c.keyid)).scalars().all()) == 3
    finally:
        database.dispose()


@pytest.fixture(params=BACKENDS)
def lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Collector]:
    """A real collector with auto-enroll on and the admin endpoints enabled."""
    (tmp_path / "token").write_text(TOKEN)
    sqlite = contextlib.nullcontext(f"sqlite:///{tmp_path / 'lab.db'}")
    with postgres_database() if request.param == "postgresql" else sqlite as url:
        server = Collector(url, tmp_path / "lab.log", "--auto-enroll", "--no-access-log",
                           "--admin-token-file", str(tmp_path / "token"))
        try:
            yield server.start()
        finally:
            server.stop()


def offer(server: Collector, node: str, key: NodeKey) -> Reply:
    """A first report of ``node`` signed by ``key``, offering the key for auto-enroll."""
    return server.post(envelope_bytes(make_report(node), key),
                       {"X-Bench-Agent-Public-Key": base64.b64encode(key.public.raw).decode()})


def admin(server: Collector, method: str, path: str, data: object = None) -> Reply:
    return http(method, server.url + path,
                json.dumps(data).encode() if data is not None else None,
                {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})


@pytest.mark.e2e
def test_auto_enroll_races_trust_one_key_and_refuse_the_rest_with_403(
        lab: Collector) -> None:
    for round_ in range(3):
        node = f"lab-{round_}"
        keys = [NodeKey.generate() for _ in range(RACERS)]
        replies = race(RACERS, lambda i, keys=keys, node=node: offer(lab, node, keys[i]))
        statuses = sorted(r.status if isinstance(r, Reply) else repr(r) for r in replies)
        assert statuses == [201] + [403] * (RACERS - 1), statuses
        assert {r.json()["error"] for r in replies
                if isinstance(r, Reply) and r.status == 403} == {"node_already_enrolled"}
        active = [k for k in lab.get(f"/v1/nodes/{node}").json()["keys"]
                  if k["revoked_at"] is None]
        winner = next(keys[i] for i, r in enumerate(replies)
                      if isinstance(r, Reply) and r.status == 201)
        assert [k["keyid"] for k in active] == [winner.public.keyid]
    assert " 500 " not in lab.log()


@pytest.mark.e2e
def test_a_node_whose_key_was_revoked_is_not_taken_by_a_new_key(lab: Collector) -> None:
    first, stranger, admins = NodeKey.generate(), NodeKey.generate(), NodeKey.generate()
    assert offer(lab, "lab-revoked", first).status == 201
    assert admin(lab, "POST", f"/v1/keys/{first.public.keyid}/revoke").status == 200
    refused = offer(lab, "lab-revoked", stranger)
    assert refused.status == 403
    assert refused.json()["error"] == "node_already_enrolled"
    assert "an admin enrolls the next" in refused.json()["detail"]
    assert [k["keyid"] for k in lab.get("/v1/nodes/lab-revoked").json()["keys"]] == [
        first.public.keyid]
    # An admin enrolls the node's next key, and its reports are stored.
    reply = admin(lab, "POST", "/v1/keys",
                  {"node": "lab-revoked", "public_key": admins.public.pem()})
    assert reply.status == 201, reply.body
    assert lab.post(envelope_bytes(make_report("lab-revoked"), admins)).status == 201
    # A second active key over HTTP: 409 unless the admin asks to replace.
    other = NodeKey.generate()
    reply = admin(lab, "POST", "/v1/keys", {"node": "lab-revoked",
                                            "public_key": other.public.pem()})
    assert (reply.status, reply.json()["error"]) == (409, "node_already_enrolled")
    reply = admin(lab, "POST", "/v1/keys", {"node": "lab-revoked", "replace": True,
                                            "public_key": other.public.pem()})
    assert reply.status == 201, reply.body
    assert lab.post(envelope_bytes(make_report("lab-revoked"), admins)).status == 403
