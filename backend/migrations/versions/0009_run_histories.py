"""run_histories: a finished run's history answers, kept when it ends (issue 13: the first read of a large run)

Revision ID: a9e1c0de0009
Revises: a8e1c0de0008
Create Date: 2026-11-28 21:40:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = 'a9e1c0de0009'
down_revision = 'a8e1c0de0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nothing to backfill: a run that ended before this revision builds its answer on its first read, as before.
    op.create_table('run_histories',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('layout', sa.String(length=16), nullable=False),
    sa.Column('fingerprint', sa.String(length=200), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_run_histories_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'layout', name=op.f('pk_run_histories'))
    )


def downgrade() -> None:
    op.drop_table('run_histories')
