"""What this worker can run beyond the built-ins: plugin models (with their prunable layers) and datasets.

Computed once per process and sent in every heartbeat. Torch is imported only when a plugin model exists.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from prunescope import plugins


@lru_cache(maxsize=1)
def worker_capabilities() -> dict[str, Any]:
    """`{"models": {name: prunable layer names}, "datasets": [...], "plugin_errors": [...]}` for the heartbeat."""
    registry = plugins.ensure_loaded()
    models: dict[str, list[str]] = {}
    for name, plugin in sorted(registry.models.items()):
        try:
            models[name] = plugin_layer_names(plugin)
        except Exception as exc:  # a plugin that cannot build is reported, not fatal
            plugins.record_error(f"model {name!r} ({plugin.source}) failed to build: {type(exc).__name__}: {exc}")
    return {"models": models, "datasets": sorted(registry.datasets), "plugin_errors": plugins.plugin_errors()}


def plugin_layer_names(plugin: plugins.ModelPlugin) -> list[str]:
    """Build the plugin model at its advertised input shape and list its Linear/Conv weights, in module order."""
    from torch import nn

    from worker.engine.pruning import prunable_weights

    model = plugin.build(plugin.input_shape, plugin.num_classes)
    if not isinstance(model, nn.Module):
        raise TypeError(f"build() returned {type(model).__name__}, not an nn.Module")
    return [name for name, _ in prunable_weights(model)]
