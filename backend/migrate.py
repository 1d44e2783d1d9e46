"""Apply Alembic migrations on start (and create new revisions with `python -m backend.migrate MESSAGE`)."""

from __future__ import annotations

import sys
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


def upgrade(db: Database) -> None:
    """Bring the database's schema to the newest revision."""
    cfg = alembic_config(db.url)
    with db.engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


if __name__ == "__main__":
    target = sys.argv[2] if len(sys.argv) > 2 else "sqlite:////tmp/prunescope-autogen.db"
    command.upgrade(alembic_config(target), "head")
    command.revision(alembic_config(target), message=sys.argv[1], autogenerate=True)
