"""The Batch API dialect: JSONL input lines, batch objects, output lines (pure, no I/O).

DESIGN 4.4. A job is one or more batches; each batch's input is a JSONL file
of ``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}``
lines built from prepared chat bodies (never streamed). The output and error
files hold ``{"custom_id", "response": {"status_code", "body"}, "error"}``
lines in any order; they are mapped back to items by ``custom_id``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import APIError, ChatImgError
from .._result import ChatResult
from .chat import parse_completion
from .errors import error_from_response

__all__ = [
    "ENDPOINT",
    "FINAL_STATUSES",
    "MAX_FILE_BYTES",
    "MAX_REQUESTS",
    "BatchInfo",
    "OutputLine",
    "Parts",
    "create_body",
    "custom_id",
    "index_of",
    "input_line",
    "read_output_line",
    "upload_form",
]

ENDPOINT = "/v1/chat/completions"
"""The ``url`` of every input line and the ``endpoint`` of every batch."""
MAX_FILE_BYTES = 200_000_000
"""OpenAI's limit on a batch input file."""
MAX_REQUESTS = 50_000
"""OpenAI's limit on the requests of one batch."""
FINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})
_PREFIX = "item-"


def custom_id(index: int) -> str:
    """The ``custom_id`` of item ``index``."""
    return f"{_PREFIX}{index}"


def index_of(value: Any) -> int | None:
    """The item index a ``custom_id`` names, or None for an id this client never wrote."""
    if not isinstance(value, str) or not value.startswith(_PREFIX):
        return None
    digits = value[len(_PREFIX) :]
    if not digits.isdigit() or (len(digits) > 1 and digits[0] == "0"):
        return None
    return int(digits)


def input_line(index: int, body: Mapping[str, Any]) -> bytes:
    """One JSONL line (with its newline) for item ``index``: the body, never streamed."""
    request = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
    line = {"custom_id": custom_id(index), "method": "POST", "url": ENDPOINT, "body": request}
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def create_body(input_file_id: str, metadata: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The JSON of ``POST /batches``."""
    body: dict[str, Any] = {
        "input_file_id": input_file_id,
        "endpoint": ENDPOINT,
        "completion_window": "24h",
    }
    if metadata:
        body["metadata"] = dict(metadata)
    return body


@dataclass
class Parts:
    """Where a job's JSONL is cut into batches: at most ``max_bytes`` and
    ``max_requests`` per file (the provider's limits)."""

    max_bytes: int = MAX_FILE_BYTES
    max_requests: int = MAX_REQUESTS
    size: int = 0
    count: int = 0

    def fits(self, line: bytes) -> bool:
        """Whether ``line`` may join the current file (an empty file takes any line)."""
        if self.count == 0:
            return True
        return self.count < self.max_requests and self.size + len(line) <= self.max_bytes

    def add(self, line: bytes) -> None:
        self.size += len(line)
        self.count += 1

    def reset(self) -> None:
        self.size = self.count = 0


@dataclass
class BatchInfo:
    """What ``GET /batches/{id}`` said about one batch."""

    id: str
    status: str
    input_file_id: str | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    total: int = 0
    completed: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def done(self) -> int:
        """Requests answered so far (well or not)."""
        return self.completed + self.failed

    @classmethod
    def from_json(cls, obj: Any) -> BatchInfo:
        if not isinstance(obj, Mapping) or not isinstance(obj.get("id"), str):
            raise APIError("the server's batch object has no id", status=200, body=obj)
        counts = obj.get("request_counts")
        counts = counts if isinstance(counts, Mapping) else {}
        errors: list[str] = []
        raw_errors = obj.get("errors")
        data = raw_errors.get("data") if isinstance(raw_errors, Mapping) else None
        for item in data if isinstance(data, list) else []:
            if isinstance(item, Mapping):
                message = str(item.get("message") or item.get("code") or "error")
                if isinstance(item.get("line"), int):
                    message += f" (line {item['line']})"
                errors.append(message)

        def text(key: str) -> str | None:
            value = obj.get(key)
            return value if isinstance(value, str) and value else None

        def number(key: str) -> int:
            value = counts.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else 0

        return cls(
            id=obj["id"],
            status=str(obj.get("status") or "unknown"),
            input_file_id=text("input_file_id"),
            output_file_id=text("output_file_id"),
            error_file_id=text("error_file_id"),
            total=number("total"),
            completed=number("completed"),
            failed=number("failed"),
            errors=errors,
        )


@dataclass
class OutputLine:
    """One line of an output or error file: whose it is and what came of it."""

    custom_id: Any
    result: ChatResult | None = None
    error: ChatImgError | None = None


def read_output_line(raw: bytes) -> OutputLine | None:
    """Parse one output/error file line; None for a blank or unreadable one."""
    raw = raw.strip()
    if not raw:
        return None
    try:
        obj = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(obj, Mapping):
        return None
    out = OutputLine(obj.get("custom_id"))
    response = obj.get("response")
    error = obj.get("error")
    if isinstance(response, Mapping):
        status = response.get("status_code")
        body = response.get("body")
        if status == 200 and isinstance(body, Mapping):
            try:
                out.result = parse_completion(body)
            except APIError as exc:
                out.error = exc
            return out
        if isinstance(status, int) and status >= 400:
            data = json.dumps(body).encode() if not isinstance(body, str) else body.encode()
            out.error = error_from_response(status, {}, data)
            return out
    if isinstance(error, Mapping):
        message = str(error.get("message") or "the batch did not run this request")
        code = error.get("code")
        out.error = APIError(f"{message}" + (f" ({code})" if code else ""), body=dict(error))
        return out
    out.error = APIError("the batch returned a line with neither a response nor an error")
    return out


def upload_form(source: Path, filename: str, purpose: str = "batch") -> tuple[Any, dict[str, str]]:
    """``POST /files`` as multipart (``purpose``, ``file``) streamed from disk.

    Returns a factory of fresh bodies (one per try: the file is read again) and
    the headers that go with them (the length is known, so no chunked upload).
    """
    boundary = "chatimg-" + os.urandom(12).hex()
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n'
        f"{purpose}\r\n--{boundary}\r\nContent-Disposition: form-data; "
        f'name="file"; filename="{_quoted(filename)}"\r\n'
        "Content-Type: application/jsonl\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = len(head) + source.stat().st_size + len(tail)

    def content() -> Iterator[bytes]:
        yield head
        with source.open("rb") as fh:
            while piece := fh.read(1 << 20):
                yield piece
        yield tail

    headers = {
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Length": str(length),
    }
    return content, headers


def _quoted(name: str) -> str:
    """A file name safe inside a quoted multipart parameter."""
    return "".join(c if c.isprintable() and c not in '"\\' else "_" for c in name)
