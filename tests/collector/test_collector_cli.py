"""`bench-agent collector init|enroll|revoke` as a user runs them: one default database
for every command, said on stderr, and no empty database made by a typo."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("alembic")

from bench_agent.collector.settings import (
    DB_ENV,
    SYSTEM_DB_PATH,
    default_db_path,
    resolve_db_url,
)
from bench_agent.report.attest import NodeKey
from tests.cli_support import run_cli
from tests.collector_support import REPO


def test_the_default_database_is_one_documented_place() -> None:
    assert default_db_path({}, euid=0) == SYSTEM_DB_PATH == Path(
        "/var/lib/bench-agent/collector.db")
    user = {"HOME": "/home/sre", "XDG_DATA_HOME": "/data/sre"}
    assert default_db_path(user, euid=1000) == Path("/data/sre/bench-agent/collector.db")
    # No XDG_DATA_HOME, or a relative one (the spec says to ignore it): ~/.local/share.
    for environ in ({"HOME": "/home/sre"}, {"HOME": "/home/sre", "XDG_DATA_HOME": "rel"}):
        assert default_db_path(environ, euid=1000) == Path(
            "/home/sre/.local/share/bench-agent/collector.db")
    assert resolve_db_url(None, user, euid=1000) == (
        "sqlite:////data/sre/bench-agent/collector.db")
    assert resolve_db_url(None, {**user, DB_ENV: "postgresql://c@db/bench"}, euid=0) == (
        "postgresql://c@db/bench")
    # --db wins over the environment; a path is an SQLite file.
    assert resolve_db_url("/srv/c.db", {DB_ENV: "postgresql://c@db/bench"}, euid=0) == (
        "sqlite:////srv/c.db")


def collector(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_cli("collector", *args, cwd=cwd, timeout=60,
                   env={**os.environ, "PYTHONPATH": str(REPO), **env})


def tables(path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master "
                                                 "WHERE type = 'table'"))


def test_enroll_refuses_a_database_that_does_not_exist_or_is_not_a_collectors(
        tmp_path: Path) -> None:
    pem = tmp_path / "node.pub"
    pem.write_text(NodeKey.generate().public.pem())
    work = tmp_path / "cwd"
    work.mkdir()
    missing = tmp_path / "state" / "collector.db"
    done = collector("enroll", "--node", "n1", "--pubkey", str(pem), cwd=work,
                     env={DB_ENV: str(missing)})
    assert done.returncode == 4, done.stderr
    assert f"database: sqlite:///{missing}\n" in done.stderr
    assert f"there is no collector database at {missing}" in done.stderr
    assert "enrolled" not in done.stdout
    assert not missing.exists() and not missing.parent.exists()
    assert list(work.iterdir()) == []  # no collector.db in the current folder either

    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    done = collector("revoke", "--db", str(empty), "0" * 64, cwd=work, env={})
    assert done.returncode == 4, done.stderr
    assert "has no collector schema" in done.stderr
    assert tables(empty) == []  # refused, not migrated into a collector's database


def test_init_then_enroll_and_revoke_meet_in_the_same_database(tmp_path: Path) -> None:
    key = NodeKey.generate()
    pem = tmp_path / "node.pub"
    pem.write_text(key.public.pem())
    state = tmp_path / "state" / "collector.db"
    env = {DB_ENV: str(state)}
    done = collector("init", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith(f"database: sqlite:///{state}\n")
    assert "keys" in tables(state)
    done = collector("enroll", "--node", "n1", "--pubkey", str(pem), cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert f"database: sqlite:///{state}\n" in done.stderr
    assert done.stdout == f"enrolled: node 'n1' keyid {key.public.keyid}\n"
    done = collector("revoke", key.public.keyid, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert f"database: sqlite:///{state}\n" in done.stderr
    assert done.stdout.startswith(f"revoked: keyid {key.public.keyid} at ")
    with contextlib.closing(sqlite3.connect(state)) as conn:
        rows = conn.execute("SELECT node_name, revoked_at IS NOT NULL FROM keys").fetchall()
    assert rows == [("n1", 1)]


def test_a_database_url_is_shown_without_its_password(tmp_path: Path) -> None:
    # Nothing listens on port 1: the command says which database it could not open.
    done = collector("revoke", "--db", "postgresql://sre:s3cret@127.0.0.1:1/bench", "0" * 64,
                     cwd=tmp_path, env={})
    assert done.returncode == 4, done.stderr
    assert "database: postgresql://sre:***@127.0.0.1:1/bench\n" in done.stderr
    assert "cannot open the collector database postgresql://sre:***@127.0.0.1:1/bench" \
        in done.stderr
    assert "s3cret" not in done.stderr + done.stdout
