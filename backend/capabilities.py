"""What online workers offer beyond the built-ins (plugin models with their layers, datasets), and the checks a run
must pass before it is queued: a known model and dataset, and layer patterns that select a prunable layer.

Offers arrive with every heartbeat and are kept in this process's memory (a restarted API knows them again
after one heartbeat interval); only workers the database counts as online are consulted.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from fastapi.exceptions import RequestValidationError
from sqlalchemy.orm import Session

from backend.workers.repository import online_workers
from prunescope.contract.config import DatasetName, ModelName, RunConfig, choices
from prunescope.contract.sources import PLUGIN_ARGUMENTS
from prunescope.contract.worker_api import Heartbeat, PluginSignature
from prunescope.layernames import builtin_layer_names, select_layers

MAX_LISTED = 40  # layer names quoted in an error message


@dataclass
class Offer:
    models: dict[str, list[str]] = field(default_factory=dict)
    datasets: list[str] = field(default_factory=list)
    plugin_errors: list[str] = field(default_factory=list)
    model_params: dict[str, PluginSignature] = field(default_factory=dict)  # absent: a worker that does not say
    dataset_params: dict[str, PluginSignature] = field(default_factory=dict)


_OFFERS: dict[str, Offer] = {}
_LOCK = threading.Lock()


def remember(beat: Heartbeat) -> None:
    """Keep what a worker's heartbeat offers (called by the heartbeat endpoint)."""
    with _LOCK:
        _OFFERS[beat.worker] = Offer(dict(beat.models), list(beat.datasets), list(beat.plugin_errors),
                                     dict(beat.model_params), dict(beat.dataset_params))


def forget_all() -> None:
    with _LOCK:
        _OFFERS.clear()


def offered(workers: Iterable[str]) -> Offer:
    """The union of what `workers` offer (first worker wins a model name's layer list)."""
    merged = Offer()
    with _LOCK:
        for name in workers:
            offer = _OFFERS.get(name)
            if offer is None:
                continue
            for model, layers in offer.models.items():
                if model not in merged.models:
                    merged.models[model] = layers
                    if model in offer.model_params:
                        merged.model_params[model] = offer.model_params[model]
            for dataset, signature in offer.dataset_params.items():
                merged.dataset_params.setdefault(dataset, signature)
            merged.datasets += [d for d in offer.datasets if d not in merged.datasets]
            merged.plugin_errors += [f"{name}: {e}" for e in offer.plugin_errors]
    return merged


def online_offer(session: Session, heartbeat_timeout: float) -> Offer:
    return offered(w.name for w in online_workers(session, heartbeat_timeout))


def catalog(offer: Offer) -> dict[str, object]:
    """The `/api/options` entries: built-ins first, then what online workers offer."""
    models = choices(ModelName) + sorted(m for m in offer.models if m not in choices(ModelName))
    datasets = choices(DatasetName) + sorted(d for d in offer.datasets if d not in choices(DatasetName))
    return {"models": models, "datasets": datasets, "plugin_models": dict(sorted(offer.models.items())),
            "plugin_datasets": sorted(offer.datasets), "plugin_errors": offer.plugin_errors,
            "plugin_model_params": {name: signature.model_dump() for name, signature in
                                    sorted(offer.model_params.items())},
            "plugin_dataset_params": {name: signature.model_dump() for name, signature in
                                      sorted(offer.dataset_params.items())}}


def param_problems(kind: str, name: str, params: Mapping[str, object] | None,
                   signature: PluginSignature | None) -> list[dict[str, object]]:
    """422 details for `model.params`/`dataset.params` the plugin's build()/load() would refuse: a required
    parameter missing, or a name it does not take (unless it takes **kwargs). Without a signature (a worker
    older than them) the worker finds out when it calls the plugin."""
    given = params or {}
    call = "build()" if kind == "model" else "load()"
    errors: list[dict[str, object]] = []
    passed = [key for key in given if key in PLUGIN_ARGUMENTS[kind]]
    if passed:  # whatever the signature: these arrive twice (a 201, then the run failed on the worker)
        errors.append({"loc": ("body", kind, "params", passed[0]), "type": "reserved_param", "input": given,
                       "msg": f"{kind}.params cannot set {', '.join(passed)}: the worker passes {call} "
                              f"{' and '.join(PLUGIN_ARGUMENTS[kind])} itself"})
    if signature is None:
        return errors
    names = [param.name for param in signature.params]
    missing = [param.name for param in signature.params if param.required and param.name not in given]
    if missing:
        errors.append({"loc": ("body", kind, "params"), "type": "missing_param", "input": params,
                       "msg": f"{kind} {name!r} needs {kind}.params {', '.join(missing)} (its {call} has no "
                              f"default for them)"})
    unknown = [key for key in given if key not in names and key not in passed]
    if unknown and not signature.any:
        takes = f"it takes {', '.join(names)}" if names else "it takes none"
        errors.append({"loc": ("body", kind, "params", unknown[0]), "type": "unknown_param", "input": given,
                       "msg": f"{kind} {name!r} takes no parameter {', '.join(map(repr, unknown))}: {takes}"})
    return errors


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    return shown + (f" … ({len(names)} in all)" if len(names) > MAX_LISTED else "")


def run_problems(config: RunConfig, offer: Offer) -> list[dict[str, object]]:
    """422 details for a config no online worker can run, located like pydantic's (`loc` from `body`)."""
    errors: list[dict[str, object]] = []
    model, dataset = config.model.name, config.dataset.name
    layers = builtin_layer_names(config.model.model_dump()) if model in choices(ModelName) else offer.models.get(model)
    if layers is None:
        known = catalog(offer)["models"]
        errors.append({"loc": ("body", "model", "name"), "type": "unknown_model", "input": model,
                       "msg": f"no built-in model or online worker offers model {model!r}; "
                              f"known: {_listed(known)}"})  # type: ignore[arg-type]
    if dataset not in choices(DatasetName) and dataset not in offer.datasets:
        known = catalog(offer)["datasets"]
        errors.append({"loc": ("body", "dataset", "name"), "type": "unknown_dataset", "input": dataset,
                       "msg": f"no built-in dataset or online worker offers dataset {dataset!r}; "
                              f"known: {_listed(known)}"})  # type: ignore[arg-type]
    builtin = model in choices(ModelName)
    signature = None if builtin else offer.model_params.get(model)
    if layers is not None:
        errors += param_problems("model", model, config.model.params, signature)
    if dataset not in choices(DatasetName):
        errors += param_problems("dataset", dataset, config.dataset.params, offer.dataset_params.get(dataset))
    pruning = config.pruning
    # A plugin model's offered layers are those of build() with no params: with params its layers may differ, and
    # the worker checks them when it builds the model. One that needs params offers none.
    needs_params = signature is not None and any(param.required for param in signature.params)
    if pruning is not None and layers is not None and (builtin or not (config.model.params or needs_params)):
        chosen = pruning.layers
        if not select_layers(layers, chosen.include, chosen.exclude):
            msg = (f"pruning.layers (include {chosen.include}, exclude {chosen.exclude}) selects no prunable layer "
                   f"of model {model!r}; its layers are {_listed(layers)}")
            errors.append({"loc": ("body", "pruning", "layers", "include"), "type": "no_layer_selected",
                           "input": chosen.include, "msg": msg})
            if chosen.exclude:
                errors.append({"loc": ("body", "pruning", "layers", "exclude"), "type": "no_layer_selected",
                               "input": chosen.exclude, "msg": msg})
        elif (builtin and pruning.granularity == "neuron"
              and select_layers(layers, chosen.include, chosen.exclude) == layers[-1:]):
            # Built-in models run their layers in the order they register them; a plugin may not (its head first),
            # so which layer is its output layer is known only once it runs: the engine refuses that case.
            errors.append({"loc": ("body", "pruning", "layers", "include"), "type": "no_layer_selected",
                           "input": chosen.include,
                           "msg": (f"granularity 'neuron' prunes the neurons of hidden layers, and model {model!r} "
                                   f"has none (its only prunable layer is the output layer {layers[-1]!r}): use "
                                   "granularity 'unstructured', or give it hidden layers" if len(layers) == 1 else
                                   f"granularity 'neuron' prunes the neurons of hidden layers, and pruning.layers "
                                   f"selects only the output layer {layers[-1]!r}, whose rows are the classes: "
                                   f"nothing would be pruned")})
    return errors


def check_runnable(config: RunConfig, session: Session, heartbeat_timeout: float) -> None:
    """Raise a 422 (`RequestValidationError`) naming each field no online worker could run."""
    offer = Offer() if _builtin_only(config) else online_offer(session, heartbeat_timeout)
    errors = run_problems(config, offer)
    if errors:
        raise RequestValidationError(errors)


def _builtin_only(config: RunConfig) -> bool:
    # Built-in names need no look-up of workers: the common case costs no query.
    return config.model.name in choices(ModelName) and config.dataset.name in choices(DatasetName)
