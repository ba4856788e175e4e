"""``chat_many``: one prompt per item, several at a time, in input order.

Items are run by ``concurrency`` worker threads. How many requests are in
flight at once is also bounded by a ``RateGate`` that adapts to the server:
every 429 halves the limit (at most once per pause) and pauses every worker
for the server's ``Retry-After`` (else an exponential backoff); every success
raises it again by ``1/limit`` (additive increase, multiplicative decrease),
up to ``concurrency``. A 429 is retried up to ``MAX_RATE_LIMIT_RETRIES``
times; other retryable failures (5xx, 408, 409, no answer) ``max_retries``
times, each item on its own. An item that still fails is recorded (its
``ChatResult`` has ``.error`` set) and the batch goes on.

Progress is shown by ``_progress`` (a bar, then a table of the results).
Every item is a ``Request`` sent through the notebook's ``Session``; the
retry rules are the HTTP layer's (``retryable``). Interrupting the kernel stops the batch: requests in flight are
closed, items not done get an error, and the results so far are returned.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ._chat import default_session
from ._errors import APIError, ChatImgError, ConfigError, RateLimitError
from ._progress import Progress, input_thumb, make_progress, results_table
from ._render import in_notebook
from ._request import Request, build_request, request_fields
from ._result import ChatResult
from ._session import (
    MAX_RETRY_AFTER,
    Cancel,
    Prepared,
    Session,
    pooled_transport,
    retry_delay,
    retryable,
    settings_for,
)

__all__ = ["MAX_RATE_LIMIT_RETRIES", "RateGate", "chat_many", "results_table", "run_batch"]


MAX_RATE_LIMIT_RETRIES = 10
"""How many 429s one item may meet before it is recorded as failed."""
INTERRUPT_GRACE = 1.0
"""Seconds an interrupted batch waits for requests in flight to close."""


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


@dataclass
class _Item:
    prompt: str | Sequence[Any]
    images: Any


def _items(items: Iterable[Any]) -> list[_Item]:
    out: list[_Item] = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            out.append(_Item(item, ()))
        elif isinstance(item, tuple) and len(item) == 2:
            out.append(_Item(item[0], item[1] if item[1] is not None else ()))
        elif isinstance(item, list):
            out.append(_Item(item, ()))
        else:
            raise ConfigError(
                f"chat_many: item {i} is of type {type(item).__name__}; give prompts (str) or "
                "(prompt, images) pairs"
            )
    return out


class _Batch:
    def __init__(
        self, items: list[_Item], concurrency: int, template: Request, session: Session
    ) -> None:
        self.items = items
        self.template = template
        self.session = session
        self.gate = RateGate(concurrency)
        self.workers = max(1, min(concurrency, len(items)))
        self.results: list[ChatResult | None] = [None] * len(items)
        self.thumbs: list[str | None] = [None] * len(items)
        self.next = 0
        self.done = 0
        self.failed = 0
        self.stop = threading.Event()
        self.cancels: set[Cancel] = set()
        self.lock = threading.Condition()

    def _take(self) -> int | None:
        with self.lock:
            if self.stop.is_set() or self.next >= len(self.items):
                return None
            index = self.next
            self.next += 1
            return index

    def _finish(self, index: int, result: ChatResult) -> None:
        with self.lock:
            self.results[index] = result
            self.done += 1
            self.failed += result.error is not None
            self.lock.notify_all()

    def worker(self) -> None:
        # One transport per worker: its own connections, one shared TLS context.
        with pooled_transport() as transport:
            while (index := self._take()) is not None:
                try:
                    result = self._run(index, transport)
                except ChatImgError as exc:
                    result = exc.partial or ChatResult.failed(exc)
                except BaseException as exc:  # never lose an item to a bug in one of them
                    result = ChatResult.failed(exc)
                self._finish(index, result)

    def _prepare(self, index: int) -> Prepared:
        item = self.items[index]
        parts = build_request(item.prompt, item.images).parts
        prepared = self.session.prepare(self.template.evolve(parts=parts))
        self.thumbs[index] = input_thumb(prepared.body)
        return prepared

    def _run(self, index: int, transport: Any) -> ChatResult:
        prepared = self._prepare(index)
        retries = prepared.settings.max_retries
        prepared.settings = prepared.settings.with_overrides(max_retries=0)  # the batch's job
        rate_tries = other_tries = 0
        while True:
            epoch = self.gate.acquire()
            if epoch is None:
                return prepared.failed(ChatImgError("not run: the batch was stopped"))
            cancel = Cancel()
            with self.lock:
                self.cancels.add(cancel)
            try:
                result = self.session.send(
                    prepared, display=False, cancel=cancel, transport=transport
                )
            except RateLimitError as exc:
                if rate_tries >= MAX_RATE_LIMIT_RETRIES:
                    raise
                self.gate.rate_limited(_rate_delay(exc, rate_tries), epoch)
                rate_tries += 1
            except APIError as exc:
                if not retryable(exc) or other_tries >= retries:
                    raise
                other_tries += 1
                if self.stop.wait(retry_delay(other_tries - 1)):
                    raise
            else:
                self.gate.succeeded()
                return result
            finally:
                self.gate.release()
                with self.lock:
                    self.cancels.discard(cancel)

    def interrupt(self) -> None:
        self.stop.set()
        self.gate.close()
        with self.lock:
            cancels = list(self.cancels)
        for cancel in cancels:
            cancel.set("interrupted")

    def wait(self, progress: Progress, started: float) -> None:
        shown = -1
        last = 0.0
        while True:
            with self.lock:
                if self.done >= len(self.items):
                    return
                self.lock.wait(0.25)
                done, failed = self.done, self.failed
            now = time.perf_counter()
            if done != shown or now - last >= 1.0:
                progress.update(done, failed, now - started)
                shown, last = done, now


def _rate_delay(exc: RateLimitError, tries: int) -> float:
    """The server's ``Retry-After`` when it is reasonable, else exponential backoff."""
    advice = exc.retry_after
    if advice is not None and advice <= MAX_RETRY_AFTER:
        return advice
    return retry_delay(tries)


def run_batch(
    items: Iterable[Any],
    template: Request,
    *,
    concurrency: int = 4,
    display: bool = True,
    session: Session | None = None,
) -> list[ChatResult]:
    """Send ``template`` once per item (its parts replaced by the item's), in order."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"concurrency: {concurrency!r} must be a whole number >= 1")
    work = _items(items)
    settings_for(template.settings_overrides())  # bad settings fail once, not per item
    batch = _Batch(work, concurrency, template, session or default_session())
    progress = make_progress(len(work), display=display, in_notebook=in_notebook())
    started = time.perf_counter()
    threads = [
        threading.Thread(target=batch.worker, name=f"chatimg-batch-{i}", daemon=True)
        for i in range(batch.workers)
    ]
    for thread in threads:
        thread.start()
    try:
        batch.wait(progress, started)
    except KeyboardInterrupt:
        batch.interrupt()
        # A request still waiting for its first byte cannot always be closed at
        # once: give the workers a moment, then return without them.
        deadline = time.monotonic() + INTERRUPT_GRACE
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
    else:
        for thread in threads:
            thread.join()
    stopped = ChatImgError("interrupted: the batch was stopped before this item finished")
    with batch.lock:
        done = list(batch.results)
    results = [r if r is not None else ChatResult.failed(stopped) for r in done]
    progress.close(results, batch.thumbs, time.perf_counter() - started)
    return results


def chat_many(
    items: Iterable[Any],
    *,
    concurrency: int = 4,
    model: str | None = None,
    stream: bool | None = None,
    system: str | None = None,
    display: bool = True,
    base_url: str | None = None,
    api_key_env: str | None = None,
    timeout: float | None = None,
    **params: Any,
) -> list[ChatResult]:
    """Send many prompts, ``concurrency`` at a time; return the results in input order.

    ``items`` are prompts (text, or a list mixing text and images) or
    ``(prompt, images)`` pairs. The other keywords are those of ``chat``
    (request fields, ``extra=``, settings such as ``max_retries`` or
    ``cache``). Fewer requests are in flight while the server answers 429
    (its ``Retry-After`` is honoured); an item that fails has ``.error`` set
    and the others go on. With ``display``, a progress bar (a text line
    outside a notebook) and, in a notebook, a table of the results.
    """
    if params.pop("chat", False):
        raise ConfigError("chat_many does not continue the conversation; drop chat=True")
    fields = request_fields(
        model=model, base_url=base_url, api_key_env=api_key_env, timeout=timeout, **params
    )
    template = Request(parts=(), system=system, stream=stream, **fields)
    return run_batch(items, template, concurrency=concurrency, display=display)
