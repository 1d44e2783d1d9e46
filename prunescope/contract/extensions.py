"""Criterion and recovery names a process registered beside the built-in `Literal`s of the run config.

The engine's `register_criterion`/`register_recovery` add them here. The API never imports the engine, so
it accepts (and `/api/options` lists) only the built-ins; a script or a worker that registered a name
accepts that name too, with the same field-located errors for anything else.
"""

from __future__ import annotations

from typing import Any, Literal

EXTRA_NAMES: dict[str, set[str]] = {"criterion": set(), "recovery": set()}


def register_extra_name(kind: Literal["criterion", "recovery"], name: str) -> None:
    """Accept `name` for `pruning.criterion` (or `pruning.recovery.kind`) in this process."""
    EXTRA_NAMES[kind].add(name)


def builtin_or_registered(kind: str, value: Any, handler: Any) -> Any:
    """A pydantic wrap validator's body: a registered name passes, anything else goes to the Literal check."""
    if isinstance(value, str) and value in EXTRA_NAMES[kind]:
        return value
    return handler(value)
