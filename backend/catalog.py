"""`GET /api/options` and `GET /api/presets`: what the submit form is built from."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from prunescope.contract.config import RunConfig, option_lists
from prunescope.contract.status import FINISHED_STATUSES, RunStatus

router = APIRouter(prefix="/api", tags=["catalog"])


@router.get("/options")
def options() -> dict[str, Any]:
    """The catalog of models, datasets and strategies, and the config's JSON schema (fields, bounds, defaults)."""
    return {
        **option_lists(),
        "statuses": [status.value for status in RunStatus],
        "finished_statuses": [status.value for status in RunStatus if status in FINISHED_STATUSES],
        "defaults": RunConfig().model_dump(mode="json"),
        "schema": RunConfig.model_json_schema(),
    }


@router.get("/presets")
def presets() -> dict[str, Any]:
    """Named configs that fill the form: Han 2015, DNS, GMP, SET, RigL, DPF, one-shot, dense."""
    from prunescope.presets import DESCRIPTIONS, load_presets

    return {"items": [{"name": name, "description": DESCRIPTIONS.get(name, ""), "config": config}
                      for name, config in load_presets().items()]}
