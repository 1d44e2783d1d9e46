"""Generic pieces of the config contract: the strict base model and cross-field errors located at each field."""

from __future__ import annotations

from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError


def choices(alias: Any) -> list[str]:
    """The values of a `Literal` alias, in their declared order."""
    return list(get_args(alias))


Loc = tuple[str | int, ...]


class Problem:
    """One broken cross-field rule: the message and every field it involves."""

    __slots__ = ("fields", "message")

    def __init__(self, message: str, *fields: Loc) -> None:
        self.message = message
        self.fields = fields

    def __repr__(self) -> str:
        return f"Problem({self.message!r}, {self.fields!r})"


def raise_problems(title: str, problems: list[Problem], values: dict[Loc, Any]) -> None:
    """Raise one ValidationError with an entry per (problem, field), each at its own `loc`."""
    if not problems:
        return
    details = [
        InitErrorDetails(type=PydanticCustomError("config_conflict", problem.message), loc=loc,
                         input=values.get(loc))
        for problem in problems for loc in (problem.fields or ((),))
    ]
    raise ValidationError.from_exception_data(title, details)


class Strict(BaseModel):
    """Base for every config block: unknown fields and non-finite numbers are rejected."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
