"""Mask endpoints: layers, a layer's density grid at an epoch, input connectivity, per-layer series, ages."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from fastapi import Path as PathParam
from pydantic import BaseModel

from backend.deps import SessionDep
from backend.maskviews import service
from backend.runs.schemas import NO_NUL, RunId
from backend.tables import Run

router = APIRouter(prefix="/api/runs/{run_id}", tags=["masks"])
LayerName = Annotated[str, PathParam(min_length=1, max_length=200, pattern=NO_NUL, description="e.g. fc1.weight")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such run, layer or epoch"}}


class MaskGrid(BaseModel):
    layer: str
    epoch: int
    shape: list[int]
    grid_shape: list[int]
    density: list[list[float]]
    sparsity: float


def _check_run(session: SessionDep, run_id: RunId) -> None:
    if session.get(Run, run_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"run {run_id} not found")


def _not_found(exc: service.MaskNotFound) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, str(exc))


@router.get("/masks", responses=NOT_FOUND)
def list_masks(run_id: RunId, session: SessionDep) -> dict[str, Any]:
    """Layers with mask snapshots: shape, epochs recorded, storage in bits per weight."""
    _check_run(session, run_id)
    return {"layers": service.layers_overview(session, run_id)}


@router.get("/masks/{layer}", response_model=MaskGrid, responses=NOT_FOUND)
def mask_grid(
    run_id: RunId, layer: LayerName, session: SessionDep,
    epoch: Annotated[int | None, Query(ge=1, description="Default: the newest epoch")] = None,
    max_cells: Annotated[int, Query(ge=1, le=250_000)] = 4096,
) -> MaskGrid:
    """A layer's mask at an epoch as a grid of kept-weight density with at most `max_cells` cells."""
    _check_run(session, run_id)
    try:
        epoch = service.latest_epoch(session, run_id, layer) if epoch is None else epoch
        mask = service.mask_at(session, run_id, layer, epoch)
    except service.MaskNotFound as exc:
        raise _not_found(exc) from exc
    grid, grid_shape = service.density_grid(mask, max_cells)
    return MaskGrid(layer=layer, epoch=epoch, shape=list(service.as_matrix(mask).shape), grid_shape=list(grid_shape),
                    density=grid.round(4).tolist(), sparsity=float(1 - mask.mean()) if mask.size else 0.0)


@router.get("/masks/{layer}/stability", responses=NOT_FOUND)
def mask_stability(run_id: RunId, layer: LayerName, session: SessionDep,
                   epoch: Annotated[int | None, Query(ge=1)] = None) -> dict[str, Any]:
    """How many epochs each weight has stayed kept or pruned: histograms over age bins (`edges`)."""
    _check_run(session, run_id)
    try:
        epoch = service.latest_epoch(session, run_id, layer) if epoch is None else epoch
        return service.stability(session, run_id, layer, epoch)
    except service.MaskNotFound as exc:
        raise _not_found(exc) from exc


@router.get("/connectivity", responses=NOT_FOUND)
def input_connectivity(run_id: RunId, session: SessionDep,
                       epoch: Annotated[int | None, Query(ge=1)] = None) -> dict[str, Any]:
    """Per input pixel, how many first-layer connections survive (a 28×28 map for MNIST)."""
    _check_run(session, run_id)
    try:
        return service.connectivity(session, run_id, epoch)
    except service.MaskNotFound as exc:
        raise _not_found(exc) from exc


@router.get("/layers", responses=NOT_FOUND)
def layers(run_id: RunId, session: SessionDep) -> dict[str, Any]:
    """Per-layer series over epochs: sparsity, weights pruned and regrown, threshold."""
    _check_run(session, run_id)
    return service.layer_series(session, run_id)
