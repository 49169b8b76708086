"""Alembic environment: always run programmatically by db.migrate() with a connection."""

from __future__ import annotations

from alembic import context

from bench_agent.collector.db import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through bench_agent.collector.db.migrate()")
# render_as_batch: SQLite cannot ALTER most things in place; batch mode copies the
# table, so later migrations work on both databases.
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
