"""A blocking call waited for with a deadline and a Stop button (pure threading).

Socket timeouts restart with every byte: a server that trickles its headers
one byte a second never times out. ``in_thread`` runs the call in a helper
thread and waits for it at most ``limit`` seconds, or until ``cancel`` is set;
what the abandoned call still brings (a response, a client) is closed when it
comes.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, cast

__all__ = ["POLL", "Abandoned", "close_quietly", "in_thread"]

_T = TypeVar("_T")

POLL = 0.05
"""How often a wait looks at its Stop button."""


class _Stoppable(Protocol):
    @property
    def is_set(self) -> bool: ...


class Abandoned(Exception):
    """``in_thread`` stopped waiting: its deadline passed, or Stop was pressed."""

    def __init__(self, cancelled: bool) -> None:
        super().__init__("stopped" if cancelled else "deadline")
        self.cancelled = cancelled


class _Helpers:
    """Daemon threads that run the blocking calls, kept for the next one.

    Starting a thread per request cost ~0.2 ms (a tenth of a small request's
    whole CPU time in ``chat_many``); a waiting helper takes a call in ~15 µs.
    A helper is added when none is idle, so a call stuck on a dead socket
    never delays another; daemon threads, so none can hold up the kernel's exit.
    """

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[Callable[[], object]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0

    def run(self, call: Callable[[], object]) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1
            else:
                threading.Thread(target=self._serve, name="chatimg-http", daemon=True).start()
        self._calls.put(call)

    def _serve(self) -> None:
        while True:
            self._calls.get()()
            with self._lock:
                self._idle += 1


_HELPERS = _Helpers()


def in_thread(
    call: Callable[[], _T],
    *,
    limit: float,
    cancel: _Stoppable | None = None,
    on_abandon: Callable[[], object] | None = None,
) -> _T:
    """``call()`` in a helper thread, waited for at most ``limit`` seconds (and until Stop).

    What a blocked socket does cannot hold the caller: when the wait ends first,
    ``on_abandon`` runs and a response the call still brings is closed when it comes.
    """
    outcome: list[Any] = []
    done = threading.Event()

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # handed to the waiting thread
            outcome.append(exc)
        finally:
            done.set()

    _HELPERS.run(run)
    deadline = time.monotonic() + limit
    while not done.wait(POLL if cancel is not None else limit):
        cancelled = cancel is not None and cancel.is_set
        if cancelled or time.monotonic() > deadline:
            if on_abandon is not None:
                on_abandon()
            threading.Thread(target=_close_when_done, args=(done, outcome), daemon=True).start()
            raise Abandoned(cancelled)
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return cast(_T, result)


def _close_when_done(done: threading.Event, outcome: list[Any]) -> None:
    done.wait()
    if outcome and hasattr(outcome[0], "close"):
        close_quietly(outcome[0])


def close_quietly(thing: Any) -> None:
    """``thing.close()``, best effort (another thread may be reading from it)."""
    with contextlib.suppress(Exception):
        thing.close()
