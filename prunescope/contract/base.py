"""Generic pieces of the config contract: the strict base model and cross-field errors located at each field."""

from __future__ import annotations

import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator
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


def _admits(annotation: Any, kind: type) -> bool:
    """Whether a field of type `annotation` takes a value of `kind` as itself (Any and nested models do not count)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _admits(get_args(annotation)[0], kind)
    if origin in (Union, types.UnionType):
        return any(_admits(arg, kind) for arg in get_args(annotation))
    if origin is Literal:
        return any(isinstance(arg, kind) for arg in get_args(annotation))
    return annotation is Any or annotation is kind


def wrong_kind(annotation: Any, value: Any) -> str | None:
    """Why `value` is the wrong JSON kind for `annotation`, where pydantic's lax mode would convert it silently.

    `true` would be read as 1 in a number field, and "yes", 1 or "off" as a boolean; a number written as a
    string stays accepted (documented). Lists and tuples are checked item by item.
    """
    if isinstance(value, bool):
        if not _admits(annotation, bool) and (_admits(annotation, int) or _admits(annotation, float)):
            return "a number is needed, not true/false"
        return None
    if value is not None and _admits(annotation, bool) and not any(
            _admits(annotation, kind) for kind in (int, float, str, dict, list)):
        return "true or false is needed"
    if isinstance(value, (list, tuple)):
        origin = get_origin(annotation)
        if origin is Annotated or origin in (Union, types.UnionType):
            return next((why for arg in get_args(annotation) if (why := wrong_kind(arg, value))), None)
        if origin in (list, tuple):
            args = [a for a in get_args(annotation) if a is not Ellipsis]
            items = args if origin is tuple and len(args) == len(value) else args[:1] * len(value)
            return next((why for arg, item in zip(items, value, strict=False) if (why := wrong_kind(arg, item))),
                        None)
    return None


class Strict(BaseModel):
    """Base for every config block: unknown fields, non-finite numbers and booleans for numbers (or back) are
    rejected."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _right_kind(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and (why := wrong_kind(field.annotation, value)):
            raise ValueError(why)
        return value
