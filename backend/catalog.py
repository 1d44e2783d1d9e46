"""`GET /api/options` and `GET /api/presets`: what the submit form is built from."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from backend import runconfig
from backend.runconfig import RunConfig

router = APIRouter(prefix="/api", tags=["catalog"])


@router.get("/options")
def options() -> dict[str, Any]:
    """The catalog of models, datasets and strategies, and the config's JSON schema (fields, bounds, defaults)."""
    return {
        "models": list(runconfig.MODELS), "datasets": list(runconfig.DATASETS),
        "criteria": list(runconfig.CRITERIA), "granularities": list(runconfig.GRANULARITIES),
        "schedules": list(runconfig.SCHEDULES), "recoveries": list(runconfig.RECOVERIES),
        "optimizers": list(runconfig.OPTIMIZERS), "lr_schedules": list(runconfig.LR_SCHEDULES),
        "scopes": ["layer", "global"], "distributions": ["uniform", "erk"], "devices": ["auto", "cpu", "cuda"],
        "defaults": RunConfig().model_dump(mode="json"),
        "schema": RunConfig.model_json_schema(),
    }


@router.get("/presets")
def presets() -> dict[str, Any]:
    """Named configs that fill the form: Han 2015, DNS, GMP, SET, RigL, DPF, one-shot, dense."""
    from prunescope.presets import DESCRIPTIONS, load_presets

    return {"items": [{"name": name, "description": DESCRIPTIONS.get(name, ""), "config": config}
                      for name, config in load_presets().items()]}
