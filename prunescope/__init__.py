"""prunescope: a web dashboard and engine for dynamic neural-network pruning experiments."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from prunescope.plugins import register_dataset, register_model
    from prunescope.sdk import Run, RunCancelled, TrackingError, init, sync
    from worker.engine.pruning import Pruner

# Resolved on first use, so `import prunescope` stays light and torch-free (the API imports it); only
# `prunescope.Pruner` imports the engine, and with it torch.
_LAZY = {
    "init": "prunescope.sdk", "Run": "prunescope.sdk", "RunCancelled": "prunescope.sdk",
    "TrackingError": "prunescope.sdk", "sync": "prunescope.sdk",
    "register_model": "prunescope.plugins", "register_dataset": "prunescope.plugins",
    "Pruner": "worker.engine.pruning",
}
__all__ = ["Pruner", "Run", "RunCancelled", "TrackingError", "init", "register_dataset", "register_model", "sync"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'prunescope' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
