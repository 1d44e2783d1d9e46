"""The pruner: turns a pruning config into boolean masks and keeps them in force while the model trains.

Two ways of keeping masks, chosen by the recovery kind:
- `none`, `random` (SET), `gradient` (RigL): the weights themselves are zero where masked, and so is
  the optimizer state (zeroed whenever a mask changes). Each step multiplies the gradients by the
  masks (one fused op for all layers) before the optimizer step: with zero weight, gradient and state,
  SGD (momentum, Nesterov, weight decay), Adam and AdamW leave a pruned weight exactly 0, so nothing
  can revive it and re-multiplying the weights after every step would be a no-op costing ~3 % of a
  step. No forward hooks.
- `splice` (DNS), `feedback` (DPF): the parameters hold the *dense* weights, which keep learning.
  Around forward/backward the pruner swaps the masked weights in (`param.data` swap, one multiply
  per layer and step) so the gradient is taken at the pruned model and applied to the dense one.
  A swap is cheaper than `torch.nn.utils.prune`'s per-forward hook and leaves model code untouched.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from worker.engine.pruning.criteria import (
    ACTIVATION_STATS,
    CRITERIA,
    GRADIENT_CRITERIA,
    accumulate_gradient_score,
    activation_score,
    row_score,
)
from worker.engine.pruning.ranking import (
    erk_densities,
    keep_top,
    keep_top_global,
    keep_units_by_weight,
    keep_with_hysteresis,
    n_m_mask,
    prune_count,
)
from worker.engine.pruning.schedule import DropSchedule, SparsitySchedule

PRUNABLE_MODULES = (nn.Linear, nn.Conv2d)
GRANULARITIES = ("unstructured", "neuron", "n:m")
RECOVERIES = ("none", "splice", "random", "gradient", "feedback")
DENSE_RECOVERIES = ("splice", "feedback")  # parameters keep dense weights


def config_problems(p: dict) -> list[str]:
    """Combinations the engine cannot run, as messages a user can act on (mirrors the API schema)."""
    out: list[str] = []
    criterion, granularity = p.get("criterion", "magnitude"), p.get("granularity", "unstructured")
    recovery = (p.get("recovery") or {}).get("kind", "none")
    threshold, target = p.get("threshold"), p.get("target_sparsity")
    for key, value, allowed in (("criterion", criterion, CRITERIA), ("granularity", granularity, GRANULARITIES),
                                ("recovery.kind", recovery, RECOVERIES),
                                ("scope", p.get("scope", "layer"), ("layer", "global")),
                                ("distribution", p.get("distribution", "uniform"), ("uniform", "erk")),
                                ("activation_stat", p.get("activation_stat", "mean_abs"), ACTIVATION_STATS)):
        if value not in allowed:
            out.append(f"pruning.{key} {value!r} is not one of {', '.join(allowed)}")
    if granularity == "n:m":
        n_m = p.get("n_m")
        if not n_m or len(n_m) != 2:
            out.append("granularity 'n:m' needs n_m, e.g. [2, 4]")
        elif not 0 < n_m[0] < n_m[1]:
            out.append("n_m [n, m] needs 0 < n < m")
        if threshold is not None or target is not None:
            out.append("granularity 'n:m' sets the sparsity (1 - n/m): leave threshold and target_sparsity null")
        if recovery in ("random", "gradient", "splice"):
            out.append(f"recovery '{recovery}' is not defined for granularity 'n:m'")
    else:
        if p.get("n_m") is not None:
            out.append("n_m applies only to granularity 'n:m'")
        if threshold is None and target is None:
            out.append("set target_sparsity (with a schedule) or threshold")
        if threshold is not None and target is not None:
            out.append("set either target_sparsity or threshold, not both")
    if target is not None and not 0 <= target < 1:
        out.append("target_sparsity must be in [0, 1)")
    if criterion == "activation" and granularity != "neuron":
        out.append("criterion 'activation' scores neurons/channels: use granularity 'neuron'")
    if recovery in ("random", "gradient"):
        if granularity != "unstructured":
            out.append(f"recovery '{recovery}' needs granularity 'unstructured'")
        if target is None:
            out.append(f"recovery '{recovery}' keeps a fixed sparsity: set target_sparsity")
    if p.get("distribution", "uniform") == "erk" and p.get("scope", "layer") != "layer":
        out.append("distribution 'erk' allocates per-layer densities: use scope 'layer'")
    if isinstance(threshold, dict):
        if "std_scale" not in threshold:
            out.append("threshold must be a number or {'std_scale': q}")
        elif p.get("scope", "layer") == "global":
            out.append("threshold {'std_scale': q} is per layer: use scope 'layer'")
    elif isinstance(threshold, int | float) and threshold < 0:
        out.append("threshold must be ≥ 0")
    return out


def prunable_weights(model: nn.Module, include: list[str] | None = None,
                     exclude: list[str] | None = None) -> list[tuple[str, nn.Linear | nn.Conv2d]]:
    """(parameter name, module) of every Linear/Conv weight whose name matches the include/exclude globs."""
    include = include if include is not None else ["*"]
    exclude = exclude or []
    out: list[tuple[str, nn.Linear | nn.Conv2d]] = []
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Linear | nn.Conv2d):
            name = f"{module_name}.weight" if module_name else "weight"
            if any(fnmatch.fnmatchcase(name, g) for g in include) and not any(
                    fnmatch.fnmatchcase(name, g) for g in exclude):
                out.append((name, module))
    return out


@dataclass
class PrunedLayer:
    """One prunable weight tensor, its mask and the bookkeeping around it."""

    name: str
    module: nn.Module
    weight: nn.Parameter
    bias: nn.Parameter | None  # zeroed with its row under neuron granularity (a disabled neuron emits 0)
    mask: torch.Tensor  # bool, weight-shaped; also registered on the module as buffer `weight_mask`
    row_pruning: bool  # False for the output layer under neuron granularity: its rows are the classes
    keep: torch.Tensor = field(init=False)  # float copy of mask: multiplying by it is the fast path
    bias_keep: torch.Tensor | None = field(init=False)
    spare: torch.Tensor | None = None  # the other half of the dense/masked swap
    spare_bias: torch.Tensor | None = None
    score_acc: torch.Tensor | None = None
    act_sum: torch.Tensor | None = None
    act_zeros: torch.Tensor | None = None
    act_count: int = 0
    grown_grad: torch.Tensor | None = None
    pruned: int = 0
    regrown: int = 0
    threshold: float | None = None

    def __post_init__(self) -> None:
        self.refresh_keep()

    def refresh_keep(self) -> None:
        self.keep = self.mask.to(self.weight.dtype)
        self.bias_keep = None
        if self.bias is not None and self.row_pruning and self.mask.dim() > 0:
            self.bias_keep = self.mask.reshape(self.mask.shape[0], -1).any(dim=1).to(self.weight.dtype)

    @property
    def rows(self) -> int:
        return int(self.weight.shape[0])

    @property
    def row_size(self) -> int:
        return int(self.weight[0].numel())


class Pruner:
    """Dynamic pruning of a model's Linear/Conv weights, driven step by step by the training loop.

    Per step the loop calls `before_forward()`, runs forward/backward, `after_backward()`,
    `optimizer.step()`, then `after_step()`. Evaluation runs inside `with pruner.masked_weights():`.
    """

    def __init__(self, model: nn.Module, pruning: dict, *, optimizer: torch.optim.Optimizer, epochs: int,
                 steps_per_epoch: int, seed: int = 0) -> None:
        problems = config_problems(pruning)
        if problems:
            raise ValueError("invalid pruning config: " + "; ".join(problems))
        self.model = model
        self.optimizer = optimizer
        self.criterion: str = pruning.get("criterion", "magnitude")
        self.granularity: str = pruning.get("granularity", "unstructured")
        self.scope: str = pruning.get("scope", "layer")
        self.distribution: str = pruning.get("distribution", "uniform")
        self.activation_stat: str = pruning.get("activation_stat", "mean_abs")
        n_m = pruning.get("n_m")
        self.n_m: tuple[int, int] | None = (int(n_m[0]), int(n_m[1])) if n_m else None
        self.target: float | None = pruning.get("target_sparsity")
        self.threshold: float | dict | None = pruning.get("threshold")
        recovery = pruning.get("recovery") or {}
        self.recovery: str = recovery.get("kind", "none")
        self.margin = float(recovery.get("margin", 0.1))
        self.l1 = float((pruning.get("regularization") or {}).get("l1", 0.0))
        layers_cfg = pruning.get("layers") or {}
        self.steps_per_epoch = steps_per_epoch
        self.schedule = SparsitySchedule.from_config(
            pruning.get("schedule") or {}, final=self.target or 0.0, epochs=epochs,
            steps_per_epoch=steps_per_epoch, needs_gradient=self.criterion in (*GRADIENT_CRITERIA, "activation"))
        rec_end = recovery.get("end_epoch")
        if rec_end is not None and rec_end > epochs:
            raise ValueError(f"pruning.recovery.end_epoch ({rec_end}) is after the last epoch ({epochs})")
        if self.recovery in ("random", "gradient"):
            end_step = self.schedule.end_step if rec_end is None else rec_end * steps_per_epoch
            self.drop: DropSchedule | None = DropSchedule(
                drop_fraction=float(recovery.get("drop_fraction", 0.3)), decay=recovery.get("decay", "cosine"),
                every_steps=int(recovery.get("every_steps", 100)), end_step=end_step)
        else:
            self.drop = None
        # Splice/feedback go on re-deciding masks after the schedule ends, until recovery.end_epoch.
        self.recovery_end_step = (epochs if rec_end is None else rec_end) * steps_per_epoch
        # Without recovery, a fixed target (constant/one-shot) or N:M pattern never changes after it is set.
        self._static = self.recovery == "none" and (
            self.n_m is not None or (self.target is not None and self.schedule.kind in ("constant", "one_shot")))
        self.step = 0
        self.generator = torch.Generator().manual_seed(int(seed) + 7919)
        selected = prunable_weights(model, layers_cfg.get("include"), layers_cfg.get("exclude"))
        if not selected:
            names = [n for n, _ in prunable_weights(model)]
            raise ValueError(f"pruning.layers matched no prunable weight; the model's weights are {names}")
        all_prunable = prunable_weights(model)
        output_name = all_prunable[-1][0]
        self.layers: list[PrunedLayer] = []
        for name, module in selected:
            weight: nn.Parameter = module.weight  # type: ignore[assignment]
            bias = module.bias if isinstance(module.bias, nn.Parameter) else None
            mask = torch.ones_like(weight, dtype=torch.bool)
            if "weight_mask" in module._buffers:
                raise ValueError(f"{name} already carries a weight_mask (torch.nn.utils.prune?): remove it first")
            module.register_buffer("weight_mask", mask, persistent=False)
            row_pruning = self.granularity == "neuron" and name != output_name
            layer = PrunedLayer(name=name, module=module, weight=weight, bias=bias, mask=mask,
                                row_pruning=row_pruning)
            if self.recovery in DENSE_RECOVERIES:
                layer.spare = torch.empty_like(weight.data)
                layer.spare_bias = torch.empty_like(bias.data) if bias is not None and row_pruning else None
            if self.criterion in GRADIENT_CRITERIA:
                layer.score_acc = torch.zeros_like(weight.data)
            self.layers.append(layer)
        self._hooks: list[Any] = []
        if self.criterion == "activation":
            for layer in self.layers:
                if layer.row_pruning:
                    self._hooks.append(layer.module.register_forward_hook(self._activation_hook(layer)))
        self._layer_densities = self._densities()
        self._per_layer_work = self.criterion in GRADIENT_CRITERIA or self.l1 > 0
        self._refresh_masked_pairs()

    # ----- the per-step protocol -------------------------------------------------------------------
    def start(self) -> None:
        """Before the first step: masks due at step 0 (sparse-from-the-start schedules)."""
        if self.step == 0 and self._schedule_due(0):
            self._update_masks(0)

    def before_forward(self) -> None:
        if self.recovery in DENSE_RECOVERIES:
            self._swap_masked_in()

    def after_backward(self) -> None:
        """Between backward and optimizer.step: dense weights back, scores, L1, gradient masking."""
        if self.recovery in DENSE_RECOVERIES:
            self._swap_dense_back()
        grow_due = self.recovery == "gradient" and self.drop is not None and self.drop.updates_at(self.step + 1)
        if self._per_layer_work or grow_due:
            self._gradient_work(grow_due)
        if self.recovery not in DENSE_RECOVERIES:
            # Zero gradient ⇒ SGD momentum and Adam moments stay exactly zero at pruned positions.
            grads = [p.grad for p in self._masked_params]
            if all(g is not None for g in grads):
                torch._foreach_mul_(grads, self._masked_keeps)  # type: ignore[arg-type]  # one call for all
            else:
                for grad, keep in zip(grads, self._masked_keeps, strict=True):
                    if grad is not None:
                        grad.mul_(keep)

    def _gradient_work(self, grow_due: bool) -> None:
        for layer in self.layers:
            grad = layer.weight.grad
            if grad is None:
                continue
            if layer.score_acc is not None:
                accumulate_gradient_score(self.criterion, layer.score_acc, layer.weight.data, grad)
            if grow_due:
                layer.grown_grad = grad.abs()  # RigL grows where the *dense* gradient is largest
            if self.l1 > 0:
                grad.add_(torch.sign(layer.weight.data), alpha=self.l1)

    def after_step(self) -> None:
        """After optimizer.step: update masks when the schedule (or SET/RigL) says so."""
        self.step += 1
        if self._schedule_due(self.step):
            self._update_masks(self.step)
        if self.drop is not None and self.drop.updates_at(self.step):
            self._drop_and_grow(self.step)

    @contextmanager
    def masked_weights(self) -> Iterator[None]:
        """Evaluate (or export) the pruned model: for splice/feedback swap the masked weights in."""
        if self.recovery not in DENSE_RECOVERIES:
            yield
            return
        self._swap_masked_in()
        try:
            yield
        finally:
            self._swap_dense_back()

    def finalize(self) -> None:
        """Make the parameters the pruned model for good (drops splice/feedback's dense weights)."""
        with torch.no_grad():
            for layer in self.layers:
                layer.weight.mul_(layer.keep)
                if layer.bias_keep is not None and layer.bias is not None:
                    layer.bias.mul_(layer.bias_keep)
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    # ----- reporting ---------------------------------------------------------------------------------
    def target_at(self, step: int) -> float | None:
        """The schedule's target sparsity after `step` steps (None when a threshold decides)."""
        if self.n_m is not None:
            return 1 - self.n_m[0] / self.n_m[1] if step >= self.schedule.start_step else 0.0
        if self.target is None:
            return None
        return self.schedule.sparsity_at(step)

    def epoch_report(self) -> tuple[list[dict], dict[str, np.ndarray]]:
        """Per-layer stats since the previous report, and mask snapshots; resets the churn counters."""
        layers, masks = [], {}
        for layer in self.layers:
            total = layer.mask.numel()
            kept = int(layer.mask.sum())
            layers.append({"name": layer.name, "shape": list(layer.mask.shape), "sparsity": 1 - kept / total,
                           "pruned": layer.pruned, "regrown": layer.regrown, "threshold": layer.threshold})
            masks[layer.name] = layer.mask.cpu().numpy().copy()
            layer.pruned = layer.regrown = 0
        return layers, masks

    def masks(self) -> dict[str, torch.Tensor]:
        return {layer.name: layer.mask.clone() for layer in self.layers}

    # ----- checkpointing -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        def per_layer(attr: str) -> dict[str, Any]:
            return {layer.name: getattr(layer, attr) for layer in self.layers}

        return {"step": self.step, "masks": per_layer("mask"), "score_acc": per_layer("score_acc"),
                "act_sum": per_layer("act_sum"), "act_zeros": per_layer("act_zeros"),
                "act_count": per_layer("act_count"), "threshold": per_layer("threshold"),
                "pruned": per_layer("pruned"), "regrown": per_layer("regrown"),
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.generator.set_state(state["generator"])
        for layer in self.layers:
            layer.mask.copy_(state["masks"][layer.name])
            layer.refresh_keep()
            for attr in ("score_acc", "act_sum", "act_zeros"):
                value = state[attr][layer.name]
                setattr(layer, attr, None if value is None else value.to(layer.weight.device))
            layer.act_count = int(state["act_count"][layer.name])
            layer.threshold = state["threshold"][layer.name]
            layer.pruned, layer.regrown = int(state["pruned"][layer.name]), int(state["regrown"][layer.name])
        self._refresh_masked_pairs()

    # ----- internals ---------------------------------------------------------------------------------
    def _schedule_due(self, step: int) -> bool:
        if self._static and step != self.schedule.start_step:
            return False  # the first selection is final: re-ranking would only cost time
        if self.schedule.updates_at(step):
            return True
        # DNS keeps splicing and DPF keeps re-deciding after the target is reached.
        return (self.recovery in DENSE_RECOVERIES and self.schedule.end_step < step <= self.recovery_end_step
                and self.schedule.aligned(step))

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
            for layer in self.layers:
                assert layer.spare is not None
                torch.mul(layer.weight.data, layer.keep, out=layer.spare)
                layer.weight.data, layer.spare = layer.spare, layer.weight.data
                if layer.spare_bias is not None and layer.bias is not None and layer.bias_keep is not None:
                    torch.mul(layer.bias.data, layer.bias_keep, out=layer.spare_bias)
                    layer.bias.data, layer.spare_bias = layer.spare_bias, layer.bias.data

    def _swap_dense_back(self) -> None:
        for layer in self.layers:
            assert layer.spare is not None
            layer.weight.data, layer.spare = layer.spare, layer.weight.data
            if layer.spare_bias is not None and layer.bias is not None:
                layer.bias.data, layer.spare_bias = layer.spare_bias, layer.bias.data

    def _activation_hook(self, layer: PrunedLayer) -> Any:
        def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            if not module.training:
                return
            with torch.no_grad():
                # Every prunable hidden layer of the zoo is followed by a ReLU: score what it passes on.
                active = output.detach().clamp_min(0)
                dims = [d for d in range(active.dim()) if d != 1]
                per_sample = active[0].numel() // active.shape[1]
                sums = active.sum(dim=dims) / per_sample
                zeros = (active == 0).sum(dim=dims).to(active.dtype) / per_sample
                if layer.act_sum is None or layer.act_zeros is None:
                    layer.act_sum, layer.act_zeros = sums, zeros
                else:
                    layer.act_sum.add_(sums)
                    layer.act_zeros.add_(zeros)
                layer.act_count += active.shape[0]
        return hook

    def _densities(self) -> list[float]:
        if self.target is None:
            return [1.0] * len(self.layers)
        if self.distribution == "erk":
            return erk_densities([tuple(layer.weight.shape) for layer in self.layers], 1 - self.target)
        return [1 - self.target] * len(self.layers)

    def _weight_scores(self, layer: PrunedLayer) -> torch.Tensor:
        if self.criterion == "magnitude":
            return layer.weight.data.abs()
        if self.criterion in GRADIENT_CRITERIA:
            assert layer.score_acc is not None
            return layer.score_acc.clone()
        if self.criterion == "random":
            return torch.rand(layer.weight.shape, generator=self.generator).to(layer.weight.device)
        raise ValueError(f"criterion {self.criterion!r} has no per-weight score")

    def _unit_scores(self, layer: PrunedLayer) -> torch.Tensor:
        """Scores of the units the granularity prunes: weights, or rows (neurons/filters)."""
        if self.granularity != "neuron":
            return self._weight_scores(layer)
        if not layer.row_pruning:
            return torch.ones(layer.rows, device=layer.weight.device)  # the output layer keeps its rows
        if self.criterion == "activation":
            if layer.act_sum is None or layer.act_zeros is None:
                return activation_score(self.activation_stat, torch.zeros(layer.rows), torch.zeros(layer.rows), 0)
            return activation_score(self.activation_stat, layer.act_sum, layer.act_zeros, layer.act_count)
        if self.criterion == "random":
            return torch.rand(layer.rows, generator=self.generator).to(layer.weight.device)
        # Mean |w| makes rows of different fan-in comparable under global scope; sums for accumulations.
        return row_score(self._weight_scores(layer), "mean" if self.criterion == "magnitude" else "sum")

    def _unit_mask(self, layer: PrunedLayer) -> torch.Tensor:
        if self.granularity == "neuron":
            return layer.mask.reshape(layer.rows, -1).any(dim=1)
        return layer.mask

    def _layer_threshold(self, layer: PrunedLayer) -> float:
        if isinstance(self.threshold, dict):
            # Han et al. 2015: θ = q·std of the layer's weights (pruned zeros included, so that
            # re-applying the rule converges instead of pruning ever more).
            return float(self.threshold["std_scale"]) * float(layer.weight.data.float().std())
        assert self.threshold is not None
        return float(self.threshold)

    def _select(self, step: int) -> list[tuple[torch.Tensor, float | None]]:
        """New unit masks (and thresholds) for every layer at `step`."""
        scores = [self._unit_scores(layer) for layer in self.layers]
        unit_masks = [self._unit_mask(layer) for layer in self.layers]
        if self.recovery == "none":
            # Pruned units never come back: they cannot win a place in the ranking.
            scores = [torch.where(m, s, torch.full_like(s, float("-inf"))) for s, m in zip(scores, unit_masks,
                                                                                            strict=True)]
        if self.n_m is not None:
            n, m = self.n_m
            return [(n_m_mask(s, n, m), None) for s in scores]
        if self.target is None:
            out = []
            for layer, s, um in zip(self.layers, scores, unit_masks, strict=True):
                theta = self._layer_threshold(layer)
                if self.recovery == "splice":
                    out.append(keep_with_hysteresis(s, um, None, theta, self.margin))
                else:
                    out.append((s >= theta, theta))
                if not layer.row_pruning and self.granularity == "neuron":
                    out[-1] = (torch.ones_like(um), None)
            return out
        if self.recovery == "splice":
            scores = [torch.where(um, s / (1 - self.margin), s / (1 + self.margin))
                      for s, um in zip(scores, unit_masks, strict=True)]
        sparsity = self.schedule.sparsity_at(step)
        if self.granularity == "neuron":
            return self._select_rows(scores, sparsity)
        if self.scope == "global":
            total = sum(s.numel() for s in scores)
            masks, cut = keep_top_global(scores, total - prune_count(sparsity, total))
            return [(mask, cut) for mask in masks]
        out = []
        for s, density in zip(scores, self._layer_densities, strict=True):
            layer_sparsity = sparsity * (1 - density) / self.target if self.target else 0.0
            out.append(keep_top(s, s.numel() - prune_count(layer_sparsity, s.numel())))
        return out

    def _select_rows(self, scores: list[torch.Tensor], sparsity: float) -> list[tuple[torch.Tensor, float | None]]:
        if self.scope == "global":
            index = [i for i, layer in enumerate(self.layers) if layer.row_pruning]
            total = sum(layer.weight.numel() for layer in self.layers)
            kept = keep_units_by_weight([scores[i] for i in index], [self.layers[i].row_size for i in index],
                                        prune_count(sparsity, total))
            out: list[tuple[torch.Tensor, float | None]] = [(torch.ones_like(s, dtype=torch.bool), None)
                                                           for s in scores]
            for i, keep in zip(index, kept, strict=True):
                alive = scores[i][keep]
                out[i] = (keep, float(alive.min()) if alive.numel() else None)
            return out
        out = []
        for layer, s, density in zip(self.layers, scores, self._layer_densities, strict=True):
            if not layer.row_pruning:
                out.append((torch.ones_like(s, dtype=torch.bool), None))
                continue
            layer_sparsity = sparsity * (1 - density) / self.target if self.target else 0.0
            out.append(keep_top(s, layer.rows - prune_count(layer_sparsity, layer.rows)))
        return out

    def _update_masks(self, step: int) -> None:
        for layer, (unit_keep, theta) in zip(self.layers, self._select(step), strict=True):
            if self.granularity == "neuron":
                new = unit_keep.view(-1, *([1] * (layer.weight.dim() - 1))).expand_as(layer.mask)
            else:
                new = unit_keep
            if self.recovery == "none":
                new = new & layer.mask
            layer.threshold = theta
            self._commit(layer, new)
            if self.criterion == "gradient" and layer.score_acc is not None:
                layer.score_acc.zero_()  # |w·g| is judged per interval; movement accumulates for good
            if self.criterion == "activation":
                layer.act_sum = layer.act_zeros = None
                layer.act_count = 0

    def _drop_and_grow(self, step: int) -> None:
        """SET/RigL: drop the weakest share of active weights, regrow as many among inactive positions."""
        assert self.drop is not None
        fraction = self.drop.fraction_at(step)
        for layer in self.layers:
            mask = layer.mask.reshape(-1)
            active = int(mask.sum())
            inactive_before = ~mask
            n_move = min(round(fraction * active), int(inactive_before.sum()))
            if n_move <= 0:
                continue
            scores = self._weight_scores(layer).reshape(-1)
            drop_rank = torch.where(mask, scores, torch.full_like(scores, float("inf")))
            dropped = torch.topk(drop_rank, n_move, largest=False).indices
            after_drop = mask.clone()
            after_drop[dropped] = False
            if self.recovery == "gradient":
                assert layer.grown_grad is not None, "RigL needs the dense gradient of this step"
                grow_score = layer.grown_grad.reshape(-1).clone()
                candidates = ~after_drop  # RigL may re-pick a just-dropped weight
                layer.grown_grad = None
            else:
                grow_score = torch.rand(mask.shape, generator=self.generator).to(mask.device)
                candidates = inactive_before  # SET regrows elsewhere
            grow_score = torch.where(candidates, grow_score, torch.full_like(grow_score, float("-inf")))
            grown = torch.topk(grow_score, n_move).indices
            new = after_drop.clone()
            new[grown] = True
            layer.threshold = float(scores[dropped].max())
            self._commit(layer, new.view_as(layer.mask))
            if self.recovery == "random":
                self._init_regrown(layer, grown)

    def _init_regrown(self, layer: PrunedLayer, grown: torch.Tensor) -> None:
        # SET gives new connections fresh random values (RigL starts them at 0): PyTorch's default
        # Linear/Conv init range, so a regrown weight is not the first to be dropped again.
        bound = 1.0 / math.sqrt(layer.row_size)
        values = (torch.rand(grown.numel(), generator=self.generator) * 2 - 1) * bound
        with torch.no_grad():
            layer.weight.view(-1)[grown] = values.to(layer.weight.device, layer.weight.dtype)

    def _commit(self, layer: PrunedLayer, new: torch.Tensor) -> None:
        """Install a new mask: count churn, zero what left (and what arrived, RigL), clean optimizer state."""
        old = layer.mask
        left = old & ~new
        arrived = new & ~old
        layer.pruned += int(left.sum())
        layer.regrown += int(arrived.sum())
        layer.mask.copy_(new)
        layer.refresh_keep()
        self._refresh_masked_pairs()
        if self.recovery in DENSE_RECOVERIES:
            return  # dense weights and their optimizer state keep learning; the mask only gates forward
        with torch.no_grad():
            layer.weight.mul_(layer.keep)  # regrown weights were zero already: they start at 0
            if layer.bias_keep is not None and layer.bias is not None:
                layer.bias.mul_(layer.bias_keep)
            for param, keep in ((layer.weight, layer.keep), (layer.bias, layer.bias_keep)):
                if param is None or keep is None:
                    continue
                for value in self.optimizer.state.get(param, {}).values():
                    if isinstance(value, torch.Tensor) and value.shape == param.shape:
                        value.mul_(keep)


def build_pruner(model: nn.Module, pruning: dict | None, *, optimizer: torch.optim.Optimizer, epochs: int,
                 steps_per_epoch: int, seed: int = 0) -> Pruner | None:
    """The one place a config becomes a pruner; None for a dense run."""
    if pruning is None:
        return None
    return Pruner(model, pruning, optimizer=optimizer, epochs=epochs, steps_per_epoch=steps_per_epoch, seed=seed)


def dense_report(model: nn.Module) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Epoch stats of an unpruned model: sparsity from actual zeros, all-True masks."""
    layers, masks = [], {}
    for name, module in prunable_weights(model):
        weight = module.weight.detach()
        total = weight.numel()
        layers.append({"name": name, "shape": list(weight.shape),
                       "sparsity": 1 - int(torch.count_nonzero(weight)) / total,
                       "pruned": 0, "regrown": 0, "threshold": None})
        masks[name] = np.ones(tuple(weight.shape), dtype=bool)
    return layers, masks
