"""LiveReply: one output per reply that grows in place, coalesced.

It knows deltas and results, not HTTP. Where the text goes is a ``Sink``:
the notebook (``DisplaySink``: one ``display_id`` updated in place, images as
separate image outputs), a terminal (``PrintSink``: text printed as it comes),
or the panel's transcript (its own sink).

Coalescing: the first text goes out at once; after that at most one update per
``update_interval`` (and, for long replies, per ``len(text) / BYTES_PER_SECOND``
so the bytes sent stay linear in the reply's length); a timer flushes what is
pending when the stream pauses; the final update always carries everything.
"""

from __future__ import annotations

import base64
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import quote

from ._dialects import Delta
from ._dialects import ReplyParser as StreamParser
from ._errors import one_line
from ._images import mime_of_pil, pil_to_bytes
from ._markdown import find_markdown_images, safe_markdown
from ._render_images import PartialImages
from ._result import ChatResult, Choice

__all__ = [
    "BYTES_PER_SECOND",
    "DisplaySink",
    "LiveReply",
    "PrintSink",
    "Sink",
    "default_sink",
    "escape_inline",
]

BYTES_PER_SECOND = 80_000
"""Above ~4 KB of text the interval widens so updates resend at most this many bytes per second."""
PLACEHOLDER = "*…*"
# The image URLs a reply's images are fetched or decoded from (as image_urls_in_markdown).
_FETCHABLE = re.compile(r"(?:https?://|data:image/[a-z0-9.+-]+;base64,)", re.IGNORECASE)
# A markdown image still arriving at the end of the text: "![alt", "![alt]" or "![alt](url".
# An image (or its unfinished start) in the short text/plain: no data: URI there.
_PLAIN_IMAGE = re.compile(r"!\[[^\]\n]*\]\([^)\s]*\)?")
_OPEN_IMAGE = re.compile(r"!\[[^\]\n]*(?:\](?:\([^)\s]*)?)?$")
# The characters that can end such an image (or show that it is none).
_MAY_CLOSE = re.compile(r"[\])\s]")


class Sink(Protocol):
    """Where a LiveReply's text and images go."""

    def update(
        self, markdown: str, plain: str, *, final: bool, metadata: dict[str, Any] | None
    ) -> None: ...

    def image(self, image: Any, *, metadata: dict[str, Any] | None) -> None: ...

    def delta(self, text: str) -> None: ...

    wants_deltas: bool
    """True for sinks that print raw deltas (a terminal) instead of whole updates."""


def _ipython_display() -> tuple[Callable[..., Any], Callable[..., Any]]:
    from IPython.display import display, update_display

    return display, update_display


class DisplaySink:
    """A notebook output that grows in place (``display_id`` + ``update_display``)."""

    wants_deltas = False

    def __init__(self) -> None:
        self._display, self._update = _ipython_display()
        self.display_id: str | None = None
        self.messages = 0

    def update(
        self, markdown: str, plain: str, *, final: bool, metadata: dict[str, Any] | None
    ) -> None:
        bundle = {"text/markdown": markdown or PLACEHOLDER, "text/plain": plain}
        md = {"jupyter_chatimg": metadata} if metadata else {}
        if self.display_id is None:
            import uuid

            self.display_id = uuid.uuid4().hex
            self._display(bundle, raw=True, metadata=md, display_id=self.display_id)
        else:
            self._update(bundle, raw=True, metadata=md, display_id=self.display_id)
        self.messages += 1

    def image(self, image: Any, *, metadata: dict[str, Any] | None) -> None:
        mime = mime_of_pil(image)
        data = base64.b64encode(pil_to_bytes(image, mime)).decode("ascii")
        md: dict[str, Any] = {mime: {"width": image.width, "height": image.height}}
        if metadata:
            md["jupyter_chatimg"] = metadata
        self._display(
            {mime: data, "text/plain": f"<image {image.width}x{image.height}>"},
            raw=True,
            metadata=md,
        )

    def delta(self, text: str) -> None:  # pragma: no cover - not used by this sink
        pass

    def image_in_place(self, data: dict[str, str], metadata: dict[str, Any]) -> None:
        """One image output (its own ``display_id``) replaced by each call after the first."""
        if getattr(self, "image_id", None) is None:
            import uuid

            self.image_id = uuid.uuid4().hex
            self._display(data, raw=True, metadata=metadata, display_id=self.image_id)
        else:
            self._update(data, raw=True, metadata=metadata, display_id=self.image_id)
        self.messages += 1


# Model text must not drive the terminal: escape sequences can retitle it, rewrite
# lines (CR), write the clipboard (OSC 52) or hide links (OSC 8). Newline and tab stay.
_TERMINAL_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class PrintSink:
    """Plain text printed as it arrives (IPython in a terminal, plain Python)."""

    wants_deltas = True

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stdout
        self._printed_any = False

    def delta(self, text: str) -> None:
        self.stream.write(_TERMINAL_CONTROL.sub("", text))
        self.stream.flush()
        self._printed_any = True

    def update(
        self, markdown: str, plain: str, *, final: bool, metadata: dict[str, Any] | None
    ) -> None:
        if final:
            self.stream.write("\n" if self._printed_any else "")
            if metadata and metadata.get("error"):
                error = _TERMINAL_CONTROL.sub("", str(metadata["error"]))
                self.stream.write("⚠ " + error + "\n")
            self.stream.flush()

    def image(self, image: Any, *, metadata: dict[str, Any] | None) -> None:
        self.stream.write(f"[image {image.width}x{image.height}, {image.mode}]\n")
        self.stream.flush()


def in_notebook() -> bool:
    """True in a kernel with a front end (outputs can be updated in place)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def default_sink() -> Sink:
    return DisplaySink() if in_notebook() else PrintSink()


def escape_inline(text: str) -> str:
    """Make untrusted one-line text inert inside markdown (no HTML, links or emphasis)."""
    out = []
    for ch in one_line(text, 400):
        if ch in "\\`*_{}[]()<>#!|~&":
            out.append(
                "\\" + ch if ch not in "<>&" else {"<": "&lt;", ">": "&gt;", "&": "&amp;"}[ch]
            )
        else:
            out.append(ch)
    return "".join(out)


def _safe_link(url: str) -> str:
    return quote(url, safe=":/?#@!$&'*+,;=%-._~")


class LiveReply:
    """Shows one reply as it streams: coalesced in-place updates, then images."""

    def __init__(
        self,
        *,
        sink: Sink | None = None,
        update_interval: float = 0.05,
        trust_html: bool = False,
        show_stats: bool = False,
        notes: list[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink = sink or default_sink()
        self.update_interval = update_interval
        self.trust_html = trust_html
        self.show_stats = show_stats
        self.notes = list(notes or [])
        self._clock = clock
        self._lock = threading.Lock()
        self._texts: dict[int, list[str]] = {}
        self._image_urls: dict[int, list[str]] = {}
        self._refusals: dict[int, str] = {}
        self._wants_deltas = self.sink.wants_deltas
        self._last_sent = -1e9
        self._hold_until = -1e9
        self._length = 0
        self._shown_text = False
        self._dirty = False
        self._timer: threading.Timer | None = None
        self._closed = False
        self._status = ""
        self._printed = 0
        self._printed_images = 0
        self._unprinted: list[str] = []  # choice 0's text not printed yet (terminal)
        self._holding = False  # an image is still arriving at the end of that text
        self.updates = 0
        self.decorate: Callable[[str, bool], tuple[str, str]] | None = None
        """Adds to each composed update (``_render_tools.ToolView``: tool calls, earlier
        rounds): ``(markdown, final) -> (markdown, plain to add)``."""
        self.partials = PartialImages(self.sink, update_interval=update_interval, clock=clock)
        """Partial images of an Images API stream: one output replaced in place."""

    # -- streaming -----------------------------------------------------------

    def start(self) -> None:
        """Show the placeholder at once (some front ends drop an empty markdown)."""
        if not self.sink.wants_deltas:
            self._send(final=False)
        else:
            for line in self.notes:
                self.sink.delta(line + "\n")  # type: ignore[union-attr]

    def status(self, line: str) -> None:
        """A transient status line (e.g. a retry) shown until text arrives."""
        with self._lock:
            self._status = line
        if self.sink.wants_deltas:
            self.sink.delta(line + "\n")
        else:
            self._send(final=False)

    def on_delta(self, delta: Delta, parser: StreamParser | None = None) -> None:
        """Take one delta; send an update if the coalescing window allows."""
        # The hot path of a stream: one call per token, so it does as little as it can.
        text = delta.text
        if text and self._timer is not None and not delta.images and not delta.refusal:
            # An update is already due from the timer: only keep the text. No lock: the
            # timer thread only reads the parts; if it has taken the timer away by the
            # check below, the locked path makes sure another update is scheduled.
            parts = self._texts.get(delta.index)
            if parts is not None:
                parts.append(text)
                self._length += len(text)
                self._dirty = True
                if self._timer is not None:
                    return
                text = ""  # kept already; the locked path below only schedules
        if delta.partial_image is not None:
            self.partials.show(delta.partial_image)
            if not (text or delta.images or delta.refusal):
                return
        with self._lock:
            if self._closed:
                return
            if text:
                parts = self._texts.get(delta.index)
                if parts is None:
                    parts = self._texts[delta.index] = []
                parts.append(text)
                self._length += len(text)
            if delta.images:
                self._image_urls.setdefault(delta.index, []).extend(delta.images)
            if delta.refusal:
                self._refusals[delta.index] = self._refusals.get(delta.index, "") + delta.refusal
            self._status = ""
            if self._wants_deltas:
                pass
            elif self._shown_text:
                if self._clock() < self._hold_until:
                    self._dirty = True
                    if self._timer is None:
                        self._start_timer()
                    return
                if not self._due():
                    return
            elif text or delta.images or delta.refusal or delta.tool_calls:
                # The first text is never held back by the placeholder's window.
                self._shown_text = True
        if self._wants_deltas:
            if text and delta.index == 0:
                self._print_stable(final=False, new=text)
            return
        self._send(final=False)

    def _print_stable(self, *, final: bool, new: str = "") -> None:
        """Print the new text of choice 0, images as markers, never half an image.

        Linear in the reply: the whole text is read (for images, in context) only
        when the unprinted part holds a "![" that may have just become an image;
        other text goes out as it comes, and an image still arriving is held back
        without looking at it again until a character that can end it arrives.
        """
        with self._lock:
            self._unprinted.append(new)
            if final:
                tail = "!["  # the whole text, read once more
            elif self._holding and not _MAY_CLOSE.search(new):
                return
            else:
                tail = "".join(self._unprinted)
            if "![" not in tail:
                # no image can begin here; a last "!" may begin one
                cut = len(tail) - 1 if tail.endswith("!") else len(tail)
                self._unprinted = [tail[cut:]]
                self._printed += cut
                self._holding = False
                out = tail[:cut]
            else:
                out = self._stable_with_markers(final=final)
        if out:
            self.sink.delta(out)

    def _stable_with_markers(self, *, final: bool) -> str:
        """Under the lock: the new stable text, read whole so that images are found in context."""
        text = "".join(self._texts.get(0, []))
        end = len(text)
        self._holding = False
        if not final:
            open_image = _OPEN_IMAGE.search(text, self._printed)
            if open_image is not None:
                end = open_image.start()
                self._holding = True
            elif text.endswith("!"):
                end -= 1
        self._unprinted = [text[max(end, self._printed) :]]
        if end <= self._printed:
            return ""
        out: list[str] = []
        pos = self._printed
        for image in find_markdown_images(text):
            if image.start >= pos and image.end <= end:
                self._printed_images += 1
                out.append(text[pos : image.start])
                out.append(f"[image {self._printed_images}]")
                pos = image.end
        out.append(text[pos:end])
        self._printed = end
        return "".join(out)

    def _interval(self, length: int) -> float:
        return max(self.update_interval, length / BYTES_PER_SECOND)

    def _due(self) -> bool:
        """Under the lock: whether an update may go now; if not, make sure a timer will send it."""
        if self._clock() >= self._last_sent + self._interval(self._length):
            return True
        self._dirty = True
        if self._timer is None:
            self._start_timer()
        return False

    def _start_timer(self) -> None:
        wait = max(0.0, self._last_sent + self._interval(self._length) - self._clock())
        self._timer = threading.Timer(wait, self._flush)
        self._timer.daemon = True
        self._timer.start()

    def _flush(self) -> None:
        with self._lock:
            self._timer = None
            if not self._dirty or self._closed:
                return
            if self._clock() < self._last_sent + self._interval(self._length):
                self._start_timer()  # the text grew since: its window did too
                return
        self._send(final=False)

    def _send(self, *, final: bool, result: ChatResult | None = None) -> None:
        with self._lock:
            if self._closed:
                return
            self._dirty = False
            self._last_sent = self._clock()
            # No update before this (the window only widens as the text grows).
            self._hold_until = self._last_sent + self._interval(self._length)
            if final:
                self._closed = True
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
            markdown, plain = self._compose(result, final=final)
            self.updates += 1
        self.sink.update(
            markdown, plain, final=final, metadata=result.provenance() if result else None
        )

    # -- composing -----------------------------------------------------------

    def _compose(self, result: ChatResult | None, *, final: bool) -> tuple[str, str]:
        if result is not None:
            choices = result.choices
        else:
            choices = [
                Choice(
                    index=i,
                    text="".join(self._texts.get(i, [])),
                    image_urls=list(self._image_urls.get(i, [])),
                    refusal=self._refusals.get(i),
                )
                for i in sorted(
                    set(self._texts) | set(self._image_urls) | set(self._refusals) or {0}
                )
            ]
        blocks: list[str] = []
        plains: list[str] = []
        many = len(choices) > 1
        for choice in choices:
            body = self._choice_markdown(choice, final=final)
            if many:
                body = f"**Choice {choice.index + 1}**\n\n{body}"
            blocks.append(body)
            plains.append(_PLAIN_IMAGE.sub("[image]", choice.text[:4000]))
        markdown = "\n\n---\n\n".join(b for b in blocks if b)
        if self.decorate is not None:
            markdown, more = self.decorate(markdown, final)
            plains.append(more)
        if not markdown.strip() and not final:
            markdown = PLACEHOLDER
        tail = list(self.notes)
        if self._status and not final:
            tail.append(self._status)
        if result is not None and final:
            if result.error is not None:
                tail.append("⚠ " + str(result.error))
            if self.show_stats:
                tail.append(_stats_line(result))
        if tail:
            markdown += "\n\n" + "\n\n".join("*" + escape_inline(line) + "*" for line in tail)
        plain = "\n\n".join(p for p in plains if p)
        plain = plain if len(plain) <= 200 else plain[:197] + "..."
        if result is not None and result.error is not None and final:
            plain = (plain + "\n" if plain else "") + "⚠ " + str(result.error)
        return markdown, plain or "(reply)"

    def _choice_markdown(self, choice: Choice, *, final: bool) -> str:
        urls = list(choice.image_urls)
        errors = choice.image_errors
        in_text: set[str] = set()

        # safe_markdown calls label() for every image in the text, in document order,
        # so the text is read once per update (not once more to list its images).
        def label(url: str) -> str | None:
            in_text.add(url)
            if url not in urls:
                stripped = url.strip()
                if final or not _FETCHABLE.match(stripped) or stripped in urls:
                    return None
                urls.append(stripped)  # still streaming: numbered as they appear
                if url != stripped:
                    return None
            n = urls.index(url) + 1
            if url in errors:
                reason = escape_inline(errors[url])
                if url.startswith(("http://", "https://")):
                    return f"[image {n}]({_safe_link(url)}) *({reason})*"
                return f"*[image {n}: {reason}]*"
            return f"*[image {n}]*"

        text = safe_markdown(choice.text, image_label=label, trust_html=self.trust_html)
        if choice.refusal:
            text += ("\n\n" if text else "") + "**Refusal:** " + escape_inline(choice.refusal)
        # Images that arrived outside the text (message.images) still get a marker.
        extra = [label(u) for u in urls if u not in in_text]
        if extra:
            text += ("\n\n" if text else "") + " ".join(x for x in extra if x)
        return text

    # -- the end ---------------------------------------------------------------

    def finish(self, result: ChatResult) -> None:
        """The final update (whole text, error line, stats) and the images."""
        if self.sink.wants_deltas:
            if not self._texts and result.choices:
                self._texts[0] = [result.choices[0].text]
            self._print_stable(final=True)
        self._send(final=True, result=result)
        meta = result.provenance()
        for choice in result.choices:
            for image in choice.images:
                # The first final image replaces the last partial one, if one is shown.
                if not self.partials.finish(image, meta):
                    self.sink.image(image, metadata=meta)
        self.partials.close()


def _stats_line(result: ChatResult) -> str:
    parts = [result.model or "?"]
    if result.usage and isinstance(result.usage.get("completion_tokens"), int):
        parts.append(f"{result.usage['completion_tokens']} tokens")
    elif result.usage and isinstance(result.usage.get("output_tokens"), int):
        parts.append(f"{result.usage['output_tokens']} tokens")  # the Images API's usage
    if result.timings.first_token is not None:
        parts.append(f"first token {result.timings.first_token:.2f} s")
    if result.timings.total is not None:
        parts.append(f"{result.timings.total:.2f} s total")
    if result.cached:
        parts.append("from cache")
    return " · ".join(parts)
