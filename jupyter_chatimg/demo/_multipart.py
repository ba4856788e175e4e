"""A ``multipart/form-data`` reader (RFC 7578) on the standard library alone.

It serves both ``POST /v1/files`` and ``POST /v1/images/edits``. Bodies are split
with ``bytes.find`` on the exact delimiter (``CRLF--boundary``), so binary content
(PNG, JPEG, JSONL ...) comes back byte for byte and a file of many megabytes is
split in a few milliseconds (``email``'s feed parser walks every line, which is slow
for big uploads); each part's data is copied once. Only the part headers go through
``email``, for its parameter parsing (quoted and RFC 2231 ``filename*`` values); they
are read as UTF-8, as browsers and httpx send non-ASCII file names.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser

from ._httperror import DemoHTTPError, bad

MAX_PARTS = 256
_HEADER_END = b"\r\n\r\n"
_PADDING = b" \t"  # RFC 2046 allows linear whitespace after a boundary


@dataclass(frozen=True)
class Part:
    """One form field: its ``name``, the ``filename`` and type of a file, the raw ``data``."""

    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None

    @property
    def text(self) -> str:
        """The value of a text field (UTF-8; undecodable bytes replaced)."""
        return self.data.decode("utf-8", "replace")


def _bad(message: str) -> DemoHTTPError:
    return bad(message, None)


def boundary_of(content_type: str | None) -> bytes:
    """The boundary of a ``multipart/form-data`` content type; 400 when it has none."""
    msg = Message()
    msg["Content-Type"] = content_type or ""
    if not content_type or msg.get_content_type() != "multipart/form-data":
        got = repr(content_type.split(";")[0].strip()) if content_type else "no Content-Type"
        raise _bad(f"Invalid Content-Type {got}: this endpoint takes multipart/form-data.")
    boundary = msg.get_param("boundary")
    if not isinstance(boundary, str) or not 1 <= len(boundary) <= 200:
        raise _bad("The multipart/form-data Content-Type has no valid boundary parameter.")
    try:
        return boundary.encode("ascii")
    except UnicodeEncodeError:
        raise _bad("The multipart/form-data boundary must be ASCII.") from None


def _skip_padding(body: bytes, pos: int) -> int:
    while body[pos : pos + 1] and body[pos] in _PADDING:
        pos += 1
    return pos


def _part(body: bytes, start: int, end: int) -> Part:
    """The part in ``body[start:end]`` (headers, blank line, data)."""
    # from start - 2, so that a part with no headers at all is recognised
    head_end = body.find(_HEADER_END, start - 2, end)
    if head_end < 0:
        raise _bad("A multipart part has no blank line after its headers.")
    raw = body[start : head_end + 2].decode("utf-8", "replace")
    headers = HeaderParser().parsestr(raw, headersonly=True)
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
    separator = b"\r\n" + delimiter
    if body.startswith(delimiter):
        pos = len(delimiter)
    else:  # a preamble: the first delimiter starts a line
        start = body.find(separator)
        if start < 0:
            raise _bad("The multipart body does not contain its boundary.")
        pos = start + len(separator)
    parts: list[Part] = []
    while True:
        if body.startswith(b"--", pos):  # the close delimiter; an epilogue is ignored
            return parts
        pos = _skip_padding(body, pos)
        if not body.startswith(b"\r\n", pos):
            raise _bad("The multipart body is malformed (no line break after a boundary).")
        end = body.find(separator, pos + 2)
        if end < 0:
            raise _bad("The multipart body ends before its closing boundary.")
        if len(parts) >= MAX_PARTS:
            raise _bad(f"Too many multipart parts (limit {MAX_PARTS}).")
        parts.append(_part(body, pos + 2, end))
        pos = end + len(separator)


def form_fields(parts: list[Part]) -> dict[str, Part]:
    """The parts by field name (the first of each name wins)."""
    fields: dict[str, Part] = {}
    for p in parts:
        fields.setdefault(p.name, p)
    return fields
