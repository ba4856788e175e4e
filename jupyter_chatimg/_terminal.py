"""A reply as plain text in a terminal (IPython in a terminal, plain Python).

``PrintSink`` prints what ``LiveReply`` hands it as it comes, without control
characters; ``Printer`` turns choice 0's streamed markdown into readable text
line by line (no emphasis markers, links as ``text (url)``, list bullets and
line breaks kept, code as it is, one ``[image WxH]`` line per image at its place).
"""

from __future__ import annotations

import re
import sys
from typing import Any, Protocol

from ._errors import one_line
from ._html import Renderer, plain_inline
from ._markdown import FETCHABLE, find_markdown_images, normalise
from ._result import ChatResult, Choice

__all__ = ["DANGLING_MARKER", "PrintSink", "Printer", "images_by_url"]

DANGLING_MARKER = re.compile(r"(?:(?<=\n)|\A)[ \t>]*(?:[-+*]|\d{1,9}[.)]|#{1,6})?[ \t]*\Z")
"""A list, quote or heading marker with nothing after it yet, at the end of the text."""


# Model text must not drive the terminal: escape sequences can retitle it, rewrite
# lines (CR), write the clipboard (OSC 52) or hide links (OSC 8). Newline and tab stay.
_TERMINAL_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class PrintSink:
    """Plain text printed as it arrives (IPython in a terminal, plain Python)."""

    wants_deltas = True

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stdout
        self.at_line_start = True
        """Whether the last text printed (by anyone writing here) ended a line."""

    def delta(self, text: str) -> None:
        self.stream.write(_TERMINAL_CONTROL.sub("", text))
        self.stream.flush()
        if text:
            self.at_line_start = text.endswith("\n")

    def show(
        self, slot: int, data: dict[str, Any], metadata: dict[str, Any], *, final: bool
    ) -> None:  # pragma: no cover - LiveReply prints through delta()
        pass


def images_by_url(choice: Choice) -> tuple[dict[str, Any], list[Any]]:
    """The fetched images by the URL they came from, and those with no URL."""
    found: dict[str, Any] = {}
    images = list(choice.images)
    k = 0
    for url in choice.image_urls:
        if url in choice.image_errors or k >= len(images):
            continue
        found.setdefault(url, images[k])
        k += 1
    return found, images[k:]


_UNDECIDED = re.compile(r" {0,3}(?:[-=*_+:| \t]*|\d{1,9}[.)]?|`{1,2}|~{1,2})\Z")
# Headings and fences are printed when their line is complete.
_WHOLE_LINE = re.compile(r" {0,3}(?:#|```|~~~)")
# What markdown may still change in a line: emphasis, code, escapes, entities, links,
# images, autolinks. The raw text before the first of these is printed as it comes.
_RISKY = re.compile(r"[*`\\<&\[]|~~|!\[|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
_FENCE_OPEN = re.compile(r" {0,3}(`{3,}(?!.*`)|~{3,})")
_BLOCK_PREFIX = re.compile(
    r"((?: {0,3}>[ \t]?)*[ \t]*(?:(?:[-+*]|\d{1,9}[.)])[ \t]+)?)(#{1,6}(?:[ \t]+|\Z))?"
)
_STRUCTURAL = re.compile(r" {0,3}[-=*_:| \t]+\Z")
_CLOSING_HASHES = re.compile(r"[ \t]+#+[ \t]*\Z")


class _Out(Protocol):
    """Where the printer writes (a ``PrintSink``, or the tool view's round sink)."""

    def delta(self, text: str) -> None: ...


class Printer:
    """Choice 0 printed as plain text while it streams, line by line (n > 1: the
    other choices are in ``result.choices``).

    A complete line is printed as plain text: no emphasis markers or
    backticks, links as ``text (url)``; list bullets, quote markers and line
    breaks kept; code as it is. Of the line still arriving, the raw text
    before anything markdown could still change is printed at once. An image
    is one ``[image WxH]`` line at its place: the text after it waits for the
    end of the reply, when the image has been fetched.
    """

    def __init__(self, sink: _Out, r: Renderer) -> None:
        self.sink = sink
        self.md = r.md
        self.fed = 0
        self._line: list[str] = []  # the line still arriving
        self._printed = 0  # of it, characters printed raw
        self._last = " "  # the character printed last on it
        self._held = ""  # characters of it not printed yet that may still combine
        self._mode = "start"  # start | raw | text | wait
        self._fence: tuple[str, int] | None = None
        self._blank = True  # the previous line was blank (indented code may start)
        self._code = False  # the previous line was indented code
        self._rest: list[str] | None = None  # the text after an image, printed at the end
        self._wrote = False
        self._at_line_start = True

    def _write(self, text: str) -> None:
        if text.startswith("\n") and not self._at_line_start and self._sink_at_line_start():
            text = text[1:]  # another writer (a tool call) ended the line already
            self._at_line_start = True
        if text:
            self.sink.delta(text)
            self._wrote = True
            self._at_line_start = text.endswith("\n")

    def feed(self, text: str) -> None:
        self.fed += len(text)
        while text:
            if self._rest is not None:
                self._rest.append(text)
                return
            nl = text.find("\n")
            if nl < 0:
                self._line.append(text)
                self._partial(text)
                return
            self._line.append(text[:nl])
            line = "".join(self._line)
            self._line = []
            self._complete(line)
            text = text[nl + 1 :]

    # -- the line still arriving

    def _partial(self, new: str) -> None:
        if self._mode == "wait":
            return
        if self._mode == "start":
            line = "".join(self._line)
            if self._fence is not None or self._indented(line):
                self._mode = "raw"
            elif _UNDECIDED.match(line):
                return
            elif _WHOLE_LINE.match(line):
                self._mode = "wait"
                return
            else:
                self._mode = "text"
                prefix = _BLOCK_PREFIX.match(line)
                end = prefix.end(1) if prefix is not None else 0
                self._put(line[:end])
            new = line[self._printed :]
        if self._mode == "raw":
            self._put(new)
            return
        s = self._held + new
        keep = s.rstrip("!~_ \t")
        risky = _RISKY.search(self._last + keep, 1)
        if risky is not None:
            self._put(keep[: risky.start() - 1].rstrip(" \t"))
            self._held = ""
            self._mode = "wait"
            return
        self._put(keep)
        self._held = s[len(keep) :]

    def _put(self, raw: str) -> None:
        if raw:
            self._write(raw)
            self._printed += len(raw)
            self._last = raw[-1]

    def _indented(self, line: str) -> bool:
        return line.startswith(("    ", "\t")) and (self._blank or self._code)

    # -- a complete line

    def _complete(self, line: str, images: _ImageLines | None = None) -> None:
        """Print ``line`` (what is not printed of it yet) as plain text.

        While streaming (``images`` None) a fetchable image stops the printing
        there; at the end each image is its ``[image WxH]`` line.
        """
        raw = line[: self._printed]
        mode = self._mode
        self._printed, self._held, self._mode, self._last = 0, "", "start", " "
        blank = not line.strip()
        code = False
        if self._fence is not None:
            out = line
            m = _FENCE_OPEN.match(line)
            char, size = self._fence
            if (
                m
                and m.group(1)[0] == char
                and len(m.group(1)) >= size
                and not line[m.end() :].strip()
            ):
                self._fence = None
        elif (fence := _FENCE_OPEN.match(line)) is not None:
            self._fence = (fence.group(1)[0], len(fence.group(1)))
            out = line
        elif self._indented(line) and mode in ("start", "raw"):
            out, code = line, True
        elif blank or _STRUCTURAL.match(line):
            out = line
        else:
            converted = self._text_line(line, raw, images)
            if converted is None:
                return
            out = converted
        self._emit(raw, out if code or self._fence is not None else out.rstrip())
        self._write("\n")
        self._blank, self._code = blank, code

    def _text_line(self, line: str, raw: str, images: _ImageLines | None) -> str | None:
        found = []
        if "![" in line:
            found = [
                m
                for m in find_markdown_images(line)
                if FETCHABLE.match(m.url.strip()) and not m.in_link
            ]
        if not found:
            return self._convert(line, images)
        head = self._convert(line[: found[0].start]).rstrip()
        marker = bool(head) and DANGLING_MARKER.fullmatch(head) is not None  # "- ![a](u)"
        if images is None:  # streaming: print up to the image, the rest at the end
            self._emit(raw, head + " " if marker else head)
            if head and not marker:
                self._write("\n")
            self._rest = [line[found[0].start :], "\n"]
            self._blank = False
            return None
        pieces: list[str] = []
        pos = 0
        for k, image in enumerate(found):
            shown = images.line(image.url.strip(), image.alt)
            if k == 0:
                pieces.append(head + " " + shown if marker else head + "\n" + shown)
            else:
                pieces += [self._convert(line[pos : image.start]).strip(), shown]
            pos = image.end
        pieces.append(self._convert(line[pos:]).strip())
        return "\n".join(p.strip("\n") for p in pieces if p.strip("\n"))

    def _emit(self, raw: str, out: str) -> None:
        if out.startswith(raw):
            self._write(out[len(raw) :])
        else:  # pragma: no cover - the raw text printed is where the line's text begins
            self._write("\n" + out)

    def _convert(self, line: str, images: _ImageLines | None = None) -> str:
        m = _BLOCK_PREFIX.match(line)
        if m is None:  # pragma: no cover - the pattern matches every line
            return plain_inline(self.md, line)
        prefix, heading = m.group(1), m.group(2)
        content = line[m.end() :]
        if heading:
            content = _CLOSING_HASHES.sub("", content)
        return prefix + plain_inline(self.md, content, images.label if images else None)

    # -- the end

    def finish(self, result: ChatResult, footer: list[str]) -> None:
        choices = result.choices or [Choice()]
        lines = _ImageLines(choices[0])
        if self._rest is not None:
            rest = "".join(self._rest)
            self._rest = None
            self._final_text(rest, lines)
        elif self._line:
            self._complete("".join(self._line), lines)
            self._line = []
        self._close(choices[0], lines)  # the other choices: in result.choices
        if footer:
            self._newline()
            for line in footer:
                self._write(one_line(line, 400) + "\n")
        elif self._wrote:
            self._newline()

    def _close(self, choice: Choice, lines: _ImageLines) -> None:
        for extra in lines.remaining():
            self._newline()
            self._write(extra + "\n")
        if choice.refusal:
            self._newline()
            self._write("Refusal: " + one_line(choice.refusal, 400) + "\n")

    def _sink_at_line_start(self) -> bool:
        """Whether the sink's last text ended a line (others, the tool calls, print there too)."""
        return bool(getattr(self.sink, "at_line_start", False))

    def _newline(self) -> None:
        if self._wrote and not (self._at_line_start or self._sink_at_line_start()):
            self._write("\n")

    def _final_text(self, text: str, images: _ImageLines) -> None:
        lines, _ = normalise(text)
        parts = lines.split("\n")
        if parts and not parts[-1]:
            parts.pop()
        for line in parts:
            self._complete(line, images)


class _ImageLines:
    """``[image WxH]`` (or why it is missing) for each image of a choice."""

    def __init__(self, choice: Choice) -> None:
        self.found, self.unnamed = images_by_url(choice)
        self.errors = choice.image_errors
        self.used: set[str] = set()

    def line(self, url: str, alt: str) -> str:
        self.used.add(url)
        image = self.found.get(url)
        if image is not None:
            return f"[image {image.width}x{image.height}]"
        reason = self.errors.get(url)
        if reason is not None:
            return f"[image: {one_line(reason, 300)}]"
        return f"[image: {one_line(alt, 100)}]" if alt.strip() else "[image]"

    def label(self, url: str, alt: str) -> str:
        url = url.strip()
        return self.line(url, alt) if FETCHABLE.match(url) else f"[image: {alt}]"

    def remaining(self) -> list[str]:
        out = [
            f"[image {im.width}x{im.height}]" for u, im in self.found.items() if u not in self.used
        ]
        return out + [f"[image {im.width}x{im.height}]" for im in self.unnamed]
