"""The error answer of the demo server: an HTTP status plus OpenAI's error-body fields."""

from __future__ import annotations

from typing import Any


class DemoHTTPError(Exception):
    """An error answer: HTTP status plus the OpenAI error-body fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The standard ``{"error": {...}}`` body."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def bad(message: str, param: str | None) -> DemoHTTPError:
    """A 400 ``invalid_request_error`` about ``param``."""
    return DemoHTTPError(400, message, param=param)
