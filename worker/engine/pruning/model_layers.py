"""Which layers of a model a Pruner takes: names matched by `pruning.layers`, a weight shared by two modules taken
once, ownership between Pruners on one model, and, under neuron granularity, which layer is the output layer."""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from prunescope.contract import PruningConfig
from worker.engine.pruning.layer import Prunable, PrunedLayer, PrunerHook, dense_weights, prunable_weights

if TYPE_CHECKING:
    from worker.engine.pruning.pruner import Pruner

# Each pruned module's Pruner (weakly, both ways: nothing on the module itself, so `torch.save(model)` and
# `copy.deepcopy(model)` work as before, and a deep copy has no owner).
_OWNERS: weakref.WeakKeyDictionary[nn.Module, weakref.ref[Pruner]] = weakref.WeakKeyDictionary()


def take_layers(model: nn.Module, config: PruningConfig, owner: Pruner) -> list[PrunedLayer]:
    """The layers `config.layers` selects, each with a fresh mask, now owned by `owner`; refuses layers another
    attached Pruner (or torch.nn.utils.prune) holds."""
    selected = prunable_weights(model, config.layers.include, config.layers.exclude)
    if not selected:
        names = [n for n, _ in prunable_weights(model)]
        if not names:
            raise ValueError("the model has no prunable weight: prunescope prunes the weights of nn.Linear and "
                             "convolution (nn.Conv1d/2d/3d, nn.ConvTranspose*) modules, and this model has none")
        raise ValueError(f"pruning.layers matched no prunable weight; the model's weights are {names}")
    # A weight Parameter shared by two modules (`b.weight = a.weight`) is one tensor: one mask, counted once.
    first_of: dict[int, tuple[str, Prunable]] = {}
    for name, module in selected:
        first_of.setdefault(id(module.weight), (name, module))
    selected = list(first_of.values())
    left_dense = dense_weights(model, {id(module.weight) for _, module in selected}, config.layers.include,
                               config.layers.exclude)
    if left_dense:
        shown = ", ".join(left_dense[:8]) + (f" … ({len(left_dense)} in all)" if len(left_dense) > 8 else "")
        warnings.warn(f"prunescope prunes the weights of nn.Linear and convolutions; these weights train dense and "
                      f"are not counted in the sparsity: {shown}", stacklevel=3)
    output_name = prunable_weights(model)[-1][0]
    earlier: list[Pruner] = []
    for name, module in selected:  # every layer is checked before any is taken
        if isinstance(module.weight, nn.parameter.UninitializedParameter):
            raise ValueError(f"{name} belongs to a lazy module that has not run yet (its shape is unknown): run one "
                             "forward pass before building the Pruner")
        if (config.granularity == "neuron" and name != output_name
                and isinstance(module, nn.modules.conv._ConvTransposeNd)):
            raise ValueError(f"neuron granularity cannot prune {name}: a transposed convolution's weight rows are "
                             "its input channels, not its filters; exclude it (pruning.layers.exclude) or prune "
                             "it unstructured")
        if "weight_mask" not in module._buffers:
            continue
        if "weight_orig" in module._parameters:
            raise ValueError(f"{name} is pruned by torch.nn.utils.prune (weight_orig, weight_mask): "
                             "prune.remove() it first")
        owner_ref = _OWNERS.get(module)
        previous = owner_ref() if owner_ref is not None else None
        if previous is not None and previous.attached:
            raise ValueError(f"{name} is pruned by another prunescope.Pruner that is still attached (a cell run "
                             "twice?): call that Pruner's detach() first, or build a new model")
        if previous is not None:
            earlier.append(previous)
        # No live owner: a copy of a pruned model (deepcopy copies the mask buffer): its mask is replaced.
    for previous in earlier:
        previous._release()
    layers = []
    for name, module in selected:
        weight: nn.Parameter = module.weight  # type: ignore[assignment]
        mask = torch.ones_like(weight, dtype=torch.bool)
        module._buffers.pop("weight_mask", None)
        module.register_buffer("weight_mask", mask, persistent=False)
        _OWNERS[module] = weakref.ref(owner)
        layers.append(PrunedLayer(name=name, module=module, weight=weight,
                                  bias=module.bias if isinstance(module.bias, nn.Parameter) else None,
                                  mask=mask, row_pruning=config.granularity == "neuron" and name != output_name))
    return layers


def refuse_output_only(model: nn.Module, layers: list[PrunedLayer]) -> None:
    """Neuron granularity with only the output layer selected (its rows are the classes) would prune nothing."""
    if any(layer.row_pruning for layer in layers):
        return
    output = next((layer.name for layer in layers if not layer.row_pruning), "?")
    if len(prunable_weights(model)) == 1:
        raise ValueError(f"granularity 'neuron' prunes the neurons of hidden layers, and this model has none (its "
                         f"only prunable layer is the output layer {output!r}): use granularity 'unstructured', or "
                         "give it hidden layers")
    raise ValueError(f"granularity 'neuron' prunes the neurons of hidden layers, and pruning.layers selects only the "
                     f"output layer {output!r}, whose rows are the classes: nothing would be pruned")


class OutputLayerWatch:
    """Neuron granularity keeps the output layer's rows (its classes). The last Linear/Conv registered is taken for
    it until the first forward shows which one runs last: a model may register its head before its body."""

    def __init__(self, model: nn.Module, *, active: bool) -> None:
        self.last: int | None = None  # id of the weight of the prunable module that ran last
        self.hooks = [module.register_forward_hook(PrunerHook(self._ran(id(module.weight))))
                      for _, module in prunable_weights(model)] if active else []

    @property
    def pending(self) -> bool:
        return bool(self.hooks)

    def _ran(self, weight_id: int) -> Callable[..., None]:
        def ran(*_: Any) -> None:
            self.last = weight_id
        return ran

    def settle_as(self, layers: list[PrunedLayer], output: set[str]) -> None:
        """A checkpoint says which layers keep their rows (a resumed Pruner): stop watching and set them."""
        for hook in self.hooks:
            hook.remove()
        self.hooks = []
        for layer in layers:
            layer.row_pruning = layer.name not in output
            layer.refresh_keep()

    def settle(self, layers: list[PrunedLayer]) -> bool:
        """After the first backward: stop watching; True when the output layer changed (each layer's row_pruning
        and keeps are set again; the caller rebuilds what depends on them)."""
        for hook in self.hooks:
            hook.remove()
        self.hooks = []
        last = self.last
        if last is None or all(layer.row_pruning == (id(layer.weight) != last) for layer in layers):
            return False
        if not all(bool(layer.mask.all()) for layer in layers):
            taken = next((layer.name for layer in layers if not layer.row_pruning), "no pruned layer")
            actual = next((layer.name for layer in layers if id(layer.weight) == last), "a layer not pruned")
            warnings.warn(f"neuron granularity: {taken} was taken for the output layer (it is registered last) and "
                          f"rows were pruned before the first forward showed that {actual} runs last; start the "
                          f"schedule after step 0 (pruning.schedule.start_epoch ≥ 1), or exclude the output layer "
                          f"(pruning.layers.exclude)", stacklevel=5)
            return False
        for layer in layers:
            layer.row_pruning = id(layer.weight) != last
            layer.refresh_keep()
        return True


def check_state_fits(state: dict[str, Any], layers: list[PrunedLayer]) -> None:
    """Refuse a Pruner state saved for other layers, naming the difference, before a Pruner loads any of it (torch's
    size error or a bare KeyError came after its step and some masks had been loaded)."""
    masks = state.get("masks")
    if not isinstance(masks, dict):
        raise ValueError("not a Pruner state_dict: it has no 'masks'")
    mine = {layer.name: tuple(layer.mask.shape) for layer in layers}
    saved = {name: tuple(getattr(mask, "shape", ())) for name, mask in masks.items()}
    if set(saved) != set(mine):
        raise ValueError(f"this Pruner state was saved for layers {sorted(saved)}, this Pruner prunes {sorted(mine)}: "
                         "load it into a Pruner of the same model and pruning.layers")
    wrong = [f"{name} {list(saved[name])} (here {list(shape)})" for name, shape in mine.items() if saved[name] != shape]
    if wrong:
        raise ValueError(f"this Pruner state's masks do not fit this model's weights: {', '.join(wrong)}")
