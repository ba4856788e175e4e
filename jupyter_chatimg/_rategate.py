"""``RateGate``: how many requests a batch has in flight, adapting to 429s (pure).

Every 429 halves the limit (at most once per pause) and pauses every worker for
the server's ``Retry-After`` (else an exponential backoff); every success raises
it again by ``1/limit`` (additive increase, multiplicative decrease), up to the
concurrency the user asked for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["RateGate"]


class RateGate:
    """A concurrency limit that adapts to 429s (AIMD) with a shared pause.

    ``acquire`` blocks while ``limit`` requests are in flight or a pause is
    on, and returns the epoch the request is sent in; ``rate_limited`` pauses
    everyone and halves the limit, once per epoch: the 429s of requests sent
    before the last decrease (under the old limit) do not decrease it again;
    ``succeeded`` raises the limit by ``1/limit``.
    """

    def __init__(self, limit: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_limit = max(1, int(limit))
        self.limit = float(self.max_limit)
        self.active = 0
        self.paused_until = 0.0
        self.rate_limits = 0
        self.epoch = 0
        self.peak = 0
        self._clock = clock
        self._cond = threading.Condition()
        self._closed = False

    @property
    def allowed(self) -> int:
        """Requests allowed in flight now."""
        return max(1, int(self.limit))

    def acquire(self) -> int | None:
        """Wait for a slot; return the epoch, or None when the gate was closed."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                wait = self.paused_until - self._clock()
                if wait <= 0 and self.active < self.allowed:
                    self.active += 1
                    self.peak = max(self.peak, self.active)
                    return self.epoch
                self._cond.wait(wait if wait > 0 else None)

    def release(self) -> None:
        with self._cond:
            self.active -= 1
            self._cond.notify_all()

    def succeeded(self) -> None:
        with self._cond:
            self.limit = min(float(self.max_limit), self.limit + 1.0 / self.limit)
            self._cond.notify_all()

    def rate_limited(self, delay: float, epoch: int | None = None) -> None:
        """A 429 for a request sent in ``epoch`` (None: count it as current)."""
        with self._cond:
            now = self._clock()
            self.rate_limits += 1
            if epoch is None or epoch >= self.epoch:
                self.limit = max(1.0, self.limit / 2)
                self.epoch += 1
            self.paused_until = max(self.paused_until, now + max(0.0, delay))
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
