"""covering index for chart series: a run's epochs' scalar columns without their per-layer JSON

Revision ID: 9a1f4c7d2e58
Revises: 7c3d9a41e2b0
Create Date: 2026-11-28 00:05:00.000000
"""

from alembic import op
import sqlalchemy as sa

import backend.tables  # noqa: F401  (custom column types)


revision = '9a1f4c7d2e58'
down_revision = '7c3d9a41e2b0'
branch_labels = None
depends_on = None

SERIES = ['train_loss', 'train_acc', 'test_loss', 'test_acc', 'lr', 'sparsity', 'target_sparsity', 'nonzero',
          'total', 'epoch_seconds', 'samples_per_s']


def upgrade() -> None:
    op.create_index('ix_epochs_run_id_series', 'epochs', ['run_id', 'epoch', *SERIES], unique=False)


def downgrade() -> None:
    op.drop_index('ix_epochs_run_id_series', table_name='epochs')
