"""`GET /api/options` and `GET /api/presets`: what the submit form is built from."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from backend.capabilities import catalog, online_offer
from backend.deps import SessionDep, SettingsDep
from prunescope.contract.config import RunConfig, option_lists
from prunescope.contract.status import FINISHED_STATUSES, RunStatus

router = APIRouter(prefix="/api", tags=["catalog"])


@router.get("/options")
def options(session: SessionDep, settings: SettingsDep) -> dict[str, Any]:
    """The catalog of models, datasets and strategies, and the config's JSON schema (fields, bounds, defaults).

    `models` and `datasets` list the built-ins, then the plugins online workers offer; `plugin_models`
    maps each plugin model to its prunable layer names, `plugin_errors` says which plugins failed to load.
    """
    return {
        **option_lists(),
        **catalog(online_offer(session, settings.heartbeat_timeout)),
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
