"""runs list at 100 000 runs: run_tags (backfilled; a tag's runs newest first) and runs best first (issue 13)

Revision ID: a8e1c0de0008
Revises: a7e1c0de0007
Create Date: 2026-11-28 12:30:00.000000
"""

import json

import sqlalchemy as sa
from alembic import op

import backend.tables  # noqa: F401  (custom column types)

revision = 'a8e1c0de0008'
down_revision = 'a7e1c0de0007'
branch_labels = None
depends_on = None

BATCH = 5000


def _tags(value: object) -> list[str]:
    """What backend.tables.indexed_tags keeps, frozen here: distinct strings of 1-64 characters."""
    if isinstance(value, str):  # a JSON column read as text by an old driver
        try:
            value = json.loads(value)
        except ValueError:
            return []
    if not isinstance(value, list):
        return []
    return list(dict.fromkeys(t for t in value if isinstance(t, str) and 0 < len(t) <= 64))


def upgrade() -> None:
    run_tags = op.create_table('run_tags',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('tag', sa.String(length=64), nullable=False),
    sa.Column('created_at', backend.tables.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_run_tags_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'tag', name=op.f('pk_run_tags'))
    )
    op.create_index('ix_run_tags_tag_created_at', 'run_tags', ['tag', 'created_at', 'run_id'], unique=False)
    # Backfill from every run's JSON tags, in batches (a 100 000-run database holds a few hundred thousand tags).
    runs = sa.table('runs', sa.column('id', sa.Integer()), sa.column('tags', sa.JSON()),
                    sa.column('created_at', backend.tables.UTCDateTime()))
    bind = op.get_bind()
    last = 0
    while True:
        rows = bind.execute(sa.select(runs.c.id, runs.c.tags, runs.c.created_at).where(runs.c.id > last)
                            .order_by(runs.c.id).limit(BATCH)).all()
        if not rows:
            break
        values = [{'run_id': run_id, 'tag': tag, 'created_at': created_at}
                  for run_id, tags, created_at in rows for tag in _tags(tags)]
        if values:
            bind.execute(run_tags.insert(), values)
        last = rows[-1][0]
    # Runs of a status best first (sparsity in the index: the list's sparsity range filters there too), NULLs last
    # on both databases: SQLite's DESC already puts NULLs last (and its CREATE INDEX cannot say NULLS LAST);
    # PostgreSQL's DESC puts them first unless told.
    nulls = '' if bind.dialect.name == 'sqlite' else ' NULLS LAST'
    op.create_index('ix_runs_status_test_acc', 'runs',
                    ['status', sa.text(f'test_acc DESC{nulls}'), sa.text('id DESC'), 'sparsity'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_runs_status_test_acc', table_name='runs')
    op.drop_index('ix_run_tags_tag_created_at', table_name='run_tags')
    op.drop_table('run_tags')
