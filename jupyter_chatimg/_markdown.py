r"""Markdown in reply text: the parser, where the images are, and the one still arriving.

The reply text is read by markdown-it-py (CommonMark, tables, strikethrough,
``$...$`` / ``$$...$$`` math through mdit-py-plugins' dollarmath), the same
parser that ``_html`` renders it with, so "is this an image?" and "how is it
shown?" always get the same answer. What no library does is kept here:

* :func:`find_markdown_images`: every markdown image outside code, with its
  offsets in the text (markdown-it's tokens carry no offsets: the image rule
  is wrapped to record them, and they are mapped back to the text);
* :func:`image_urls_in_markdown`: the URLs a client should fetch or decode;
* :func:`open_image_start`: where an image that is still arriving begins at
  the end of a streamed text (``![alt``, ``![alt](`` or ``![alt](url``), so
  that no half ``data:`` URI is ever shown.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from markdown_it import MarkdownIt, helpers, rules_inline
from markdown_it.common.utils import unescapeAll
from markdown_it.helpers import parse_link_destination
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token
from mdit_py_plugins.dollarmath import dollarmath_plugin

__all__ = [
    "FETCHABLE",
    "MarkdownImage",
    "find_markdown_images",
    "image_urls_in_markdown",
    "make_parser",
    "normalise",
    "open_image_start",
]

FETCHABLE = re.compile(r"(?:https?://|data:image/[a-z0-9.+-]+;base64,)", re.IGNORECASE)
"""The image URLs a reply's images are fetched (http(s)) or decoded (``data:image/...``) from."""


@dataclass(frozen=True)
class MarkdownImage:
    """One markdown image found in a text (offsets of the whole construct)."""

    start: int
    end: int
    alt: str
    url: str
    in_link: bool = field(default=False, compare=False)
    """Inside a link's text (``[![alt](img)](page)``): cutting the text there would break the link."""


# ----------------------------------------------------------------------- parser


class _Parser(MarkdownIt):
    """markdown-it with every destination kept as written (escapes and entities resolved).

    Which links may be followed is decided after parsing (``_html``), so that a
    refused link keeps its text instead of showing as raw markdown, and image
    URLs stay comparable with the ones the client fetched.
    """

    def validateLink(self, url: str) -> bool:
        return True

    def normalizeLink(self, url: str) -> str:
        return url


_RECORD = "jupyter_chatimg.images"


@dataclass
class _Record:
    """Where the wrapped image rule writes what it found, for one inline source."""

    src: str
    found: list[tuple[int, int, Token, bool]] = field(default_factory=list)


def _recording(rule: Callable[[StateInline, bool], bool]) -> Callable[[StateInline, bool], bool]:
    def image(state: StateInline, silent: bool) -> bool:
        start = state.pos
        if not rule(state, silent):
            return False
        record = state.env.get(_RECORD) if not silent else None
        # A nested parse (an image inside an image's alt text) has another source: not ours.
        if isinstance(record, _Record) and state.src is record.src:
            in_link = getattr(state, "linkLevel", 0) > 0
            record.found.append((start, state.pos, state.tokens[-1], in_link))
        return True

    return image


_DEST_ANGLE = re.compile(r"[\n<>\\]")
_DEST_PLAIN = re.compile(r"[\x00-\x20\x7f()\\]")


def _link_destination(string: str, pos: int, maximum: int) -> Any:
    """markdown-it's ``parseLinkDestination``, the same result, with the scan in C.

    Its own loop looks at every character in Python: about 2 s for the 20 MB ``data:``
    URI of a returned image. Here a regular expression skips to the next character
    that matters.
    """
    start = pos
    result = parse_link_destination._Result()
    if pos < len(string) and string[pos] == "<":
        pos += 1
        while pos < maximum:
            m = _DEST_ANGLE.search(string, pos, maximum)
            if m is None:
                return result
            pos = m.start()
            c = string[pos]
            if c in "\n<":
                return result
            if c == ">":
                result.pos = pos + 1
                result.str = unescapeAll(string[start + 1 : pos])
                result.ok = True
                return result
            pos += 2 if pos + 1 < maximum else 1  # a backslash escapes what follows
        return result
    level = 0
    while pos < maximum:
        m = _DEST_PLAIN.search(string, pos, maximum)
        if m is None:
            pos = maximum
            break
        pos = m.start()
        c = string[pos]
        if c <= " " or c == "\x7f":
            break
        if c == "\\":
            if pos + 1 < maximum:
                if string[pos + 1] == " ":
                    break
                pos += 2
                continue
        elif c == "(":
            level += 1
            if level > 32:
                return result
        elif c == ")":
            if level == 0:
                break
            level -= 1
        pos += 1
    if start == pos or level != 0:
        return result
    result.str = unescapeAll(string[start:pos])
    result.pos = pos
    result.ok = True
    return result


def make_parser(*, html: bool = False, breaks: bool = True) -> MarkdownIt:
    """The reply parser: CommonMark + tables + strikethrough + dollar math.

    ``html`` lets raw HTML through (``trust_html``); ``breaks`` keeps line
    breaks inside a paragraph (a gateway's progress lines stay lines).
    Math: ``$...$`` and ``$$...$$`` (also inside a paragraph), no blank line
    inside (as JupyterLab's own math step), no equation labels (they make links).
    """
    md = _Parser("commonmark", {"html": html, "breaks": breaks})
    md.enable(["table", "strikethrough"])
    dollarmath_plugin(md, allow_labels=False, allow_blank_lines=False, double_inline=True)
    md.inline.ruler.at("image", _recording(rules_inline.image))
    md.__dict__["helpers"] = SimpleNamespace(
        parseLinkLabel=helpers.parseLinkLabel,
        parseLinkDestination=_link_destination,
        parseLinkTitle=helpers.parseLinkTitle,
    )
    return md


_FINDER: MarkdownIt | None = None


def _finder() -> MarkdownIt:
    global _FINDER
    if _FINDER is None:
        _FINDER = make_parser()
    return _FINDER


# ------------------------------------------------------------------------- text


_NORM_RE = re.compile(r"\r\n?|\x00")


def normalise(text: str) -> tuple[str, list[int]]:
    r"""Line ends to ``\n`` and NUL to U+FFFD, as markdown-it does before parsing.

    Returns the text and the positions (in the result) where a ``\r\n`` lost a character.
    """
    if "\r" not in text and "\x00" not in text:
        return text, []
    drops: list[int] = []
    out: list[str] = []
    last = 0
    shift = 0
    for m in _NORM_RE.finditer(text):
        out.append(text[last : m.start()])
        s = m.group()
        if s == "\r\n":
            drops.append(m.start() - shift)
            shift += 1
            out.append("\n")
        elif s == "\x00":
            out.append("\ufffd")
        else:
            out.append("\n")
        last = m.end()
    out.append(text[last:])
    return "".join(out), drops


def _line_starts(text: str) -> list[int]:
    starts = [0]
    i = text.find("\n")
    while i >= 0:
        starts.append(i + 1)
        i = text.find("\n", i + 1)
    return starts


class _Mapper:
    """Offsets in an inline token's content -> offsets in the parsed text.

    markdown-it builds a block's inline content from its source lines with the
    container prefixes (indentation, ``>``, list markers) taken off and the
    ends trimmed, so each content line is the end of its source line (table
    cells: a piece of their row). Anything else (tabs expanded into spaces)
    falls back to finding the construct's own text.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self._starts: list[int] | None = None

    @property
    def starts(self) -> list[int]:
        if self._starts is None:
            self._starts = _line_starts(self.text)
        return self._starts

    def line(self, n: int) -> tuple[int, int]:
        starts = self.starts
        a = starts[n] if n < len(starts) else len(self.text)
        b = starts[n + 1] - 1 if n + 1 < len(starts) else len(self.text)
        return a, b

    def spans(
        self, token: Token, cell: bool, cursor: int, found: list[tuple[int, int]]
    ) -> list[tuple[int, int]]:
        content = token.content
        first = token.map[0] if token.map else 0
        cl_starts = _line_starts(content)
        out: list[tuple[int, int]] = []
        for a, b in found:
            start = self._at(content, cl_starts, first, a, cell, cursor)
            end = self._at(content, cl_starts, first, b - 1, cell, cursor)
            if start is None or end is None:
                raw = content[a:b]
                lo = self.line(first)[0] if not cell else cursor
                hit = self.text.find(raw, lo) if "\n" not in raw else -1
                if hit < 0:
                    continue  # not mappable: better unreported than misplaced
                start, end = hit, hit + len(raw) - 1
            out.append((start, end + 1))
        return out

    def _at(
        self, content: str, cl_starts: list[int], first: int, pos: int, cell: bool, cursor: int
    ) -> int | None:
        k = bisect_right(cl_starts, pos) - 1
        c_start = cl_starts[k]
        c_end = cl_starts[k + 1] - 1 if k + 1 < len(cl_starts) else len(content)
        c_line = content[c_start:c_end]
        a, b = self.line(first + k)
        x = self.text.find(c_line, max(a, cursor), b) if cell else self.text.rfind(c_line, a, b)
        if x < 0:
            return None
        return x + (pos - c_start)


# A long run of base64 characters: the payload of a data: URI, as a rule. None of them
# means anything to markdown, so such a run can stand in for any other of them.
_LONG_RUN = re.compile(r"[A-Za-z0-9+/=]{256,}")
_MARK = "Qj7Zx"


class _Short:
    """The text with each long base64 run replaced by a short marker.

    markdown-it then never scans or copies a 20 MB ``data:`` URI (it would copy it
    twice: the paragraph, then the destination); offsets and strings map back.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.runs: list[tuple[int, int, int]] = []  # (position here, start, end in text)
        self.short = text
        if len(text) < 256 or _MARK in text:
            return
        pieces: list[str] = []
        last = 0
        shift = 0
        for m in _LONG_RUN.finditer(text):
            marker = f"{_MARK}{len(self.runs)}{_MARK}"
            pieces += [text[last : m.start()], marker]
            self.runs.append((m.start() - shift, m.start(), m.end()))
            shift += m.end() - m.start() - len(marker)
            last = m.end()
        if self.runs:
            pieces.append(text[last:])
            self.short = "".join(pieces)
        self._starts = [r[0] for r in self.runs]

    def offset(self, pos: int) -> int:
        """A position in the short text -> the same place in the text (outside markers)."""
        k = bisect_right(self._starts, pos) - 1 if self.runs else -1
        if k < 0:
            return pos
        at, start, end = self.runs[k]
        marker = len(f"{_MARK}{k}{_MARK}")
        return end + (pos - at - marker) if pos >= at + marker else start

    def restore(self, value: str) -> str:
        """A string taken from the short text, with its runs back."""
        if not self.runs or _MARK not in value:
            return value
        parts = value.split(_MARK)  # text, index, text, index, text ...
        if len(parts) == 3:  # one run: one slice of the text when it is there verbatim
            _at, start, end = self.runs[int(parts[1])]
            head, tail = parts[0], parts[2]
            a, b = start - len(head), end + len(tail)
            if self.text.startswith(head, a) and self.text.startswith(tail, end):
                return self.text[a:b]
        out = []
        for k, part in enumerate(parts):
            if k % 2:
                _at, start, end = self.runs[int(part)]
                out.append(self.text[start:end])
            else:
                out.append(part)
        return "".join(out)


def find_markdown_images(text: str) -> list[MarkdownImage]:
    """Every markdown image outside code, inline or by reference, in document order.

    Offsets are in ``text``; ``url`` is the destination with escapes and entities
    resolved (without ``<>`` or title). Plain links are not images. An image whose
    closing parenthesis has not arrived yet (a streamed prefix) is not reported.
    """
    if "![" not in text:
        return []
    norm, drops = normalise(text)
    short = _Short(norm)
    md = _finder()
    env: dict[str, Any] = {}
    blocks: list[Token] = []
    md.block.parse(short.short, md, env, blocks)
    mapper = _Mapper(short.short)
    out: list[MarkdownImage] = []
    row_cursor = (-1, 0)  # (row line, offset after the last cell found in it)
    for i, token in enumerate(blocks):
        if token.type != "inline" or "![" not in token.content:
            continue
        record = _Record(token.content)
        env[_RECORD] = record
        md.inline.parse(token.content, md, env, [])
        if not record.found:
            continue
        cell = i > 0 and blocks[i - 1].type in ("th_open", "td_open")
        line = token.map[0] if token.map else 0
        cursor = row_cursor[1] if cell and row_cursor[0] == line else mapper.line(line)[0]
        spans = mapper.spans(token, cell, cursor, [(a, b) for a, b, _t, _l in record.found])
        if cell and spans:
            row_cursor = (line, spans[-1][1])
        for (start, end), (_a, _b, image, in_link) in zip(spans, record.found, strict=False):
            a, b = short.offset(start), short.offset(end)
            a += bisect_left(drops, a)
            b += bisect_left(drops, b)
            url = short.restore(str(image.attrs["src"]))
            out.append(MarkdownImage(a, b, short.restore(image.content), url, in_link))
    out.sort(key=lambda m: m.start)
    return out


def image_urls_in_markdown(text: str) -> list[str]:
    """URLs of the markdown images a client should fetch or decode, in order, once each.

    Only ``http://``, ``https://`` and ``data:image/...;base64,...``.
    """
    seen: set[str] = set()
    out: list[str] = []
    for img in find_markdown_images(text):
        url = img.url.strip()
        if FETCHABLE.match(url) and url not in seen:
            seen.add(url)
            out.append(url)
    return out


# "![alt", "![alt]" or "![alt](url" at the very end: an image still arriving.
_OPEN_IMAGE = re.compile(r"!\[[^\]\n]*(?:\](?:\([^)\s]*)?)?\Z")
_MAX_TRIES = 64


def open_image_start(text: str, lo: int = 0) -> int | None:
    """Where an image that is still arriving begins at the end of ``text`` (from ``lo``), or None.

    Its alt text holds no line break and its URL no space, so only the last
    line is looked at; a trailing ``!`` counts (the ``[`` may come next).
    """
    line = max(lo, text.rfind("\n", lo) + 1)
    p = text.find("![", line)
    tries = 0
    while p >= 0 and tries < _MAX_TRIES:
        if _OPEN_IMAGE.match(text, p):
            return p
        p = text.find("![", p + 2)
        tries += 1
    if text.endswith("!") and len(text) > lo:
        return len(text) - 1
    return None
