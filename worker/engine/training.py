"""The training loop in parts: `train_step`, `train_epoch`, `evaluate`, and `run_training` that ties them up."""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from prunescope.contract import EpochRecord, RunConfig, RunSummary, parse_run_config
from prunescope.contract.config import TrainingConfig
from worker.engine.checkpoint import Checkpoint, restore_rng, rng_state
from worker.engine.checkpoint_slot import CheckpointSlot
from worker.engine.datasets import Data, eval_batches, load_dataset, train_batches
from worker.engine.export import export_model
from worker.engine.guards import CollapseGuard, advice, emptied_advice
from worker.engine.networks import build_model
from worker.engine.precision import FP32, Compute
from worker.engine.pruning import Pruner, prunable_weights
from worker.engine.records import EpochMeasures, build_epoch_record

STOP_POLL_SECONDS = 0.5
EVAL_BATCH = 1024

OnEpoch = Callable[[EpochRecord, dict[str, np.ndarray]], None]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_optimizer(model: nn.Module, training: TrainingConfig) -> torch.optim.Optimizer:
    params = list(model.parameters())
    if training.optimizer == "sgd":
        return torch.optim.SGD(params, lr=training.lr, momentum=training.momentum, nesterov=training.nesterov,
                               weight_decay=training.weight_decay)
    if training.optimizer == "adam":
        return torch.optim.Adam(params, lr=training.lr, weight_decay=training.weight_decay)
    return torch.optim.AdamW(params, lr=training.lr, weight_decay=training.weight_decay)


def build_lr_scheduler(optimizer: torch.optim.Optimizer, training: TrainingConfig,
                       steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-step schedule over the whole run (step decay: x0.1 at 50 % and 75 % of the epochs)."""
    epochs = training.epochs
    total = max(1, epochs * steps_per_epoch)
    if training.lr_schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=training.lr, total_steps=total + 1,
                                                   cycle_momentum=False)
    if training.lr_schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    if training.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))
    milestones = [round(0.5 * epochs) * steps_per_epoch, round(0.75 * epochs) * steps_per_epoch]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.1 ** sum(step >= m for m in milestones if m > 0))


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               pruner: Pruner | None = None,
               scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
               compute: Compute = FP32) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step with the pruner's explicit protocol; returns the (attached) loss and logits.

    The pruner sees true (unscaled, fp32) gradients under every `compute.precision`."""
    if pruner is not None:
        pruner.before_forward()
    with compute.autocast():
        logits = model(compute.inputs(x))
        loss = F.cross_entropy(logits, y)
    optimizer.zero_grad(set_to_none=True)
    compute.backward(loss, optimizer)
    if pruner is not None:
        pruner.after_backward()
    compute.step(optimizer)
    if pruner is not None:
        pruner.after_step()
    if scheduler is not None:
        scheduler.step()
    return loss, logits


@dataclass
class EpochTotals:
    """What one pass over the training data measured."""

    loss: float
    accuracy: float
    lr: float  # the learning rate of the epoch's last step
    seconds: float
    stopped: bool


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, data: Data, *, batch_size: int,
                shuffle: torch.Generator, device: str, pruner: Pruner | None = None,
                scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                should_stop: Callable[[], bool] | None = None, compute: Compute = FP32) -> EpochTotals:
    """One shuffled pass; polls `should_stop` every `STOP_POLL_SECONDS` and ends the epoch early if asked."""
    start = time.perf_counter()
    # Sums stay on the device: a .item() per step would synchronise a GPU every step.
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    lr_used, last_poll, stopped = optimizer.param_groups[0]["lr"], time.monotonic(), False
    model.train()
    for x, y in train_batches(data, batch_size, shuffle, device):
        lr_used = optimizer.param_groups[0]["lr"]
        loss, logits = train_step(model, optimizer, x, y, pruner, scheduler, compute)
        with torch.no_grad():
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(dim=1) == y).sum()
        if should_stop is not None and time.monotonic() - last_poll >= STOP_POLL_SECONDS:
            last_poll = time.monotonic()
            if should_stop():
                stopped = True
                break
    n = data.train_size
    return EpochTotals(loss=float(loss_sum) / n, accuracy=int(correct) / n, lr=float(lr_used),
                       seconds=time.perf_counter() - start, stopped=stopped)


@torch.no_grad()
def evaluate(model: nn.Module, data: Data, device: str, pruner: Pruner | None = None,
             compute: Compute = FP32) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of the (pruned) model on the test set, at the run's precision."""
    was_training = model.training
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    with pruner.masked_weights() if pruner is not None else nullcontext():
        for x, y in eval_batches(data, EVAL_BATCH, device):
            with compute.autocast():
                logits = model(compute.inputs(x))
            loss_sum += float(F.cross_entropy(logits.float(), y, reduction="sum"))
            correct += int((logits.argmax(dim=1) == y).sum())
            n += len(y)
    model.train(was_training)
    return loss_sum / max(1, n), correct / max(1, n)


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Forward FLOPs per sample of the Linear/Conv layers, counting only non-zero weights (2 per MAC)."""
    flops = 0
    hooks = []

    def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        nonlocal flops
        nonzero = int(torch.count_nonzero(module.weight))  # type: ignore[arg-type]
        # A convolution applies each weight once per output position; a transposed one once per input position.
        if isinstance(module, nn.modules.conv._ConvTransposeNd):
            spatial = inputs[0][0, 0].numel()
        elif isinstance(module, nn.modules.conv._ConvNd):
            spatial = output[0, 0].numel()
        else:
            spatial = 1
        flops += 2 * nonzero * spatial

    for _, module in prunable_weights(model):
        hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        model(torch.zeros(1, *input_shape, device=device))
    model.train(was_training)
    for handle in hooks:
        handle.remove()
    return flops


def _check_device(device: str) -> None:
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device must be 'cpu' or 'cuda' (resolve 'auto' before calling), got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but torch sees no CUDA device on this worker")


def run_training(config: RunConfig | dict[str, Any], *, data_dir: Path, device: str = "cpu",
                 on_epoch: OnEpoch | None = None, should_stop: Callable[[], bool] | None = None,
                 checkpoint_path: Path | None = None, resume: bool = False,
                 checkpoint_slot: CheckpointSlot | None = None) -> RunSummary:
    """Train (and prune) the run `config` describes; `on_epoch(record, masks)` after every epoch.

    Checkpoints: with `resume`, the run continues from the one at `checkpoint_path`. After each epoch's
    `on_epoch`, that epoch's checkpoint is written to `checkpoint_path`, or, with `checkpoint_slot`, kept in the
    slot (a copy in memory) for the caller to write when it needs one. `model.pt` goes beside `checkpoint_path`.

    A dict is validated with the contract first (pydantic's ValidationError, a ValueError, names the field).
    Raises `TrainingDiverged` (a ValueError) when the run dies; see `worker.engine.guards`.
    """
    wall_start = time.perf_counter()
    if not isinstance(config, RunConfig):
        config = parse_run_config(config)
    training = config.training
    _check_device(device)
    compute = Compute.for_run(training, device)  # refuses fp16 on a CPU before any work
    seed_everything(training.seed)
    data = load_dataset(config.dataset.model_dump(), Path(data_dir), model_name=config.model.name).to(device)
    model = build_model(config.model.model_dump(), data.input_shape, data.num_classes).to(device)
    forward = compute.prepare(model)  # what the loop calls; `model` stays the one pruned, saved and exported
    n_train = data.train_size
    steps_per_epoch = math.ceil(n_train / training.batch_size)
    if n_train > 1 and n_train % training.batch_size == 1 and any(
            isinstance(m, nn.BatchNorm1d) for m in model.modules()):
        # Found by a plugin run: it trained to the end of epoch 1, then failed inside torch ("Expected more than 1
        # value per channel when training").
        raise ValueError(f"every epoch's last batch would hold 1 of the {n_train} training samples, and the model's "
                         f"BatchNorm1d cannot normalise one sample: change training.batch_size "
                         f"({training.batch_size}) or dataset.limit")
    optimizer = build_optimizer(model, training)
    scheduler = build_lr_scheduler(optimizer, training, steps_per_epoch)
    pruner = None
    if config.pruning is not None:
        # The managed loop drives the explicit protocol (no hooks): same class, same results as hooks.
        pruner = Pruner(model, optimizer, config.pruning, epochs=training.epochs, steps_per_epoch=steps_per_epoch,
                        seed=training.seed, attach=False)
    shuffle = torch.Generator().manual_seed(training.seed)
    guard = CollapseGuard(num_classes=data.num_classes, hint=advice(config), emptied_hint=emptied_advice(config),
                          l1=config.pruning.regularization.l1 if config.pruning is not None else 0.0)
    config_doc = config.model_dump(mode="json")

    first_epoch, best_acc, final_acc, prior_wall = 1, 0.0, 0.0, 0.0
    if resume and checkpoint_path is not None and Path(checkpoint_path).exists():
        state = Checkpoint.load(Path(checkpoint_path), map_location=device)
        model.load_state_dict(state.model)
        optimizer.load_state_dict(state.optimizer)
        scheduler.load_state_dict(state.scheduler)
        compute.load_state_dict(state.scaler)
        if pruner is not None and state.pruner is not None:
            pruner.load_state_dict(state.pruner)
        restore_rng(state.rng, shuffle)
        if state.guard:
            guard.load_state_dict(state.guard)
        first_epoch = state.epoch + 1
        best_acc, final_acc, prior_wall = state.best_test_acc, state.final_test_acc, state.wall_seconds
    elif pruner is not None:
        pruner.start()

    stopped = False
    epochs_done = first_epoch - 1
    for epoch in range(first_epoch, training.epochs + 1):
        if should_stop is not None and should_stop():
            stopped = True
            break
        epoch_start = time.perf_counter()
        totals = train_epoch(forward, optimizer, data, batch_size=training.batch_size, shuffle=shuffle, device=device,
                             pruner=pruner, scheduler=scheduler, should_stop=should_stop, compute=compute)
        if totals.stopped:
            stopped = True
            break
        test_loss, test_acc = evaluate(forward, data, device, pruner, compute)
        guard.check_finite(epoch, totals.loss)
        final_acc, best_acc = test_acc, max(best_acc, test_acc)
        epochs_done = epoch
        record, masks = build_epoch_record(EpochMeasures(
            epoch=epoch, train_loss=totals.loss, train_acc=totals.accuracy, test_loss=test_loss, test_acc=test_acc,
            lr=totals.lr, epoch_seconds=time.perf_counter() - epoch_start, train_seconds=totals.seconds,
            samples=n_train), model, pruner)
        if on_epoch is not None:
            on_epoch(record, masks)
        # After the record: the epoch a failure message names is one the run's page shows.
        emptied = [layer.name for layer in pruner.layers if not bool(layer.mask.any())] if pruner is not None else []
        guard.check(epoch, totals.loss, test_acc, pruning_started=pruner is not None and pruner.pruning_started,
                    steps=steps_per_epoch, last=epoch == training.epochs, emptied=emptied, sparsity=record.sparsity)
        if checkpoint_path is not None or checkpoint_slot is not None:
            # Taken after on_epoch: a crash in between re-runs (and re-reports) the epoch, never loses it.
            state = Checkpoint(
                epoch=epoch, config=config_doc, model=model.state_dict(), optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(), pruner=pruner.state_dict() if pruner is not None else None,
                scaler=compute.state_dict(), rng=rng_state(shuffle), best_test_acc=best_acc,
                final_test_acc=final_acc, wall_seconds=prior_wall + time.perf_counter() - wall_start,
                guard=guard.state_dict())
            if checkpoint_slot is not None:
                checkpoint_slot.keep(epoch, state.detached().save)
            elif checkpoint_path is not None:
                state.save(Path(checkpoint_path))

    if pruner is not None:
        pruner.finalize(warn_short=False)  # the schedule fits the run's epochs: only a stopped run ends short
        masks_now = pruner.masks()
        nonzero = sum(int(m.sum()) for m in masks_now.values())
    else:
        masks_now = {name: torch.ones_like(module.weight, dtype=torch.bool) for name, module in prunable_weights(model)}
        nonzero = sum(int(torch.count_nonzero(module.weight)) for _, module in prunable_weights(model))
    total = sum(m.numel() for m in masks_now.values())
    if checkpoint_path is not None:
        export_model(model, masks_now, Path(checkpoint_path).parent / "model.pt", config=config_doc,
                     input_shape=data.input_shape, num_classes=data.num_classes)
    trained = epochs_done > 0  # a run stopped before its first epoch measured no accuracy (not 0 %)
    return RunSummary(final_test_acc=final_acc if trained else None, best_test_acc=best_acc if trained else None,
                      final_sparsity=(1 - nonzero / total if total else 0.0) if trained else None,
                      nonzero=nonzero, total=total,
                      flops=count_flops(model, data.input_shape),
                      wall_seconds=prior_wall + time.perf_counter() - wall_start, epochs_done=epochs_done,
                      stopped=stopped)


def train_main(config: RunConfig | dict[str, Any], *, data_dir: Path, device: str, out: TextIO) -> int:
    """`prunescope train`: one JSON line per epoch (without masks), then `{"summary": {...}}`."""

    def print_epoch(record: EpochRecord, masks: dict[str, np.ndarray]) -> None:
        out.write(record.model_dump_json() + "\n")
        out.flush()

    try:
        summary = run_training(config, data_dir=data_dir, device=device, on_epoch=print_epoch)
    except (ValueError, FileNotFoundError) as exc:
        print(f"prunescope train: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a corrupt image, memory the model cannot get: one line, as a worker reports it
        print(f"prunescope train: the run failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    out.write(json.dumps({"summary": summary.model_dump(mode="json")}) + "\n")
    out.flush()
    return 0
