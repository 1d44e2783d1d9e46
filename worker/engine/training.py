"""The training loop: one run config in, per-epoch records out, a summary at the end. Torch only."""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from worker.engine.datasets import DataBundle, load_dataset
from worker.engine.export import export_model
from worker.engine.networks import build_model
from worker.engine.pruning import Pruner, build_pruner, dense_report, prunable_weights

STOP_POLL_SECONDS = 0.5
EVAL_BATCH = 1024
CHECKPOINT_FORMAT = "prunescope.checkpoint/1"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_optimizer(model: nn.Module, training: dict) -> torch.optim.Optimizer:
    name, lr = training.get("optimizer", "sgd"), float(training.get("lr", 0.1))
    weight_decay = float(training.get("weight_decay", 0.0))
    params = list(model.parameters())
    if name == "sgd":
        momentum = float(training.get("momentum", 0.9))
        nesterov = bool(training.get("nesterov", False))
        if nesterov and momentum <= 0:
            raise ValueError("training.nesterov needs momentum > 0")
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose sgd, adam or adamw")


def build_lr_scheduler(optimizer: torch.optim.Optimizer, training: dict,
                       steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-step schedule over the whole run (step decay: x0.1 at 50 % and 75 % of the epochs)."""
    kind = training.get("lr_schedule", "cosine")
    epochs = int(training.get("epochs", 10))
    total = max(1, epochs * steps_per_epoch)
    if kind == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=float(training.get("lr", 0.1)),
                                                   total_steps=total + 1, cycle_momentum=False)
    if kind == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    if kind == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))
    if kind == "step":
        milestones = [round(0.5 * epochs) * steps_per_epoch, round(0.75 * epochs) * steps_per_epoch]
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.1 ** sum(step >= m for m in milestones if m > 0))
    raise ValueError(f"unknown lr_schedule {kind!r}; choose constant, cosine, step or onecycle")


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `model` on (x, y)."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(y), EVAL_BATCH):
        logits = model(x[start: start + EVAL_BATCH])
        target = y[start: start + EVAL_BATCH]
        loss_sum += float(F.cross_entropy(logits, target, reduction="sum"))
        correct += int((logits.argmax(dim=1) == target).sum())
    model.train()
    n = max(1, len(y))
    return loss_sum / n, correct / n


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Forward FLOPs per sample of the Linear/Conv layers, counting only non-zero weights (2 per MAC)."""
    flops = 0
    hooks = []

    def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        nonlocal flops
        nonzero = int(torch.count_nonzero(module.weight))  # type: ignore[arg-type]
        spatial = output[0, 0].numel() if isinstance(module, nn.Conv2d) else 1
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


def _rng_state(shuffle: torch.Generator) -> dict[str, Any]:
    # Plain tensors/lists only, so checkpoints load with torch.load(weights_only=True).
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(), "shuffle": shuffle.get_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys).astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "random": {"version": version, "internal": list(internal), "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict[str, Any], shuffle: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    shuffle.set_state(state["shuffle"])
    np_state = state["numpy"]
    np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["gauss"]))
    py = state["random"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save_atomic(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)  # readers never see a half-written checkpoint


def _epoch_report(model: nn.Module, pruner: Pruner | None) -> tuple[list[dict], dict[str, np.ndarray], int, int]:
    layers, masks = pruner.epoch_report() if pruner is not None else dense_report(model)
    total = sum(int(np.prod(layer["shape"])) for layer in layers)
    nonzero = sum(round((1 - layer["sparsity"]) * int(np.prod(layer["shape"]))) for layer in layers)
    return layers, masks, nonzero, total


def run_training(config: dict, *, data_dir: Path, device: str = "cpu",
                 on_epoch: Callable[[dict], None] | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 checkpoint_path: Path | None = None,
                 resume: bool = False) -> dict:
    """Train (and prune) the run `config` describes; returns the summary dict."""
    wall_start = time.perf_counter()
    training = config.get("training") or {}
    seed = int(training.get("seed", 0))
    epochs = int(training.get("epochs", 10))
    batch_size = int(training.get("batch_size", 128))
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device must be 'cpu' or 'cuda' (resolve 'auto' before calling), got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but torch sees no CUDA device on this worker")
    seed_everything(seed)
    model_cfg = config.get("model") or {}
    data: DataBundle = load_dataset(config.get("dataset") or {}, Path(data_dir),
                                    model_name=model_cfg.get("name", "lenet300_100"))
    model = build_model(model_cfg, data.input_shape, data.num_classes).to(device)
    train_x, train_y = data.train_x.to(device), data.train_y.to(device)
    test_x, test_y = data.test_x.to(device), data.test_y.to(device)
    n_train = len(train_y)
    steps_per_epoch = math.ceil(n_train / batch_size)
    optimizer = build_optimizer(model, training)
    scheduler = build_lr_scheduler(optimizer, training, steps_per_epoch)
    pruner = build_pruner(model, config.get("pruning"), optimizer=optimizer, epochs=epochs,
                          steps_per_epoch=steps_per_epoch, seed=seed)
    shuffle = torch.Generator().manual_seed(seed)

    first_epoch, best_acc, final_acc, prior_wall = 1, 0.0, 0.0, 0.0
    if resume and checkpoint_path is not None and Path(checkpoint_path).exists():
        state = torch.load(checkpoint_path, map_location=device, weights_only=True)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{checkpoint_path} is not a prunescope checkpoint")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if pruner is not None:
            pruner.load_state_dict(state["pruner"])
        _restore_rng(state["rng"], shuffle)
        first_epoch = int(state["epoch"]) + 1
        best_acc, final_acc = float(state["best_test_acc"]), float(state["final_test_acc"])
        prior_wall = float(state.get("wall_seconds", 0.0))
    elif pruner is not None:
        pruner.start()

    stopped = False
    epochs_done = first_epoch - 1
    last_poll = time.monotonic()
    lr_used = optimizer.param_groups[0]["lr"]
    model.train()
    for epoch in range(first_epoch, epochs + 1):
        if should_stop is not None and should_stop():
            stopped = True
            break
        epoch_start = time.perf_counter()
        order = torch.randperm(n_train, generator=shuffle).to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        for start in range(0, n_train, batch_size):
            index = order[start: start + batch_size]
            x, y = train_x[index], train_y[index]
            if pruner is not None:
                pruner.before_forward()
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if pruner is not None:
                pruner.after_backward()
            lr_used = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            if pruner is not None:
                pruner.after_step()
            with torch.no_grad():
                loss_sum += loss.detach() * len(y)
                correct += (logits.argmax(dim=1) == y).sum()
            if should_stop is not None and time.monotonic() - last_poll >= STOP_POLL_SECONDS:
                last_poll = time.monotonic()
                if should_stop():
                    stopped = True
                    break
        if stopped:
            break
        train_seconds = time.perf_counter() - epoch_start
        train_loss = float(loss_sum) / n_train
        if not math.isfinite(train_loss):
            raise ValueError(f"training diverged in epoch {epoch} (train loss {train_loss}): lower training.lr")
        if pruner is not None:
            with pruner.masked_weights():
                test_loss, test_acc = evaluate(model, test_x, test_y)
        else:
            test_loss, test_acc = evaluate(model, test_x, test_y)
        layers, masks, nonzero, total = _epoch_report(model, pruner)
        final_acc, best_acc = test_acc, max(best_acc, test_acc)
        epochs_done = epoch
        record = {
            "epoch": epoch, "train_loss": train_loss, "train_acc": int(correct) / n_train,
            "test_loss": test_loss, "test_acc": test_acc, "lr": float(lr_used),
            "sparsity": 1 - nonzero / total if total else 0.0, "nonzero": nonzero, "total": total,
            "epoch_seconds": time.perf_counter() - epoch_start, "samples_per_s": n_train / max(train_seconds, 1e-9),
            "target_sparsity": pruner.target_at(pruner.step) if pruner is not None else None,
            "layers": layers, "masks": masks,
        }
        if on_epoch is not None:
            on_epoch(record)
        if checkpoint_path is not None:
            # Written after on_epoch: a crash in between re-runs (and re-reports) the epoch, never loses it.
            _save_atomic({
                "format": CHECKPOINT_FORMAT, "epoch": epoch, "config": config, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "pruner": pruner.state_dict() if pruner is not None else None, "rng": _rng_state(shuffle),
                "best_test_acc": best_acc, "final_test_acc": final_acc,
                "wall_seconds": prior_wall + time.perf_counter() - wall_start,
            }, Path(checkpoint_path))

    if pruner is not None:
        pruner.finalize()
        masks_now = pruner.masks()
    else:
        masks_now = {name: torch.ones_like(module.weight, dtype=torch.bool)
                     for name, module in prunable_weights(model)}
    nonzero = sum(int(m.sum()) for m in masks_now.values()) if pruner is not None else sum(
        int(torch.count_nonzero(module.weight)) for _, module in prunable_weights(model))
    total = sum(m.numel() for m in masks_now.values())
    if checkpoint_path is not None:
        export_model(model, masks_now, Path(checkpoint_path).parent / "model.pt", config=config,
                     input_shape=data.input_shape, num_classes=data.num_classes)
    return {
        "final_test_acc": final_acc, "best_test_acc": best_acc,
        "final_sparsity": 1 - nonzero / total if total else 0.0, "nonzero": nonzero, "total": total,
        "flops": count_flops(model, data.input_shape),
        "wall_seconds": prior_wall + time.perf_counter() - wall_start,
        "epochs_done": epochs_done, "stopped": stopped,
    }


def train_main(config: dict, *, data_dir: Path, device: str, out: TextIO) -> int:
    """`prunescope train`: one JSON line per epoch (without masks), then `{"summary": {...}}`."""

    def print_epoch(record: dict) -> None:
        out.write(json.dumps({k: v for k, v in record.items() if k != "masks"}) + "\n")
        out.flush()

    try:
        summary = run_training(config, data_dir=data_dir, device=device, on_epoch=print_epoch)
    except (ValueError, FileNotFoundError) as exc:
        print(f"prunescope train: {exc}", file=sys.stderr)
        return 2
    out.write(json.dumps({"summary": summary}) + "\n")
    out.flush()
    return 0
