"""Mask endpoints: layers, a layer's density grid at an epoch, input connectivity, per-layer series, ages."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from backend.deps import RunDep, SessionDep
from backend.maskviews import grids, service
from backend.runs.schemas import MAX_ID, NO_NUL
from prunescope.contract.records import WeightHistogram

router = APIRouter(prefix="/api/runs/{run_id}", tags=["masks"])
LayerName = Annotated[str, PathParam(min_length=1, max_length=200, pattern=NO_NUL, description="e.g. fc1.weight")]
EpochQuery = Annotated[int | None, Query(ge=1, le=MAX_ID, description="Default: the newest epoch")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such run, layer or epoch"}}


class MaskGrid(BaseModel):
    layer: str
    epoch: int
    shape: list[int]
    grid_shape: list[int]
    density: list[list[float]]
    sparsity: float
    block: int = Field(default=1, description="Each cell averages a block × block square of weights; 1: every weight")


class MaskChanges(BaseModel):
    layer: str
    epoch: int
    previous_epoch: int = Field(description="The snapshot compared with; 0: the dense initialisation")
    shape: list[int]
    grid_shape: list[int]
    block: int
    pruned: int = Field(description="Weights kept at `previous_epoch` and pruned at `epoch`")
    regrown: int = Field(description="Weights pruned at `previous_epoch` and kept at `epoch`")
    change: list[list[float]] = Field(description="Per cell: share regrown minus share pruned, in [-1, 1]")


@router.get("/masks", responses=NOT_FOUND)
def list_masks(run: RunDep, session: SessionDep) -> dict[str, Any]:
    """Layers with mask snapshots: shape, epochs recorded, storage in bits per weight."""
    return {"layers": service.layers_overview(session, run.id)}


@router.get("/masks/{layer:path}/changes", response_model=MaskChanges, responses=NOT_FOUND)
def mask_changes(
    run: RunDep, layer: LayerName, session: SessionDep, epoch: EpochQuery = None,
    max_cells: Annotated[int, Query(ge=1, le=250_000)] = 4096,
) -> dict[str, Any]:
    """Weights pruned and regrown since the layer's previous snapshot (the first is compared with the dense
    network), per cell of a grid of at most `max_cells` cells."""
    epoch = service.latest_epoch(session, run.id, layer) if epoch is None else epoch
    return service.changes(session, run.id, layer, epoch, max_cells)


@router.get("/masks/{layer:path}/stability", responses=NOT_FOUND)
def mask_stability(run: RunDep, layer: LayerName, session: SessionDep, epoch: EpochQuery = None) -> dict[str, Any]:
    """How many epochs each weight has stayed kept or pruned: histograms over age bins (`edges`)."""
    epoch = service.latest_epoch(session, run.id, layer) if epoch is None else epoch
    return service.stability(session, run.id, layer, epoch)


# After /changes and /stability: `{layer:path}` takes a name holding "/" (a ModuleDict's `enc/fc`; Starlette
# decodes %2F before it matches), so a route declared before them would swallow their suffixes.
@router.get("/masks/{layer:path}", response_model=MaskGrid, responses=NOT_FOUND)
def mask_grid(
    run: RunDep, layer: LayerName, session: SessionDep, epoch: EpochQuery = None,
    max_cells: Annotated[int, Query(ge=1, le=250_000)] = 4096,
) -> MaskGrid:
    """A layer's mask at an epoch as a grid of kept-weight density with at most `max_cells` cells."""
    epoch = service.latest_epoch(session, run.id, layer) if epoch is None else epoch
    mask = service.mask_at(session, run.id, layer, epoch)
    grid, grid_shape = service.density_grid(mask, max_cells)
    rows, cols = service.as_matrix(mask).shape
    return MaskGrid(layer=layer, epoch=epoch, shape=[rows, cols], grid_shape=list(grid_shape),
                    density=grid.round(4).tolist(), sparsity=float(1 - mask.mean()) if mask.size else 0.0,
                    block=grids.block_size(rows, cols, max_cells))


@router.get("/connectivity", responses=NOT_FOUND)
def input_connectivity(run: RunDep, session: SessionDep, epoch: EpochQuery = None) -> dict[str, Any]:
    """Per input pixel, how many first-layer connections survive (a 28×28 map for MNIST)."""
    return service.connectivity(session, run.id, epoch)


@router.get("/layers", responses=NOT_FOUND)
def layers(run: RunDep, session: SessionDep) -> dict[str, Any]:
    """Per-layer series over epochs: sparsity, weights pruned and regrown, threshold."""
    return service.layer_series(session, run.id)


class EpochLayer(BaseModel):
    """A layer's stats at one epoch; `histogram` is null when the worker recorded none."""

    epoch: int
    name: str
    shape: list[int]
    sparsity: float
    pruned: int = 0
    regrown: int = 0
    threshold: float | None = None
    histogram: WeightHistogram | None = None


@router.get("/layers/{layer:path}", response_model=EpochLayer, responses=NOT_FOUND)
def layer_at_epoch(run: RunDep, layer: LayerName, session: SessionDep, epoch: EpochQuery = None) -> dict[str, Any]:
    """One layer's stats at one epoch (default: the newest) with its weight-magnitude histogram, without sending
    every epoch: the mask inspector's histogram reads this."""
    return service.layer_at(session, run.id, layer, epoch)
