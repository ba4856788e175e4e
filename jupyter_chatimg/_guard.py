"""A streamed reply as the SSE decoder reads it: counted, masked and watched (pure).

``GuardedStream`` wraps the HTTP response for httpx-sse: it counts what
arrives (``max_reply_bytes`` holds even for one endless line), replaces the
API key in received text before anything else sees it (``KeyMask``), cuts a
stream that sends only comments or keep-alives for ``timeout`` seconds, and
cuts a reply that passes ``total_timeout``. It offers ``iter_text`` (what
httpx-sse 0.4.2+ reads) and ``iter_lines`` (what 0.4.0 and 0.4.1 read).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from typing import Any

from ._config import Settings
from ._errors import APIError

__all__ = ["GuardedStream", "KeyMask", "Stalled", "TooLarge", "TooLong", "scrub_error"]


class TooLarge(Exception):
    """The reply passed ``max_reply_bytes``."""


class Stalled(Exception):
    """Only comments or keep-alives for ``timeout`` seconds."""


class TooLong(Exception):
    """The reply passed ``total_timeout``."""


class KeyMask:
    """Replaces the key in text that arrives in pieces, before anything else sees it.

    A piece that ends with the start of the key is held back until the next
    piece says whether the key follows; other text passes at once (no delay
    for ordinary tokens).
    """

    def __init__(self, key: str | None) -> None:
        self._key = key if key and len(key) >= 8 else None
        self._held = ""

    def feed(self, text: str) -> str:
        key = self._key
        if key is None:
            return text
        text = self._held + text
        self._held = ""
        if key in text:
            text = text.replace(key, "***")
        for size in range(min(len(key) - 1, len(text)), 0, -1):
            if key.startswith(text[-size:]):
                self._held = text[-size:]
                return text[:-size]
        return text

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held

    def mask_bytes(self, data: bytes | bytearray) -> bytes | bytearray:
        key = self._key
        if key is None:
            return data
        raw = key.encode()
        return data.replace(raw, b"***") if raw in data else data


_LINE_END = re.compile(r"\r\n|\r|\n")


class GuardedStream:
    """The response as httpx-sse reads it (``headers``, ``iter_text`` for httpx-sse 0.4.2+,
    ``iter_lines`` for 0.4.0 and 0.4.1), counted, masked and watched."""

    def __init__(self, response: Any, settings: Settings, key: str | None) -> None:
        self._response = response
        self._limit = settings.max_reply_bytes
        self._stall = settings.timeout
        self._total = settings.total_timeout
        self._mask = KeyMask(key)
        self.received = 0
        self.started = self.last_data = time.monotonic()
        # httpx-sse checks the media type case-sensitively; it is case-insensitive.
        self.headers = {"content-type": response.headers.get("content-type", "").lower()}

    def iter_text(self) -> Iterator[str]:
        mask = self._mask
        for text in self._response.iter_text():
            self.received += len(text)
            if self.received > self._limit:
                raise TooLarge
            now = time.monotonic()
            if now - self.last_data > self._stall:
                raise Stalled
            if self._total is not None and now - self.started > self._total:
                raise TooLong
            yield mask.feed(text)
        yield mask.flush()

    def iter_lines(self) -> Iterator[str]:
        """Lines split at CRLF, CR or LF only (never at U+2028), as SSE wants them.

        Linear in the reply: a piece with no line end is only kept (one long line
        arriving in many pieces is joined once, when it ends).
        """
        pieces: list[str] = []  # the line still arriving
        for text in self.iter_text():
            if pieces and "\n" not in text and "\r" not in text and not pieces[-1].endswith("\r"):
                pieces.append(text)
                continue
            pending = "".join(pieces) + text
            # A CR at the very end may be the first half of a CRLF: split before it.
            hold = pending.endswith("\r")
            lines = _LINE_END.split(pending[:-1] if hold else pending)
            rest = lines.pop() + ("\r" if hold else "")
            pieces = [rest] if rest else []
            yield from lines
        pending = "".join(pieces)
        lines = _LINE_END.split(pending)
        if lines[-1] == "":
            lines.pop()
        yield from lines


def scrub_error(error: APIError, key: str | None) -> None:
    """Remove the key from what a server said in an error (some gateways echo it)."""
    if key is None or len(key) < 8 or key not in f"{error.message}{error.body}":
        return
    error.message = error.message.replace(key, "***")
    error.args = (error.message,)
    error.body = _scrubbed(error.body, key)


def _scrubbed(value: Any, key: str) -> Any:
    if isinstance(value, str):
        return value.replace(key, "***")
    if isinstance(value, Mapping):
        return {k: _scrubbed(v, key) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrubbed(v, key) for v in value]
    return value
