"""Storage: migrations match the models on both databases; SQLite runs in WAL with immediate writers."""

from __future__ import annotations

import threading
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from backend import migrate
from backend.db import Base, Database
from backend.tables import Run


def test_migrations_build_exactly_the_schema_the_models_describe(database_url: str) -> None:
    db = Database(database_url)
    try:
        migrate.upgrade(db)
        migrate.upgrade(db)  # applying again on start is a no-op
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == [], f"models and migrations differ; add a migration: {diff}"
    finally:
        db.dispose()


def test_sqlite_uses_wal_and_concurrent_writers_wait_instead_of_failing(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'p.db'}")
    migrate.upgrade(db)
    with db.session() as session:
        assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert session.execute(text("PRAGMA foreign_keys")).scalar() == 1
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(40):
                with db.writing() as session:
                    seen = session.query(Run).count()  # read, then write, in one transaction
                    session.add(Run(name=f"w{n}-{i}", config={}, tags=[], epochs_done=seen))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with db.session() as session:
        assert session.query(Run).count() == 160
    db.dispose()
