"""Every query on mask snapshots and the per-layer stats of epochs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.tables import Epoch, MaskSnapshot
from prunescope import maskcodec


def newest_epoch_layers(session: Session, run_id: int) -> list[dict[str, Any]] | None:
    """The per-layer stats of the run's newest epoch, if it has one."""
    return session.scalar(select(Epoch.layers).where(Epoch.run_id == run_id).order_by(Epoch.epoch.desc()).limit(1))


def snapshot_layers(session: Session, run_id: int) -> list[str]:
    """Layers with snapshots, in the order they were first stored."""
    rows = session.execute(select(MaskSnapshot.layer).where(MaskSnapshot.run_id == run_id)
                           .group_by(MaskSnapshot.layer).order_by(func.min(MaskSnapshot.id)))
    return [name for (name,) in rows]


def snapshot_sizes(session: Session, run_id: int) -> list[tuple[str, int, list[int], int]]:
    """(layer, epoch, shape, bytes) of every snapshot of a run, by epoch."""
    rows = session.execute(
        select(MaskSnapshot.layer, MaskSnapshot.epoch, MaskSnapshot.shape, MaskSnapshot.nbytes)
        .where(MaskSnapshot.run_id == run_id).order_by(MaskSnapshot.epoch))
    return [(layer, epoch, shape, nbytes) for layer, epoch, shape, nbytes in rows]


def latest_epoch(session: Session, run_id: int, layer: str) -> int | None:
    return session.scalar(select(func.max(MaskSnapshot.epoch)).where(
        MaskSnapshot.run_id == run_id, MaskSnapshot.layer == layer))


def chain(session: Session, run_id: int, layer: str, epoch: int) -> list[MaskSnapshot]:
    """The snapshots from the newest key frame at or before `epoch` up to it, oldest first."""
    key_epoch = session.scalar(select(func.max(MaskSnapshot.epoch)).where(
        MaskSnapshot.run_id == run_id, MaskSnapshot.layer == layer, MaskSnapshot.epoch <= epoch,
        MaskSnapshot.encoding == maskcodec.KEY))
    if key_epoch is None:
        return []
    return list(session.scalars(select(MaskSnapshot).where(
        MaskSnapshot.run_id == run_id, MaskSnapshot.layer == layer,
        MaskSnapshot.epoch >= key_epoch, MaskSnapshot.epoch <= epoch).order_by(MaskSnapshot.epoch)))


def snapshots_up_to(session: Session, run_id: int, layer: str, epoch: int) -> list[MaskSnapshot]:
    """Every snapshot of a layer up to `epoch`, oldest first."""
    return list(session.scalars(select(MaskSnapshot).where(
        MaskSnapshot.run_id == run_id, MaskSnapshot.layer == layer, MaskSnapshot.epoch <= epoch)
        .order_by(MaskSnapshot.epoch)))


def epoch_layers(session: Session, run_id: int) -> list[tuple[int, list[dict[str, Any]]]]:
    """(epoch, per-layer stats) of every epoch of a run, in order."""
    rows = session.execute(select(Epoch.epoch, Epoch.layers).where(Epoch.run_id == run_id).order_by(Epoch.epoch))
    return [(epoch, layers) for epoch, layers in rows]


def previous_snapshot_epoch(session: Session, run_id: int, layer: str, epoch: int) -> int | None:
    """The epoch of the layer's newest snapshot before `epoch`, if any."""
    return session.scalar(select(func.max(MaskSnapshot.epoch)).where(
        MaskSnapshot.run_id == run_id, MaskSnapshot.layer == layer, MaskSnapshot.epoch < epoch))


def newest_mask_epoch(session: Session, run_id: int) -> int | None:
    return session.scalar(select(func.max(MaskSnapshot.epoch)).where(MaskSnapshot.run_id == run_id))


def layers_at(session: Session, run_id: int, epoch: int | None) -> tuple[int, list[dict[str, Any]]] | None:
    """(epoch, per-layer stats) of one epoch (the newest when `epoch` is None), if the run recorded it."""
    query = select(Epoch.epoch, Epoch.layers).where(Epoch.run_id == run_id)
    query = query.order_by(Epoch.epoch.desc()).limit(1) if epoch is None else query.where(Epoch.epoch == epoch)
    row = session.execute(query).first()
    return None if row is None else (row[0], row[1] or [])
