"""The pruner: keeps a model's masks in force while it trains, step by step; scoring, selection and
recovery are small classes it composes (see criteria.py, selection.py, recovery.py).

Two ways of keeping masks, chosen by the recovery:
- `none`, `random` (SET), `gradient` (RigL): the weights themselves are zero where masked, and so is
  the optimizer state (zeroed whenever a mask changes). Each step multiplies the gradients by the
  masks (one fused op for all layers) before the optimizer step: with zero weight, gradient and state,
  SGD (momentum, Nesterov, weight decay), Adam and AdamW leave a pruned weight exactly 0, so nothing
  can revive it. No forward hooks.
- `splice` (DNS), `feedback` (DPF): the parameters hold the *dense* weights, which keep learning.
  Around forward/backward the pruner swaps the masked weights in (`param.data` swap, one multiply
  per layer and step) so the gradient is taken at the pruned model and applied to the dense one.
  A swap is cheaper than `torch.nn.utils.prune`'s per-forward hook and leaves model code untouched.

Two ways of driving it, with identical results: `attach()` hooks it into the optimizer (step pre/post
hooks) and, for splice/feedback, the model (a forward pre-hook), so a plain `loss.backward();
optimizer.step()` loop needs no other call (the SDK); or the loop calls `before_forward()`,
`after_backward()` and `after_step()` itself (the managed loop, `attach=False`).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from prunescope.contract import LayerStats, PruningConfig, parse_pruning
from worker.engine.pruning.criteria import CRITERIA, Criterion
from worker.engine.pruning.layer import PrunedLayer, prunable_weights
from worker.engine.pruning.recovery import RECOVERIES, Recovery
from worker.engine.pruning.schedule import SparsitySchedule
from worker.engine.pruning.selection import SELECTIONS, Selection, selection_for

# Each pruned module's Pruner (weakly, both ways: nothing on the module itself, so `torch.save(model)` and
# `copy.deepcopy(model)` work as before, and a deep copy has no owner).
_OWNERS: weakref.WeakKeyDictionary[nn.Module, weakref.ref[Pruner]] = weakref.WeakKeyDictionary()


class Pruner:
    """Dynamic pruning of a model's Linear/Conv weights.

    `Pruner(model, optimizer, pruning, epochs=, steps_per_epoch=)` takes a run config's `pruning` block
    (a `PruningConfig`, or a dict validated into one: a bad block raises pydantic's field-located
    ValidationError) and, unless `attach=False`, hooks itself in at once.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, pruning: PruningConfig | dict[str, Any],
                 *, epochs: int, steps_per_epoch: int, seed: int = 0, attach: bool = True) -> None:
        config = parse_pruning(pruning)
        self.config = config
        self.model = model
        self.optimizer = optimizer
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self.step = 0
        self.generator = torch.Generator().manual_seed(int(seed) + 7919)
        self.layers = self._select_layers(model, config)
        criterion_cls = CRITERIA[config.criterion]
        self.schedule = SparsitySchedule.from_config(config.schedule, final=config.target_sparsity or 0.0,
                                                     epochs=epochs, steps_per_epoch=steps_per_epoch,
                                                     needs_steps=criterion_cls.needs_steps)
        self.criterion: Criterion = criterion_cls(self.layers, config, self.generator)
        self.recovery: Recovery = RECOVERIES[config.recovery.kind](
            config, self.layers, self.schedule, epochs=epochs, steps_per_epoch=steps_per_epoch,
            generator=self.generator)
        self.selection: Selection = SELECTIONS[selection_for(config)](config, self.layers)
        self._dense = self.recovery.dense_weights
        self._spares: list[tuple[torch.Tensor, torch.Tensor | None]] = [
            (torch.empty_like(layer.weight.data),
             torch.empty_like(layer.bias.data) if layer.bias is not None and layer.row_pruning else None)
            for layer in self.layers] if self._dense else []
        self._swapped = False  # splice/feedback: the parameters hold the masked weights right now
        # A fixed target (constant/one-shot) or N:M pattern that never gives units back is final once set.
        self._static = self.recovery.freezes_masks and (
            config.n_m is not None or (config.target_sparsity is not None
                                       and self.schedule.kind in ("constant", "one_shot")))
        self._gradient_work = self.criterion.observes_gradients or config.regularization.l1 > 0
        self._criterion_hooks = self.criterion.hooks(model)
        self._hooks: list[Any] = []
        self._released = False
        self._started = False
        self._refresh_masked_pairs()
        if attach:
            self.attach()

    def _select_layers(self, model: nn.Module, config: PruningConfig) -> list[PrunedLayer]:
        selected = prunable_weights(model, config.layers.include, config.layers.exclude)
        if not selected:
            names = [n for n, _ in prunable_weights(model)]
            raise ValueError(f"pruning.layers matched no prunable weight; the model's weights are {names}")
        output_name = prunable_weights(model)[-1][0]
        earlier: list[Pruner] = []
        for name, module in selected:  # every layer is checked before any is taken
            if "weight_mask" not in module._buffers:
                continue
            if "weight_orig" in module._parameters:
                raise ValueError(f"{name} is pruned by torch.nn.utils.prune (weight_orig, weight_mask): "
                                 "prune.remove() it first")
            owner_ref = _OWNERS.get(module)
            owner = owner_ref() if owner_ref is not None else None
            if owner is not None and owner.attached:
                raise ValueError(f"{name} is pruned by another prunescope.Pruner that is still attached (a cell run "
                                 "twice?): call that Pruner's detach() first, or build a new model")
            if owner is not None:
                earlier.append(owner)
            # No live owner: a copy of a pruned model (deepcopy copies the mask buffer): its mask is replaced.
        for owner in earlier:
            owner._release()
        layers = []
        for name, module in selected:
            weight: nn.Parameter = module.weight  # type: ignore[assignment]
            mask = torch.ones_like(weight, dtype=torch.bool)
            module._buffers.pop("weight_mask", None)
            module.register_buffer("weight_mask", mask, persistent=False)
            _OWNERS[module] = weakref.ref(self)
            layers.append(PrunedLayer(name=name, module=module, weight=weight,
                                      bias=module.bias if isinstance(module.bias, nn.Parameter) else None,
                                      mask=mask, row_pruning=config.granularity == "neuron" and name != output_name))
        return layers

    # ----- hooking into a user's loop ----------------------------------------------------------------
    def attach(self) -> Pruner:
        """Hook into the optimizer (and model): `optimizer.step()` then keeps the masks with no other call."""
        self._refuse_if_released()
        if self._hooks:
            return self
        self._hooks = [self.optimizer.register_step_pre_hook(lambda *_: self._before_step()),
                       self.optimizer.register_step_post_hook(lambda *_: self._after_step())]
        if self._dense:
            self._hooks.append(self.model.register_forward_pre_hook(lambda *_: self._before_forward()))
        self.start()
        return self

    def detach(self) -> None:
        """Remove the optimizer/model hooks (the explicit protocol works again)."""
        for handle in self._hooks:
            handle.remove()
        self._hooks = []

    @property
    def attached(self) -> bool:
        return bool(self._hooks)

    # ----- the explicit per-step protocol ------------------------------------------------------------
    def start(self) -> None:
        """Before the first step: masks due at step 0 (runs sparse from their start)."""
        if not self._started and self.step == 0 and self._schedule_due(0):
            self._update_masks(0)
        self._started = True

    def before_forward(self) -> None:
        self._refuse_if_attached()
        self._before_forward()

    def after_backward(self) -> None:
        """Between backward and optimizer.step: dense weights back, scores, L1, gradient masking."""
        self._refuse_if_attached()
        self._before_step()

    def after_step(self) -> None:
        """After optimizer.step: update masks when the schedule (or the recovery) says so."""
        self._refuse_if_attached()
        self._after_step()

    def _release(self) -> None:
        """A newer Pruner takes this (detached) one's layers: it never attaches again, and its criterion's
        forward hooks (activation statistics) stop counting on modules it no longer prunes."""
        self._released = True
        for hook in self._criterion_hooks:
            hook.remove()
        self._criterion_hooks = []

    def _refuse_if_released(self) -> None:
        if self._released:
            raise RuntimeError("a newer prunescope.Pruner took over this Pruner's layers; use that one")

    def _refuse_if_attached(self) -> None:
        self._refuse_if_released()
        if self._hooks:
            raise RuntimeError("this Pruner is attached: optimizer.step() already runs its per-step work; "
                               "call detach() to drive it by hand")

    def _before_forward(self) -> None:
        if self._dense and not self._swapped:
            self._swap_masked_in()

    def _before_step(self) -> None:
        if self._dense and self._swapped:
            self._swap_dense_back()
        grow_due = self.recovery.wants_gradient(self.step + 1)
        if self._gradient_work or grow_due:
            l1 = self.config.regularization.l1
            for index, layer in enumerate(self.layers):
                grad = layer.weight.grad
                if grad is None:
                    continue
                if self.criterion.observes_gradients:
                    self.criterion.observe_gradient(index, layer.weight.data, grad)
                if grow_due:
                    self.recovery.observe_gradient(index, grad)
                if l1 > 0:
                    grad.add_(torch.sign(layer.weight.data), alpha=l1)
        if not self._dense:
            # Zero gradient ⇒ SGD momentum and Adam moments stay exactly zero at pruned positions.
            grads = [p.grad for p in self._masked_params]
            if all(g is not None for g in grads):
                torch._foreach_mul_(grads, self._masked_keeps)  # type: ignore[arg-type]  # one call for all
            else:
                for grad, keep in zip(grads, self._masked_keeps, strict=True):
                    if grad is not None:
                        grad.mul_(keep)

    def _after_step(self) -> None:
        self.step += 1
        if self._schedule_due(self.step):
            self._update_masks(self.step)
        self.recovery.after_step(self.step, self)

    @contextmanager
    def masked_weights(self) -> Iterator[None]:
        """Evaluate (or export) the pruned model: for splice/feedback swap the masked weights in."""
        if not self._dense or self._swapped:
            yield
            return
        self._swap_masked_in()
        try:
            yield
        finally:
            self._swap_dense_back()

    def finalize(self) -> None:
        """Make the parameters the pruned model for good (drops splice/feedback's dense weights), unhook."""
        if self._swapped:
            self._swap_dense_back()
        with torch.no_grad():
            for layer in self.layers:
                layer.weight.mul_(layer.keep)
                if layer.bias_keep is not None and layer.bias is not None:
                    layer.bias.mul_(layer.bias_keep)
        for hook in self._criterion_hooks:
            hook.remove()
        self._criterion_hooks = []
        self.detach()

    # ----- reporting ---------------------------------------------------------------------------------
    @property
    def pruning_started(self) -> bool:
        return self.step >= self.schedule.start_step

    def target_at(self, step: int) -> float | None:
        """The schedule's target sparsity after `step` steps (None when a threshold decides)."""
        if self.config.n_m is not None:
            n, m = self.config.n_m
            return 1 - n / m if step >= self.schedule.start_step else 0.0
        if self.config.target_sparsity is None:
            return None
        return self.schedule.sparsity_at(step)

    def epoch_stats(self) -> tuple[list[LayerStats], dict[str, np.ndarray]]:
        """Per-layer stats since the previous call, and mask snapshots; resets the churn counters."""
        layers, masks = [], {}
        for layer in self.layers:
            total = layer.mask.numel()
            layers.append(LayerStats(name=layer.name, shape=list(layer.mask.shape),
                                     sparsity=1 - int(layer.mask.sum()) / total, pruned=layer.pruned,
                                     regrown=layer.regrown, threshold=layer.threshold))
            masks[layer.name] = layer.mask.cpu().numpy().copy()
            layer.pruned = layer.regrown = 0
        return layers, masks

    def masks(self) -> dict[str, torch.Tensor]:
        return {layer.name: layer.mask.clone() for layer in self.layers}

    # ----- checkpointing -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        def per_layer(attr: str) -> dict[str, Any]:
            return {layer.name: getattr(layer, attr) for layer in self.layers}

        return {"step": self.step, "started": self._started, "masks": per_layer("mask"),
                "threshold": per_layer("threshold"), "pruned": per_layer("pruned"), "regrown": per_layer("regrown"),
                "generator": self.generator.get_state(), "criterion": self.criterion.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self._started = bool(state["started"])
        self.generator.set_state(state["generator"])
        for layer in self.layers:
            layer.mask.copy_(state["masks"][layer.name])
            layer.refresh_keep()
            layer.threshold = state["threshold"][layer.name]
            layer.pruned, layer.regrown = int(state["pruned"][layer.name]), int(state["regrown"][layer.name])
        self.criterion.load_state_dict(state["criterion"])
        self._refresh_masked_pairs()

    # ----- internals ---------------------------------------------------------------------------------
    def _schedule_due(self, step: int) -> bool:
        if self._static and step != self.schedule.start_step:
            return False  # the first selection is final: re-ranking would only cost time
        return self.schedule.updates_at(step) or self.recovery.updates_after_schedule(step)

    def _unit_scores(self, index: int) -> torch.Tensor:
        layer = self.layers[index]
        if not self.selection.neuron:
            return self.criterion.weight_scores(index)
        if not layer.row_pruning:
            return torch.ones(layer.rows, device=layer.weight.device)  # the output layer keeps its rows
        return self.criterion.unit_scores(index)

    def _update_masks(self, step: int) -> None:
        neuron = self.selection.neuron
        scores = [self._unit_scores(i) for i in range(len(self.layers))]
        unit_masks = [layer.unit_mask(neuron) for layer in self.layers]
        scores = self.recovery.rank(scores, unit_masks, self.selection.by_target)
        choices = self.selection.select(scores, unit_masks, self.schedule.sparsity_at(step), self.recovery)
        for layer, (unit_keep, theta) in zip(self.layers, choices, strict=True):
            layer.threshold = theta
            self.commit(layer, self.recovery.merge(layer.expand(unit_keep, neuron), layer.mask))
        self.criterion.masks_updated()

    def commit(self, layer: PrunedLayer, new: torch.Tensor) -> None:
        """Install a new mask: count churn, zero what left (and what arrived, RigL), clean optimizer state."""
        old = layer.mask
        layer.pruned += int((old & ~new).sum())
        layer.regrown += int((new & ~old).sum())
        layer.mask.copy_(new)
        layer.refresh_keep()
        self._refresh_masked_pairs()
        if self._dense:
            return  # dense weights and their optimizer state keep learning; the mask only gates forward
        with torch.no_grad():
            layer.weight.mul_(layer.keep)
            if layer.bias_keep is not None and layer.bias is not None:
                layer.bias.mul_(layer.bias_keep)
            for param, keep in ((layer.weight, layer.keep), (layer.bias, layer.bias_keep)):
                if param is None or keep is None:
                    continue
                for value in self.optimizer.state.get(param, {}).values():
                    if isinstance(value, torch.Tensor) and value.shape == param.shape:
                        value.mul_(keep)

    def _refresh_masked_pairs(self) -> None:
        """Cache the (tensor, float mask) pairs the per-step multiplies work on."""
        self._masked_params: list[torch.Tensor] = []
        self._masked_keeps: list[torch.Tensor] = []
        for layer in self.layers:
            for param, keep in ((layer.weight, layer.keep), (layer.bias, layer.bias_keep)):
                if param is not None and keep is not None:
                    self._masked_params.append(param)
                    self._masked_keeps.append(keep)

    def _swap_masked_in(self) -> None:
        with torch.no_grad():
            for i, (layer, (spare, spare_bias)) in enumerate(zip(self.layers, self._spares, strict=True)):
                torch.mul(layer.weight.data, layer.keep, out=spare)
                layer.weight.data, spare = spare, layer.weight.data
                if spare_bias is not None and layer.bias is not None and layer.bias_keep is not None:
                    torch.mul(layer.bias.data, layer.bias_keep, out=spare_bias)
                    layer.bias.data, spare_bias = spare_bias, layer.bias.data
                self._spares[i] = (spare, spare_bias)
        self._swapped = True

    def _swap_dense_back(self) -> None:
        for i, (layer, (spare, spare_bias)) in enumerate(zip(self.layers, self._spares, strict=True)):
            layer.weight.data, spare = spare, layer.weight.data
            if spare_bias is not None and layer.bias is not None:
                layer.bias.data, spare_bias = spare_bias, layer.bias.data
            self._spares[i] = (spare, spare_bias)
        self._swapped = False

