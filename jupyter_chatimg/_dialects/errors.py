"""Wire rules every dialect shares (pure, no I/O): error bodies, ``Retry-After``,
JSON that may not be JSON, and server text made safe for one error line.

Error answers have the same shapes whichever API answered (DESIGN 4.1, 4.2):
``{"error": {"message", "type", "param", "code"}}``, the flat
``{"object": "error", "message"}``, or a proxy's HTML page.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

from .._errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    RateLimitError,
    ServerError,
    one_line,
    size_text,
)

__all__ = [
    "body_excerpt",
    "clean_server_text",
    "error_from_response",
    "error_message_of",
    "loads",
    "retry_after_seconds",
]

# Server text shown in an error line must not drive a terminal (escape sequences).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def error_message_of(obj: Any, raw: str) -> str:
    """``error.message``, else ``message``, else ``details``, else the raw data."""
    return _CONTROL.sub("", _message_of(obj, raw))


def _message_of(obj: Any, raw: str) -> str:
    if isinstance(obj, Mapping):
        err = obj.get("error")
        if isinstance(err, Mapping):
            for key in ("message", "details", "detail"):
                if isinstance(err.get(key), str) and err[key]:
                    return str(err[key])
            # Some gateways nest the provider's error as JSON text in metadata.raw.
            return one_line(json.dumps(err, ensure_ascii=False), 300)
        if isinstance(err, str) and err:
            return err
        for key in ("message", "details", "detail"):
            if isinstance(obj.get(key), str) and obj[key]:
                return str(obj[key])
    return one_line(raw, 300)


_DECODER = json.JSONDecoder()


def loads(text: str) -> Any:
    """JSON or None. Once per streamed token: ``raw_decode`` first, without the two
    wrappers and whitespace scans of ``json.loads`` (a tenth of a chunk's parse time)."""
    try:
        obj, end = _DECODER.raw_decode(text)
    except (ValueError, RecursionError):
        obj, end = None, -1
    if end == len(text):
        return obj
    try:
        return json.loads(text)  # surrounding whitespace, or not JSON at all
    except (ValueError, RecursionError):
        return None


# --- errors --------------------------------------------------------------------

_TAGS = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]*>", re.S | re.I)


def _excerpt(body: bytes | str, limit: int = 160) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    title = re.search(r"<title[^>]*>(.*?)</title>", text, re.S | re.I)
    text = title.group(1) if title else _TAGS.sub(" ", text)
    return one_line(_CONTROL.sub("", text), limit) or "(empty body)"


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The server's advice: ``retry-after-ms``, then ``retry-after`` (seconds or HTTP date)."""
    lower = {k.lower(): v for k, v in headers.items()}
    ms = lower.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = lower.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        import time

        when = parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


def error_from_response(status: int, headers: Mapping[str, str], body: bytes) -> APIError:
    """The ``APIError`` subclass for an error answer, with the server's own message."""
    text = body.decode("utf-8", "replace")
    obj = loads(text)
    if isinstance(obj, Mapping) and (obj.get("error") or obj.get("message") or obj.get("detail")):
        message = error_message_of(obj, text)
        parsed: Any = obj
    else:
        message = f"the server answered with a non-JSON error page: {_excerpt(body)}"
        parsed = text[:2000]
    cls: type[APIError]
    if status in (401, 403):
        cls = AuthenticationError
    elif status == 404:
        cls = NotFoundError
    elif status in (400, 422):
        cls = BadRequestError
    elif status == 429:
        cls = RateLimitError
    elif status >= 500:
        cls = ServerError
    else:
        cls = APIError
    err = cls(message, status=status, body=parsed)
    if isinstance(err, RateLimitError):
        err.retry_after = retry_after_seconds(headers)
    return err


def body_excerpt(content_type: str, data: bytes | bytearray) -> str:
    """A short, printable account of a body that is not JSON (never raw binary bytes)."""
    ctype = content_type.split(";")[0].strip().lower()
    head = bytes(data[:200])
    if ctype.startswith(("image/", "audio/", "video/", "application/octet")) or b"\x00" in head:
        return f"{size_text(len(data))} of {ctype or 'binary data'}"
    return one_line(head.decode("utf-8", "replace"), 120)


def clean_server_text(text: str) -> str:
    """Server text for an error line: control characters (terminal escapes) removed."""
    return _CONTROL.sub("", text)
