"""The newest epoch's checkpoint, held in memory until someone needs it on disk (no torch import here).

The engine `keep`s every finished epoch's checkpoint as a copy that later steps do not change; a worker writes
it only when it uploads one (at most every `checkpoint_seconds` while a run trains, and when it hands a run
back), so training pays a memory copy per epoch instead of a file write (on a short run's epoch the write was
about a tenth of the training time; a copy of LeNet-300-100's state costs under a millisecond).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

SaveTo = Callable[[Path], None]


class CheckpointSlot:
    """One slot: the newest kept checkpoint replaces the one before it."""

    def __init__(self) -> None:
        self._epoch: int | None = None
        self._save: SaveTo | None = None

    @property
    def epoch(self) -> int | None:
        """The epoch the kept checkpoint continues from (None before the first epoch ends)."""
        return self._epoch

    def keep(self, epoch: int, save: SaveTo) -> None:
        """Hold epoch `epoch`'s checkpoint; `save(path)` writes it (atomically) whenever it is called."""
        self._epoch, self._save = epoch, save

    def save(self, path: Path) -> int | None:
        """Write the kept checkpoint to `path`; its epoch, or None (nothing written) when none is kept."""
        if self._save is None:
            return None
        self._save(path)
        return self._epoch
