"""The cross-field rules of a pruning block: combinations that cannot work, each located at every field involved."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prunescope.contract.base import Problem

if TYPE_CHECKING:
    from prunescope.contract.config import PruningConfig


def pruning_problems(p: PruningConfig) -> list[Problem]:
    """Every rule a pruning block must satisfy beyond single-field types (the engine's only validator)."""
    from prunescope.contract.config import REGROWTH_RECOVERIES, StdScaleThreshold  # defined beside PruningConfig

    out: list[Problem] = []
    rec = p.recovery.kind
    if p.granularity == "n:m":
        if p.scope != "layer" or p.distribution != "uniform":
            out.append(Problem("granularity 'n:m' keeps n of every m weights in every layer: scope 'global' and "
                               "distribution 'erk' do not apply", ("granularity",),
                               *([("scope",)] if p.scope != "layer" else []),
                               *([("distribution",)] if p.distribution != "uniform" else [])))
        if p.n_m is None:
            out.append(Problem("granularity 'n:m' needs n_m, e.g. [2, 4]", ("n_m",), ("granularity",)))
        elif p.n_m[0] >= p.n_m[1]:
            out.append(Problem("n_m [n, m] needs n < m", ("n_m",)))
        if p.threshold is not None or p.target_sparsity is not None:
            out.append(Problem("granularity 'n:m' sets the sparsity (1 - n/m): leave threshold and "
                               "target_sparsity null", ("granularity",),
                               *([("threshold",)] if p.threshold is not None else []),
                               *([("target_sparsity",)] if p.target_sparsity is not None else [])))
        if rec in ("random", "gradient", "splice"):
            out.append(Problem(f"recovery '{rec}' is not defined for granularity 'n:m'",
                               ("recovery", "kind"), ("granularity",)))
    else:
        if p.n_m is not None:
            out.append(Problem("n_m applies only to granularity 'n:m'", ("n_m",), ("granularity",)))
        if p.threshold is None and p.target_sparsity is None:
            out.append(Problem("set target_sparsity (with a schedule) or threshold",
                               ("target_sparsity",), ("threshold",)))
        if p.threshold is not None and p.target_sparsity is not None:
            out.append(Problem("set either target_sparsity or threshold, not both",
                               ("target_sparsity",), ("threshold",)))
    if p.criterion == "activation" and p.granularity != "neuron":
        out.append(Problem("criterion 'activation' scores neurons/channels: use granularity 'neuron'",
                           ("criterion",), ("granularity",)))
    if rec in REGROWTH_RECOVERIES:
        if p.granularity != "unstructured" and p.granularity != "n:m":
            out.append(Problem(f"recovery '{rec}' needs granularity 'unstructured'",
                               ("recovery", "kind"), ("granularity",)))
        if p.target_sparsity is None and p.granularity != "n:m":
            out.append(Problem(f"recovery '{rec}' keeps a fixed sparsity: set target_sparsity",
                               ("recovery", "kind"), ("target_sparsity",)))
    if p.distribution == "erk" and p.scope != "layer":
        out.append(Problem("distribution 'erk' allocates per-layer densities: use scope 'layer'",
                           ("distribution",), ("scope",)))
    if isinstance(p.threshold, StdScaleThreshold) and p.scope == "global":
        out.append(Problem("threshold {'std_scale': q} is per layer: use scope 'layer'", ("threshold",), ("scope",)))
    if isinstance(p.threshold, StdScaleThreshold) and p.criterion != "magnitude":
        # θ = q·std of the weights, compared with |w·g| or movement scores orders of magnitude smaller: 100 % pruned.
        out.append(Problem(f"threshold {{'std_scale': q}} is q·std of the weights (Han et al.'s rule for |w|): use "
                           f"criterion 'magnitude', an absolute threshold in criterion '{p.criterion}''s units, or "
                           "target_sparsity", ("threshold",), ("criterion",)))
    if isinstance(p.threshold, StdScaleThreshold) and p.granularity == "neuron":
        out.append(Problem("threshold {'std_scale': q} compares single weights with q·std of the weights; a "
                           "neuron's mean |w| is on the same side for nearly every row, so it prunes a layer whole "
                           "or not at all: use target_sparsity with granularity 'neuron'",
                           ("threshold",), ("granularity",)))
    sched = p.schedule
    if sched.end_epoch is not None and sched.end_epoch < sched.start_epoch:
        out.append(Problem("schedule.end_epoch must be ≥ schedule.start_epoch",
                           ("schedule", "end_epoch"), ("schedule", "start_epoch")))
    return out
