"""A run's checkpoint: one dict of model, optimizer, scheduler, pruner, loss scaler, RNG states, epoch and config."""

from __future__ import annotations

import copy
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_FORMAT = "prunescope.checkpoint/2"  # 2: the pruner state split into criterion/recovery parts


def rng_state(shuffle: torch.Generator) -> dict[str, Any]:
    """Every random state a run draws from, as plain tensors/lists (loads with `weights_only=True`)."""
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


_SCALARS = (int, float, bool, str, bytes, type(None))  # immutable: shared, never copied


def _cpu_copy(value: Any) -> Any:
    if type(value) in _SCALARS:
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: _cpu_copy(item) for key, item in value.items()}
    if type(value) in (list, tuple):  # a named tuple would not take a generator: deepcopy copies it below
        if all(type(item) in _SCALARS for item in value):
            return type(value)(value)  # Python's RNG state: 625 ints, one call each cost 0.2 ms an epoch
        return type(value)(_cpu_copy(item) for item in value)
    return copy.deepcopy(value)


def restore_rng(state: dict[str, Any], shuffle: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    shuffle.set_state(state["shuffle"])
    np_state = state["numpy"]
    np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["gauss"]))
    py = state["random"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class Checkpoint:
    """Everything needed to continue a run after `epoch` exactly as if it had never stopped."""

    epoch: int
    config: dict[str, Any]
    model: dict[str, Any]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    pruner: dict[str, Any] | None
    rng: dict[str, Any]
    best_test_acc: float = 0.0
    final_test_acc: float = 0.0
    wall_seconds: float = 0.0
    guard: dict[str, Any] = field(default_factory=dict)
    scaler: dict[str, Any] | None = None  # fp16's GradScaler (its loss scale and growth tracker); else None

    def detached(self) -> Checkpoint:
        """A copy on the CPU that shares no tensor with the live run: the run trains on, the copy stays this
        epoch's (what `CheckpointSlot` holds)."""
        return Checkpoint(**{name: _cpu_copy(value) for name, value in self.__dict__.items()})

    def save(self, path: Path) -> None:
        """Write atomically: a reader (or a resumed worker) never sees a half-written checkpoint."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save({"format": CHECKPOINT_FORMAT, **self.__dict__}, tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, map_location: str | torch.device = "cpu") -> Checkpoint:
        state = torch.load(path, map_location=map_location, weights_only=True)
        if not isinstance(state, dict) or state.pop("format", None) != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint (written by another prunescope "
                             "version?): restart the run")
        return cls(**state)
