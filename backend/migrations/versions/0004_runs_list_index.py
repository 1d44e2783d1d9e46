"""covering index for the runs list's status-led filters and sorts

Revision ID: 4b8e2d6f1c93
Revises: 9a1f4c7d2e58
Create Date: 2026-11-28 00:25:00.000000
"""

from alembic import op
import sqlalchemy as sa

import backend.tables  # noqa: F401  (custom column types)


revision = '4b8e2d6f1c93'
down_revision = '9a1f4c7d2e58'
branch_labels = None
depends_on = None

COLUMNS = ['status', 'sparsity', 'test_acc', 'best_test_acc', 'created_at', 'strategy', 'model_name',
           'dataset_name', 'device', 'preset', 'sweep_id', 'epochs_done']


def upgrade() -> None:
    op.create_index('ix_runs_list', 'runs', COLUMNS, unique=False)


def downgrade() -> None:
    op.drop_index('ix_runs_list', table_name='runs')
