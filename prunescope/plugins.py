"""Plugin models and datasets: `@register_model(name)` / `@register_dataset(name)`, found only where the operator says.

A worker imports plugins from two places and nowhere else: the entry point groups `prunescope.models` and
`prunescope.datasets` of installed packages, and the modules named in `PRUNESCOPE_PLUGINS` (comma-separated).
A run config only ever *looks up* a registered name; nothing in a request is ever imported. A plugin that
fails to import is logged and kept in `plugin_errors()` (the worker's heartbeat reports it), never raised.

    @prunescope.register_model("tiny_convnet")
    def build(input_shape, num_classes, width=8):          # -> torch.nn.Module
        ...

    @prunescope.register_dataset("my_scans")
    def load(data_dir, **params):                          # -> worker.engine.datasets.DataBundle or LoaderBundle
        ...

Torch-free: this module only keeps callables; the engine calls them.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import math
import re
import threading
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, TypeVar

from prunescope.contract.worker_api import MAX_PARAM_NAME, MAX_SIGNATURE

log = logging.getLogger("prunescope.plugins")

MODEL_GROUP = "prunescope.models"
DATASET_GROUP = "prunescope.datasets"
ENV_VAR = "PRUNESCOPE_PLUGINS"
NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$")  # the contract's model/dataset name pattern
Builder = TypeVar("Builder", bound=Callable[..., Any])



@dataclass(frozen=True)
class ModelPlugin:
    """`build(input_shape, num_classes, **params) -> nn.Module`; `input_shape`/`num_classes`: what a worker
    builds it with to advertise its prunable layer names."""

    name: str
    build: Callable[..., Any]
    source: str
    input_shape: tuple[int, int, int] = (3, 32, 32)
    num_classes: int = 10


@dataclass(frozen=True)
class DatasetPlugin:
    """`load(data_dir, **params)` returns the engine's `DataBundle` (tensors) or `LoaderBundle` (datasets)."""

    name: str
    load: Callable[..., Any]
    source: str


@dataclass
class Registry:
    """Everything registered in this process, and what failed to load."""

    models: dict[str, ModelPlugin] = field(default_factory=dict)
    datasets: dict[str, DatasetPlugin] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    loaded: bool = False
    lock: threading.RLock = field(default_factory=threading.RLock)


REGISTRY = Registry()


def _check_name(kind: str, name: str, builtins: Iterable[str]) -> None:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(f"{kind} plugin name {name!r} must match {NAME_PATTERN.pattern}")
    if name in builtins:
        raise ValueError(f"{kind} plugin name {name!r} is a built-in {kind}: choose another name")


def _source(func: Callable[..., Any]) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', '?')}"


def register_model(name: str, *, input_shape: tuple[int, int, int] = (3, 32, 32),
                   num_classes: int = 10) -> Callable[[Builder], Builder]:
    """Register `build(input_shape, num_classes, **params) -> nn.Module` as model `name`."""
    from prunescope.contract.config import ModelName, choices

    _check_name("model", name, choices(ModelName))
    if len(input_shape) != 3 or any(int(d) < 1 for d in input_shape) or num_classes < 1:
        raise ValueError(f"model plugin {name!r}: input_shape is (C, H, W) and num_classes ≥ 1")

    def decorate(build: Builder) -> Builder:
        plugin = ModelPlugin(name, build, _source(build), tuple(int(d) for d in input_shape),  # type: ignore[arg-type]
                             int(num_classes))
        with REGISTRY.lock:
            existing = REGISTRY.models.get(name)
            if existing is not None and existing.source != plugin.source:
                raise ValueError(f"model {name!r} is already registered by {existing.source}")
            REGISTRY.models[name] = plugin
        return build

    return decorate


def register_dataset(name: str) -> Callable[[Builder], Builder]:
    """Register `load(data_dir, **params)` (returning a DataBundle or LoaderBundle) as dataset `name`."""
    from prunescope.contract.config import DatasetName, choices

    _check_name("dataset", name, choices(DatasetName))

    def decorate(load: Builder) -> Builder:
        plugin = DatasetPlugin(name, load, _source(load))
        with REGISTRY.lock:
            existing = REGISTRY.datasets.get(name)
            if existing is not None and existing.source != plugin.source:
                raise ValueError(f"dataset {name!r} is already registered by {existing.source}")
            REGISTRY.datasets[name] = plugin
        return load

    return decorate


def modules_from(value: str | None) -> list[str]:
    """The module names of a `PRUNESCOPE_PLUGINS` value: comma-separated, blanks ignored."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def record_error(message: str) -> None:
    log.error("plugin failed to load: %s", message)
    with REGISTRY.lock:
        if message not in REGISTRY.errors:
            REGISTRY.errors.append(message)


def import_module(module: str) -> bool:
    """Import one operator-named module (its decorators register); a failure is recorded, not raised, and what
    the module registered before it failed is withdrawn (listed as failed, its first models were still offered)."""
    with REGISTRY.lock:
        models, datasets = set(REGISTRY.models), set(REGISTRY.datasets)
    try:
        importlib.import_module(module)
    except (Exception, SystemExit) as exc:  # a broken plugin must not take the worker down with it
        with REGISTRY.lock:
            for name in set(REGISTRY.models) - models:
                del REGISTRY.models[name]
            for name in set(REGISTRY.datasets) - datasets:
                del REGISTRY.datasets[name]
        record_error(f"{module}: {type(exc).__name__}: {exc}")
        return False
    return True


def load_entry_points() -> None:
    """Load the `prunescope.models` / `prunescope.datasets` entry points of installed packages.

    An entry point names a module (its decorators register) or a function, registered under the
    entry point's name when the function did not register itself.
    """
    for group, register in ((MODEL_GROUP, register_model), (DATASET_GROUP, register_dataset)):
        for entry in metadata.entry_points(group=group):
            try:
                target = entry.load()
                known = REGISTRY.models if group == MODEL_GROUP else REGISTRY.datasets
                if callable(target) and not isinstance(target, types.ModuleType) and entry.name not in known:
                    register(entry.name)(target)
            except (Exception, SystemExit) as exc:
                record_error(f"entry point {group}:{entry.name} ({entry.value}): {type(exc).__name__}: {exc}")


def ensure_loaded(modules: str | None = None) -> Registry:
    """Load entry points and the operator's modules once per process (default: `PRUNESCOPE_PLUGINS`)."""
    with REGISTRY.lock:
        if REGISTRY.loaded:
            return REGISTRY
        REGISTRY.loaded = True
        if modules is None:
            from prunescope.config import Settings

            modules = Settings().plugins
        load_entry_points()
        for module in modules_from(modules):
            import_module(module)
    return REGISTRY


def model_plugin(name: str) -> ModelPlugin | None:
    """The registered model `name` (after loading the operator's plugins), or None."""
    return ensure_loaded().models.get(name)


def dataset_plugin(name: str) -> DatasetPlugin | None:
    """The registered dataset `name` (after loading the operator's plugins), or None."""
    return ensure_loaded().datasets.get(name)


def plugin_errors() -> list[str]:
    """Plugins that failed to load, one line each (the heartbeat's `plugin_errors`)."""
    with REGISTRY.lock:
        return list(REGISTRY.errors)


def reset() -> None:
    """Forget every plugin and error (tests; a worker never unloads)."""
    with REGISTRY.lock:
        REGISTRY.models.clear()
        REGISTRY.datasets.clear()
        REGISTRY.errors.clear()
        REGISTRY.loaded = False


def signature_of(func: Callable[..., Any], positional: int) -> dict[str, Any]:
    """The keyword parameters a plugin's `build()`/`load()` takes after its first `positional` arguments, as the
    heartbeat's `PluginSignature`: `{"params": [{"name", "required", "default"}], "any": takes **kwargs}`. A default
    that is not a JSON scalar is shown as None; a callable whose signature cannot be read takes anything."""
    try:
        parameters = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return {"params": [], "any": True}
    params: list[dict[str, Any]] = []
    takes_any = False
    skipped = 0
    for parameter in parameters:
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            takes_any = True
        elif parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            skipped = positional  # *args swallows the positional arguments
        elif skipped < positional and parameter.kind is not inspect.Parameter.KEYWORD_ONLY:
            skipped += 1
        elif parameter.kind is not inspect.Parameter.POSITIONAL_ONLY:
            default = parameter.default
            required = default is inspect.Parameter.empty
            scalar = default is None or type(default) in (str, int, bool) or (
                type(default) is float and math.isfinite(default))
            params.append({"name": parameter.name, "required": required,
                           "default": default if not required and scalar else None})
    named = [param for param in params if len(param["name"]) <= MAX_PARAM_NAME]  # longer ones cannot be passed
    if len(named) > MAX_SIGNATURE:  # beyond what a heartbeat carries: offered as taking anything
        return {"params": named[:MAX_SIGNATURE], "any": True}
    return {"params": named, "any": takes_any}
