"""One error hierarchy: services raise these; one handler in `backend.app` turns them into responses."""

from __future__ import annotations

from typing import Any

from fastapi import status


class AppError(Exception):
    """An error a client can act on: its message and HTTP status (and, for 422s, located details)."""

    status_code: int = status.HTTP_400_BAD_REQUEST

    def __init__(self, message: str, status_code: int | None = None, *, detail: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        self.detail = detail if detail is not None else message
        self.headers = headers


class NotFound(AppError):
    status_code = status.HTTP_404_NOT_FOUND


class Conflict(AppError):
    """The resource's state forbids the request (cancel a finished run, a superseded lease)."""

    status_code = status.HTTP_409_CONFLICT


class Invalid(AppError):
    """The request is well-formed JSON but its content cannot be applied."""

    status_code = status.HTTP_422_UNPROCESSABLE_CONTENT


class Unauthorized(AppError):
    status_code = status.HTTP_401_UNAUTHORIZED


class Forbidden(AppError):
    status_code = status.HTTP_403_FORBIDDEN
