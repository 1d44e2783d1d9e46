"""Mixed precision, channels-last and torch.compile: masks stay exact, runs resume identically, bad setups refused."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from prunescope.contract.config import TrainingConfig, option_lists
from tests.engine.conftest import Epochs
from worker.engine.checkpoint import Checkpoint
from worker.engine.networks import build_model
from worker.engine.precision import FP32, Compute
from worker.engine.pruning import Pruner
from worker.engine.training import run_training, train_main, train_step

RIGL = {"target_sparsity": 0.8, "schedule": {"kind": "constant", "start_epoch": 0},
        "recovery": {"kind": "gradient", "every_steps": 2, "end_epoch": 1}}
GMP = {"target_sparsity": 0.8, "schedule": {"kind": "cubic", "start_epoch": 0, "end_epoch": 1, "every_steps": 4}}
DPF = {"target_sparsity": 0.8, "schedule": {"kind": "cubic", "start_epoch": 0, "end_epoch": 1, "every_steps": 4},
       "recovery": {"kind": "feedback", "end_epoch": 1}}
BF16 = Compute(device_type="cpu", dtype=torch.bfloat16)


def _batches(n: int, shape: tuple[int, ...] = (1, 28, 28), seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, *shape, generator=gen), torch.randint(0, 10, (16,), generator=gen)) for _ in range(n)]


@pytest.mark.parametrize("pruning", [GMP, RIGL, DPF], ids=["gmp", "rigl", "dpf"])
def test_bf16_autocast_keeps_masks_exact_and_pruned_weights_dead(pruning: dict) -> None:
    torch.manual_seed(0)
    model = build_model({"name": "lenet300_100"}, (1, 28, 28), 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    # 8 steps per epoch over 2 epochs: masks change during epoch 1 and are frozen in epoch 2.
    pruner = Pruner(model, optimizer, pruning, epochs=2, steps_per_epoch=8, attach=False)
    pruner.start()
    dense_before: dict[str, torch.Tensor] = {}
    for step, (x, y) in enumerate(_batches(16)):
        if step == 8:
            frozen = pruner.masks()
            dense_before = {layer.name: layer.weight.detach().clone() for layer in pruner.layers}
        _, logits = train_step(model, optimizer, x, y, pruner, compute=BF16)
        assert logits.dtype == torch.bfloat16  # the forward really ran in bf16
    for layer in pruner.layers:
        assert layer.mask.dtype == torch.bool and layer.weight.dtype == torch.float32
        assert torch.equal(layer.mask, frozen[layer.name])  # no mask change after the schedule ended
        weight = layer.weight.detach()
        if pruner.config.dense_weights:
            # Feedback: the dense copy keeps learning everywhere, the masked forward sees exact zeros.
            assert not torch.equal(weight, dense_before[layer.name])
            assert bool((weight[~layer.mask] != 0).any())
            with pruner.masked_weights():
                assert torch.count_nonzero(layer.weight.detach()[~layer.mask]) == 0
        else:
            assert torch.count_nonzero(weight[~layer.mask]) == 0  # not one pruned weight revived
            assert torch.count_nonzero(weight) == int(layer.mask.sum())
    sparsity = 1 - sum(int(m.sum()) for m in frozen.values()) / sum(m.numel() for m in frozen.values())
    assert sparsity == pytest.approx(0.8, abs=1e-3)


def test_a_bf16_run_records_masks_that_match_its_sparsity(tmp_path: Path, make_config: Callable[..., dict]) -> None:
    records = Epochs()
    summary = run_training(make_config(RIGL, training={"epochs": 2, "precision": "bf16"}), data_dir=tmp_path,
                           on_epoch=records)
    for record in records:
        assert record["nonzero"] == sum(int(m.sum()) for m in record["masks"].values())
        for layer in record["layers"]:
            # Pruned weights are exactly 0, so the histogram (non-zero weights) holds kept weights only: all of
            # them but those RigL regrew at 0 that no step has moved yet.
            histogram, kept = layer["histogram"], int(record["masks"][layer["name"]].sum())
            assert histogram["kept"] == histogram["counts"]
            assert kept - layer["regrown"] <= sum(histogram["counts"]) <= kept
    assert summary.final_sparsity == pytest.approx(0.8, abs=1e-3)
    assert np.isfinite(records[-1]["train_loss"])


def test_fp16_on_a_cpu_is_refused_at_run_start(tmp_path: Path, make_config: Callable[..., dict],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    config = make_config(GMP, training={"precision": "fp16"})
    with pytest.raises(ValueError, match=r"training\.precision 'fp16' needs a CUDA device"):
        run_training(config, data_dir=tmp_path, device="cpu")
    assert train_main(config, data_dir=tmp_path, device="cpu", out=io.StringIO()) == 2
    assert "bf16" in capsys.readouterr().err  # the message says what to use instead


@pytest.mark.parametrize("bad", [{"precision": "fp8"}, {"precision": 16}, {"channels_last": "sometimes"},
                                 {"compile": "maybe"}])
def test_bad_precision_flags_are_field_located_errors(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        TrainingConfig.model_validate(bad)
    assert info.value.errors()[0]["loc"] == (next(iter(bad)),)


def test_precisions_are_listed_for_the_form() -> None:
    assert option_lists()["precisions"] == ["fp32", "bf16", "fp16"]
    assert TrainingConfig().precision == "fp32" and not TrainingConfig().channels_last


def test_channels_last_converts_conv_weights_and_trains_with_masks() -> None:
    torch.manual_seed(0)
    model = build_model({"name": "small_cnn"}, (3, 32, 32), 10)
    compute = Compute(channels_last=True, dtype=torch.bfloat16)
    forward = compute.prepare(model)
    convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    pruner = Pruner(model, optimizer, RIGL, epochs=2, steps_per_epoch=3, attach=False)
    pruner.start()
    for x, y in _batches(6, (3, 32, 32)):
        train_step(forward, optimizer, x, y, pruner, compute=compute)
    for layer in pruner.layers:
        assert torch.count_nonzero(layer.weight.detach()[~layer.mask]) == 0
    layers, masks = pruner.epoch_stats()
    for stats in layers:
        assert list(masks[stats.name].shape) == stats.shape  # snapshots keep the logical (N, C, H, W) shape
        assert stats.sparsity == pytest.approx(1 - masks[stats.name].mean())


def _run_until(config: dict, tmp_path: Path, stop_after: int | None, resume: bool = False) -> Epochs:
    records = Epochs()
    run_training(config, data_dir=tmp_path, on_epoch=records, checkpoint_path=tmp_path / "run" / "checkpoint.pt",
                 resume=resume, should_stop=(lambda: len(records) >= stop_after) if stop_after else None)
    return records


def _assert_same_epoch(a: dict, b: dict) -> None:
    for key in ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "sparsity", "nonzero"):
        assert a[key] == b[key], key
    assert a["layers"] == b["layers"]
    for name, mask in a["masks"].items():
        assert np.array_equal(b["masks"][name], mask)


def test_bf16_channels_last_run_resumes_identically(tmp_path: Path, make_config: Callable[..., dict]) -> None:
    config = make_config(RIGL, model={"name": "small_cnn"}, dataset={"name": "synthetic", "limit": 128},
                         training={"epochs": 3, "precision": "bf16", "channels_last": True})
    full = _run_until(config, tmp_path / "full", None)
    _run_until(config, tmp_path, 2)
    rest = _run_until(config, tmp_path, None, resume=True)
    assert [r["epoch"] for r in rest] == [3]
    _assert_same_epoch(rest[0], full[2])


def _cpu_fp16(training: TrainingConfig, device: str) -> Compute:
    # The CUDA-only fp16 setup lent to the CPU: a scale that grows every 2 steps overflows, so steps are
    # skipped and the scale backs off; a resume that lost the scaler's state would skip other steps.
    return Compute(device_type="cpu", dtype=torch.float16,
                   scaler=torch.amp.GradScaler("cpu", init_scale=2.0**14, growth_interval=2))


def test_fp16_loss_scaler_state_is_checkpointed_and_resumed(tmp_path: Path, make_config: Callable[..., dict],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Compute, "for_run", staticmethod(_cpu_fp16))
    config = make_config(GMP, training={"epochs": 3})
    full = _run_until(config, tmp_path / "full", None)
    _run_until(config, tmp_path, 2)
    state = Checkpoint.load(tmp_path / "run" / "checkpoint.pt")
    assert state.scaler is not None and state.scaler["scale"] != 2.0**14  # the scale moved and was saved
    rest = _run_until(config, tmp_path, None, resume=True)
    _assert_same_epoch(rest[0], full[2])


def test_the_pruner_sees_unscaled_gradients_under_a_loss_scaler() -> None:
    # L1 is added to the gradients by the pruner: were it added before unscaling, it would shrink 1024-fold.
    pruning = {"target_sparsity": 0.5, "schedule": {"kind": "one_shot", "start_epoch": 0},
               "regularization": {"l1": 0.01}}
    weights = []
    for compute in (FP32, Compute(scaler=torch.amp.GradScaler("cpu", init_scale=2.0**10))):
        torch.manual_seed(0)
        model = build_model({"name": "lenet300_100"}, (1, 28, 28), 10)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        pruner = Pruner(model, optimizer, pruning, epochs=1, steps_per_epoch=4, attach=False)
        pruner.start()
        for x, y in _batches(4):
            train_step(model, optimizer, x, y, pruner, compute=compute)
        weights.append([p.detach().clone() for p in model.parameters()])
    for plain, scaled in zip(*weights, strict=True):
        torch.testing.assert_close(scaled, plain, rtol=1e-5, atol=1e-7)


def test_scaler_state_survives_a_checkpoint_round_trip(tmp_path: Path) -> None:
    compute = Compute(scaler=torch.amp.GradScaler("cpu", init_scale=2.0**12))
    assert compute.scaler is not None
    compute.scaler.scale(torch.ones(()))  # a scaler's state exists once it has scaled something
    compute.scaler.update(new_scale=321.0)
    Checkpoint(epoch=1, config={}, model={}, optimizer={}, scheduler={}, pruner=None, rng={},
               scaler=compute.state_dict()).save(tmp_path / "c.pt")
    fresh = Compute(scaler=torch.amp.GradScaler("cpu"))
    fresh.load_state_dict(Checkpoint.load(tmp_path / "c.pt").scaler)
    assert fresh.scaler is not None and fresh.scaler.get_scale() == 321.0
    assert FP32.state_dict() is None


def _dynamo_supported() -> bool:
    try:
        return bool(torch._dynamo.is_dynamo_supported())
    except Exception:  # any failure means: no torch.compile here
        return False


@pytest.mark.skipif(not _dynamo_supported(), reason="torch.compile (dynamo) is not supported on this platform")
def test_compile_flag_trains_a_tiny_splice_run_like_eager(tmp_path: Path, make_config: Callable[..., dict],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # Inductor's C++ code generation takes ~55 s for LeNet on this 2-core CPU; aot_eager traces forward and
    # backward the same way (dynamo + AOT autograd) in a few seconds, which is what the loop's wiring needs.
    calls: list[torch.nn.Module] = []
    real_compile = torch.compile

    def compile_aot_eager(model: torch.nn.Module, **kwargs: Any) -> Any:
        calls.append(model)
        return real_compile(model, backend="aot_eager")

    pruning = {"target_sparsity": 0.7, "schedule": {"kind": "cubic", "start_epoch": 1, "end_epoch": 1},
               "recovery": {"kind": "feedback", "end_epoch": 1}}
    config = make_config(pruning, training={"epochs": 1, "compile": True}, dataset={"name": "synthetic", "limit": 64})
    eager = Epochs()
    run_training({**config, "training": {**config["training"], "compile": False}}, data_dir=tmp_path,
                 on_epoch=eager)
    monkeypatch.setattr(torch, "compile", compile_aot_eager)
    compiled = Epochs()
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    run_training(config, data_dir=tmp_path, on_epoch=compiled, checkpoint_path=checkpoint)
    assert len(calls) == 1
    assert compiled[0]["train_loss"] == pytest.approx(eager[0]["train_loss"], rel=1e-4)
    assert compiled[0]["sparsity"] == pytest.approx(eager[0]["sparsity"])
    state = Checkpoint.load(checkpoint)
    assert not any(key.startswith("_orig_mod") for key in state.model)  # saved from the model, not the wrapper


def test_fp16_with_device_cpu_is_refused_at_submit_on_both_fields(make_config: Callable[..., dict]) -> None:
    from prunescope.contract import parse_run_config

    config = make_config(None)
    with pytest.raises(ValidationError) as info:
        parse_run_config({**config, "device": "cpu", "training": {**config["training"], "precision": "fp16"}})
    assert {error["loc"] for error in info.value.errors()} == {("training", "precision"), ("device",)}
    assert parse_run_config({**config, "device": "auto", "training": {**config["training"], "precision": "fp16"}})
