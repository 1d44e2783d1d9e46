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
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=16), server_default='managed', nullable=False))
        batch_op.add_column(sa.Column('tracked_lease', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_runs_tracked_lease'), ['tracked_lease'], unique=True)
    with op.batch_alter_table('epochs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('extra', sa.JSON(), nullable=True))
    op.create_table('run_points',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('step', sa.Integer(), nullable=False),
    sa.Column('epoch', sa.Integer(), nullable=True),
    sa.Column('values', sa.JSON(), nullable=False),
    sa.Column('recorded_at', backend.tables.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_run_points_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_run_points')),
    sa.UniqueConstraint('run_id', 'step', name=op.f('uq_run_points_run_id'))
    )


def downgrade() -> None:
    op.drop_table('run_points')
    with op.batch_alter_table('epochs', schema=None) as batch_op:
        batch_op.drop_column('extra')
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_runs_tracked_lease'))
        batch_op.drop_column('tracked_lease')
        batch_op.drop_column('kind')
