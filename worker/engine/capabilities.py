"""What this worker can run beyond the built-ins: plugin models (with their prunable layers) and datasets.

Computed once per process and sent in every heartbeat. Torch is imported only when a plugin model exists.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from prunescope import plugins
from prunescope.contract.worker_api import MAX_OFFERED, MAX_PLUGIN_ERRORS


@lru_cache(maxsize=1)
def worker_capabilities() -> dict[str, Any]:
    """`{"models": {name: prunable layer names}, "datasets": [...], "model_params"/"dataset_params": {name:
    signature}, "plugin_errors": [...]}` for the heartbeat."""
    registry = plugins.ensure_loaded()
    models: dict[str, list[str]] = {}
    model_params: dict[str, dict[str, Any]] = {}
    for name, plugin in sorted(registry.models.items()):
        signature = plugins.signature_of(plugin.build, positional=2)
        if any(param["required"] for param in signature["params"]):
            # It cannot be built without its params: offered with its signature, layers unknown until a run's
            # params build it (the worker checks pruning.layers then).
            models[name], model_params[name] = [], signature
            continue
        try:
            models[name] = plugin_layer_names(plugin)
            model_params[name] = signature
        except Exception as exc:  # a plugin that cannot build is reported, not fatal
            plugins.record_error(f"model {name!r} ({plugin.source}) failed to build: {type(exc).__name__}: {exc}")
    datasets = sorted(registry.datasets)
    dataset_params = {name: plugins.signature_of(registry.datasets[name].load, positional=1) for name in datasets}
    errors = list(plugins.plugin_errors())
    # Over the contract's bounds the heartbeat was refused every time: the worker vanished from the workers page
    # and the options while it still took runs. It offers the first ones and says what it left out.
    for kind, offered in (("models", models), ("datasets", datasets)):
        if len(offered) > MAX_OFFERED:
            errors.insert(0, f"{len(offered)} plugin {kind} loaded; a heartbeat offers the first {MAX_OFFERED}")
    if len(errors) > MAX_PLUGIN_ERRORS:
        errors = [*errors[:MAX_PLUGIN_ERRORS - 1], f"… and {len(errors) - MAX_PLUGIN_ERRORS + 1} more plugin errors"]
    offered_models = dict(list(models.items())[:MAX_OFFERED])
    return {"models": offered_models, "datasets": datasets[:MAX_OFFERED],
            "model_params": {name: model_params[name] for name in offered_models},
            "dataset_params": {name: dataset_params[name] for name in datasets[:MAX_OFFERED]},
            "plugin_errors": [error[:2000] for error in errors]}


def plugin_layer_names(plugin: plugins.ModelPlugin) -> list[str]:
    """Build the plugin model at its advertised input shape and list its Linear/Conv weights, in module order."""
    from torch import nn

    from worker.engine.pruning import prunable_weights

    model = plugin.build(plugin.input_shape, plugin.num_classes)
    if not isinstance(model, nn.Module):
        raise TypeError(f"build() returned {type(model).__name__}, not an nn.Module")
    return [name for name, _ in prunable_weights(model)]
