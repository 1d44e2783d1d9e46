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
hooks; a step with a closure, as LBFGS takes, is wrapped) and, for splice/feedback, each pruned module (a
forward pre-hook), so a plain `loss.backward(); optimizer.step()` loop needs no other call (the SDK); or the
loop calls `before_forward()`, `after_backward()` and `after_step()` itself (the managed loop,
`attach=False`; the first of them applies masks due before the first step, as `start()` does).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from prunescope.contract import LayerStats, PruningConfig, parse_pruning
from worker.engine.guards import warn_emptied
from worker.engine.pruning.criteria import CRITERIA, Criterion
from worker.engine.pruning.hooking import (
    ForwardSwap,
    follow_moves,
    forget_compiled_forwards,
    step_pre_hook,
    swap_modules,
    warn_unstepped,
)
from worker.engine.pruning.layer import DenseCopy, PrunedLayer, PrunerHook
from worker.engine.pruning.model_layers import OutputLayerWatch, check_state_fits, refuse_output_only, take_layers
from worker.engine.pruning.ranking import n_m_pruned
from worker.engine.pruning.recovery import RECOVERIES, Recovery
from worker.engine.pruning.schedule import SparsitySchedule, warn_if_short
from worker.engine.pruning.selection import SELECTIONS, Selection, selection_for


class Pruner:
    """Dynamic pruning of a model's Linear/Conv weights.

    `Pruner(model, optimizer, pruning, epochs=, steps_per_epoch=)` takes a run config's `pruning` block
    (a `PruningConfig`, or a dict validated into one: a bad block raises pydantic's field-located
    ValidationError) and, unless `attach=False`, hooks itself in at once.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, pruning: PruningConfig | dict[str, Any],
                 *, epochs: int, steps_per_epoch: int, seed: int = 0, attach: bool = True) -> None:
        for label, value in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Pruner: {label} must be a whole number ≥ 1 (optimizer steps an epoch, after any "
                                 f"gradient accumulation), not {value!r}")
        config = parse_pruning(pruning)
        self.config = config
        self.model = model
        self.optimizer = optimizer
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self.step = 0
        self.generator = torch.Generator().manual_seed(int(seed) + 7919)
        self.layers = take_layers(model, config, self)
        criterion_cls = CRITERIA[config.criterion]
        self.schedule = SparsitySchedule.from_config(config.schedule, final=config.target_sparsity or 0.0,
                                                     epochs=epochs, steps_per_epoch=steps_per_epoch,
                                                     needs_steps=criterion_cls.needs_steps)
        self.criterion: Criterion = criterion_cls(self.layers, config, self.generator)
        self.recovery: Recovery = RECOVERIES[config.recovery.kind](
            config, self.layers, self.schedule, epochs=epochs, steps_per_epoch=steps_per_epoch,
            generator=self.generator)
        self.selection: Selection = SELECTIONS[selection_for(config)](config, self.layers)
        self._refuse_output_only()
        self._dense = self.recovery.dense_weights
        self._copy = DenseCopy(self.layers) if self._dense else None  # splice/feedback's dense weights
        # A fixed target (constant/one-shot) or N:M pattern that never gives units back is final once set.
        self._static = self.recovery.freezes_masks and (
            config.n_m is not None or (config.target_sparsity is not None
                                       and self.schedule.kind in ("constant", "one_shot")))
        self._gradient_work = self.criterion.observes_gradients or config.regularization.l1 > 0
        self._criterion_hooks = self.criterion.hooks(model)
        self._output = OutputLayerWatch(model, active=self.selection.neuron)
        self._hooks: list[Any] = []
        self._released = False
        self._started = False
        self._emptied: set[str] = set()  # layers an update left with no weight (warned once each)
        self._swap = ForwardSwap(lambda: self._copy, self._before_forward)  # splice/feedback's forward hooks
        self._refresh_masked_pairs()
        warn_unstepped(self.layers, optimizer)
        if attach:
            self.attach()

    # ----- hooking into a user's loop ----------------------------------------------------------------
    def attach(self) -> Pruner:
        """Hook into the optimizer (and model): `optimizer.step()` then keeps the masks with no other call."""
        self._refuse_if_released()
        if self._hooks:
            return self
        self._hooks = [self.optimizer.register_step_pre_hook(
            PrunerHook(step_pre_hook(self._before_forward, self._before_step))),
                       self.optimizer.register_step_post_hook(PrunerHook(lambda *_: self._after_step()))]
        if self._dense:
            for module in swap_modules(self.model, self.layers):
                self._hooks.append(module.register_forward_pre_hook(PrunerHook(self._swap.enter)))
                self._hooks.append(module.register_forward_hook(PrunerHook(self._swap.leave), always_call=True))
        if self._dense or self._criterion_hooks or self._output.pending:  # module hooks a compiled forward misses
            forget_compiled_forwards()
        self.start()
        return self

    def detach(self) -> None:
        """Remove the optimizer/model hooks (the explicit protocol works again)."""
        had_module_hooks = len(self._hooks) > 2
        for handle in self._hooks:
            handle.remove()
        self._hooks = []
        if had_module_hooks:
            forget_compiled_forwards()

    @property
    def attached(self) -> bool:
        return bool(self._hooks)

    # ----- the explicit per-step protocol ------------------------------------------------------------
    def start(self) -> None:
        """Before the first step: masks due at step 0 (runs sparse from their start). `attach()` calls it, and so
        does the explicit protocol's first call: calling it first is optional."""
        if self._started:
            return
        self._follow_moves()  # a model moved after the Pruner was built: the step-0 masks go where it is now
        if self.step == 0 and self._schedule_due(0):
            self._update_masks(0)
        self._started = True

    def before_forward(self) -> None:
        """Before the forward pass (splice/feedback swap the masked weights in; a no-op otherwise)."""
        self._refuse_if_attached()
        self.start()
        self._before_forward()

    def after_backward(self) -> None:
        """Between backward and optimizer.step: dense weights back, scores, L1, gradient masking."""
        self._refuse_if_attached()
        self.start()
        self._before_step()

    def after_step(self) -> None:
        """After optimizer.step: update masks when the schedule (or the recovery) says so."""
        self._refuse_if_attached()
        self.start()
        self._after_step()

    def _release(self) -> None:
        """A newer Pruner takes this (detached) one's layers: it never attaches again, and its criterion's
        forward hooks (activation statistics) stop counting on modules it no longer prunes."""
        self._released = True
        self._hook_criterion(False)

    def _refuse_output_only(self) -> None:
        if self.selection.neuron:
            refuse_output_only(self.model, self.layers)

    def _hook_criterion(self, on: bool) -> None:
        """(Re)place the criterion's forward hooks (activation statistics), or only remove them."""
        for hook in self._criterion_hooks:
            hook.remove()
        self._criterion_hooks = self.criterion.hooks(self.model) if on else []

    def _refuse_if_released(self) -> None:
        if self._released:
            raise RuntimeError("a newer prunescope.Pruner took over this Pruner's layers; use that one")

    def _refuse_if_attached(self) -> None:
        self._refuse_if_released()
        if self._hooks:
            raise RuntimeError("this Pruner is attached: optimizer.step() already runs its per-step work; "
                               "call detach() to drive it by hand")

    def _before_forward(self) -> None:
        if self._copy is not None and not self._copy.swapped:
            self._follow_moves()
            self._copy.swap_masked_in()

    def _follow_moves(self) -> None:
        if follow_moves(self.layers):
            self._refresh_masked_pairs()
            self.criterion.follow()
            if self._copy is not None:
                self._copy = DenseCopy(self.layers)

    def _before_step(self) -> None:
        if self._copy is not None and self._copy.swapped:
            self._copy.swap_dense_back()
        else:
            self._follow_moves()
        if self._output.pending and self._output.settle(self.layers):
            self._refuse_output_only()  # the layer that ran last may be the only one selected
            self._copy = DenseCopy(self.layers) if self._dense else None
            self._refresh_masked_pairs()
            self._hook_criterion(True)
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
        if self._copy is None or self._copy.swapped:
            yield
            return
        self._follow_moves()
        self._copy.swap_masked_in()
        self._swap.pinned = True
        try:
            yield
        finally:
            self._swap.pinned = False
            self._copy.swap_dense_back()

    def finalize(self, *, warn_short: bool = True) -> None:
        """Make the parameters the pruned model for good (drops splice/feedback's dense weights), unhook; warns when
        fewer steps ran than the schedule needs to reach its target (`warn_short=False`: a run stopped early)."""
        if self._copy is not None and self._copy.swapped:
            self._copy.swap_dense_back()
        with torch.no_grad():
            for layer in self.layers:
                layer.weight.mul_(layer.keep)
                if layer.bias_keep is not None and layer.bias is not None:
                    layer.bias.mul_(layer.bias_keep)
        self._hook_criterion(False)
        self.detach()
        if warn_short:
            warn_if_short(self.schedule, self.config, self.step, self.sparsity())

    def sparsity(self) -> float:
        """The share of the pruned layers' weights that are masked now."""
        total = sum(layer.mask.numel() for layer in self.layers)
        return 1 - sum(int(layer.mask.sum()) for layer in self.layers) / total

    # ----- reporting ---------------------------------------------------------------------------------
    @property
    def pruning_started(self) -> bool:
        return self.step >= self.schedule.start_step

    def target_at(self, step: int) -> float | None:
        """The schedule's target sparsity after `step` steps, as of its last update (None when a threshold decides)."""
        if self.config.n_m is not None:  # 1 - n/m, less where a row's width is not a multiple of m
            if step < self.schedule.start_step:
                return 0.0
            pruned = sum(n_m_pruned(tuple(layer.weight.shape), *self.config.n_m) for layer in self.layers)
            return pruned / sum(layer.weight.numel() for layer in self.layers)
        if self.config.target_sparsity is None:
            return None
        return self.schedule.applied_at(step)

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

        # Under neuron granularity, which layer keeps its rows (the output layer the first forward found): a resumed
        # Pruner would otherwise guess "registered last" again, and its masks are no longer all ones to correct it.
        output = [layer.name for layer in self.layers if not layer.row_pruning] if self.selection.neuron else []
        return {"step": self.step, "started": self._started, "masks": per_layer("mask"),
                "threshold": per_layer("threshold"), "pruned": per_layer("pruned"), "regrown": per_layer("regrown"),
                "generator": self.generator.get_state(), "criterion": self.criterion.state_dict(),
                "output_layers": None if self._output.pending else output}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_state_fits(state, self.layers)  # before anything changes: a mismatch left a half-loaded Pruner
        self.step = int(state["step"])
        self._started = bool(state["started"])
        self.generator.set_state(state["generator"])
        for layer in self.layers:
            layer.mask.copy_(state["masks"][layer.name])
            layer.refresh_keep()
            layer.threshold = state["threshold"][layer.name]
            layer.pruned, layer.regrown = int(state["pruned"][layer.name]), int(state["regrown"][layer.name])
        output = state.get("output_layers")
        if output is not None and self.selection.neuron:
            self._output.settle_as(self.layers, set(output))
            self._refuse_output_only()
            self._copy = DenseCopy(self.layers) if self._dense else None
            self._hook_criterion(True)
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
        if layer.name not in self._emptied and not bool(new.any()):
            warn_emptied(layer.name, self.config, self._emptied)
        if self._dense:
            return  # dense weights and their optimizer state keep learning; the mask only gates forward
        if isinstance(self.optimizer, torch.optim.LBFGS):
            # Its history is flat vectors over all parameters (not shaped like one, so it cannot be masked below):
            # kept, it moves the weights just pruned (or dropped by SET/RigL) on the next step. It starts again.
            self.optimizer.state.clear()
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
