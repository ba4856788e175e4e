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

Progress: an ipywidgets bar in a notebook (replaced by a table of results,
thumbnails and escaped text, at the end), a tqdm-style line on stderr
elsewhere. Interrupting the kernel stops the batch: requests in flight are
closed, items not done get an error, and the results so far are returned.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import ssl
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from ._chat import _settings_for, _split_kwargs, digest_request, history_text, prepare_request, send
from ._client import MAX_RETRY_AFTER, Cancel, retry_delay
from ._errors import (
    APIConnectionError,
    APIError,
    ChatImgError,
    ConfigError,
    RateLimitError,
    ServerError,
    StreamError,
    one_line,
)
from ._images import decode_data_uri
from ._render import in_notebook
from ._result import ChatResult

__all__ = ["MAX_RATE_LIMIT_RETRIES", "RateGate", "chat_many", "results_table", "run_batch"]

MAX_RATE_LIMIT_RETRIES = 10
"""How many 429s one item may meet before it is recorded as failed."""
INTERRUPT_GRACE = 1.0
"""Seconds an interrupted batch waits for requests in flight to close."""
THUMBNAIL = 96
"""Side in pixels of the thumbnails in the results table."""
_TEXT_IN_TABLE = 400


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


class _Progress(Protocol):
    def update(self, done: int, failed: int, elapsed: float) -> None: ...

    def close(
        self, results: list[ChatResult], thumbs: list[str | None], elapsed: float
    ) -> None: ...


class _NoProgress:
    def update(self, done: int, failed: int, elapsed: float) -> None:
        pass

    def close(self, results: list[ChatResult], thumbs: list[str | None], elapsed: float) -> None:
        pass


class _TextProgress:
    """``chatimg: 12/64 [####      ] 1 failed, 1.2 s`` on stderr, rewritten in place."""

    def __init__(self, total: int, stream: Any = None) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.update(0, 0, 0.0)

    def _line(self, done: int, failed: int, elapsed: float) -> str:
        width = 24
        filled = width * done // max(1, self.total)
        bar = "#" * filled + " " * (width - filled)
        tail = f", {failed} failed" if failed else ""
        return f"chatimg: {done}/{self.total} [{bar}]{tail}, {elapsed:.1f} s"

    def update(self, done: int, failed: int, elapsed: float) -> None:
        self.stream.write("\r" + self._line(done, failed, elapsed))
        self.stream.flush()

    def close(self, results: list[ChatResult], thumbs: list[str | None], elapsed: float) -> None:
        failed = sum(1 for r in results if r.error is not None)
        self.stream.write("\r" + self._line(len(results), failed, elapsed) + "\n")
        for i, r in enumerate(results):
            if r.error is not None:
                self.stream.write(f"  item {i}: {one_line(str(r.error), 200)}\n")
        self.stream.flush()


class _WidgetProgress:
    """An ipywidgets bar and label, replaced by the results table when done."""

    def __init__(self, total: int) -> None:
        import ipywidgets as widgets
        from IPython.display import display

        self.total = total
        self.bar = widgets.IntProgress(value=0, min=0, max=max(1, total), description="chatimg")
        self.label = widgets.Label(value=f"0/{total}")
        self.box = widgets.HBox([self.bar, self.label])
        self.display_id = uuid.uuid4().hex
        display(self.box, display_id=self.display_id)  # type: ignore[no-untyped-call]

    def update(self, done: int, failed: int, elapsed: float) -> None:
        self.bar.value = done
        self.bar.bar_style = "warning" if failed else ""
        tail = f", {failed} failed" if failed else ""
        self.label.value = f"{done}/{self.total}{tail}, {elapsed:.1f} s"

    def close(self, results: list[ChatResult], thumbs: list[str | None], elapsed: float) -> None:
        from IPython.display import update_display

        for widget in (self.box, self.bar, self.label):
            widget.close()  # children are not closed with their box
        table = results_table(results, thumbs, elapsed=elapsed)
        update_display(table, raw=True, display_id=self.display_id)  # type: ignore[no-untyped-call]


@functools.lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle takes ~50-80 ms of CPU: once per process, not per request.
    return httpx.create_ssl_context()


def _thumb_of_image(image: Any) -> str | None:
    try:
        small = image.copy()
        small.thumbnail((THUMBNAIL, THUMBNAIL))
        if small.mode not in ("1", "L", "LA", "P", "RGB", "RGBA"):
            small = small.convert("RGBA" if "A" in small.getbands() else "RGB")
        buf = io.BytesIO()
        small.save(buf, format="PNG")
    except Exception:  # a thumbnail is decoration: an odd image just has none
        return None
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _input_thumb(body: Mapping[str, Any]) -> str | None:
    """A thumbnail of the first ``data:`` image of the last user message."""
    messages = body.get("messages") or []
    content = messages[-1].get("content") if messages else None
    if not isinstance(content, list):
        return None
    for part in content:
        url = (part.get("image_url") or {}).get("url", "") if isinstance(part, Mapping) else ""
        if isinstance(url, str) and url.startswith("data:"):
            try:
                return _thumb_of_image(decode_data_uri(url, label="batch item"))
            except ChatImgError:
                return None
    return None


def _img(data: str | None) -> str:
    if not data:
        return ""
    return f'<img src="data:image/png;base64,{data}" alt="" style="max-width:{THUMBNAIL}px">'


def results_table(
    results: Sequence[ChatResult],
    thumbs: Sequence[str | None] = (),
    *,
    elapsed: float | None = None,
) -> dict[str, str]:
    """A display bundle (``text/html`` + ``text/plain``) of a batch's results.

    One row per item: the input's thumbnail (``thumbs``, base64 PNGs), the
    reply text (escaped: model output is never HTML here), the first
    returned image and any error. Images in the text are shown as markers.
    """
    failed = sum(1 for r in results if r.error is not None)
    took = f" in {elapsed:.1f} s" if elapsed is not None else ""
    count = f"{len(results)} item" + ("" if len(results) == 1 else "s")
    summary = f"{count}, {len(results) - failed} ok, {failed} failed{took}"
    rows = []
    plain = [summary]
    for i, r in enumerate(results):
        thumb = thumbs[i] if i < len(thumbs) else None
        text = " ".join(history_text(r.text).split())
        short = text if len(text) <= _TEXT_IN_TABLE else text[: _TEXT_IN_TABLE - 1] + "…"
        out_thumb = _thumb_of_image(r.images[0]) if r.images else None
        more = f" (+{len(r.images) - 1})" if len(r.images) > 1 else ""
        note = ""
        if r.error is not None:
            note = "⚠ " + one_line(str(r.error), 200)
        elif r.cached:
            note = "from cache"
        rows.append(
            "<tr>"
            f'<td style="text-align:right;vertical-align:top">{i}</td>'
            f'<td style="vertical-align:top">{_img(thumb)}</td>'
            f'<td style="text-align:left;vertical-align:top">{html.escape(short)}'
            + (f"<br><small>{html.escape(note)}</small>" if note else "")
            + "</td>"
            f'<td style="vertical-align:top">{_img(out_thumb)}{html.escape(more)}</td>'
            "</tr>"
        )
        line = short if len(short) <= 70 else short[:69] + "…"
        plain.append(f"{i:>3}  {'ERROR ' + note if r.error is not None else line}")
    table = (
        f"<p>{html.escape(summary)}</p>"
        '<table><thead><tr><th>#</th><th>input</th><th style="text-align:left">reply</th>'
        "<th>image</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )
    return {"text/html": table, "text/plain": "\n".join(plain)}


def _failed(exc: BaseException, settings: Any, body: Mapping[str, Any] | None) -> ChatResult:
    if isinstance(exc, StreamError) and exc.partial is not None:
        result = exc.partial
        result.error = result.error or exc
        return result
    result = ChatResult(
        error=exc,
        model=getattr(settings, "model", None),
        endpoint=getattr(settings, "host", None),
        demo=bool(getattr(settings, "demo", False)),
    )
    if body is not None:
        result.request = digest_request(body)
    return result


def _retryable(exc: APIError) -> bool:
    if isinstance(exc, StreamError):
        return False
    if isinstance(exc, (ServerError, APIConnectionError)):
        return True
    return exc.status in (408, 409)


class _Batch:
    def __init__(
        self,
        items: list[_Item],
        concurrency: int,
        *,
        system: str | None,
        stream: bool | None,
        params: dict[str, Any],
        overrides: dict[str, Any],
    ) -> None:
        self.items = items
        self.system = system
        self.stream = stream
        self.params = params
        self.overrides = overrides
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
        with httpx.HTTPTransport(verify=_ssl_context()) as transport:
            while (index := self._take()) is not None:
                try:
                    result = self._run(index, transport)
                except BaseException as exc:  # never lose an item to a bug in one of them
                    result = _failed(exc, None, None)
                self._finish(index, result)

    def _run(self, index: int, transport: httpx.BaseTransport) -> ChatResult:
        item = self.items[index]
        try:
            p = prepare_request(
                item.prompt,
                item.images,
                system=self.system,
                stream=self.stream,
                params=self.params,
                settings_overrides=self.overrides,
            )
        except ChatImgError as exc:
            return _failed(exc, None, None)
        self.thumbs[index] = _input_thumb(p.body)
        settings = p.settings.with_overrides(max_retries=0)  # retries are the batch's job
        rate_tries = other_tries = 0
        while True:
            epoch = self.gate.acquire()
            if epoch is None:
                return _failed(ChatImgError("not run: the batch was stopped"), settings, p.body)
            cancel = Cancel()
            with self.lock:
                self.cancels.add(cancel)
            try:
                result = send(settings, p.body, display=False, cancel=cancel, transport=transport)
            except RateLimitError as exc:
                if rate_tries >= MAX_RATE_LIMIT_RETRIES:
                    return _failed(exc, settings, p.body)
                advice = exc.retry_after
                delay = (
                    advice
                    if advice is not None and advice <= MAX_RETRY_AFTER
                    else retry_delay(rate_tries)
                )
                self.gate.rate_limited(delay, epoch)
                rate_tries += 1
                continue
            except APIError as exc:
                if not _retryable(exc) or other_tries >= p.settings.max_retries:
                    return _failed(exc, settings, p.body)
                delay = retry_delay(other_tries)
                other_tries += 1
                if self.stop.wait(delay):
                    return _failed(exc, settings, p.body)
                continue
            except ChatImgError as exc:
                return _failed(exc, settings, p.body)
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

    def wait(self, progress: _Progress, started: float) -> None:
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


def run_batch(
    items: Iterable[Any],
    *,
    concurrency: int = 4,
    system: str | None = None,
    stream: bool | None = None,
    params: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    display: bool = True,
) -> list[ChatResult]:
    """``chat_many`` with the request fields and settings already split."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"concurrency: {concurrency!r} must be a whole number >= 1")
    work = _items(items)
    overrides = dict(overrides or {})
    _settings_for(dict(overrides, stream=stream))  # bad settings fail once, not per item
    batch = _Batch(
        work,
        concurrency,
        system=system,
        stream=stream,
        params=dict(params or {}),
        overrides=overrides,
    )
    progress: _Progress = _NoProgress()
    if display and work:
        progress = _WidgetProgress(len(work)) if in_notebook() else _TextProgress(len(work))
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
    results = [r if r is not None else _failed(stopped, None, None) for r in done]
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
    overrides, params = _split_kwargs(dict(params))
    overrides.update(model=model, base_url=base_url, api_key_env=api_key_env, timeout=timeout)
    return run_batch(
        items,
        concurrency=concurrency,
        system=system,
        stream=stream,
        params=params,
        overrides=overrides,
        display=display,
    )
