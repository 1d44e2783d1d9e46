"""Queries behind chart series, comparisons and the Pareto front."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.tables import EPOCH_SERIES_COLUMNS, Epoch, MaskSnapshot, Run

# The scalar columns of an epoch, in the order charts list them (read through a covering index).
SERIES_NAMES = EPOCH_SERIES_COLUMNS
INTEGER_SERIES = frozenset({"nonzero", "total"})


def epoch_columns(session: Session, run_id: int, names: Sequence[str]) -> list[tuple[Any, ...]]:
    """(epoch, *values) rows of one run in epoch order, only the named columns (no per-layer JSON)."""
    columns = [getattr(Epoch, name) for name in names]
    query = select(Epoch.epoch, *columns).where(Epoch.run_id == run_id).order_by(Epoch.epoch)
    # Core rows turned into plain tuples: no ORM bookkeeping, and numpy reads tuples without probing Row attributes.
    return [tuple(row) for row in session.connection().execute(query)]


def runs_by_id(session: Session, ids: Sequence[int]) -> dict[int, Run]:
    return {run.id: run for run in session.scalars(select(Run).where(Run.id.in_(ids)))}


PARETO_DONE = (Run.status == "completed", Run.sparsity.is_not(None), Run.test_acc.is_not(None))


def pareto_candidates(session: Session, *, model: str | None, dataset: str | None) -> list[tuple[Any, ...]]:
    """(id, name, strategy, sparsity, test_acc, preset, model, dataset, config) of completed runs with both,
    optionally of one model and dataset."""
    query = select(Run.id, Run.name, Run.strategy, Run.sparsity, Run.test_acc, Run.preset, Run.model_name,
                   Run.dataset_name, Run.config).where(*PARETO_DONE)
    # "" selects the runs without one (a tracked run whose config names no model or dataset): as "no filter" it
    # put every model's runs on one front, offered as the pair "on" in the dashboard.
    if model is not None:
        query = query.where(Run.model_name == model)
    if dataset is not None:
        query = query.where(Run.dataset_name == dataset)
    return [tuple(row) for row in session.execute(query.order_by(Run.id))]


def pareto_groups(session: Session) -> list[tuple[str, str, int]]:
    """(dataset, model, runs) of every pair that has completed runs, the most common first."""
    count = func.count(Run.id)
    query = select(Run.dataset_name, Run.model_name, count).where(*PARETO_DONE) \
        .group_by(Run.dataset_name, Run.model_name).order_by(count.desc(), Run.dataset_name, Run.model_name)
    return [(dataset, model, int(n)) for dataset, model, n in session.execute(query)]


def newest_mask_epoch(session: Session, run_id: int) -> int | None:
    return session.scalar(select(func.max(MaskSnapshot.epoch)).where(MaskSnapshot.run_id == run_id))
