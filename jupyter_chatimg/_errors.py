"""The exception tree of jupyter_chatimg.

Every error's ``str()`` is one line that says what went wrong and what to do;
none of them ever carries the API key. ``.partial`` holds the ``ChatResult``
of the failed request (what arrived before the failure) once a session has
seen the error.

::

    ChatImgError
    ├── ConfigError            settings that cannot work (bad option, missing key ...)
    ├── ImageInputError        something given as an image that cannot be sent
    └── APIError               the endpoint answered with an error (.status, .message, .body)
        ├── AuthenticationError    401 / 403
        ├── NotFoundError          404 (usually an unknown model)
        ├── BadRequestError        400 / 422
        ├── RateLimitError         429 (.retry_after)
        ├── ServerError            >= 500
        ├── APIConnectionError     no answer: refused, DNS, TLS, timeout (.status is None)
        │   └── APITimeoutError
        └── StreamError            the reply broke off mid-way (.partial: the ChatResult so far)
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._result import ChatResult

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ChatImgError",
    "ConfigError",
    "ImageInputError",
    "NotFoundError",
    "RateLimitError",
    "ServerError",
    "StreamError",
    "one_line",
    "size_text",
]


class ChatImgError(Exception):
    """Root of every error raised by jupyter_chatimg.

    ``partial`` is the ``ChatResult`` of the request that failed (what arrived,
    if anything, with ``.error`` set) once a session has handled the error;
    None for errors raised before any request was made.
    """

    partial: ChatResult | None = None


class ConfigError(ChatImgError):
    """A setting or option cannot work as given."""


class ImageInputError(ChatImgError):
    """Something given as an image cannot be turned into one."""


class APIError(ChatImgError):
    """The endpoint answered with an error, or could not be reached.

    ``status`` is the HTTP status (None when no answer came), ``message`` the
    server's own words, ``body`` the raw error body (decoded, possibly cut short).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: Any = None,
        hint: str = "",
    ) -> None:
        self.status = status
        self.message = message
        self.body = body
        self.hint = hint
        super().__init__(message)

    def __str__(self) -> str:
        head = f"HTTP {self.status}: " if self.status else ""
        tail = f" ({self.hint})" if self.hint else ""
        return one_line(f"{head}{self.message}{tail}")


class AuthenticationError(APIError):
    """401 or 403: the key is missing, wrong, or not allowed here."""


class NotFoundError(APIError):
    """404: usually an unknown model or a wrong base URL."""


class BadRequestError(APIError):
    """400 or 422: the server refused the request as written."""


class RateLimitError(APIError):
    """429: too many requests; ``retry_after`` holds the server's advice in seconds."""

    retry_after: float | None = None


class ServerError(APIError):
    """5xx: the server failed."""


class APIConnectionError(APIError):
    """The endpoint could not be reached or did not answer."""


class APITimeoutError(APIConnectionError):
    """The endpoint did not answer within the timeout."""


class StreamError(APIError):
    """The reply broke off mid-way; ``partial`` is the ChatResult received so far."""

    def __init__(
        self,
        message: str,
        *,
        partial: ChatResult | None = None,
        status: int | None = None,
        body: Any = None,
        hint: str = "",
    ) -> None:
        super().__init__(message, status=status, body=body, hint=hint)
        self.partial = partial

    def __str__(self) -> str:
        tail = f" ({self.hint})" if self.hint else ""
        return one_line(f"{self.message}{tail}")


# Server text in an error line must not drive a terminal (escape sequences) nor
# show raw bytes: control characters (C0, DEL, C1) go, on every error path.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def one_line(text: str, limit: int = 300) -> str:
    """Fold ``text`` to a single line of at most ``limit`` characters, without control characters."""
    flat = " ".join(_CONTROL.sub(" ", str(text)).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def size_text(n: int) -> str:
    """``n`` bytes for a message: 512 bytes, 40 KB, 3.5 MB."""
    if n < 1000:
        return f"{n} bytes"
    if n < 1_000_000:
        return f"{n / 1000:.3g} KB"
    return f"{n / 1_000_000:.3g} MB"
