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
        end, start = p.recovery.end_epoch, p.schedule.start_epoch
        if end is not None and end <= start and p.granularity != "n:m":
            # Drop-and-grow runs after the schedule's first update (the end of start_epoch) until end_epoch's end.
            out.append(Problem(f"pruning.recovery.end_epoch ({end}) must be after pruning.schedule.start_epoch "
                               f"({start}): '{rec}' drops and regrows from the schedule's first update (the end of "
                               f"epoch {start}) until the end of recovery.end_epoch, so no weight would ever move "
                               "(for static sparse training, use recovery 'none')",
                               ("recovery", "end_epoch"), ("schedule", "start_epoch")))
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
    if isinstance(p.threshold, StdScaleThreshold) and rec == "splice":
        # Measured: masks re-decided ~140 times over six epochs, not one weight regrown. θ = q·std rises with the
        # weights' spread while a pruned weight is held below the return level (1+margin)·θ of the update before.
        out.append(Problem("threshold {'std_scale': q} with recovery 'splice' never regrows a weight: θ = q·std rises "
                           "as the weights spread, and a pruned weight is held below the return level (1+margin)·θ; "
                           "use an absolute threshold or target_sparsity with splice", ("threshold",),
                           ("recovery", "kind")))
    if p.criterion == "random" and rec in ("splice", "feedback"):
        # Measured: with feedback, 1835 of ~2091 kept weights swapped in one epoch; accuracy 0.87 → 0.24.
        out.append(Problem(f"criterion 'random' with recovery '{rec}' draws a new random mask at every update ('{rec}' "
                           "re-decides the mask from the scores of all weights): use recovery 'none' or 'random' "
                           "(SET) with criterion 'random'", ("criterion",), ("recovery", "kind")))
    sched = p.schedule
    if sched.end_epoch is not None and sched.end_epoch < sched.start_epoch:
        out.append(Problem("schedule.end_epoch must be ≥ schedule.start_epoch",
                           ("schedule", "end_epoch"), ("schedule", "start_epoch")))
    return out


def dense_recovery_end_problem(p: PruningConfig, epochs: int) -> str | None:
    """Why splice/feedback's recovery.end_epoch cannot hold in a run of `epochs` epochs (None: it can)."""
    rec_end, sched_end = p.recovery.end_epoch, p.schedule.end_epoch_for(epochs)
    if not p.dense_weights or p.schedule.kind == "one_shot" or rec_end is None or rec_end >= sched_end:
        return None
    # Every update of the ramp re-decides splice/feedback masks from the dense weights: they change anyway.
    return (f"pruning.recovery.end_epoch ({rec_end}) is before the schedule's end (epoch {sched_end}): under "
            f"'{p.recovery.kind}' every update of the schedule re-decides the masks from the dense weights, so they "
            f"would change until epoch {sched_end}; use a recovery.end_epoch ≥ {sched_end}, or leave it unset (to "
            "the last epoch)")


#: RigL's ΔT: the drop-and-grow interval when recovery.every_steps is unset (at least once an epoch).
DEFAULT_DROP_EVERY = 100


def drop_interval(p: PruningConfig, steps_per_epoch: int) -> int:
    """Steps between SET/RigL drop-and-grow updates: recovery.every_steps, else 100 or once an epoch if shorter."""
    every = p.recovery.every_steps
    return every if every is not None else min(DEFAULT_DROP_EVERY, steps_per_epoch)


def drop_phase_problem(p: PruningConfig, epochs: int, steps_per_epoch: int) -> str | None:
    """Why SET/RigL would never drop and regrow a weight (an interval longer than the whole phase), or None."""
    from prunescope.contract.config import REGROWTH_RECOVERIES

    if p.recovery.kind not in REGROWTH_RECOVERIES:
        return None
    every, start = drop_interval(p, steps_per_epoch), p.schedule.start_epoch * steps_per_epoch
    end_epoch = p.recovery.end_epoch if p.recovery.end_epoch is not None else p.schedule.end_epoch_for(epochs)
    end_step = max(start, end_epoch * steps_per_epoch)
    if end_step <= start:  # an explicit recovery.end_epoch this early is refused by `pruning_problems`
        return (f"recovery '{p.recovery.kind}' drops and regrows from the schedule's first update (the end of epoch "
                f"{p.schedule.start_epoch}) until the end of recovery.end_epoch (unset: the schedule's end_epoch, "
                f"{end_epoch}), so no weight would ever move: set a later recovery.end_epoch or schedule.end_epoch, "
                "or use recovery 'none' for static sparse training")
    # The first drop comes `every` steps after the schedule's first update; under the cosine decay the drop fraction
    # is 0 at the phase's last step, so a drop there moves nothing (a 1-epoch run with the defaults moved none).
    last = end_step - 1 if p.recovery.decay == "cosine" else end_step
    if start + every <= last:
        return None
    cosine = " (the cosine decay drops nothing at its last step)" if last < end_step else ""
    unset = p.recovery.every_steps is None
    most = (f"set it to at most {last - start} steps" if last > start else "a longer phase is needed") + (
        "" if unset else ", leave it unset (at least once an epoch)")
    return (f"pruning.recovery.every_steps ({every}{': unset, once an epoch' if unset else ''}) is longer than the "
            f"drop-and-grow phase{cosine} (until step {end_step}, the end of epoch {end_epoch} at {steps_per_epoch} "
            f"steps an epoch): no weight would ever move; {most}, or a later pruning.recovery.end_epoch")


def within(p: PruningConfig, epochs: int) -> PruningConfig:
    """`p` with its schedule's and recovery's epochs past `epochs` moved to it."""
    def last(value: int | None) -> int | None:
        return None if value is None else min(value, epochs)

    return p.model_copy(update={
        "schedule": p.schedule.model_copy(update={"start_epoch": min(p.schedule.start_epoch, epochs),
                                                  "end_epoch": last(p.schedule.end_epoch)}),
        "recovery": p.recovery.model_copy(update={"end_epoch": last(p.recovery.end_epoch)})})
