"""Every preset is a valid run config and trains."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from prunescope.contract.config import RunConfig
from prunescope.presets import DESCRIPTIONS, load_presets
from worker.engine.training import run_training

PRESETS = load_presets()


def test_the_eight_named_presets_exist_with_descriptions() -> None:
    assert set(PRESETS) == {"han2015", "dns", "gmp", "set", "rigl", "dpf", "one_shot", "dense"}
    assert set(DESCRIPTIONS) == set(PRESETS)
    assert all(preset["preset"] == name for name, preset in PRESETS.items())


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_validates_and_trains_one_epoch_on_tiny_data(tmp_path: Path, name: str) -> None:
    config = copy.deepcopy(PRESETS[name])
    RunConfig.model_validate(config)
    # Squeeze the 30-epoch setup into one epoch of 128 samples, keeping every other choice.
    config["training"]["epochs"] = 1
    config["dataset"] = {"name": "digits", "limit": 128}
    if config["pruning"] is not None:
        for block in (config["pruning"]["schedule"], config["pruning"]["recovery"]):
            for key in ("start_epoch", "end_epoch"):
                if block.get(key) is not None:
                    block[key] = 1
            block["every_steps"] = 1
    config = RunConfig.model_validate(config).model_dump(mode="json")
    records: list[dict] = []
    summary = run_training(config, data_dir=tmp_path, on_epoch=records.append)
    assert len(records) == 1 and summary["epochs_done"] == 1
    if config["pruning"] is not None:
        assert summary["final_sparsity"] > 0.5
