"""A ``multipart/form-data`` reader (RFC 7578) on the standard library alone.

Bodies are split with ``bytes.find`` on the boundary, so binary content passes
through untouched and a file of many megabytes is split in a few milliseconds
(``email``'s feed parser walks every line, which is slow for big uploads).
Only the part headers go through ``email``, for its parameter parsing (quoted
and RFC 2231 ``filename*`` values).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32

from ._request import DemoHTTPError

_MAX_PARTS = 256
_HEADER_END = b"\r\n\r\n"


@dataclass(frozen=True)
class Part:
    """One form field: its ``name``, the ``filename`` for a file, the raw ``data``."""

    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None

    @property
    def text(self) -> str:
        """The value of a text field (UTF-8; undecodable bytes replaced)."""
        return self.data.decode("utf-8", "replace")


def _bad(message: str) -> DemoHTTPError:
    return DemoHTTPError(400, message)


def boundary_of(content_type: str | None) -> bytes:
    """The boundary of a ``multipart/form-data`` content type; 400 when it has none."""
    msg = Message()
    msg["Content-Type"] = content_type or ""
    if msg.get_content_type() != "multipart/form-data":
        raise _bad(
            "This endpoint takes multipart/form-data (got "
            f"{msg.get_content_type() if content_type else 'no Content-Type'})."
        )
    boundary = msg.get_param("boundary")
    if not isinstance(boundary, str) or not 1 <= len(boundary) <= 200:
        raise _bad("The multipart/form-data Content-Type has no valid boundary parameter.")
    return boundary.encode("latin-1")


def _part(body: bytes, start: int, end: int) -> Part:
    """The part in ``body[start:end]`` (headers, blank line, data), copying the data once."""
    head_end = body.find(_HEADER_END, start - 2, end)
    if head_end < 0:
        raise _bad("A multipart part has no blank line after its headers.")
    headers = BytesHeaderParser(policy=compat32).parsebytes(body[start : head_end + 4])
    if headers.get("Content-Disposition") is None:
        raise _bad("A multipart part has no Content-Disposition header.")
    name = headers.get_param("name", header="content-disposition")
    if not isinstance(name, str):
        raise _bad("A multipart part has no field name.")
    filename = headers.get_filename()
    ctype = headers.get("Content-Type")
    return Part(name, body[head_end + 4 : end], filename, ctype)


def parse_multipart(content_type: str | None, body: bytes) -> list[Part]:
    """The parts of a ``multipart/form-data`` body, in order; 400 when it is malformed."""
    delimiter = b"--" + boundary_of(content_type)
    start = body.find(delimiter)
    if start < 0:
        raise _bad("The multipart body does not contain its boundary.")
    parts: list[Part] = []
    pos = start + len(delimiter)
    separator = b"\r\n" + delimiter
    while not body.startswith(b"--", pos):
        if not body.startswith(b"\r\n", pos):
            raise _bad("The multipart body is malformed (no line break after a boundary).")
        end = body.find(separator, pos + 2)
        if end < 0:
            raise _bad("The multipart body ends before its closing boundary.")
        if len(parts) >= _MAX_PARTS:
            raise _bad(f"Too many multipart parts (limit {_MAX_PARTS}).")
        parts.append(_part(body, pos + 2, end))
        pos = end + len(separator)
    return parts


def form_fields(parts: list[Part]) -> dict[str, Part]:
    """The parts by field name (the first of each name wins)."""
    fields: dict[str, Part] = {}
    for p in parts:
        fields.setdefault(p.name, p)
    return fields
