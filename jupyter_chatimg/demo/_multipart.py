"""A small, careful ``multipart/form-data`` parser (RFC 7578), standard library only.

Parts are split on the exact boundary delimiter at the byte level, so binary file
parts (PNG, JPEG ...) come back byte for byte; part headers are read with the
``email`` package (quoted and RFC 2231 ``filename*`` parameters included).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser

from ._httperror import bad

MAX_PARTS = 256


@dataclass(frozen=True)
class Part:
    """One form field: its name, the file name and type of a file part, and the bytes."""

    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None

    @property
    def text(self) -> str:
        """The value of a text field."""
        return self.data.decode("utf-8", "replace")


def boundary_of(content_type: str) -> str:
    """The ``boundary`` parameter of a ``multipart/form-data`` Content-Type."""
    msg = Message()
    msg["Content-Type"] = content_type
    if msg.get_content_type() != "multipart/form-data":
        raise bad(
            f"Invalid Content-Type {content_type.split(';')[0]!r}: send multipart/form-data "
            "(this endpoint takes file uploads).",
            None,
        )
    boundary = msg.get_param("boundary")
    if not isinstance(boundary, str) or not boundary or len(boundary) > 200:
        raise bad("The multipart/form-data Content-Type has no valid boundary parameter.", None)
    return boundary


def _headers(raw: bytes) -> Message:
    return HeaderParser().parsestr(raw.decode("utf-8", "surrogateescape"))


def parse_multipart(body: bytes, content_type: str) -> list[Part]:
    """The parts of ``body`` in order; a malformed body is a 400."""
    delim = b"--" + boundary_of(content_type).encode("latin-1")
    if body.startswith(delim):
        pos = len(delim)
    else:
        start = body.find(b"\r\n" + delim)
        if start < 0:
            raise bad("The multipart body does not contain its boundary.", None)
        pos = start + 2 + len(delim)
    parts: list[Part] = []
    while True:
        if body[pos : pos + 2] == b"--":
            return parts
        if body[pos : pos + 2] != b"\r\n":
            raise bad("The multipart body is malformed (no line break after a boundary).", None)
        head_end = body.find(b"\r\n\r\n", pos + 2)
        nxt = body.find(b"\r\n" + delim, pos + 2)
        if head_end < 0 or nxt < 0 or head_end > nxt:
            raise bad("The multipart body is truncated or malformed (missing boundary).", None)
        headers = _headers(body[pos + 2 : head_end])
        name = headers.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            raise bad("A multipart part has no Content-Disposition name.", None)
        ctype = headers.get("Content-Type")
        parts.append(Part(name, body[head_end + 4 : nxt], headers.get_filename(), ctype))
        if len(parts) > MAX_PARTS:
            raise bad(f"Too many multipart parts (limit {MAX_PARTS}).", None)
        pos = nxt + 2 + len(delim)
