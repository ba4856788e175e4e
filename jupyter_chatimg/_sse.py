"""Server-Sent Events framing: pieces of text in, ``(event, data)`` out (pure, no I/O).

The rules (DESIGN section 4): lines end at CRLF, CR or LF, never at U+2028 or
other characters that ``str.splitlines`` breaks at; lines starting with ``:``
are comments; ``data:`` is valid with or without one space after the colon; a
field name without a colon is the whole line; several ``data`` lines join with
``\\n``; ``event:`` names the event (``message`` by default); a blank line ends
the event; an event still open when the stream ends is dropped. Like httpx-sse,
an event is delivered when it has data lines or an event name.

Why not httpx-sse, which follows the same rules: it decodes line by line, two
Python calls and one object per event, and on a fast stream of small chunks that
was a third of the client's reading time (more than everything our parser and
renderer add). Here the complete events are cut out of each piece of text at
once, and the common event, a single ``data:`` line, takes one slice. Multibyte
characters split across network reads are already whole in the text that
``httpx.Response.iter_text`` yields.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

__all__ = ["SSEDecoder", "iter_sse"]


class SSEDecoder:
    """Incremental: ``feed`` each piece of text, get the events it completes."""

    def __init__(self) -> None:
        self._pending: list[str] = []  # text after the last blank line, line ends as "\n"
        self._cr = False  # the last piece ended with "\r": a "\n" next is half of that CRLF

    def feed(self, text: str) -> list[tuple[str, str]]:
        """The events (``(event, data)``) that ``text`` completes, in order."""
        if self._cr:
            self._cr = False
            if text.startswith("\n"):
                text = text[1:]
        if "\r" in text:
            self._cr = text.endswith("\r")
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if not text:
            return []
        end = text.rfind("\n\n")
        if end >= 0:
            head, rest = text[:end], text[end + 2 :]
        elif text[0] == "\n" and self._pending and self._pending[-1].endswith("\n"):
            head, rest = "", text[1:]  # the blank line straddles two pieces
        else:
            # No event ends here. Pieces are joined only once one does, so an event
            # that arrives in many pieces costs linear time.
            self._pending.append(text)
            return []
        if self._pending:
            self._pending.append(head)
            head = "".join(self._pending)
            self._pending = []
        if rest:
            self._pending.append(rest)
        return _events(head)


def _events(block: str) -> list[tuple[str, str]]:
    """The events of ``block``: whole events separated by blank lines."""
    out: list[tuple[str, str]] = []
    for raw in block.split("\n\n"):
        if raw.startswith("data:") and "\n" not in raw:
            # the common case: one data line (the payload is never copied twice)
            out.append(("message", raw[6:] if raw.startswith(" ", 5) else raw[5:]))
        elif raw:
            _slow(raw, out)
    return out


def _slow(raw: str, out: list[tuple[str, str]]) -> None:
    """Any other event text: field by field, line by line."""
    event = ""
    data: list[str] = []
    named = False
    for line in raw.split("\n"):
        if not line:
            if data or named:
                out.append((event or "message", "\n".join(data)))
            event, data, named = "", [], False
            continue
        if line[0] == ":":
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event, named = value, True
    if data or named:
        out.append((event or "message", "\n".join(data)))


def iter_sse(pieces: Iterable[str]) -> Iterator[tuple[str, str]]:
    """Every complete event in a stream given as pieces of text."""
    decoder = SSEDecoder()
    for text in pieces:
        yield from decoder.feed(text)
