"""Dynamic pruning: scoring, selection and recovery classes, schedules, and the `Pruner` that composes them."""

from worker.engine.pruning.criteria import CRITERIA, Criterion, register_criterion
from worker.engine.pruning.layer import PrunedLayer, prunable_weights
from worker.engine.pruning.pruner import Pruner
from worker.engine.pruning.recovery import RECOVERIES, Recovery, register_recovery
from worker.engine.pruning.schedule import DropSchedule, SparsitySchedule
from worker.engine.pruning.selection import SELECTIONS, Selection

__all__ = ["CRITERIA", "RECOVERIES", "SELECTIONS", "Criterion", "DropSchedule", "PrunedLayer", "Pruner", "Recovery",
           "Selection", "SparsitySchedule", "prunable_weights", "register_criterion", "register_recovery"]
