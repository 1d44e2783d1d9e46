"""Alembic environment: runs migrations on the connection or URL the caller passes in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from backend import tables  # noqa: F401  (registers the tables on Base.metadata)
from backend.db import Base

config = context.config
target_metadata = Base.metadata


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
        with engine.connect() as conn:
            _run(conn)
        engine.dispose()
    else:
        _run(connection)


def _run(connection: object) -> None:
    # render_as_batch: SQLite cannot ALTER most things, so Alembic copies tables instead.
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)  # type: ignore[arg-type]
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
