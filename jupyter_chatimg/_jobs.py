"""Batch API jobs (``chat_many(mode="batch")``): submit, wait, collect; status and cancel.

The engine under ``_batch``: it writes the JSONL of prepared bodies into
parts that respect the provider's limits (``batch_max_bytes``,
``batch_max_requests``), uploads each part (``POST /files``), creates its
batch (``POST /batches``) and records the batch in the journal (fsync'd)
before anything waits for it. Waiting polls ``GET /batches/{id}``; a final
batch's output and error files are downloaded to temporary files and mapped
back to items by ``custom_id`` (any order); items that neither file mentions
are failed items. Interrupting stops the waiting, never the remote batch.

A crash between an upload and the recording of its batch is covered too: the
upload is recorded first, and a re-run looks for a batch of that input file
(``GET /batches``) before creating one, so nothing is submitted twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._config import Settings
from ._dialects import batch as wire
from ._errors import APIConnectionError, APIError, ConfigError, NotFoundError
from ._fetch import fetch_result_images
from ._http import Client
from ._journal import BatchRecord, JobKey, Journal, runs_of
from ._request import Request
from ._result import ChatResult
from ._session import settings_for

__all__ = ["BatchRunner", "JobStatus", "batch_cancel", "batch_status", "job_key", "part_digest"]

DEMO_ENDPOINT = "demo"
FIRST_POLL = 0.25
"""Seconds before the first status check; each next wait is 1.5 times longer, up to
``batch_poll_interval``."""

# Settings that change an answer (the others change how it travels).
_ANSWER_SETTINGS = ("max_side", "detail")


def endpoint_of(settings: Settings) -> str:
    """The endpoint as a journal records it: ``demo`` for the built-in demo (its port
    changes with every kernel), else the base URL."""
    return DEMO_ENDPOINT if settings.demo else settings.base_url.rstrip("/")


def job_key(settings: Settings, template: Request) -> JobKey:
    """What a job's journal is written for: model, endpoint and the parameters that
    make the answers (never the key; the NAME of its variable, to find it again)."""
    params: dict[str, Any] = dict(template.params)  # request fields, by their names
    params["system"] = template.system
    params["prompt"] = [p for p in template.parts if isinstance(p, str)]
    params["extra"] = dict(template.extra) if template.extra else None
    for name in _ANSWER_SETTINGS:
        params[name] = getattr(settings, name)
    return JobKey(settings.model, endpoint_of(settings), params, settings.api_key_env)


def part_digest(digests: list[str]) -> str:
    """The digest of a part's items (their digests, in order)."""
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()[:32]


@dataclass
class _Part:
    """The JSONL file being written for the next batch."""

    number: int
    path: Path
    handle: Any
    indices: list[int] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)


class BatchRunner:
    """One job's remote batches: submit parts, wait for them, collect their results."""

    def __init__(
        self, settings: Settings, journal: Journal, *, client: Client | None = None
    ) -> None:
        self.settings = settings
        self.journal = journal
        self.client = client or Client(settings)
        self.limits = wire.Parts(settings.batch_max_bytes, settings.batch_max_requests)
        self.notes: list[str] = []
        self._part: _Part | None = None
        self._next_part = max((b.part for b in journal.batches), default=-1) + 1
        self._next_part = max([self._next_part, *(p + 1 for p in journal.uploads)])
        self.infos: dict[str, wire.BatchInfo] = {}

    # -- submitting ----------------------------------------------------------------

    def add(self, index: int, digest: str, body: Mapping[str, Any]) -> None:
        """Add item ``index`` (its prepared body) to the JSONL; submit a full part."""
        line = wire.input_line(index, body)
        if not self.limits.fits(line):
            self._submit_part()
        part = self._part
        if part is None:
            fd, name = tempfile.mkstemp(prefix="chatimg-batch-", suffix=".jsonl")
            part = self._part = _Part(self._next_part, Path(name), os.fdopen(fd, "wb"))
            self._next_part += 1
        part.handle.write(line)
        part.indices.append(index)
        part.digests.append(digest)
        self.limits.add(line)

    def finish(self) -> None:
        """Submit the last part (if any)."""
        if self._part is not None:
            self._submit_part()

    def discard(self) -> None:
        """Drop a part that was being written (nothing of it was sent)."""
        part, self._part = self._part, None
        if part is not None:
            part.handle.close()
            with contextlib.suppress(OSError):
                part.path.unlink()

    def _submit_part(self) -> None:
        part, self._part = self._part, None
        self.limits.reset()
        if part is None:
            return
        part.handle.close()
        try:
            filename = f"{self.journal.path.stem}-part{part.number}.jsonl"
            content, headers = wire.upload_form(part.path, filename, "batch")
            uploaded = self.client.request_json(
                "POST", "/files", content=content, content_headers=headers
            )
            file_id = uploaded.get("id") if isinstance(uploaded, Mapping) else None
            if not isinstance(file_id, str):
                raise APIError("POST /files returned no file id", status=200, body=uploaded)
        finally:
            with contextlib.suppress(OSError):
                part.path.unlink()
        record = BatchRecord(
            "", part.number, runs_of(part.indices), part_digest(part.digests), file_id
        )
        self.journal.record_upload(part.number, file_id, record.runs, record.digest)
        self._create(record)

    def _create(self, record: BatchRecord) -> None:
        assert record.input_file_id is not None
        body = wire.create_body(record.input_file_id, {"chatimg_part": str(record.part)})
        try:
            obj = self.client.request_json("POST", "/batches", body, retry_no_answer=False)
        except APIConnectionError:
            # No answer: the batch may have been created all the same. Look before trying again.
            found = self._find(record.input_file_id)
            if found is None:
                raise
            info = found
        else:
            info = wire.BatchInfo.from_json(obj)
        record.id = info.id
        self.journal.record_batch(record)
        self.infos[info.id] = info

    def _find(self, input_file_id: str) -> wire.BatchInfo | None:
        """The batch whose input is ``input_file_id``, if the server lists one."""
        after: str | None = None
        for _ in range(100):  # 100 pages of 100: far more than a notebook's batches
            path = "/batches?limit=100" + (f"&after={after}" if after else "")
            page = self.client.request_json("GET", path)
            data = page.get("data") if isinstance(page, Mapping) else None
            if not isinstance(data, list) or not data:
                return None
            for obj in data:
                if isinstance(obj, Mapping) and obj.get("input_file_id") == input_file_id:
                    return wire.BatchInfo.from_json(obj)
            if not page.get("has_more"):
                return None
            last = data[-1].get("id") if isinstance(data[-1], Mapping) else None
            if not isinstance(last, str):
                return None
            after = last
        return None

    def adopt_uploads(self) -> None:
        """Uploads recorded without their batch (a crash in between): find or create it."""
        for part, (file_id, runs, digest) in sorted(self.journal.uploads.items()):
            record = BatchRecord("", part, runs, digest, file_id)
            found = self._find(file_id)
            if found is not None:
                record.id = found.id
                self.journal.record_batch(record)
                self.infos[found.id] = found
            else:
                self._create(record)

    # -- waiting -------------------------------------------------------------------

    def refresh(self, record: BatchRecord) -> wire.BatchInfo:
        try:
            obj = self.client.request_json("GET", f"/batches/{record.id}")
        except NotFoundError:
            raise ConfigError(
                f"batch {record.id} (recorded in {self.journal.path.name}) is not known to "
                f"{self.settings.host or 'the demo'}"
                + (
                    " - the demo forgets its batches when the kernel restarts"
                    if self.settings.demo
                    else ""
                )
                + "; run with a new journal path to submit the job again"
            ) from None
        info = wire.BatchInfo.from_json(obj)
        self.infos[record.id] = info
        return info

    def wait(
        self,
        records: list[BatchRecord],
        on_progress: Callable[[list[wire.BatchInfo]], None],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Poll ``records`` until every one is final (``KeyboardInterrupt`` stops only this)."""
        delay = FIRST_POLL
        while True:
            infos = [
                self.infos[r.id]
                if r.id in self.infos and self.infos[r.id].final
                else self.refresh(r)
                for r in records
            ]
            on_progress(infos)
            if all(i.final for i in infos):
                return
            sleep(delay)
            delay = min(self.settings.batch_poll_interval, delay * 1.5)

    # -- collecting ----------------------------------------------------------------

    def _lines(self, file_id: str) -> Iterator[bytes]:
        limit = max(self.settings.max_reply_bytes, 5 * self.settings.batch_max_bytes)
        with tempfile.TemporaryFile(prefix="chatimg-output-") as fh:
            self.client.download_to(f"/files/{file_id}/content", fh, limit)
            fh.seek(0)
            yield from fh

    def collect(self, record: BatchRecord, on_result: Callable[[int, ChatResult], None]) -> None:
        """Map a final batch's output back to its items; each goes to ``on_result``
        and into the journal; then the batch is recorded as collected."""
        info = self.infos[record.id]
        expected = set(record.indices())
        s = self.settings
        if info.status == "failed":
            why = info.errors[0] if info.errors else "no reason given"
            error = APIError(f"batch {info.id} failed at the server: {why}")
            self.notes.append(
                f"batch {info.id} failed at the server: {why}; its {len(expected)} items are "
                "recorded as failed (fix the cause and run again to submit them anew)"
            )
            for index in sorted(expected):
                on_result(index, self._finished(ChatResult.failed(error), s))
            self.journal.record_collected(record, info)
            return
        unknown = 0
        example = ""
        for file_id in (info.output_file_id, info.error_file_id):
            if file_id is None:
                continue
            for raw in self._lines(file_id):
                line = wire.read_output_line(raw)
                if line is None:
                    continue
                found = wire.index_of(line.custom_id)
                if found is None or found not in expected:
                    unknown += 1
                    example = example or str(line.custom_id)[:40]
                    continue
                expected.discard(found)
                if line.result is not None:
                    result = line.result
                else:
                    result = ChatResult.failed(line.error or APIError("no answer"))
                on_result(found, self._finished(result, s))
        if unknown:
            self.notes.append(
                f"{unknown} line{'s' if unknown != 1 else ''} of batch {info.id}'s output "
                f"name no item of this job (custom_id {example!r}); ignored"
            )
        missing = APIError(f"batch {info.id} ({info.status}) returned no line for this item")
        for index in sorted(expected):
            on_result(index, self._finished(ChatResult.failed(missing), s))
        if info.status == "expired":
            self.notes.append(
                f"batch {info.id} expired after {info.completed} of {info.total} requests: the "
                f"finished ones are kept; run again to send the other {info.total - info.completed} "
                "in a new batch"
            )
        elif info.status == "cancelled":
            self.notes.append(
                f"batch {info.id} was cancelled after {info.completed} of {info.total} requests: "
                "the finished ones are kept; run again to send the others in a new batch"
            )
        self.journal.record_collected(record, info)

    @staticmethod
    def _finished(result: ChatResult, settings: Settings) -> ChatResult:
        result.endpoint = settings.host
        result.demo = settings.demo
        if result.error is None:
            fetch_result_images(result, settings)
        return result


# -- status and cancel (ci.batch_status / ci.batch_cancel) --------------------------


@dataclass
class JobStatus:
    """What a journal and its endpoint say about a job."""

    journal: str
    total: int | None
    finished: int
    failed: int
    batches: list[wire.BatchInfo]
    endpoint: str

    @property
    def running(self) -> bool:
        return any(not b.final for b in self.batches)

    def __repr__(self) -> str:
        total = f" of {self.total}" if self.total is not None else ""
        failed = f", {self.failed} failed" if self.failed else ""
        count = len(self.batches)
        head = (
            f"{self.journal}: {self.finished}{total} items finished{failed}; "
            f"{count} batch{'es' if count != 1 else ''} at {self.endpoint}"
        )
        lines = [head]
        for b in self.batches:
            lines.append(
                f"  {b.id}: {b.status}, {b.done}/{b.total} done"
                + (f" ({b.failed} failed)" if b.failed else "")
            )
        return "\n".join(lines)


def _settings(journal: Journal, overrides: Mapping[str, Any]) -> Settings:
    given = {k: v for k, v in overrides.items() if v is not None}
    if "base_url" not in given:
        given["base_url"] = journal.header.get("endpoint") or DEMO_ENDPOINT
    if "api_key_env" not in given and journal.header.get("api_key_env"):
        given["api_key_env"] = journal.header["api_key_env"]
    return settings_for(given)


def batch_status(
    journal: str | os.PathLike[str], *, base_url: str | None = None, api_key_env: str | None = None
) -> JobStatus:
    """How far the job of ``journal`` is: its finished items and its remote batches."""
    j = Journal.open(journal, None)
    batches: list[wire.BatchInfo] = []
    if j.batches:
        settings = _settings(j, {"base_url": base_url, "api_key_env": api_key_env})
        runner = BatchRunner(settings, j)
        for record in j.batches:
            if record.collected is not None:
                total, completed, failed = record.counts
                batches.append(
                    wire.BatchInfo(
                        record.id, record.collected, total=total, completed=completed, failed=failed
                    )
                )
                continue
            batches.append(runner.refresh(record))
    return JobStatus(
        str(j.path.name),
        j.total,
        len(j.done),
        len(j.failed),
        batches,
        str(j.header.get("endpoint")),
    )


def batch_cancel(
    journal: str | os.PathLike[str], *, base_url: str | None = None, api_key_env: str | None = None
) -> JobStatus:
    """Cancel the remote batches of ``journal`` that are still running."""
    j = Journal.open(journal, None)
    if j.batches:
        settings = _settings(j, {"base_url": base_url, "api_key_env": api_key_env})
        runner = BatchRunner(settings, j)
        for record in j.pending():
            info = runner.refresh(record)
            if info.final or info.status == "cancelling":
                continue
            with contextlib.suppress(APIError):  # it finished meanwhile: nothing to cancel
                runner.client.request_json("POST", f"/batches/{record.id}/cancel", {})
    return batch_status(journal, base_url=base_url, api_key_env=api_key_env)
