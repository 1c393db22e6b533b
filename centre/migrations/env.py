"""Alembic environment: run programmatically by centre.db.migrate (the engine comes in the config)."""

from __future__ import annotations

from alembic import context

from centre.db import metadata

config = context.config


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    with config.attributes["engine"].connect() as conn:
        _run(conn)
        conn.commit()
