"""When a failed try may be repeated, and after how long (pure: no I/O).

Retries happen only before the first byte of a reply (DESIGN 4.1): 408, 409,
429, >= 500 and no answer at all; the delay is the server's ``retry-after-ms``
/ ``retry-after`` when it is at most ``MAX_RETRY_AFTER``, else exponential
backoff with jitter. The HTTP layer and ``chat_many`` both follow these rules.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from ._dialects.errors import retry_after_seconds
from ._errors import APIConnectionError, APIError, StreamError

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_MAX",
    "MAX_RETRY_AFTER",
    "RETRYABLE_STATUS",
    "retry_delay",
    "retryable",
]

RETRYABLE_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))
MAX_RETRY_AFTER = 60.0
"""Longer server advice than this is not waited for: exponential backoff instead."""
BACKOFF_BASE = 0.5
BACKOFF_MAX = 8.0


def retry_delay(
    attempt: int, headers: Mapping[str, str] | None = None, *, rng: random.Random | None = None
) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based).

    The server's ``retry-after-ms`` / ``retry-after`` when it is at most
    ``MAX_RETRY_AFTER``; else exponential backoff with jitter.
    """
    advice = retry_after_seconds(headers or {})
    if advice is not None and advice <= MAX_RETRY_AFTER:
        return advice
    base: float = min(BACKOFF_MAX, BACKOFF_BASE * (2**attempt))
    jitter: float = (rng or random).uniform(0.75, 1.0)
    return base * jitter


def retryable(error: APIError) -> bool:
    """Whether a failed try may be repeated: 408, 409, 429, >= 500, or no answer at all.

    Never a reply that broke off mid-way (``StreamError``): its first byte came.
    """
    if isinstance(error, StreamError):
        return False
    if error.status is None:
        return isinstance(error, APIConnectionError)
    return error.status in RETRYABLE_STATUS
