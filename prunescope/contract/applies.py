"""Fields that apply only under another field's value (the config's validators refuse them elsewhere).

A sweep that varies the field they hang on (granularity unstructured and n:m; models mlp and lenet300_100;
optimizers sgd and adam) takes them from its base for the combinations they apply to and leaves them out of
the others, so one grid can hold what every combination needs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prunescope.contract.sources import WIDTH_MODELS

Config = dict[str, Any]


def _value(config: Config, path: str, default: Any) -> Any:
    node: Any = config
    for key in path.split("."):
        if not isinstance(node, dict) or node.get(key) is None:
            return default
        node = node[key]
    return node


def _n_m(config: Config) -> bool:
    return _value(config, "pruning.granularity", "unstructured") == "n:m"


#: Dotted path → whether it applies to a config (defaults as in `config.py`: model lenet300_100, dataset digits,
#: optimizer sgd, granularity unstructured).
APPLIES_WHEN: dict[str, Callable[[Config], bool]] = {
    "model.hidden": lambda c: _value(c, "model.name", "lenet300_100") == "mlp",
    "model.width_multiplier": lambda c: _value(c, "model.name", "lenet300_100") in WIDTH_MODELS,
    "dataset.path": lambda c: _value(c, "dataset.name", "digits") == "image_folder",
    "training.nesterov": lambda c: _value(c, "training.optimizer", "sgd") == "sgd",
    "pruning.n_m": _n_m,
    "pruning.target_sparsity": lambda c: not _n_m(c),
    "pruning.threshold": lambda c: not _n_m(c),
}


def applying_somewhere(configs: list[Config]) -> set[str]:
    """The paths of `APPLIES_WHEN` that apply to at least one of `configs` (a sweep's combinations)."""
    return {path for path, applies in APPLIES_WHEN.items() if any(applies(config) for config in configs)}


def leave_out_inapplicable(config: Config, keep: set[str]) -> list[str]:
    """Remove, in place, every field of `APPLIES_WHEN` that `config` sets but that does not apply to it, except
    the paths in `keep` and below them (a sweep's grid: what the user varies is never dropped); returns the paths
    removed."""
    removed = []
    for path, applies in APPLIES_WHEN.items():
        *parents, leaf = path.split(".")
        parent = _value(config, ".".join(parents), None) if parents else config
        value = parent.get(leaf) if isinstance(parent, dict) else None
        kept = any(path == k or path.startswith(f"{k}.") for k in keep)  # set by a varied block (`pruning`) too
        if kept or value is None or value is False:  # unset, or nesterov off: nothing to leave out
            continue
        if not applies(config):
            del parent[leaf]
            removed.append(path)
    return removed
