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


def upgrade() -> None:
    pass  # filled in by the change that needs it (see the message above)


def downgrade() -> None:
    pass
