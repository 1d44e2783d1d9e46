"""How an attached Pruner follows a user's loop: the optimizer step hook (a closure, as LBFGS takes, is wrapped),
the forward hooks that keep splice/feedback's masked weights in for training forwards and put the dense ones back
after an evaluation forward, model moves after the Pruner was built, and compiled forwards that miss hooks."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from worker.engine.pruning.layer import DenseCopy, PrunedLayer

StepPreHook = Callable[[torch.optim.Optimizer, tuple[Any, ...], dict[str, Any]],
                       tuple[tuple[Any, ...], dict[str, Any]] | None]


def forget_compiled_forwards() -> None:
    """`torch.compile` does not guard on module hooks: a model compiled before the Pruner hooked it (or hooks
    removed after) keeps running the forward it compiled. Dropping compiled code makes it compile again, with
    the hooks as they are now (a recompile; nothing when nothing was compiled)."""
    dynamo = sys.modules.get("torch._dynamo")
    if dynamo is not None:
        dynamo.reset()


def warn_unstepped(layers: list[PrunedLayer], optimizer: torch.optim.Optimizer) -> None:
    """Layers this optimizer does not step keep learning outside the masks: their gradients are masked in its
    step hook only, and another optimizer's state (Adam moments) moves pruned weights again."""
    stepped = {id(param) for group in optimizer.param_groups for param in group["params"]}
    missing = [layer.name for layer in layers if layer.weight.requires_grad and id(layer.weight) not in stepped]
    if missing:
        warnings.warn(f"Pruner: the optimizer given does not step {', '.join(missing)}: another optimizer would move "
                      "its pruned weights again. Give the Pruner the optimizer that steps them (one Pruner per "
                      "optimizer, each on its own layers via pruning.layers), or freeze them", stacklevel=3)


def step_pre_hook(before_forward: Callable[[], None], before_step: Callable[[], None]) -> StepPreHook:
    """Before `optimizer.step()`. With a closure (LBFGS, or SGD given one) the gradient is taken inside the step, so
    the per-step work wraps the closure: masked weights in, the closure, then dense weights back and gradients
    masked, each time the optimizer calls it."""

    def hook(optimizer: torch.optim.Optimizer, args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        # `args` are step()'s own: the optimizer, then the closure when it is passed by position.
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
        if closure is None:
            before_step()
            return None

        def masked_closure() -> Any:
            before_forward()
            loss = closure()
            before_step()
            return loss

        if "closure" in kwargs:
            return args, {**kwargs, "closure": masked_closure}
        return (args[0], masked_closure, *args[2:]), kwargs

    return hook


def swap_modules(model: nn.Module, layers: list[PrunedLayer]) -> list[nn.Module]:
    """Where splice/feedback hook the forward: every pruned module, every module that holds one (an attention block
    reads its out_proj's weight without calling it) and every module sharing a pruned weight (a tied embedding),
    not only the model: a loop that calls submodules (`model.head(model.body(x))`) trains the masked network too."""
    pruned = {id(layer.weight) for layer in layers}
    holders = {id(layer.module) for layer in layers}
    names = {name for name, module in model.named_modules() if id(module) in holders}
    chosen = []
    for name, module in model.named_modules():
        holds = any(held == name or held.startswith(f"{name}.") or not name for held in names)
        shares = any(id(param) in pruned for param in module._parameters.values() if param is not None)
        if holds or shares:
            chosen.append(module)
    return chosen


class ForwardSwap:
    """The forward hooks' state: the first hooked module of a forward swaps the masked weights in; a forward without
    autograd (evaluation) that found the dense weights in place puts them back when it ends, so a state_dict()
    taken after it still holds them. A training forward's backward needs the masked ones until the step."""

    def __init__(self, copy: Callable[[], DenseCopy | None], swap_in: Callable[[], None]) -> None:
        self.copy, self.swap_in = copy, swap_in
        self.depth = 0  # nesting of hooked modules' forwards
        self.restore_after = False  # the running forward swaps the dense weights back when it ends
        self.pinned = False  # inside masked_weights(): the masked weights stay in

    def enter(self, *_: Any) -> None:
        if self.depth == 0:
            copy = self.copy()
            self.restore_after = (copy is not None and not copy.swapped and not self.pinned
                                  and not torch.is_grad_enabled())
        self.depth += 1
        self.swap_in()

    def leave(self, *_: Any) -> None:
        self.depth = max(0, self.depth - 1)
        if self.depth == 0 and self.restore_after:
            self.restore_after = False
            copy = self.copy()
            if copy is not None and copy.swapped:
                copy.swap_dense_back()


def follow_moves(layers: list[PrunedLayer]) -> bool:
    """`model.to(dtype/device)` after the Pruner was built: its masks (module buffers) moved with the model, the
    float masks did not. Re-derive them; True when something moved (a few comparisons a step otherwise)."""
    moved = False
    for layer in layers:
        buffer = layer.module._buffers.get("weight_mask")
        if buffer is not None and buffer is not layer.mask:
            layer.mask = buffer
            moved = True
        if moved or layer.keep.dtype != layer.weight.dtype or layer.keep.device != layer.weight.device:
            layer.mask = layer.mask.to(layer.weight.device)
            layer.module._buffers["weight_mask"] = layer.mask
            layer.refresh_keep()
            moved = True
    return moved
