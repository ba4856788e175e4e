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

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ._chat import default_session
from ._errors import APIError, ChatImgError, ConfigError, RateLimitError, one_line
from ._jobs import BatchRunner, JobStatus, job_key, part_digest
from ._jobs import batch_cancel as _jobs_cancel
from ._jobs import batch_status as _jobs_status
from ._journal import Journal, item_digest, new_path
from ._progress import TABLE_ROWS, Progress, input_thumb, make_progress, results_table
from ._rategate import RateGate
from ._render import in_notebook
from ._request import ImageRef, Request, build_request, request_fields
from ._result import BatchResults, ChatResult
from ._session import (
    MAX_RETRY_AFTER,
    Cancel,
    Prepared,
    Session,
    parse_replies,
    pooled_transport,
    retry_delay,
    retryable,
    settings_for,
)

__all__ = [
    "MAX_RATE_LIMIT_RETRIES",
    "BatchResults",
    "RateGate",
    "batch_cancel",
    "batch_status",
    "chat_many",
    "results_table",
    "run_batch",
]


MAX_RATE_LIMIT_RETRIES = 10
"""How many 429s one item may meet before it is recorded as failed."""
INTERRUPT_GRACE = 1.0
"""Seconds an interrupted batch waits for requests in flight to close."""


class _Source:
    """The items, read one at a time when a worker is ready for the next one.

    Nothing is listed up front: a generator of paths or a DataFrame column is
    consumed lazily, and an item's images are read only when its request is
    about to be built. ``total`` is known when the items have a length.
    """

    def __init__(self, items: Iterable[Any], prompt: tuple[Any, ...] | None) -> None:
        if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
            raise ConfigError(
                f"chat_many: items must be a list, a generator or a column of prompts or "
                f"images, not a {type(items).__name__}"
            )
        self.total: int | None = None
        with contextlib.suppress(TypeError):
            self.total = len(items)  # type: ignore[arg-type]
        self.labels = _labels(items, self.total)
        self.prompt = prompt
        if prompt is None and isinstance(items, (list, tuple)):
            # A list is checked whole before anything is sent (types only: nothing is read).
            for i, item in enumerate(items):
                if not isinstance(item, (str, list)) and not (
                    isinstance(item, tuple) and len(item) == 2
                ):
                    raise self._bad(item, i)
        self._it: Iterator[Any] = iter(items)
        self.read = 0
        self.exhausted = False

    def next(self) -> tuple[int, tuple[Any, ...] | ChatImgError] | None:
        """The next item's index and prompt parts (or why it cannot be sent); None at the end."""
        if self.exhausted:
            return None
        try:
            item = next(self._it)
        except StopIteration:
            self.exhausted = True
            self.total = self.read
            return None
        index = self.read
        self.read += 1
        try:
            return index, self._parts(item, index)
        except ChatImgError as exc:
            return index, exc

    def _parts(self, item: Any, index: int) -> tuple[Any, ...]:
        if self.prompt is not None:  # every item is an image (or a list of them)
            return (*self.prompt, ImageRef(item, f"item {index}"))
        if isinstance(item, str):
            return build_request(item).parts
        if isinstance(item, tuple) and len(item) == 2:
            return build_request(item[0], item[1] if item[1] is not None else ()).parts
        if isinstance(item, list):
            return build_request(item).parts
        raise self._bad(item, index)

    @staticmethod
    def _bad(item: Any, index: int) -> ConfigError:
        return ConfigError(
            f"chat_many: item {index} is of type {type(item).__name__}; give prompts (str), "
            "(prompt, images) pairs, or images with prompt=..."
        )


def _labels(items: Any, total: int | None) -> list[Any] | None:
    """The index labels of a pandas Series (a DataFrame column), else None."""
    index = getattr(items, "index", None)
    if total is None or index is None or callable(index) or not hasattr(index, "tolist"):
        return None
    try:
        labels = index.tolist()
    except Exception:  # not a pandas index after all
        return None
    return labels if isinstance(labels, list) and len(labels) == total else None


def _stopped(why: str) -> ChatImgError:
    return ChatImgError(why)


class _Batch:
    def __init__(
        self,
        source: _Source,
        concurrency: int,
        template: Request,
        session: Session,
        journal: Journal | None = None,
        thumbs: bool = False,
    ) -> None:
        self.source = source
        self.template = template
        self.session = session
        self.journal = journal
        self.want_thumbs = thumbs
        self.settings = settings_for(template.settings_overrides())  # once, not per item
        self.gate = RateGate(concurrency)
        total = source.total
        self.workers = max(1, min(concurrency, total if total is not None else concurrency))
        self.results: list[ChatResult | None] = []
        self.thumbs: dict[int, str | None] = {}
        self.resumed: set[int] = set()
        self.done = 0
        self.failed = 0
        self.fatal: BaseException | None = None
        self.stop = threading.Event()
        self.cancels: set[Cancel] = set()
        self.lock = threading.Condition()

    @property
    def finished(self) -> bool:
        return self.source.exhausted and self.done >= len(self.results)

    def _take(self) -> tuple[int, tuple[Any, ...], str] | None:
        """The next item to send; items the journal holds are read back on the way."""
        with self.lock:
            while not self.stop.is_set():
                try:
                    got = self.source.next()
                    if got is None:
                        self.lock.notify_all()
                        return None
                    index, parts = got
                    self.results.append(None)
                    if isinstance(parts, ChatImgError):
                        self._finish_locked(index, ChatResult.failed(parts))
                        continue
                    digest = item_digest(parts) if self.journal is not None else ""
                    if self.journal is not None and index in self.journal.done:
                        self.journal.check_item(index, digest)
                        self.resumed.add(index)
                        self._finish_locked(index, self.journal.result(index))
                        continue
                    return index, parts, digest
                except ChatImgError as exc:
                    if isinstance(exc, ConfigError) and self.journal is not None:
                        self._abort(exc)  # a journal for other items: nothing more is sent
                        return None
                    raise
                except BaseException as exc:  # the user's generator failed: stop, say why
                    self._abort(exc)
                    return None
            return None

    def _abort(self, exc: BaseException) -> None:
        self.fatal = self.fatal or exc
        self.stop.set()
        self.gate.close()
        self.source.exhausted = True
        self.lock.notify_all()

    def _finish_locked(self, index: int, result: ChatResult) -> None:
        self.results[index] = result
        self.done += 1
        self.failed += result.error is not None
        self.lock.notify_all()

    def _finish(self, index: int, digest: str, result: ChatResult) -> None:
        if self.journal is not None:
            try:
                self.journal.record(index, digest, result)
            except OSError as exc:  # a full disk: the batch goes on, the journal says why not
                with self.lock:
                    self._abort(
                        ConfigError(
                            f"journal {self.journal.path.name} cannot be written any more "
                            f"({exc.strerror or exc}); the results so far are kept in it"
                        )
                    )
        with self.lock:
            self._finish_locked(index, result)

    def worker(self) -> None:
        # One transport per worker: its own connections, one shared TLS context.
        with pooled_transport() as transport:
            while (taken := self._take()) is not None:
                index, parts, digest = taken
                try:
                    result = self._run(index, parts, transport)
                except ChatImgError as exc:
                    result = exc.partial or ChatResult.failed(exc)
                except BaseException as exc:  # never lose an item to a bug in one of them
                    result = ChatResult.failed(exc)
                self._finish(index, digest, result)

    def _prepare(self, index: int, parts: tuple[Any, ...]) -> Prepared:
        prepared = self.session.prepare(self.template.evolve(parts=parts), self.settings)
        if self.want_thumbs and index < TABLE_ROWS:
            self.thumbs[index] = input_thumb(prepared.body)
        return prepared

    def _run(self, index: int, parts: tuple[Any, ...], transport: Any) -> ChatResult:
        prepared = self._prepare(index, parts)
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
                if self.finished or (self.fatal is not None and not self.cancels):
                    return
                self.lock.wait(0.25)
                done, failed, total = self.done, self.failed, self.source.total
            now = time.perf_counter()
            if done != shown or now - last >= 1.0:
                progress.update(done, failed, now - started, total=total)
                shown, last = done, now


def _rate_delay(exc: RateLimitError, tries: int) -> float:
    """The server's ``Retry-After`` when it is reasonable, else exponential backoff."""
    advice = exc.retry_after
    if advice is not None and advice <= MAX_RETRY_AFTER:
        return advice
    return retry_delay(tries)


def _say(line: str) -> None:
    print(f"chatimg: {line}", file=sys.stderr)


def run_batch(
    items: Iterable[Any],
    template: Request,
    *,
    concurrency: int = 4,
    display: bool = True,
    session: Session | None = None,
    journal: str | os.PathLike[str] | None = None,
    mode: str = "live",
    prompt: tuple[Any, ...] | None = None,
) -> BatchResults:
    """Send ``template`` once per item (its parts replaced by the item's), in order.

    ``prompt``: parts put before every item (the items are then images).
    """
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"concurrency: {concurrency!r} must be a whole number >= 1")
    if mode not in ("live", "batch"):
        raise ConfigError(f'mode: {mode!r} is not "live" or "batch"')
    source = _Source(items, prompt)
    session = session or default_session()
    if mode == "batch":
        if journal is None:
            raise ConfigError(
                'mode="batch" needs journal="NAME.jsonl": the batch id is recorded there, so '
                "that a re-run resumes the batch instead of paying for it twice"
            )
        results = _run_batch_mode(source, template, session, journal, display)
        parse_replies(template, results)  # the Batch API's lines: schema= as live
        return results
    settings = settings_for(template.settings_overrides())  # bad settings fail once, not per item
    opened = Journal.open(journal, job_key(settings, template)) if journal is not None else None
    try:
        if opened is not None and opened.pending():
            ids = ", ".join(b.id for b in opened.pending())
            raise ConfigError(
                f"journal {opened.path.name} has Batch API work still out ({ids}); run with "
                'mode="batch" to collect it, or ci.batch_cancel(journal) first'
            )
        results = _run_live(source, template, session, opened, concurrency, display)
        parse_replies(template, results)  # items read back from the journal
        return results
    finally:
        if opened is not None:
            opened.close()


def _run_live(
    source: _Source,
    template: Request,
    session: Session,
    journal: Journal | None,
    concurrency: int,
    display: bool,
) -> BatchResults:
    notebook = in_notebook()
    batch = _Batch(source, concurrency, template, session, journal, thumbs=display and notebook)
    progress = make_progress(source.total, display=display, in_notebook=notebook)
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
    if batch.fatal is not None:
        progress.close([], [], time.perf_counter() - started)
        if isinstance(batch.fatal, ChatImgError):
            raise batch.fatal
        raise ConfigError(
            f"chat_many: reading the items failed ({type(batch.fatal).__name__}: "
            f"{one_line(str(batch.fatal), 120)})"
        ) from batch.fatal
    stopped = ChatImgError("interrupted: the batch was stopped before this item finished")
    with batch.lock:
        done = list(batch.results)
        thumbs = [batch.thumbs.get(i) for i in range(min(len(done), TABLE_ROWS))]
    results = BatchResults(
        [r if r is not None else ChatResult.failed(stopped) for r in done], source.labels
    )
    progress.close(results, thumbs, time.perf_counter() - started, resumed=batch.resumed)
    return results


def _run_batch_mode(
    source: _Source,
    template: Request,
    session: Session,
    path: str | os.PathLike[str],
    display: bool,
) -> BatchResults:
    """``mode="batch"``: submit what the journal does not hold, wait, collect, read back."""
    template = template.evolve(stream=False)
    settings = settings_for(template.settings_overrides())
    if Session.api_for(template, settings) != "chat":
        raise ConfigError(
            f'mode="batch" sends chat completions; {settings.model} speaks the Images API, '
            'so run it with mode="live" (the default)'
        )
    with Journal.open(path, job_key(settings, template)) as journal:
        job = _BatchJob(source, template, session, settings, journal)
        job.submit()
        job.wait(display)
        return job.collect()


class _BatchJob:
    """One ``mode="batch"`` run over a journal: what to submit, the wait, the results."""

    def __init__(
        self,
        source: _Source,
        template: Request,
        session: Session,
        settings: Any,
        journal: Journal,
    ) -> None:
        self.source, self.template, self.session = source, template, session
        self.settings, self.journal = settings, journal
        self.runner = BatchRunner(settings, journal)
        self.runner.adopt_uploads()
        self.pending = journal.pending()
        self.owner = {i: rec for rec in self.pending for i in rec.indices()}
        self.seen: dict[str, list[str]] = {rec.id: [] for rec in self.pending}
        self.results: dict[int, ChatResult] = {}
        self.digests: dict[int, str] = {}
        self.started = time.perf_counter()
        self.progress: Progress | None = None
        self.total = 0

    def finished(self, index: int, result: ChatResult, digest: str = "") -> None:
        self.results[index] = result
        if digest:
            self.journal.record(index, digest, result)

    def submit(self) -> None:
        """Read the items; those neither done nor in a remote batch go into new batches."""
        try:
            while (got := self.source.next()) is not None:
                self._take(*got)
            self.runner.finish()
        except BaseException:
            self.runner.discard()
            raise
        self.total = self.source.read
        self.journal.record_total(self.total)
        for rec in self.pending:
            if part_digest(self.seen[rec.id]) != rec.digest:
                path = self.journal.path
                raise ConfigError(
                    f"journal {path.name} was written for other items (batch {rec.id} "
                    f'holds different ones); run with journal="{new_path(path).name}" for '
                    f"a new job, or delete {path.name} to start this one over"
                )

    def _take(self, index: int, parts: Any) -> None:
        if isinstance(parts, ChatImgError):
            self.results[index] = ChatResult.failed(parts)
            return
        digest = item_digest(parts)
        if index in self.journal.done:
            self.journal.check_item(index, digest)
            return
        rec = self.owner.get(index)
        if rec is not None:  # already in a remote batch: never sent again
            self.seen[rec.id].append(digest)
            self.digests[index] = digest
            return
        try:
            prepared = self.session.prepare(self.template.evolve(parts=parts), self.settings)
        except ChatImgError as exc:
            self.finished(index, exc.partial or ChatResult.failed(exc), digest)
            return
        self.digests[index] = digest
        self.runner.add(index, digest, prepared.body)

    def wait(self, display: bool) -> None:
        """Poll the remote batches with a progress bar; an interrupt stops only the waiting."""
        self.records = self.journal.pending()
        self.progress = make_progress(self.total, display=display, in_notebook=in_notebook())
        try:
            self.runner.wait(self.records, self._on_progress)
        except KeyboardInterrupt:
            self.progress.close([], [], time.perf_counter() - self.started)
            ids = ", ".join(r.id for r in self.records)
            _say(
                f"stopped waiting; the batch ({ids}) goes on at "
                f"{self.settings.host or 'the demo'}: run the cell again to collect it, "
                f"ci.batch_cancel({self.journal.path.name!r}) to cancel it"
            )
            raise

    def _on_progress(self, infos: list[Any]) -> None:
        assert self.progress is not None
        done = len(self.journal.done) + len(self.results)
        done += sum(i.done for i in infos if not i.final) + sum(i.total for i in infos if i.final)
        failed = sum(1 for r in self.results.values() if r.error is not None)
        failed += sum(i.failed for i in infos)
        states = sorted({i.status for i in infos})
        note = f"batch {', '.join(states)}" if states else ""
        elapsed = time.perf_counter() - self.started
        self.progress.update(min(done, self.total), failed, elapsed, note=note)

    def collect(self) -> BatchResults:
        """Download the output and error files and put every item's result in its place."""
        for rec in self.records:
            self.runner.collect(rec, lambda i, r: self.finished(i, r, self.digests.get(i, "")))
        for note in self.runner.notes:
            _say(note)
        out = []
        resumed = set()
        for i in range(self.total):
            if i in self.results:
                out.append(self.results[i])
            elif i in self.journal.done:
                resumed.add(i)
                out.append(self.journal.result(i))
            else:
                missing = ChatImgError("no result: run again to send this item")
                out.append(ChatResult.failed(missing))
        final = BatchResults(out, self.source.labels)
        assert self.progress is not None
        self.progress.close(final, [], time.perf_counter() - self.started, resumed=resumed)
        return final


def chat_many(
    items: Iterable[Any],
    *,
    prompt: str | Sequence[Any] | None = None,
    concurrency: int = 4,
    model: str | None = None,
    stream: bool | None = None,
    system: str | None = None,
    display: bool = True,
    base_url: str | None = None,
    api_key_env: str | None = None,
    timeout: float | None = None,
    journal: str | os.PathLike[str] | None = None,
    mode: str = "live",
    **params: Any,
) -> BatchResults:
    """Send many prompts, ``concurrency`` at a time; return the results in input order.

    ``items`` are prompts (text, or a list mixing text and images) or
    ``(prompt, images)`` pairs; with ``prompt=``, every item is an image (a
    path, a PIL image, bytes ... or a list of them) sent with that prompt.
    Items are read one at a time (a generator or a DataFrame column is
    fine), their images only when their request is built.

    ``journal="job.jsonl"`` appends each finished item to that file as it
    finishes; run again with the same journal and finished items are read
    back instead of being sent again. ``mode="batch"`` sends the whole job
    through the provider's Batch API (half price, hours instead of minutes)
    and waits with a progress bar; it needs a journal, where the batch is
    recorded before the wait: interrupting stops only the waiting, and
    running again resumes the same batch (``ci.batch_status(journal)``,
    ``ci.batch_cancel(journal)``).

    The other keywords are those of ``chat`` (request fields, ``extra=``,
    settings such as ``max_retries`` or ``cache``). Fewer requests are in
    flight while the server answers 429 (its ``Retry-After`` is honoured); an
    item that fails has ``.error`` set and the others go on. With ``display``,
    a progress bar (a text line outside a notebook) and, in a notebook, a
    table of the results. The list returned has ``.to_pandas()``.
    """
    if params.pop("chat", False):
        raise ConfigError("chat_many does not continue the conversation; drop chat=True")
    fields = request_fields(
        model=model, base_url=base_url, api_key_env=api_key_env, timeout=timeout, **params
    )
    parts: tuple[Any, ...] = ()
    if prompt is not None:
        parts = tuple(p for p in build_request(prompt).parts)
    template = Request(parts=parts, system=system, stream=stream, **fields)
    return run_batch(
        items,
        template,
        concurrency=concurrency,
        display=display,
        journal=journal,
        mode=mode,
        prompt=parts if prompt is not None else None,
    )


def batch_status(
    journal: str | os.PathLike[str], *, base_url: str | None = None, api_key_env: str | None = None
) -> JobStatus:
    """How far the job recorded in ``journal`` is: finished items, and each remote
    batch's status as the endpoint reports it now (``base_url`` / ``api_key_env``
    override what the journal recorded)."""
    return _jobs_status(journal, base_url=base_url, api_key_env=api_key_env)


def batch_cancel(
    journal: str | os.PathLike[str], *, base_url: str | None = None, api_key_env: str | None = None
) -> JobStatus:
    """Cancel the remote batches of ``journal`` that still run; their finished requests
    are kept (a re-run collects them and sends the rest in a new batch)."""
    return _jobs_cancel(journal, base_url=base_url, api_key_env=api_key_env)
