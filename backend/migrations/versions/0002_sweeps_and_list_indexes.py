"""sweeps table; indexes for the runs list's strategy and model/dataset filters

Revision ID: 7c3d9a41e2b0
Revises: 2f5e6b68829f
Create Date: 2026-11-27 23:40:00.000000
"""

from alembic import op
import sqlalchemy as sa

import backend.tables  # noqa: F401  (custom column types)


revision = '7c3d9a41e2b0'
down_revision = '2f5e6b68829f'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sweeps',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('base', sa.JSON(), nullable=False),
    sa.Column('grid', sa.JSON(), nullable=False),
    sa.Column('created_at', backend.tables.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sweeps'))
    )
    op.create_index(op.f('ix_sweeps_created_at'), 'sweeps', ['created_at'], unique=False)
    op.create_index('ix_runs_model_name_dataset_name', 'runs', ['model_name', 'dataset_name'], unique=False)
    op.create_index(op.f('ix_runs_strategy'), 'runs', ['strategy'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_runs_strategy'), table_name='runs')
    op.drop_index('ix_runs_model_name_dataset_name', table_name='runs')
    op.drop_index(op.f('ix_sweeps_created_at'), table_name='sweeps')
    op.drop_table('sweeps')
