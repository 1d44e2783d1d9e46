"""Every preset is a valid run config and trains."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import Any

import pytest

from prunescope.contract.config import RunConfig
from prunescope.presets import DESCRIPTIONS, load_presets
from tests.engine.conftest import Epochs
from worker.engine.guards import TrainingDiverged
from worker.engine.training import run_training

PRESETS = load_presets()


def test_the_named_presets_exist_with_descriptions() -> None:
    methods = {"han2015", "dns", "gmp", "set", "rigl", "dpf", "one_shot", "dense"}
    paper_rows = {"gmp_92", "gmp_98_2", "gmp_98_5", "gmp_99", "rigl_99", "set_99", "lenet5_99", "lenet5_99_6"}
    assert set(PRESETS) == methods | paper_rows
    assert set(DESCRIPTIONS) == set(PRESETS)
    assert all(preset["preset"] == name for name, preset in PRESETS.items())


@pytest.mark.parametrize(("name", "model", "target"), [
    ("gmp_92", "lenet300_100", 0.92), ("dns", "lenet300_100", 0.982), ("gmp_98_2", "lenet300_100", 0.982),
    ("gmp_98_5", "lenet300_100", 0.985),
    ("gmp_99", "lenet300_100", 0.99), ("rigl_99", "lenet300_100", 0.99), ("set_99", "lenet300_100", 0.99),
    ("lenet5_99", "lenet5", 0.99), ("lenet5_99_6", "lenet5", 0.996)])
def test_paper_table_presets_prune_their_row_model_to_the_row_sparsity(name: str, model: str, target: float) -> None:
    preset = PRESETS[name]
    assert preset["model"]["name"] == model and preset["dataset"]["name"] == "mnist"
    assert preset["pruning"]["target_sparsity"] == target
    assert preset["training"]["epochs"] <= 60  # the table's budget


def test_regrowth_presets_at_99_share_gmps_ramp_and_differ_only_in_recovery() -> None:
    gmp = PRESETS["gmp_99"]
    for name, kind in (("rigl_99", "gradient"), ("set_99", "random")):
        preset = PRESETS[name]
        assert preset["training"] == gmp["training"]
        assert preset["pruning"]["schedule"] == gmp["pruning"]["schedule"]
        assert preset["pruning"]["recovery"]["kind"] == kind
        assert {**preset["pruning"], "recovery": None} == {**gmp["pruning"], "recovery": None}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_validates_and_trains_one_epoch_on_tiny_data(tmp_path: Path, name: str) -> None:
    config = copy.deepcopy(PRESETS[name])
    RunConfig.model_validate(config)
    # Squeeze the 30-epoch setup into one epoch of 128 samples, keeping every other choice.
    config["training"]["epochs"] = 1
    config["dataset"] = {"name": "digits", "limit": 128}
    config["training"]["batch_size"] = 16  # 8 steps: room for a drop before the cosine decay's zero at the end
    if config["pruning"] is not None:
        for block in (config["pruning"]["schedule"], config["pruning"]["recovery"]):
            for key in ("start_epoch", "end_epoch"):
                if block.get(key) is not None:
                    block[key] = min(block[key], 1)  # 0 (sparse from the first step) stays 0
            block["every_steps"] = 1
        if config["pruning"]["recovery"]["kind"] in ("random", "gradient"):
            config["pruning"]["schedule"]["start_epoch"] = 0  # one epoch holds the whole drop-and-grow phase
    config = RunConfig.model_validate(config).model_dump(mode="json")
    records = Epochs()
    try:
        summary = run_training(config, data_dir=tmp_path, on_epoch=records)
    except TrainingDiverged as exc:
        # Squeezed to 8 steps, a global ranking can take every weight of a layer before it trained: the guard then
        # fails the run, naming the layer (such a network cannot recover), after recording its epoch.
        assert config["pruning"]["scope"] == "global" and "removed every weight of" in str(exc)
        assert len(records) == 1
        return
    assert len(records) == 1 and summary.epochs_done == 1
    if config["pruning"] is not None:
        assert summary.final_sparsity > 0.5


def test_presets_keep_their_papers_trajectories_under_end_of_epoch_semantics() -> None:
    # SET/RigL are sparse from the first step; one-shot presets prune after 10 dense epochs (shown in
    # epoch 10's record); GMP ramps from the end of epoch 1 to the end of epoch 15.
    schedules = {name: preset["pruning"]["schedule"] for name, preset in PRESETS.items() if preset["pruning"]}
    assert schedules["set"]["start_epoch"] == schedules["rigl"]["start_epoch"] == 0
    assert schedules["set"]["kind"] == schedules["rigl"]["kind"] == "constant"
    assert schedules["one_shot"]["start_epoch"] == schedules["han2015"]["start_epoch"] == 10
    assert (schedules["gmp"]["start_epoch"], schedules["gmp"]["end_epoch"]) == (1, 15)


def _paper_table() -> Any:
    spec = importlib.util.spec_from_file_location("paper_table", Path(__file__).parents[2] / "bench" / "paper_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paper_table_runs_each_preset_on_full_mnist_keeping_its_augmentation() -> None:
    row_config = _paper_table().row_config
    preset = copy.deepcopy(PRESETS["gmp_92"])
    preset["dataset"]["limit"] = 100
    config = row_config(preset, None)
    assert config["dataset"] == {"name": "mnist", "limit": None, "augment": True}
    assert row_config(preset, 15)["dataset"]["augment"] is True
    assert "augment" not in row_config(PRESETS["gmp_99"], None)["dataset"]  # MNIST's default: off


def test_mnist_presets_that_augment_use_the_shift_and_validate() -> None:
    augmented = sorted(name for name, preset in PRESETS.items() if preset["dataset"].get("augment"))
    assert {"gmp_92", "gmp_98_2", "gmp_98_5"} <= set(augmented)
    for name in augmented:
        assert RunConfig.model_validate(PRESETS[name]).dataset.augment is True


def test_paper_table_merges_seeds_of_the_same_config_and_never_mixes_two_configs() -> None:
    combine = _paper_table().combine

    def run(row: str, seed: int, lr: float) -> dict[str, Any]:
        return {"row": row, "seed": seed, "config": {"training": {"lr": lr, "seed": seed}}}

    done = [run("a", 3, 0.1), run("a", 4, 0.1), run("b", 0, 0.5)]
    merged = [run("a", 0, 0.1), run("a", 3, 0.1), run("a", 1, 0.2), run("b", 1, 0.1), run("c", 0, 0.1),
              run("c", 0, 0.3)]
    table = combine(done, merged)
    assert sorted((r["row"], r["seed"], r["config"]["training"]["lr"]) for r in table) == [
        ("a", 0, 0.1), ("a", 3, 0.1), ("a", 4, 0.1),  # seed 0 joins; --out keeps seed 3; lr 0.2 is another config
        ("b", 0, 0.5),  # --out ran b with another config: the merged b stays out
        ("c", 0, 0.1)]  # a row --out has none of: the first file's run of a seed wins
