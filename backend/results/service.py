"""Chart series, comparisons, the Pareto front and exports, built from the epochs a run recorded."""

from __future__ import annotations

import contextlib
import csv
import io
import re
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from backend.errors import Invalid, NotFound
from backend.maskviews import repository as masks_repository
from backend.maskviews import service as masks
from backend.results import repository
from backend.results.downsample import downsample
from backend.results.published import published_results
from backend.runs import repository as runs_repository
from backend.runs import service as runs_service
from backend.runs.schemas import MAX_ID
from backend.tables import Run

CSV_SCALARS = ("epoch", *repository.SERIES_NAMES, "attempt")
CSV_LAYER_COLUMNS = ("layer", "layer_shape", "layer_sparsity", "layer_pruned", "layer_regrown", "layer_threshold")
CSV_COLUMNS = ("run_id", *CSV_SCALARS, *CSV_LAYER_COLUMNS)
# An npz entry a layer's name may give as it is: dot-separated, non-empty parts, no path separator or control character.
SAFE_ENTRY = r"^[^./\\\x00-\x1f\x7f]+(\.[^./\\\x00-\x1f\x7f]+)*$"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet runs a cell starting so as a formula


class UnknownSeries(Invalid):
    """A requested series name is not a recorded epoch column."""

    def __init__(self, message: str) -> None:
        super().__init__(message, detail=[{"loc": ["query", "names"], "msg": message, "type": "value_error"}])


def parse_names(names: str | None) -> tuple[str, ...]:
    """A comma-separated subset of the series names; empty or missing means all of them."""
    if not names or not names.strip():
        return repository.SERIES_NAMES
    requested = tuple(dict.fromkeys(n.strip() for n in names.split(",") if n.strip()))
    unknown = [n for n in requested if n not in repository.SERIES_NAMES]
    if unknown:
        raise UnknownSeries(f"unknown series {', '.join(map(repr, unknown))}; "
                            f"choose from {', '.join(repository.SERIES_NAMES)}")
    return requested or repository.SERIES_NAMES


# Series stay numpy arrays up to the response: orjson writes them directly (see `json_response`), which keeps
# a 1000-epoch run's 11 series well inside the 20 ms budget; the pydantic models document the same shape.
SeriesArrays = dict[str, dict[str, np.ndarray]]


def run_series(session: Session, run_id: int, names: Sequence[str], max_points: int) -> tuple[SeriesArrays, int]:
    """Each named series of a run as {"x": epochs, "y": values}, downsampled; and how many epochs were recorded."""
    rows = repository.epoch_columns(session, run_id, names)
    if not rows:
        empty = np.empty(0, dtype=np.int64)
        return {name: {"x": empty, "y": empty} for name in names}, 0
    table = np.array(rows, dtype=np.float64)  # NULL becomes NaN, which the downsampler drops
    epochs = table[:, 0]
    out: SeriesArrays = {}
    for i, name in enumerate(names, start=1):
        xs, ys = downsample(epochs, table[:, i], max_points)
        out[name] = {"x": xs.astype(np.int64),
                     "y": ys.astype(np.int64) if name in repository.INTEGER_SERIES else ys}
    return out, len(rows)


def metrics(session: Session, run: Run, names: Sequence[str], max_points: int) -> dict[str, Any]:
    """The `Metrics` document of a run."""
    series, recorded = run_series(session, run.id, names, max_points)
    return {"run_id": run.id, "epochs_total": run.epochs_total, "epochs_recorded": recorded, "series": series}


class MissingRuns(NotFound):
    """Some requested run ids do not exist."""


def compare(session: Session, ids: Sequence[int], names: Sequence[str], max_points: int) -> dict[str, Any]:
    """The `Comparison` document: the named series of several runs, in the order the ids were given."""
    runs = repository.runs_by_id(session, [i for i in ids if i <= MAX_ID])
    missing = [i for i in ids if i not in runs]
    if missing:
        raise MissingRuns(f"no run with id {', '.join(map(str, missing))}")
    out = []
    for run_id in ids:
        run = runs[run_id]
        series, _ = run_series(session, run_id, names, max_points)
        out.append({"id": run.id, "name": run.name, "status": run.status, "strategy": run.strategy,
                    "series": series})
    return {"runs": out}


def pareto(session: Session, *, model: str | None, dataset: str | None, published: bool = False) -> dict[str, Any]:
    """The `Pareto` document: completed runs as (final sparsity, final test accuracy); the front maximises both.

    `groups` lists every (dataset, model) pair with completed runs, so a chart can offer them without mixing.
    """
    rows = repository.pareto_candidates(session, model=model, dataset=dataset)
    points = [{"id": run_id, "name": name, "strategy": strategy, "sparsity": float(sparsity),
               "accuracy": float(accuracy), "on_front": False, "preset": preset, "method": preset or strategy,
               "model": model_name, "dataset": dataset_name, "config_summary": config_summary(config)}
              for run_id, name, strategy, sparsity, accuracy, preset, model_name, dataset_name, config in rows]
    # Sweep from the sparsest down: a point is on the front when no sparser-or-equal point is as accurate,
    # except exact duplicates of a front point, which dominate nothing and are kept too.
    best: tuple[float, float] | None = None
    for point in sorted(points, key=lambda p: (-p["sparsity"], -p["accuracy"])):
        here = (point["sparsity"], point["accuracy"])
        if best is None or here[1] > best[1] or here == best:
            point["on_front"] = True
            if best is None or here[1] > best[1]:
                best = here
    front = [p["id"] for p in sorted((p for p in points if p["on_front"]), key=lambda p: (p["sparsity"], p["id"]))]
    groups = [{"dataset": d, "model": m, "runs": n} for d, m, n in repository.pareto_groups(session)]
    return {"points": points, "front": front, "groups": groups,
            "published": published_results(model=model, dataset=dataset) if published else []}


def config_summary(config: dict[str, Any] | None) -> str:
    """One line of the hyperparameters that tell runs apart, for a chart's hover text."""
    if not config:
        return ""
    training = config.get("training") or {}
    parts = [f"{training.get(key)} {label}" if label else str(training.get(key))
             for key, label in (("epochs", "epochs"), ("optimizer", ""), ("lr", "lr"), ("batch_size", "batch"))
             if training.get(key) is not None]
    pruning = config.get("pruning")
    if not pruning:
        return " · ".join([*parts, "dense"])
    if pruning.get("target_sparsity") is not None:
        parts.append(f"target {pruning['target_sparsity']:.3g}")
    threshold = pruning.get("threshold")
    if isinstance(threshold, dict):
        parts.append(f"threshold {threshold.get('std_scale')}·std")
    elif threshold is not None:
        parts.append(f"threshold {threshold}")
    parts.extend(str(pruning[key]) for key in ("criterion", "granularity", "scope", "distribution") if pruning.get(key))
    schedule = pruning.get("schedule") or {}
    if schedule.get("kind"):
        parts.append(f"{schedule['kind']} {schedule.get('start_epoch', '')}–{schedule.get('end_epoch') or 'auto'}")
    recovery = pruning.get("recovery") or {}
    if recovery.get("kind") and recovery["kind"] != "none":
        drop = recovery.get("drop_fraction")
        parts.append(f"{recovery['kind']} recovery" + (f" drop {drop}" if drop is not None else ""))
    return " · ".join(parts)


def export_json(session: Session, run: Run) -> dict[str, Any]:
    """The `RunExport` document: the run's detail and every epoch."""
    epochs = runs_repository.list_epochs(session, run.id)
    return {"run": runs_service.to_detail(run).model_dump(mode="json"),
            "epochs": [runs_service.epoch_document(e) for e in epochs]}


def export_csv(session: Session, run: Run) -> str:
    """Long format: one row per epoch and layer, the epoch's scalars repeated on each of its layers' rows; a tracked
    run's other logged scalars (`extra`) follow as columns of their own, in the order first logged."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    records = [runs_service.epoch_document(row) for row in runs_repository.list_epochs(session, run.id)]
    extras = list(dict.fromkeys(name for record in records for name in record["extra"] or ()))
    writer.writerow([*CSV_COLUMNS, *(_cell(f"extra.{name}" if name in CSV_COLUMNS else name) for name in extras)])
    for record in records:
        scalars = [run.id, *(_cell(record[name]) for name in CSV_SCALARS)]
        logged = [_cell((record["extra"] or {}).get(name)) for name in extras]
        if not record["layers"]:
            writer.writerow([*scalars, *([""] * len(CSV_LAYER_COLUMNS)), *logged])
        for layer in record["layers"]:
            writer.writerow([*scalars, _cell(layer["name"]), "x".join(map(str, layer["shape"])), layer["sparsity"],
                             layer["pruned"], layer["regrown"], _cell(layer["threshold"]), *logged])
    return buffer.getvalue()


def _cell(value: Any) -> Any:
    """A CSV cell; text a spreadsheet would run as a formula gets a leading `'`, as OWASP advises."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return "" if value is None else value


class NoMasks(NotFound):
    """The run has no mask snapshot at the requested epoch."""


def export_masks_npz(session: Session, run: Run, epoch: int | None) -> tuple[bytes, int]:
    """Every layer's boolean mask at `epoch` (default: the newest with snapshots) as an .npz archive: the layers
    with a snapshot at that epoch (a report may leave a layer's mask out; the archive was a 404 then)."""
    newest = repository.newest_mask_epoch(session, run.id)
    if newest is None:
        raise NoMasks(f"run {run.id} has no mask snapshots")
    chosen = newest if epoch is None else epoch
    arrays: dict[str, np.ndarray] = {}
    names = masks.layer_names(session, run.id)
    names += [layer for layer in masks_repository.snapshot_layers(session, run.id) if layer not in names]
    for layer in names:  # a mask the layer stats do not name is in the archive too
        with contextlib.suppress(masks.MaskNotFound):
            arrays[layer] = masks.mask_at(session, run.id, layer, chosen)
    if not arrays:
        raise NoMasks(f"run {run.id} has no mask snapshots at epoch {chosen}")
    buffer = io.BytesIO()
    # What np.savez_compressed writes, without its keyword arguments (a layer named `file` would collide).
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for key, array in zip(npz_keys(list(arrays)), arrays.values(), strict=True):
            with archive.open(f"{key}.npy", "w", force_zip64=True) as entry:
                np.lib.format.write_array(entry, array, allow_pickle=False)
    return buffer.getvalue(), chosen


def npz_keys(names: list[str]) -> list[str]:
    """The archive's key of each layer: its name, or, for a name that is a path (a ModuleDict's `enc/fc`, or `../x`),
    its word characters with `_` for the rest and its empty parts dropped (`enc_fc`, `x`), so that no unzip writes
    outside its folder; a key another layer has gets a number."""
    taken = {name for name in names if re.fullmatch(SAFE_ENTRY, name)}
    keys = []
    for name in names:
        key = name
        if name not in taken:
            parts = (part.strip("_") for part in re.sub(r"[^\w.-]+", "_", name).split("."))
            base = ".".join(part for part in parts if part) or "layer"
            key, n = base, 1
            while key in taken:
                n += 1
                key = f"{base}_{n}"
            taken.add(key)
        keys.append(key)
    return keys
