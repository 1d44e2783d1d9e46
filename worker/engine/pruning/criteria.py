"""Scoring: how important each weight (or neuron) is; higher = more worth keeping. One class per criterion.

A criterion keeps its own per-layer state (accumulated scores, activation sums). A new one is a subclass
and one `register_criterion` call, which also makes the run config accept its name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from prunescope.contract import PruningConfig
from prunescope.contract.extensions import register_extra_name
from worker.engine.pruning.layer import PrunedLayer, PrunerHook


def row_score(scores: torch.Tensor, how: str) -> torch.Tensor:
    """Collapse weight scores to one score per output neuron/filter (row)."""
    rows = scores.reshape(scores.shape[0], -1)
    return rows.mean(dim=1) if how == "mean" else rows.sum(dim=1)


def activation_score(stat: str, sums: torch.Tensor, zeros: torch.Tensor, count: int, layer: str = "") -> torch.Tensor:
    """Per-neuron score from post-ReLU activations: mean |a|, or 1 - APoZ (Hu et al. 2016)."""
    if count == 0:
        raise ValueError(f"criterion 'activation' saw no output of {layer or 'a layer'} in training since the last "
                         "mask update: prune after at least one training step, or, when its module is never called "
                         "(nn.MultiheadAttention uses out_proj's weight directly), leave it out with "
                         "pruning.layers.exclude")
    if stat == "apoz":
        return 1.0 - zeros / count
    return sums / count


class Criterion:
    """Base: scores from the weights alone. Subclasses override what they change."""

    #: True when scores come from training steps (gradients, activations): no mask update before step 1.
    needs_steps: ClassVar[bool] = False
    #: True when `observe_gradient` must see every step's gradient.
    observes_gradients: ClassVar[bool] = False
    #: How rows (neurons) aggregate weight scores: mean |w| keeps rows of different fan-in comparable.
    row_reduce: ClassVar[str] = "sum"

    def __init__(self, layers: list[PrunedLayer], config: PruningConfig, generator: torch.Generator) -> None:
        self.layers = layers
        self.config = config
        self.generator = generator

    def weight_scores(self, index: int) -> torch.Tensor:
        # Only criteria that score whole units (activation) lack this; the config refuses pairing them with a
        # per-weight granularity, so reaching here means a caller bypassed the contract.
        raise TypeError(f"criterion {type(self).__name__} scores whole neurons, not single weights: "
                        "use granularity 'neuron'")

    def unit_scores(self, index: int) -> torch.Tensor:
        """One score per row of layer `index` (neuron granularity)."""
        return row_score(self.weight_scores(index), self.row_reduce)

    def observe_gradient(self, index: int, weight: torch.Tensor, grad: torch.Tensor) -> None:
        """Called between backward and the optimizer step when `observes_gradients`."""

    def hooks(self, model: nn.Module) -> list[Any]:
        """Forward hooks the criterion needs (removed by the pruner when it finishes)."""
        return []

    def masks_updated(self) -> None:
        """After a mask update: reset what is judged per interval."""

    def follow(self) -> None:
        """The model moved (device) after the Pruner was built: move what the criterion accumulates with it."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""


class Magnitude(Criterion):
    """|w| (Han et al. 2015)."""

    row_reduce = "mean"

    def weight_scores(self, index: int) -> torch.Tensor:
        return self.layers[index].weight.data.abs()


class _Accumulated(Criterion):
    """Scores summed from every step's gradient between mask updates."""

    needs_steps = True
    observes_gradients = True

    def __init__(self, layers: list[PrunedLayer], config: PruningConfig, generator: torch.Generator) -> None:
        super().__init__(layers, config, generator)
        self.acc = [torch.zeros_like(layer.weight.data) for layer in layers]

    def weight_scores(self, index: int) -> torch.Tensor:
        return self.acc[index].clone()

    def follow(self) -> None:
        self.acc = [acc.to(layer.weight.device) for acc, layer in zip(self.acc, self.layers, strict=True)]

    def state_dict(self) -> dict[str, Any]:
        return {"acc": {layer.name: acc for layer, acc in zip(self.layers, self.acc, strict=True)}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for layer, acc in zip(self.layers, self.acc, strict=True):
            acc.copy_(state["acc"][layer.name])


class Gradient(_Accumulated):
    """|w·g|, first-order Taylor, judged per interval between mask updates."""

    def observe_gradient(self, index: int, weight: torch.Tensor, grad: torch.Tensor) -> None:
        self.acc[index].add_((weight * grad).abs_())

    def masks_updated(self) -> None:
        for acc in self.acc:
            acc.zero_()


class Movement(_Accumulated):
    """-w·g accumulated for good (Sanh et al. 2020): weights moving away from zero score high."""

    def observe_gradient(self, index: int, weight: torch.Tensor, grad: torch.Tensor) -> None:
        self.acc[index].addcmul_(weight, grad, value=-1.0)


class Random(Criterion):
    """Uniform random scores from the run's seeded generator."""

    def weight_scores(self, index: int) -> torch.Tensor:
        weight = self.layers[index].weight
        return torch.rand(weight.shape, generator=self.generator).to(weight.device)

    def unit_scores(self, index: int) -> torch.Tensor:
        layer = self.layers[index]
        return torch.rand(layer.rows, generator=self.generator).to(layer.weight.device)


class Activation(Criterion):
    """Neurons/channels by their post-ReLU output: mean |a| or 1 - APoZ, over the steps since the last update."""

    needs_steps = True

    def __init__(self, layers: list[PrunedLayer], config: PruningConfig, generator: torch.Generator) -> None:
        super().__init__(layers, config, generator)
        self.sums: list[torch.Tensor | None] = [None] * len(layers)
        self.zeros: list[torch.Tensor | None] = [None] * len(layers)
        self.counts = [0] * len(layers)

    def unit_scores(self, index: int) -> torch.Tensor:
        sums, zeros = self.sums[index], self.zeros[index]
        if sums is None or zeros is None:
            rows = self.layers[index].rows
            return activation_score(self.config.activation_stat, torch.zeros(rows), torch.zeros(rows), 0,
                                    self.layers[index].name)
        return activation_score(self.config.activation_stat, sums, zeros, self.counts[index], self.layers[index].name)

    def hooks(self, model: nn.Module) -> list[Any]:
        return [layer.module.register_forward_hook(PrunerHook(self._hook(i)))
                for i, layer in enumerate(self.layers) if layer.row_pruning]

    def _hook(self, index: int) -> Callable[[nn.Module, Any, torch.Tensor], None]:
        def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            if not module.training:
                return
            with torch.no_grad():
                # Every prunable hidden layer of the zoo is followed by a ReLU: score what it passes on.
                active = output.detach().clamp_min(0)
                # A Linear's units are its output's last dimension (a (batch, tokens, features) input too), a
                # conv's its channels (dimension 1).
                unit_dim = active.dim() - 1 if isinstance(module, nn.Linear) else 1
                dims = [d for d in range(active.dim()) if d != unit_dim]
                per_sample = active[0].numel() // active.shape[unit_dim]
                sums = active.sum(dim=dims) / per_sample
                zeros = (active == 0).sum(dim=dims).to(active.dtype) / per_sample
                old_sums, old_zeros = self.sums[index], self.zeros[index]
                if old_sums is None or old_zeros is None:
                    self.sums[index], self.zeros[index] = sums, zeros
                else:
                    old_sums.add_(sums)
                    old_zeros.add_(zeros)
                self.counts[index] += active.shape[0]
        return hook

    def masks_updated(self) -> None:
        self.sums = [None] * len(self.layers)
        self.zeros = [None] * len(self.layers)
        self.counts = [0] * len(self.layers)

    def follow(self) -> None:
        devices = [layer.weight.device for layer in self.layers]
        self.sums = [None if t is None else t.to(d) for t, d in zip(self.sums, devices, strict=True)]
        self.zeros = [None if t is None else t.to(d) for t, d in zip(self.zeros, devices, strict=True)]

    def state_dict(self) -> dict[str, Any]:
        names = [layer.name for layer in self.layers]
        return {"sums": dict(zip(names, self.sums, strict=True)), "zeros": dict(zip(names, self.zeros, strict=True)),
                "counts": dict(zip(names, self.counts, strict=True))}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for i, layer in enumerate(self.layers):
            sums, zeros = state["sums"][layer.name], state["zeros"][layer.name]
            self.sums[i] = None if sums is None else sums.to(layer.weight.device)
            self.zeros[i] = None if zeros is None else zeros.to(layer.weight.device)
            self.counts[i] = int(state["counts"][layer.name])


#: `pruning.criterion` name → class. Add one with `register_criterion`.
CRITERIA: dict[str, type[Criterion]] = {
    "magnitude": Magnitude, "gradient": Gradient, "movement": Movement, "activation": Activation, "random": Random,
}


def register_criterion(name: str, cls: type[Criterion]) -> type[Criterion]:
    """Make `name` a criterion: the engine builds `cls`, and this process's run config accepts the name."""
    CRITERIA[name] = cls
    register_extra_name("criterion", name)
    return cls
