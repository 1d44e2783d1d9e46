"""Dynamic pruning: criteria, masks, schedules and the `Pruner` that applies them during training."""

from worker.engine.pruning.pruner import Pruner, build_pruner, config_problems, dense_report, prunable_weights
from worker.engine.pruning.schedule import DropSchedule, SparsitySchedule

__all__ = ["DropSchedule", "Pruner", "SparsitySchedule", "build_pruner", "config_problems", "dense_report",
           "prunable_weights"]
