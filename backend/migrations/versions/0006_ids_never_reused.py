"""ids are never reused: AUTOINCREMENT on SQLite (issue 10)

Revision ID: a6e1c0de0006
Revises: a5e1c0de0005
Create Date: 2026-11-28 10:00:00.000000
"""

from alembic import op
import sqlalchemy as sa

import backend.tables  # noqa: F401  (custom column types)


revision = 'a6e1c0de0006'
down_revision = 'a5e1c0de0005'
branch_labels = None
depends_on = None


# SQLite hands out max(rowid)+1 unless a table is declared AUTOINCREMENT, so deleting the newest run gave its id
# to the next one (old links and late uploads then landed on it). PostgreSQL sequences never go back: nothing to do.
TABLES = ("runs", "sweeps")


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        # A rebuild (foreign keys are off during migrations, see backend.migrate) declaring AUTOINCREMENT.
        with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": True}):
            pass


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": False}):
            pass
