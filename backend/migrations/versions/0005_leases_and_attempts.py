"""leases on runs and the attempt that trained each epoch (issue 10)

Revision ID: a5e1c0de0005
Revises: 4b8e2d6f1c93
Create Date: 2026-11-28 10:00:00.000000
"""

from alembic import op
import sqlalchemy as sa

import backend.tables  # noqa: F401  (custom column types)


revision = 'a5e1c0de0005'
down_revision = '4b8e2d6f1c93'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('runs') as batch:
        batch.add_column(sa.Column('handbacks', sa.Integer(), server_default='0', nullable=False))
        batch.add_column(sa.Column('lease', sa.String(length=64), nullable=True))
    with op.batch_alter_table('epochs') as batch:
        batch.add_column(sa.Column('attempt', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('epochs') as batch:
        batch.drop_column('attempt')
    with op.batch_alter_table('runs') as batch:
        batch.drop_column('lease')
        batch.drop_column('handbacks')
