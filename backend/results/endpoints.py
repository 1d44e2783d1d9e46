"""Results endpoints: chart series, comparison, Pareto front, exports and the pruned-model download."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response

from backend.artifacts import artifact_path
from backend.deps import RunDep, SessionDep, SettingsDep
from backend.errors import Invalid, NotFound
from backend.responses import json_response
from backend.results import service
from backend.results.repository import SERIES_NAMES
from backend.results.schemas import Comparison, Metrics, Pareto, RunExport
from backend.runs.schemas import MAX_ID, NO_NUL

router = APIRouter(prefix="/api", tags=["results"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No run with this id"}}
BAD_NAMES: dict[int | str, dict[str, Any]] = {422: {"description": "An unknown series name or a bad parameter"}}
NAMES_HELP = f"Comma-separated series; default all of: {', '.join(SERIES_NAMES)}"
NamesQuery = Annotated[str | None, Query(max_length=1000, description=NAMES_HELP, examples=["test_acc,sparsity"])]
MaxPointsQuery = Annotated[int, Query(ge=2, le=100_000, description="Points per series at most; extremes kept")]
CSV_DESCRIPTION = (
    "`csv`: long format, one row per epoch and layer, the epoch's scalars repeated on each of its layers' rows "
    "(columns `run_id, epoch, train_loss, …, samples_per_s, attempt, layer, layer_shape, layer_sparsity, layer_pruned, "
    "layer_regrown, layer_threshold`, then a tracked run's other logged scalars, one column each; an epoch without "
    "layer stats has one row with empty layer columns; the steps logged inside epochs are at `/points`): "
    "`pandas.read_csv(url)`. `json`: `{\"run\": RunDetail, \"epochs\": [EpochRecord…]}`: "
    "`pandas.DataFrame(doc[\"epochs\"])`. `npz`: every layer's boolean mask at `epoch` (default the newest), "
    "keyed by layer name: `numpy.load(file)`."
)


@router.get("/runs/{run_id}/metrics", response_model=Metrics, responses={**NOT_FOUND, **BAD_NAMES})
def run_metrics(
    run: RunDep, session: SessionDep, request: Request, names: NamesQuery = None,
    max_points: MaxPointsQuery = 1000,
) -> Response:
    """Chart series of a run from its epochs, each downsampled to `max_points` keeping every bucket's min and max."""
    return json_response(service.metrics(session, run, service.parse_names(names), max_points), request)


@router.get("/compare", response_model=Comparison, responses={404: {"description": "A run id does not exist"},
                                                             **BAD_NAMES})
def compare_runs(
    session: SessionDep, request: Request,
    ids: Annotated[str, Query(pattern=r"^\s*\d{1,10}\s*(,\s*\d{1,10}\s*){0,49}$",
                              description="Comma-separated run ids, 1 to 50", examples=["1,2,3"])],
    names: NamesQuery = None, max_points: MaxPointsQuery = 1000,
) -> Response:
    """The same series of several runs side by side, in the order of `ids`."""
    if len(request.query_params.getlist("ids")) > 1:  # read as the last one: ids=1&ids=9 compared run 9 alone
        raise Invalid("give ids once, comma-separated (ids=1,9), not as repeated parameters")
    selected = service.parse_names(names)
    run_ids = list(dict.fromkeys(int(i) for i in ids.split(",")))
    return json_response(service.compare(session, run_ids, selected, max_points), request)


@router.get("/pareto", response_model=Pareto)
def pareto_front(
    session: SessionDep, request: Request,
    model: Annotated[str | None, Query(max_length=32, pattern=NO_NUL, description="Only runs of this model")] = None,
    dataset: Annotated[str | None, Query(max_length=32, pattern=NO_NUL, description="Only runs on it")] = None,
    published: Annotated[bool, Query(description="Add published results for this model and dataset "
                                                  "(Han 2015, DNS, Sparse VD, SNIP, sparse momentum)")] = False,
) -> Response:
    """Completed runs as (final sparsity, final test accuracy); `front` holds those no other run beats on both."""
    return json_response(service.pareto(session, model=model, dataset=dataset, published=published), request)


# response_model documents the JSON form; the endpoint returns a Response, so nothing is validated twice.
@router.get("/runs/{run_id}/export", description=CSV_DESCRIPTION, response_model=RunExport, responses={
    **NOT_FOUND,
    200: {"description": "The export, as a download",
          "content": {"text/csv": {"example": "run_id,epoch,train_loss,...,layer,layer_shape,layer_sparsity\n"},
                      "application/octet-stream": {}}},
})
def export_run(
    run: RunDep, session: SessionDep, request: Request,
    format: Annotated[Literal["csv", "json", "npz"], Query(description="csv, json, or npz (masks)")] = "json",
    epoch: Annotated[int | None, Query(ge=1, le=MAX_ID, description="npz only: the epoch (default the newest)")] = None,
) -> Response:
    """Everything a run recorded, for pandas (csv, json), or its masks (npz)."""
    run_id = run.id
    filename = f"prunescope-run-{run_id}.{format}"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if format == "csv":
        return Response(service.export_csv(session, run), media_type="text/csv; charset=utf-8", headers=headers)
    if format == "json":
        response = json_response(service.export_json(session, run), request)
        response.headers.update(headers)
        return response
    data, chosen = service.export_masks_npz(session, run, epoch)
    headers["Content-Disposition"] = f'attachment; filename="prunescope-run-{run_id}-masks-epoch{chosen}.npz"'
    return Response(data, media_type="application/octet-stream", headers=headers)


@router.get("/runs/{run_id}/model", response_class=FileResponse, responses={
    200: {"description": "The pruned model (`torch.load(path, weights_only=True)`)",
          "content": {"application/octet-stream": {}}},
    404: {"description": "No such run, or it has no pruned model (yet)"},
})
def download_model(run: RunDep, settings: SettingsDep) -> FileResponse:
    """The pruned model file a completed run uploaded: masked state_dict, masks and config."""
    path = artifact_path(settings.resolved_artifact_dir, run.id, "model.pt")
    if not path.is_file():
        raise NotFound(f"run {run.id} ({run.status}) has no pruned model: it is uploaded when a run completes")
    return FileResponse(path, media_type="application/octet-stream", filename=f"prunescope-run-{run.id}-model.pt")
