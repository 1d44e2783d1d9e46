"""Apply Alembic migrations on start (and create new revisions with `python -m backend.migrate MESSAGE`)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config

from backend.db import Database

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the database's schema to the newest revision (or to `revision`)."""
    _migrate(db, command.upgrade, revision)


def downgrade(db: Database, revision: str) -> None:
    """Take the database's schema back to `revision`."""
    _migrate(db, command.downgrade, revision)


def _migrate(db: Database, step: Callable[[Config, str], None], revision: str) -> None:
    cfg = alembic_config(db.url)
    with db.engine.connect() as connection:
        raw = connection.connection.driver_connection
        if db.is_sqlite and raw is not None:
            # A table rebuild drops the old table; with foreign keys on, that would cascade-delete every
            # epoch of every run. The pragma only takes effect outside a transaction, so it goes first.
            raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                cfg.attributes["connection"] = connection
                step(cfg, revision)
        finally:
            if db.is_sqlite and raw is not None:
                raw.execute("PRAGMA foreign_keys=ON")


if __name__ == "__main__":
    target = sys.argv[2] if len(sys.argv) > 2 else "sqlite:////tmp/prunescope-autogen.db"
    command.upgrade(alembic_config(target), "head")
    command.revision(alembic_config(target), message=sys.argv[1], autogenerate=True)
