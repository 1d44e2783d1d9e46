"""The training loop: epoch records, stopping, checkpoint/resume equality, the CLI entry point."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from prunescope.contract import RunSummary
from tests.engine.conftest import Epochs
from worker.engine.checkpoint_slot import CheckpointSlot
from worker.engine.training import run_training, train_main

GMP = {"target_sparsity": 0.8, "schedule": {"kind": "cubic", "start_epoch": 1, "end_epoch": 2, "every_steps": 2}}


def test_pruned_run_reports_every_epoch_with_layer_stats_and_masks(tmp_path: Path,
                                                                   make_config: Callable[..., dict]) -> None:
    records = Epochs()
    summary = run_training(make_config(GMP), data_dir=tmp_path, on_epoch=records)
    assert [r["epoch"] for r in records] == [1, 2]
    for record in records:
        assert record["train_loss"] is not None and record["test_loss"] is not None and record["lr"] is not None
        assert 0 <= record["train_acc"] <= 1 and 0 <= record["test_acc"] <= 1
        assert [layer["name"] for layer in record["layers"]] == ["fc1.weight", "fc2.weight", "fc3.weight"]
        assert record["layers"][0]["shape"] == [300, 784]
        for layer in record["layers"]:
            mask = record["masks"][layer["name"]]
            assert mask.dtype == np.bool_ and list(mask.shape) == layer["shape"]
            assert layer["sparsity"] == pytest.approx(1 - mask.mean())
        assert record["nonzero"] == sum(int(m.sum()) for m in record["masks"].values())
    assert records[-1]["target_sparsity"] == pytest.approx(0.8)
    assert records[-1]["sparsity"] == pytest.approx(0.8, abs=1e-3)
    assert sum(layer["pruned"] for r in records for layer in r["layers"]) == records[-1]["total"] - records[-1][
        "nonzero"]
    assert isinstance(summary, RunSummary) and summary.wall_seconds is not None and summary.epochs_done == 2
    assert summary.final_sparsity == pytest.approx(0.8, abs=1e-3) and summary.stopped is False
    assert summary.flops == 2 * summary.nonzero  # an MLP: one multiply-add per weight


def test_dense_run_lists_layers_with_all_true_masks(tmp_path: Path, make_config: Callable[..., dict]) -> None:
    records = Epochs()
    summary = run_training(make_config(None, training={"epochs": 1}), data_dir=tmp_path, on_epoch=records)
    (record,) = records
    assert record["target_sparsity"] is None and record["sparsity"] == 0.0
    assert all(mask.all() for mask in record["masks"].values())
    assert summary.nonzero == summary.total == 266_200


def test_should_stop_ends_training_early(tmp_path: Path, make_config: Callable[..., dict]) -> None:
    records = Epochs()
    summary = run_training(make_config(GMP, training={"epochs": 3}), data_dir=tmp_path, on_epoch=records,
                           should_stop=lambda: len(records) >= 1)
    assert summary.stopped is True and summary.epochs_done == 1 and len(records) == 1


def test_a_run_stopped_before_its_first_epoch_reports_no_accuracy(tmp_path: Path,
                                                                   make_config: Callable[..., dict]) -> None:
    # Its 0.0 accuracies were listed as "0.00 %" and sorted it as the worst run.
    summary = run_training(make_config(GMP, training={"epochs": 3}), data_dir=tmp_path, should_stop=lambda: True)
    assert summary.stopped is True and summary.epochs_done == 0
    assert (summary.final_test_acc, summary.best_test_acc, summary.final_sparsity) == (None, None, None)


@pytest.mark.parametrize("pruning", [
    GMP,
    {"target_sparsity": 0.7, "schedule": {"kind": "constant", "start_epoch": 0},
     "recovery": {"kind": "gradient", "every_steps": 3, "end_epoch": 3}},
    {"target_sparsity": 0.7, "scope": "global", "schedule": {"kind": "cubic", "every_steps": 3, "end_epoch": 2},
     "recovery": {"kind": "splice"}, "criterion": "movement"},
], ids=["gmp", "rigl", "dns-movement"])
def test_resume_from_checkpoint_matches_uninterrupted_run(tmp_path: Path, make_config: Callable[..., dict],
                                                          pruning: dict) -> None:
    config = make_config(pruning, training={"epochs": 3, "optimizer": "adam", "lr": 0.003})
    full = Epochs()
    run_training(config, data_dir=tmp_path, on_epoch=full)
    first = Epochs()
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    stopped = run_training(config, data_dir=tmp_path, on_epoch=first, checkpoint_path=checkpoint,
                           should_stop=lambda: len(first) >= 2)
    assert stopped.stopped and checkpoint.exists()
    rest = Epochs()
    summary = run_training(config, data_dir=tmp_path, on_epoch=rest, checkpoint_path=checkpoint, resume=True)
    assert [r["epoch"] for r in rest] == [3] and summary.epochs_done == 3
    for key in ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "sparsity", "nonzero",
                "target_sparsity"):
        assert rest[0][key] == full[2][key], key
    assert [{k: v for k, v in layer.items()} for layer in rest[0]["layers"]] == full[2]["layers"]
    for name, mask in full[2]["masks"].items():
        assert np.array_equal(rest[0]["masks"][name], mask)
    assert (checkpoint.parent / "model.pt").exists()


class EverySlot(CheckpointSlot):
    """A slot that also remembers every epoch it was handed (to write them all after the run)."""

    def __init__(self) -> None:
        super().__init__()
        self.kept: dict[int, Callable[[Path], None]] = {}

    def keep(self, epoch: int, save: Callable[[Path], None]) -> None:
        super().keep(epoch, save)
        self.kept[epoch] = save


def test_with_a_slot_each_epoch_is_kept_in_memory_as_it_was_and_nothing_is_written_until_asked(
        tmp_path: Path, make_config: Callable[..., dict]) -> None:
    config = make_config({**GMP, "schedule": {**GMP["schedule"], "end_epoch": 3}},
                         training={"epochs": 3, "optimizer": "sgd", "momentum": 0.9})
    written = tmp_path / "written" / "checkpoint.pt"
    on_disk: dict[int, dict] = {}

    def copy_previous(record: object, masks: object) -> None:  # the file holds epoch N-1 at on_epoch(N)
        if written.exists():
            state = torch.load(written, weights_only=True)
            on_disk[state["epoch"]] = state

    run_training(config, data_dir=tmp_path, on_epoch=copy_previous, checkpoint_path=written)
    on_disk[3] = torch.load(written, weights_only=True)

    slot = EverySlot()
    kept_path = tmp_path / "kept" / "checkpoint.pt"
    run_training(config, data_dir=tmp_path, checkpoint_path=kept_path, checkpoint_slot=slot)
    assert not kept_path.exists() and (kept_path.parent / "model.pt").exists()  # the model still is exported
    assert slot.epoch == 3 and sorted(slot.kept) == [1, 2, 3]
    for epoch, save in slot.kept.items():  # written after the run, each is still its own epoch's state
        save(tmp_path / f"kept-{epoch}.pt")
        state = torch.load(tmp_path / f"kept-{epoch}.pt", weights_only=True)
        assert state["epoch"] == epoch
        for part in ("model", "pruner"):
            assert torch.equal(*(s[part]["fc1.weight"] if part == "model" else s[part]["masks"]["fc1.weight"]
                                 for s in (state, on_disk[epoch]))), (part, epoch)
        momentum = [s["optimizer"]["state"][0]["momentum_buffer"] for s in (state, on_disk[epoch])]
        assert torch.equal(*momentum), epoch
    assert not torch.equal(on_disk[1]["model"]["fc1.weight"], on_disk[3]["model"]["fc1.weight"])


def test_a_run_resumes_from_the_checkpoint_its_slot_wrote(tmp_path: Path, make_config: Callable[..., dict]) -> None:
    config = make_config(GMP, training={"epochs": 3, "optimizer": "adam", "lr": 0.003})
    full = Epochs()
    run_training(config, data_dir=tmp_path, on_epoch=full)
    first, slot = Epochs(), CheckpointSlot()
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    assert slot.save(checkpoint) is None and not checkpoint.exists()  # nothing kept yet: nothing written
    stopped = run_training(config, data_dir=tmp_path, on_epoch=first, checkpoint_path=checkpoint,
                           checkpoint_slot=slot, should_stop=lambda: len(first) >= 2)
    assert stopped.stopped and not checkpoint.exists()
    assert slot.save(checkpoint) == 2
    rest = Epochs()
    run_training(config, data_dir=tmp_path, on_epoch=rest, checkpoint_path=checkpoint, resume=True)
    assert [r["epoch"] for r in rest] == [3]
    assert rest[0]["test_acc"] == full[2]["test_acc"] and rest[0]["train_loss"] == full[2]["train_loss"]


def test_checkpoint_loads_without_unpickling_arbitrary_objects(tmp_path: Path,
                                                              make_config: Callable[..., dict]) -> None:
    checkpoint = tmp_path / "checkpoint.pt"
    run_training(make_config(GMP, training={"epochs": 2}), data_dir=tmp_path, checkpoint_path=checkpoint)
    state = torch.load(checkpoint, weights_only=True)
    assert state["epoch"] == 2 and set(state) >= {"model", "optimizer", "scheduler", "pruner", "rng", "config"}
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize(("pruning", "message"), [
    ({"criterion": "activation", "granularity": "unstructured", "target_sparsity": 0.5}, "use granularity 'neuron'"),
    ({"granularity": "n:m", "n_m": None}, "needs n_m"),
    ({"granularity": "n:m", "n_m": [4, 2]}, "n < m"),
    ({"target_sparsity": 0.5, "threshold": 0.1}, "not both"),
    ({}, "set target_sparsity"),
    ({"target_sparsity": 0.5, "granularity": "neuron", "recovery": {"kind": "gradient"}}, "needs granularity"),
    ({"threshold": 0.1, "recovery": {"kind": "random"}}, "keeps a fixed sparsity"),
    ({"target_sparsity": 0.5, "scope": "global", "distribution": "erk"}, "use scope 'layer'"),
    ({"threshold": {"std_scale": 1.0}, "scope": "global"}, "is per layer"),
    ({"target_sparsity": 0.5, "layers": {"include": ["nothing*"], "exclude": []}}, "matched no prunable weight"),
    ({"target_sparsity": 0.5, "schedule": {"kind": "cubic", "end_epoch": 9}}, "after the last epoch"),
])
def test_invalid_pruning_combinations_are_rejected_with_clear_messages(tmp_path: Path, pruning: dict,
                                                                      message: str) -> None:
    config = {"model": {"name": "lenet300_100"}, "dataset": {"name": "synthetic", "limit": 64},
              "training": {"epochs": 2, "batch_size": 32}, "pruning": pruning}
    with pytest.raises(ValueError, match=message):
        run_training(config, data_dir=tmp_path)


def test_train_main_prints_one_json_line_per_epoch_and_a_summary(tmp_path: Path,
                                                                 make_config: Callable[..., dict]) -> None:
    out = io.StringIO()
    code = train_main(make_config(GMP, training={"epochs": 3}), data_dir=tmp_path, device="cpu", out=out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert code == 0 and len(lines) == 4
    assert [line["epoch"] for line in lines[:3]] == [1, 2, 3] and "masks" not in lines[0]
    assert set(lines[3]) == {"summary"} and lines[3]["summary"]["epochs_done"] == 3


def test_train_main_returns_an_error_code_on_a_bad_config(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    code = train_main({"model": {"name": "resnet"}, "dataset": {"name": "synthetic"}}, data_dir=tmp_path,
                      device="cpu", out=out)
    assert code != 0 and out.getvalue() == "" and "resnet" in capsys.readouterr().err


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("schedule", ["constant", "cosine", "step", "onecycle"])
def test_every_optimizer_and_lr_schedule_trains(tmp_path: Path, make_config: Callable[..., dict], optimizer: str,
                                                schedule: str) -> None:
    lr = 0.05 if optimizer == "sgd" else 0.002
    records = Epochs()
    config = make_config(None, training={"epochs": 2, "optimizer": optimizer, "lr": lr, "lr_schedule": schedule,
                                         "nesterov": optimizer == "sgd"},
                         dataset={"name": "synthetic", "limit": 128})
    run_training(config, data_dir=tmp_path, on_epoch=records)
    assert records[-1]["train_loss"] < records[0]["train_loss"] or records[-1]["train_acc"] > 0.5
    assert np.isfinite(records[-1]["test_loss"])


def test_flops_count_conv_weights_once_per_output_position() -> None:
    from worker.engine.networks import build_model
    from worker.engine.training import count_flops

    lenet5 = build_model({"name": "lenet5"}, (1, 28, 28), 10)
    macs = 500 * 24 * 24 + 25_000 * 8 * 8 + 400_000 + 5_000
    assert count_flops(lenet5, (1, 28, 28)) == 2 * macs
    with torch.no_grad():
        lenet5.fc1.weight.zero_()
    assert count_flops(lenet5, (1, 28, 28)) == 2 * (macs - 400_000)


def test_threshold_runs_report_no_target(tmp_path: Path, make_config: Callable[..., dict]) -> None:
    records = Epochs()
    pruning = {"threshold": 0.02, "schedule": {"kind": "one_shot", "start_epoch": 1}}
    run_training(make_config(pruning, training={"epochs": 1}), data_dir=tmp_path, on_epoch=records)
    assert records[0]["target_sparsity"] is None and records[0]["sparsity"] > 0.3
    assert all(layer["threshold"] == 0.02 for layer in records[0]["layers"])


def test_diverging_training_fails_with_an_actionable_message(tmp_path: Path,
                                                            make_config: Callable[..., dict]) -> None:
    config = make_config(None, training={"epochs": 1, "lr": 100.0, "momentum": 0.9})
    with pytest.raises(ValueError, match=r"diverged.*lower training\.lr"):
        run_training(config, data_dir=tmp_path)


@pytest.mark.parametrize("start_epoch", [1, 2, 3])
def test_one_shot_at_start_epoch_k_shows_first_in_epoch_ks_record(tmp_path: Path, make_config: Callable[..., dict],
                                                                  start_epoch: int) -> None:
    records = Epochs()
    pruning = {"target_sparsity": 0.6, "schedule": {"kind": "one_shot", "start_epoch": start_epoch}}
    run_training(make_config(pruning, training={"epochs": 3}), data_dir=tmp_path, on_epoch=records)
    sparsities = [r["sparsity"] for r in records]
    assert sparsities == [0.0] * (start_epoch - 1) + [pytest.approx(0.6, abs=1e-3)] * (4 - start_epoch)


def test_sparsity_at_the_end_of_every_epoch_follows_the_cubic_formula(tmp_path: Path,
                                                                     make_config: Callable[..., dict]) -> None:
    records = Epochs()
    pruning = {"target_sparsity": 0.9, "schedule": {"kind": "cubic", "start_epoch": 1, "end_epoch": 4,
                                                    "every_steps": 4}}
    run_training(make_config(pruning, training={"epochs": 5}), data_dir=tmp_path, on_epoch=records)
    # Zhu & Gupta with t0 = the end of epoch 1 and t0 + nΔt = the end of epoch 4 (in epochs: 8 steps each).
    expected = [0.9 + (0.0 - 0.9) * (1 - (min(max(e, 1), 4) - 1) / 3) ** 3 for e in range(1, 6)]
    assert [r["target_sparsity"] for r in records] == pytest.approx(expected, abs=1e-12)
    assert [r["sparsity"] for r in records] == pytest.approx(expected, abs=1e-3)
    assert records[3]["sparsity"] == pytest.approx(0.9, abs=1e-3) and records[2]["sparsity"] < 0.89


def test_start_epoch_zero_is_sparse_from_the_first_step(tmp_path: Path, make_config: Callable[..., dict]) -> None:
    records = Epochs()
    pruning = {"target_sparsity": 0.7, "schedule": {"kind": "constant", "start_epoch": 0},
               "recovery": {"kind": "random", "every_steps": 3}}
    summary = run_training(make_config(pruning, training={"epochs": 1}), data_dir=tmp_path, on_epoch=records)
    assert records[0]["sparsity"] == pytest.approx(0.7, abs=1e-3)
    assert sum(layer["pruned"] for layer in records[0]["layers"]) > 0.7 * summary.total  # initial pruning + churn


def test_a_last_batch_of_one_sample_for_a_batchnorm1d_model_is_refused_before_training(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 65 samples at batch 64 and a BatchNorm1d plugin model: it trained an epoch, then failed inside torch.
    from worker.engine import training
    from worker.engine.datasets import synthetic_bundle

    def with_batchnorm(model_cfg: dict, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, num_classes))

    monkeypatch.setattr(training, "load_dataset",
                        lambda *_, **__: synthetic_bundle((1, 4, 4), n_train=65, n_test=8, num_classes=3))
    monkeypatch.setattr(training, "build_model", with_batchnorm)
    config = {"training": {"epochs": 1, "batch_size": 64}}
    with pytest.raises(ValueError, match=r"last batch would hold 1 of the 65 training samples.*batch_size \(64\)"):
        training.run_training(config, data_dir=tmp_path)
    config["training"]["batch_size"] = 32  # 65 = 2 × 32 + 1 as well
    with pytest.raises(ValueError, match="BatchNorm1d cannot normalise one sample"):
        training.run_training(config, data_dir=tmp_path)
    config["training"]["batch_size"] = 30  # a last batch of 5: fine
    assert training.run_training(config, data_dir=tmp_path).epochs_done == 1
