"""Sweeps: expand a grid over a base config, validate every combination, store them as runs together."""

from __future__ import annotations

import copy
import itertools
import json
import math
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from backend.capabilities import Offer, run_problems
from backend.errors import Invalid
from backend.runs import service as runs_service
from backend.sweeps import repository
from backend.sweeps.schemas import MAX_COMBINATIONS, SweepCreate, SweepDetail, SweepSummary
from backend.tables import Run, Sweep, utcnow
from prunescope.contract.applies import APPLIES_WHEN, applying_somewhere, leave_out_inapplicable
from prunescope.contract.config import RunConfig
from prunescope.contract.status import FINISHED_STATUSES

MAX_ERRORS = 50
# A 422 names each bad combination: a value longer than this is shown cut (a 1 MB grid value repeated in 50
# errors made a 100 MB answer).
ECHO_CHARS = 100


class SweepInvalid(Invalid):
    """The grid is too large or a combination is not a valid run config; `errors` say where."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(e["msg"] for e in errors), detail=errors)
        self.errors = errors


def combinations(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every assignment of one value to each path, the last path varying fastest."""
    paths = list(grid)
    return [dict(zip(paths, values, strict=True)) for values in itertools.product(*(grid[p] for p in paths))]


def set_path(config: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path in a config, creating objects on the way (a null block such as `pruning` becomes {})."""
    *parents, leaf = path.split(".")
    node = config
    for i, key in enumerate(parents):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        elif not isinstance(child, dict):
            where = ".".join(parents[: i + 1])
            raise ValueError(f"{where} is {shown(child)}, not an object, so {path} cannot be set")
        node = child
    node[leaf] = copy.deepcopy(value)  # a grid value is shared by every combination: none may change it


def _cut(value: Any, limit: int) -> tuple[str, bool]:
    text = json.dumps(value[: limit + 1] if isinstance(value, str) else value)  # a huge string is not dumped whole
    return (text, False) if len(text) <= limit else (text[: limit - 1] + "…", True)


def shown(value: Any, limit: int = ECHO_CHARS) -> str:
    """`value` as JSON, cut to `limit` characters (ending in …) when longer."""
    return _cut(value, limit)[0]


def echoed(combination: dict[str, Any]) -> dict[str, Any]:
    """A combination as an error repeats it: short values as they are, long ones as their cut JSON text."""
    out: dict[str, Any] = {}
    for path, value in combination.items():
        text, cut = _cut(value, ECHO_CHARS)
        out[path] = text if cut else value
    return out


def label(combination: dict[str, Any]) -> str:
    return ", ".join(f"{path}={shown(value)}" for path, value in combination.items())


def expand(body: SweepCreate, offer: Offer | None = None) -> list[tuple[dict[str, Any], RunConfig]]:
    """Each combination with its validated config; raises SweepInvalid naming every bad combination and field.

    Like a single submission, a combination no worker could run (unknown model or dataset, layer patterns that
    select no layer) is refused before anything is queued; `offer` is what online workers add to the built-ins.
    """
    count = math.prod(len(values) for values in body.grid.values())
    if count > MAX_COMBINATIONS:
        raise SweepInvalid([{"loc": ["body", "grid"], "type": "too_many_combinations",
                             "msg": f"the grid has {count} combinations; at most {MAX_COMBINATIONS} are allowed"}])
    paths = list(body.grid)
    overlapping = [(a, b) for a in paths for b in paths if b.startswith(f"{a}.")]
    if overlapping:  # the later path silently won, and run names showed values no run used
        raise SweepInvalid([{"loc": ["body", "grid", b], "type": "overlapping_paths",
                             "msg": f"grid paths {a} and {b} overlap: {a} sets {b} too; vary one of them"}
                            for a, b in overlapping])
    out: list[tuple[dict[str, Any], RunConfig]] = []
    errors: list[dict[str, Any]] = []
    every = combinations(body.grid)
    applied = [_applied(body.base, combination) for combination in every]
    # A field that hangs on a varied one (model.hidden on model.name) is left out where it does not apply, if it
    # applies somewhere in the sweep; applying nowhere, it stays, so the 422 says so.
    keep = set(body.grid) | (set(APPLIES_WHEN) - applying_somewhere([c for c in applied if isinstance(c, dict)]))
    for index, (combination, config) in enumerate(zip(every, applied, strict=True), start=1):
        where = f"combination {index} ({label(combination)})"
        echo = echoed(combination)
        try:
            if isinstance(config, ValueError):  # a path it could not set
                raise config
            leave_out_inapplicable(config, keep)
            if "name" not in combination:
                config["name"] = _run_name(body.name, combination)
            validated = RunConfig.model_validate(config)
            for problem in run_problems(validated, offer or Offer()):
                loc = [str(part) for part in problem["loc"]][1:]  # type: ignore[attr-defined]
                errors.append({"loc": ["body", "grid", *loc], "type": problem["type"],
                               "msg": f"{where}: {'.'.join(loc)}: {problem['msg']}", "combination": echo})
            out.append((combination, validated))
        except ValidationError as exc:
            for error in exc.errors(include_url=False, include_input=False):
                field = ".".join(str(p) for p in error["loc"]) or "config"
                errors.append({"loc": ["body", "grid", *error["loc"]], "type": error["type"],
                               "msg": f"{where}: {field}: {error['msg']}", "combination": echo})
        except ValueError as exc:
            errors.append({"loc": ["body", "grid"], "type": "value_error", "msg": f"{where}: {exc}",
                           "combination": echo})
        if len(errors) >= MAX_ERRORS:
            break
    if errors:
        raise SweepInvalid(errors[:MAX_ERRORS])
    return out


def _applied(base: dict[str, Any], combination: dict[str, Any]) -> dict[str, Any] | ValueError:
    """The base with a combination set, or why a path could not be set (a value that is not an object on the way)."""
    config = copy.deepcopy(base)
    try:
        for path, value in combination.items():
            set_path(config, path, value)
    except ValueError as exc:
        return exc
    return config


# A path's last part alone names these ambiguously (`name=` read as the run's own name; schedule's and recovery's
# end_epoch): a run's name keeps the part before them too (`model.name=`, `recovery.kind=`).
GENERIC_PARTS = frozenset({"name", "kind", "params", "path", "every_steps", "start_epoch", "end_epoch"})


def _short_path(path: str) -> str:
    parts = path.split(".")
    return ".".join(parts[-2:]) if parts[-1] in GENERIC_PARTS else parts[-1]


def _run_name(sweep_name: str, combination: dict[str, Any]) -> str:
    short = " ".join(f"{_short_path(path)}={shown(value)}" for path, value in combination.items())
    return f"{sweep_name} [{short}]"[:200]


def create_sweep(session: Session, body: SweepCreate, offer: Offer | None = None) -> Sweep:
    """Validate every combination first, then store the sweep and its runs (the caller commits once)."""
    configs = expand(body, offer)
    sweep = Sweep(name=body.name, base=body.base, grid=body.grid, created_at=utcnow())
    session.add(sweep)
    session.flush()
    for _combination, config in configs:
        runs_service.create_run(session, config, sweep_id=sweep.id)
    return sweep


def _summary_fields(sweep: Sweep, stats: dict[str, Any]) -> dict[str, Any]:
    counts: dict[str, int] = stats["counts"]
    return {"id": sweep.id, "name": sweep.name, "created_at": sweep.created_at, "runs_total": sum(counts.values()),
            "status_counts": counts, "progress": stats["done"] / stats["total"] if stats["total"] else 0.0}


def summaries(session: Session, sweeps: list[Sweep]) -> list[SweepSummary]:
    stats = repository.run_stats(session, [s.id for s in sweeps])
    return [SweepSummary(**_summary_fields(s, stats[s.id])) for s in sweeps]


def best_run(runs: list[Run]) -> Run | None:
    """The completed run with the highest final test accuracy; the sparser one on a tie."""
    finished = [r for r in runs if r.status == "completed" and r.test_acc is not None]
    return max(finished, key=lambda r: (r.test_acc or 0.0, r.sparsity or 0.0, -r.id), default=None)


def detail(session: Session, sweep: Sweep) -> SweepDetail:
    runs = repository.sweep_runs(session, sweep.id)
    stats = repository.run_stats(session, [sweep.id])[sweep.id]
    best = best_run(runs)
    return SweepDetail(**_summary_fields(sweep, stats), base=sweep.base, grid=sweep.grid,
                       best_run_id=best.id if best else None, runs=[runs_service.to_summary(r) for r in runs])


def cancel_sweep(session: Session, sweep: Sweep) -> list[int]:
    """Cancel the sweep's active runs as `POST /api/runs/{id}/cancel` would; the ids it cancelled."""
    active = [run for run in repository.sweep_runs(session, sweep.id) if run.status not in FINISHED_STATUSES]
    for run in active:
        runs_service.cancel_run(session, run)
    return [run.id for run in active]
