"""The Files API of the demo (``/v1/files``): uploads kept in memory, shaped like OpenAI's.

``POST /v1/files`` (multipart ``purpose`` + ``file``), ``GET /v1/files`` (list: ``purpose``,
``limit``, ``order``, ``after``), ``GET /v1/files/{id}``, ``GET /v1/files/{id}/content``,
``DELETE /v1/files/{id}``. Batch output and error files live here too (purpose
``batch_output``). Images that the ``image-url`` fault publishes are a separate store,
served by ``_server`` at ``GET /v1/files/NAME.png``.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs

from ._multipart import Part, form_fields, parse_multipart
from ._protocol import dumps
from ._request import DemoHTTPError

#: Purposes an upload may have (``CreateFileRequest.purpose``).
UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
#: Files with purpose ``batch`` expire after 30 days unless ``expires_after`` says otherwise.
BATCH_FILE_TTL = 30 * 24 * 3600
_TTL_RANGE = (3600, BATCH_FILE_TTL)


class Listed(Protocol):
    """What a list answer holds: objects with an ``id`` and a JSON form."""

    @property
    def id(self) -> str:
        """The object's id (the ``after`` cursor)."""

    def to_json(self) -> dict[str, Any]:
        """The object as the API shows it."""


@dataclass(frozen=True)
class Response:
    """An answer of the Files/Batches API, for the handler to send."""

    status: int
    body: bytes
    content_type: str = "application/json"

    @classmethod
    def json(cls, obj: Any, status: int = 200) -> Response:
        """A JSON answer."""
        return cls(status, dumps(obj))


@dataclass(frozen=True)
class StoredFile:
    """An uploaded (or batch-written) file and its metadata."""

    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int
    expires_at: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``file`` object (``OpenAIFile``)."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
        }


def missing(param: str) -> DemoHTTPError:
    """400 for a required parameter that was not sent."""
    return DemoHTTPError(
        400,
        f"Missing required parameter: '{param}'.",
        param=param,
        code="missing_required_parameter",
    )


def invalid_value(param: str, value: object, allowed: Sequence[str]) -> DemoHTTPError:
    """400 for a value outside an enumeration, naming the supported ones."""
    listed = ", ".join(f"'{a}'" for a in allowed)
    return DemoHTTPError(
        400,
        f"Invalid value: '{value}'. Supported values are: {listed}.",
        param=param,
        code="invalid_value",
    )


def not_allowed(method: str, path: str, allow: str) -> DemoHTTPError:
    """405 naming the methods the path takes."""
    return DemoHTTPError(
        405,
        f"Method {method} is not allowed for {path}; use {allow}.",
        headers={"Allow": allow},
        code="method_not_allowed",
    )


def query_int(query: dict[str, list[str]], name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within ``[low, high]``; 400 otherwise."""
    raw = query.get(name, [None])[-1]
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise DemoHTTPError(
            400, f"Invalid '{name}': expected an integer, got '{raw}'.", param=name
        ) from None
    if not low <= value <= high:
        raise DemoHTTPError(400, f"Invalid '{name}': must be between {low} and {high}.", param=name)
    return value


def query_str(query: dict[str, list[str]], name: str) -> str | None:
    """A string query parameter (the last one given), or None."""
    values = query.get(name)
    return values[-1] if values else None


def paginate(items: Sequence[Listed], limit: int, after: str | None) -> dict[str, Any]:
    """One page of a list answer: the items after the ``after`` cursor, at most ``limit``."""
    start = 0
    if after is not None:
        ids = [i.id for i in items]
        if after not in ids:
            raise DemoHTTPError(
                400, f"Invalid 'after': no object with id '{after}' in this list.", param="after"
            )
        start = ids.index(after) + 1
    page = list(items[start : start + limit])
    return {
        "object": "list",
        "data": [i.to_json() for i in page],
        "first_id": page[0].id if page else None,
        "last_id": page[-1].id if page else None,
        "has_more": start + limit < len(items),
    }


class FileStore:
    """Files in memory, in upload order, thread-safe; ids are derived from content and order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: OrderedDict[str, StoredFile] = OrderedDict()
        self._seq = 0
        self.created = 0

    def add(self, data: bytes, filename: str, purpose: str, ttl: int | None = None) -> StoredFile:
        """Store ``data``; ``ttl`` seconds until ``expires_at`` (None: no expiry)."""
        now = int(time.time())
        with self._lock:
            self._seq += 1
            self.created += 1
            digest = hashlib.sha256(f"{self._seq}\0{purpose}\0{filename}\0".encode())
            digest.update(data)
            file_id = "file-" + digest.hexdigest()[:24]
            stored = StoredFile(
                file_id, filename, purpose, data, now, now + ttl if ttl is not None else None
            )
            self._files[file_id] = stored
        return stored

    def get(self, file_id: str) -> StoredFile:
        """The file with this id; 404 when there is none."""
        with self._lock:
            stored = self._files.get(file_id)
        if stored is None:
            raise DemoHTTPError(
                404,
                f"No such File object: {file_id}",
                param="id",
                code=None,
            )
        return stored

    def delete(self, file_id: str) -> dict[str, Any]:
        """Forget a file; the ``DeleteFileResponse``."""
        self.get(file_id)
        with self._lock:
            self._files.pop(file_id, None)
        return {"id": file_id, "object": "file", "deleted": True}

    def listing(self, query: dict[str, list[str]]) -> dict[str, Any]:
        """``GET /v1/files`` with ``purpose``, ``limit`` (1-10000), ``order``, ``after``."""
        purpose = query_str(query, "purpose")
        order = query_str(query, "order") or "desc"
        if order not in ("asc", "desc"):
            raise invalid_value("order", order, ("asc", "desc"))
        limit = query_int(query, "limit", 10_000, 1, 10_000)
        with self._lock:
            files = [f for f in self._files.values() if purpose in (None, f.purpose)]
        if order == "desc":
            files.reverse()
        return paginate(files, limit, query_str(query, "after"))

    # -- HTTP --------------------------------------------------------------------------

    def route(
        self, method: str, parts: list[str], query: str, content_type: str | None, body: bytes
    ) -> Response:
        """Answer a request for ``/v1/files[/ID[/content]]`` (``parts``: the path after it)."""
        path = "/v1/files" + "".join("/" + p for p in parts)
        if not parts:
            if method == "POST":
                return Response.json(self.upload(content_type, body).to_json())
            if method == "GET":
                return Response.json(self.listing(parse_qs(query)))
            raise not_allowed(method, path, "GET, POST")
        if len(parts) == 1:
            if method == "GET":
                return Response.json(self.get(parts[0]).to_json())
            if method == "DELETE":
                return Response.json(self.delete(parts[0]))
            raise not_allowed(method, path, "GET, DELETE")
        if len(parts) == 2 and parts[1] == "content":
            if method != "GET":
                raise not_allowed(method, path, "GET")
            return Response(200, self.get(parts[0]).data, "application/octet-stream")
        raise DemoHTTPError(404, f"Invalid URL ({method} {path}).", code="not_found")

    def upload(self, content_type: str | None, body: bytes) -> StoredFile:
        """``POST /v1/files``: validate the form and store the file."""
        fields = form_fields(parse_multipart(content_type, body))
        purpose = _text_field(fields, "purpose")
        if purpose is None:
            raise missing("purpose")
        if purpose not in UPLOAD_PURPOSES:
            raise invalid_value("purpose", purpose, UPLOAD_PURPOSES)
        part = fields.get("file")
        if part is None or part.filename is None:
            raise missing("file")
        filename = part.filename or "upload"
        if purpose == "batch" and not filename.lower().endswith(".jsonl"):
            raise DemoHTTPError(400, "Invalid file format for Batch API. Must be .jsonl")
        ttl = _expires_after(fields)
        if ttl is None and purpose == "batch":
            ttl = BATCH_FILE_TTL
        return self.add(part.data, filename, purpose, ttl)


def _text_field(fields: dict[str, Part], name: str) -> str | None:
    part = fields.get(name)
    return part.text.strip() if part is not None else None


def _expires_after(fields: dict[str, Part]) -> int | None:
    """Seconds from ``expires_after[anchor]=created_at`` + ``expires_after[seconds]=S``."""
    anchor = _text_field(fields, "expires_after[anchor]")
    seconds = _text_field(fields, "expires_after[seconds]")
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise invalid_value("expires_after.anchor", anchor, ("created_at",))
    low, high = _TTL_RANGE
    if seconds is None or not seconds.isdigit() or not low <= int(seconds) <= high:
        raise DemoHTTPError(
            400,
            f"Invalid 'expires_after.seconds': give an integer from {low} to {high}.",
            param="expires_after.seconds",
        )
    return int(seconds)
