"""tracked runs: kind, extra scalars and in-epoch points (issue 11)

Revision ID: a7e1c0de0007
Revises: a6e1c0de0006
Create Date: 2026-11-28 10:00:00.000000
"""

from alembic import op
import sqlalchemy as sa

import backend.tables  # noqa: F401  (custom column types)


revision = 'a7e1c0de0007'
down_revision = 'a6e1c0de0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # filled in by the change that needs it (see the message above)


def downgrade() -> None:
    pass
