"""LiveReply: a reply shown as it streams, in place, coalesced, images at their place.

It knows deltas and results, not HTTP. Where the reply goes is a ``Sink``:
the notebook (``DisplaySink``: outputs updated in place by ``display_id``),
a terminal (``PrintSink``: plain text printed as it comes), or the panel's
transcript (its own sink).

The reply is a row of outputs ("slots"), created in order and updated in
place: the text before a markdown image, the image, the text after it, and so
on; images that come outside the text (``message.images[]``, content parts)
after the text; the notes, error and stats lines under everything. Text is
rendered to safe HTML in the kernel (``_html``); an output is ``text/html``
plus a short ``text/plain``, or an image (``image/png`` / ``image/jpeg``).
While an image link is still arriving it is held back; once it is complete,
its text output is closed and an image output opens (a placeholder until
``finish`` puts the fetched image, or a one-line reason, there). With n > 1
choices each choice's text is labelled and keeps its images as ``[image N]``
labels, the images after all the text; an image inside a link stays a label
too. The display holds at most ``max_display_chars`` characters of text and
says so in one line.

Coalescing: the first text goes out at once; after that at most one update per
``update_interval`` (and, for long replies, per ``len(text) / BYTES_PER_SECOND``
so the bytes sent stay linear in the reply's length); a timer flushes what is
pending when the stream pauses; the final update always carries everything.
Only the last text output changes while the reply streams, and only its last
blocks are rendered again (``_html.IncrementalHtml``).
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ._dialects import Delta
from ._dialects import ReplyParser as StreamParser
from ._errors import one_line
from ._html import IncrementalHtml, Renderer, escape, plain_text, renderer, stable_end
from ._images import mime_of_pil, pil_to_bytes
from ._markdown import FETCHABLE, find_markdown_images, normalise
from ._render_images import PartialImages
from ._result import ChatResult, Choice
from ._terminal import DANGLING_MARKER, Printer, PrintSink, images_by_url

__all__ = [
    "BYTES_PER_SECOND",
    "MAX_DISPLAY_CHARS",
    "DisplaySink",
    "LiveReply",
    "PrintSink",
    "Sink",
    "default_sink",
    "image_bundle",
    "image_output",
    "in_notebook",
    "line_html",
]

BYTES_PER_SECOND = 80_000
"""Above ~4 KB of text the interval widens so updates resend at most this many bytes per second."""
MAX_DISPLAY_CHARS = 1_000_000
"""Default bound of the text a reply's display holds (the rest is in ``result.text``)."""
PLACEHOLDER = "<p><em>…</em></p>"


class Sink(Protocol):
    """Where a LiveReply's outputs go."""

    wants_deltas: bool
    """True for sinks that print text as it arrives (a terminal) instead of showing outputs."""

    def show(
        self, slot: int, data: dict[str, Any], metadata: dict[str, Any], *, final: bool
    ) -> None:
        """Create output ``slot`` (slots are created in order: 0, 1, 2 ...) or replace it in place.

        ``data`` is a mime bundle (``text/html`` + ``text/plain``, or an image);
        ``final`` is True for the outputs of the last update of the reply.
        """
        ...

    def delta(self, text: str) -> None:
        """Print ``text`` (sinks with ``wants_deltas``)."""
        ...


def _ipython_display() -> tuple[Callable[..., Any], Callable[..., Any]]:
    from IPython.display import display, update_display

    return display, update_display


class DisplaySink:
    """Notebook outputs that change in place (``display_id`` + ``update_display``)."""

    wants_deltas = False

    def __init__(self) -> None:
        self._display, self._update = _ipython_display()
        self.display_ids: list[str] = []
        self.messages = 0

    def show(
        self, slot: int, data: dict[str, Any], metadata: dict[str, Any], *, final: bool
    ) -> None:
        if slot < len(self.display_ids):
            self._update(data, raw=True, metadata=metadata, display_id=self.display_ids[slot])
        else:
            self.display_ids.append(uuid.uuid4().hex)
            self._display(data, raw=True, metadata=metadata, display_id=self.display_ids[-1])
        self.messages += 1

    def delta(self, text: str) -> None:  # pragma: no cover - not used by this sink
        pass


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


def image_bundle(image: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(data, metadata)`` of an image output (PNG, or JPEG for photos; base64)."""
    mime = mime_of_pil(image)
    data = base64.b64encode(pil_to_bytes(image, mime)).decode("ascii")
    return (
        {mime: data, "text/plain": f"<image {image.width}x{image.height}>"},
        {mime: {"width": image.width, "height": image.height}},
    )


def image_output(image: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``image_bundle``, or one line saying why the image cannot be shown (never a traceback)."""
    try:
        return image_bundle(image)
    except Exception as exc:
        line = f"[an image could not be shown: {type(exc).__name__}]"
        return {"text/html": f"<p><em>{escape(line)}</em></p>\n", "text/plain": line}, {}


def line_html(text: str) -> str:
    """One footer line (a note, the error, the stats) as HTML."""
    return f"<p><em>{escape(one_line(text, 400))}</em></p>\n"


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


# ------------------------------------------------------------------- the view


@dataclass
class _Text:
    """A run of the reply's text between images: one text/html output."""

    start: int
    inc: IncrementalHtml
    end: int | None = None  # None while it is the open (growing) part
    html: str = ""
    source: str = ""  # its text (the first few hundred characters are enough)
    slot: int | None = None


@dataclass
class _Image:
    """A markdown image cut out of the text: one image output, at its place."""

    url: str
    alt: str
    number: int
    slot: int | None = None


@dataclass
class _View:
    """What one choice shows: its parts in order, and its image numbering."""

    index: int
    parts: list[_Text | _Image]
    urls: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    shown: int = 0  # characters of text in its closed text parts

    @property
    def open(self) -> _Text:
        part = self.parts[-1]
        assert isinstance(part, _Text)
        return part

    def number(self, url: str) -> int:
        if url not in self.urls:
            self.urls.append(url)
        return self.urls.index(url) + 1


@dataclass
class _Block:
    """An output of the reply's own that keeps its slot: the tool calls, the partial image."""

    slot: int | None = None


@dataclass
class _Entry:
    """One output as this update wants it (``data`` None: nothing to show yet)."""

    data: dict[str, Any] | None
    metadata: dict[str, Any] = field(default_factory=dict)
    part: _Text | _Image | _Block | None = None
    open: bool = False


class LiveReply:
    """Shows one reply as it streams: coalesced in-place updates, images at their place."""

    def __init__(
        self,
        *,
        sink: Sink | None = None,
        update_interval: float = 0.05,
        trust_html: bool = False,
        show_stats: bool = False,
        notes: list[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_display_chars: int = MAX_DISPLAY_CHARS,
    ) -> None:
        self.sink = sink or default_sink()
        self.update_interval = update_interval
        self.trust_html = trust_html
        self.show_stats = show_stats
        self.notes = list(notes or [])
        self.max_display_chars = max_display_chars
        self._clock = clock
        self._lock = threading.Lock()  # the data that arrives
        self._render_lock = threading.Lock()  # rendering and sending, one at a time
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
        self._renderer: Renderer = renderer(trust_html)
        self._views: dict[int, _View] = {}
        self._sent: list[dict[str, Any]] = []  # what each slot shows now
        self._printer = Printer(self.sink, self._renderer) if self._wants_deltas else None
        self.updates = 0
        self.render_seconds = 0.0
        """Thread CPU time spent composing and rendering updates (for benchmarks)."""
        self.calls: Callable[[bool], tuple[str, str]] | None = None
        """The reply's tool calls as ``(html, plain)`` (``_render_tools.ToolView``), shown in
        an output of their own after the text; called each time an update is composed."""
        self._calls_block = _Block()
        self._partial_block = _Block()
        self.partials = PartialImages(
            self.sink if self._wants_deltas else _PartialSlot(self),
            update_interval=update_interval,
            clock=clock,
        )
        """Partial images of an Images API stream: one output replaced in place (the
        first final image replaces it)."""

    # -- streaming -----------------------------------------------------------

    def start(self) -> None:
        """Show the placeholder at once (and the notes under it)."""
        if not self._wants_deltas:
            self._send(final=False, force=True)

    def status(self, line: str) -> None:
        """A transient status line (e.g. a retry) shown until text arrives."""
        with self._lock:
            self._status = line
        if self._wants_deltas:
            self.sink.delta(one_line(line, 400) + "\n")
        else:
            self._send(final=False, force=True)

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
            if not (text or delta.images or delta.refusal or delta.tool_calls):
                return
        first = False
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
                self._shown_text = first = True
        if self._wants_deltas:
            if text and delta.index == 0 and self._printer is not None:
                self._printer.feed(text)
            return
        self._send(final=False, force=first)

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

    def _send(self, *, final: bool, result: ChatResult | None = None, force: bool = False) -> None:
        with self._render_lock:
            with self._lock:
                if self._closed:
                    return
                if not final and not force and self._clock() < self._hold_until:
                    # another thread sent while this one waited: the window starts over
                    self._dirty = True
                    if self._timer is None:
                        self._start_timer()
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
                texts = {i: "".join(parts) for i, parts in self._texts.items()}
                urls = {i: list(u) for i, u in self._image_urls.items()}
                refusals = dict(self._refusals)
                status = self._status
            started = time.thread_time()
            outputs = self._compose(texts, urls, refusals, status, final=final, result=result)
            self.render_seconds += time.thread_time() - started
            self.updates += 1
            for slot, data, metadata in outputs:
                self.sink.show(slot, data, metadata, final=final)

    # -- composing -----------------------------------------------------------

    def _view(self, index: int) -> _View:
        view = self._views.get(index)
        if view is None:
            view = _View(index, [])
            view.parts.append(_Text(0, IncrementalHtml(self._renderer, self._label(view))))
            self._views[index] = view
        return view

    def _label(self, view: _View) -> Callable[[str, str], str]:
        """How an image left inside the text shows there (n > 1, or inside a link)."""

        def label(url: str, alt: str) -> str:
            url = url.strip()
            if not FETCHABLE.match(url):
                return f"<em>[image: {escape(alt)}]</em>" if alt.strip() else "<em>[image]</em>"
            n = view.number(url)
            reason = view.errors.get(url)
            if reason is None:
                return f"<em>[image {n}]</em>"
            return _failed_image(n, url, reason)

        return label

    def _cut(self, view: _View, text: str, end: int) -> None:
        """Close the open text at every complete image in it; an image part opens after it."""
        while True:
            part = view.open
            lo = part.start + part.inc.finished
            room = part.start + max(0, self.max_display_chars - view.shown)
            if lo >= min(end, room) or "![" not in text[lo:end]:
                return
            images = [
                m
                for m in find_markdown_images(text[lo:end])
                if FETCHABLE.match(m.url.strip()) and not m.in_link and lo + m.start <= room
            ]
            if not images:
                return
            image = images[0]
            part.end = lo + image.start
            # "- ![a](u)": the bullet (or quote, heading marker) before an image stays out
            part.source = DANGLING_MARKER.sub("", text[part.start : part.end])
            part.html = part.inc.html(part.source, final=True)
            view.shown += len(part.source)
            url = image.url.strip()
            view.parts.append(_Image(url, image.alt, view.number(url)))
            view.parts.append(
                _Text(lo + image.end, IncrementalHtml(self._renderer, self._label(view)))
            )

    def _compose(
        self,
        texts: dict[int, str],
        urls: dict[int, list[str]],
        refusals: dict[int, str],
        status: str,
        *,
        final: bool,
        result: ChatResult | None,
    ) -> list[tuple[int, dict[str, Any], dict[str, Any]]]:
        """The outputs of this update that changed: (slot, data, metadata)."""
        choices: dict[int, Choice] = {}
        if result is not None:
            choices = {c.index: c for c in result.choices}
            for c in result.choices:
                if c.text or c.index not in texts:  # a failure's empty result keeps what came
                    texts[c.index] = c.text
                if c.refusal:
                    refusals[c.index] = c.refusal
        indices = sorted(set(texts) | set(urls) | set(refusals)) or [0]
        cut_short = self._render_texts(texts, indices, choices, final=final)
        footer = self._footer(status, cut_short, final=final, result=result)
        meta = {"jupyter_chatimg": result.provenance()} if result is not None and final else {}
        entries: list[_Entry] = []
        for n, i in enumerate(indices):
            entries += self._text_entries(n, i, indices, choices.get(i), refusals.get(i), meta)
        if self.calls is not None:
            html, plain = self.calls(final)
            data = {"text/html": html, "text/plain": plain} if html else None
            entries.append(_Entry(data, meta, self._calls_block))
        after: list[_Entry] = []
        if final:
            for i in indices:
                choice = choices.get(i)
                if choice is None:
                    continue
                for image in self._images_after(self._views[i], choice):
                    data, image_meta = image_output(image)
                    image_meta.update(meta)
                    after.append(_Entry(data, image_meta))
            if after and self._partial_block.slot is not None:
                after[0].part = self._partial_block  # the first final image replaces the partial
        if not final and not any(e.data and e.data.get("text/html", "x").strip() for e in entries):
            # Nothing to show yet: a placeholder (some front ends drop an empty output).
            entries[0].data = {"text/html": PLACEHOLDER, "text/plain": "…"}
        _place_footer(footer, entries, after, meta)
        return self._assign(entries + after, final=final)

    def _render_texts(
        self, texts: dict[int, str], indices: list[int], choices: dict[int, Choice], *, final: bool
    ) -> bool:
        """Render each choice's open text (cutting it at complete images); True if cut short."""
        many = len(indices) > 1
        cut_short = False
        for i in indices:
            view = self._view(i)
            text, _ = normalise(texts.get(i, ""))
            choice = choices.get(i)
            if choice is not None:
                view.errors = dict(choice.image_errors)
            end = len(text) if final else stable_end(text, view.open.start)
            if not many:
                self._cut(view, text, end)
            current = view.open
            room = current.start + max(0, self.max_display_chars - view.shown)
            if end > room:  # the display holds max_display_chars of text (images aside)
                cut_short = True
                end = room if final else stable_end(text[:room], current.start)
            current.source = text[current.start : max(end, current.start)]
            current.html = current.inc.html(current.source, final=final)
        return cut_short

    def _footer(
        self, status: str, cut_short: bool, *, final: bool, result: ChatResult | None
    ) -> list[str]:
        footer = [*self.notes]
        if status and not final:
            footer.append(status)
        if cut_short:
            footer.append(
                f"the display holds the first {self.max_display_chars:,} characters of text; "
                "the whole reply is in the result (.text)"
            )
        if result is not None and final:
            if result.error is not None:
                footer.append("⚠ " + str(result.error))
            if self.show_stats:
                footer.append(_stats_line(result))
        return footer

    def _text_entries(
        self,
        n: int,
        i: int,
        indices: list[int],
        choice: Choice | None,
        refusal: str | None,
        meta: dict[str, Any],
    ) -> list[_Entry]:
        """The outputs of choice ``i``: its text parts and the images at their place."""
        view = self._views[i]
        many = len(indices) > 1
        head = ""
        if many:
            head = ("<hr>\n" if n else "") + f"<p><strong>Choice {i + 1}</strong></p>\n"
        entries: list[_Entry] = []
        for part in view.parts:
            if isinstance(part, _Image):
                data, image_meta = self._image_data(view, part, choice)
                entries.append(_Entry(data, {**image_meta, **meta}, part))
                continue
            body = head + part.html
            head = ""
            if part is view.parts[-1] and refusal:
                body += f"<p><strong>Refusal:</strong> {escape(refusal)}</p>\n"
            if part is view.parts[-1] and many and choice is not None:
                # its images come after every choice's text: say which are its own
                placed = {p.url for p in view.parts if isinstance(p, _Image)}
                marks = [
                    f"[image {view.number(url)}]"
                    for url in choice.image_urls
                    if url not in placed and url not in view.urls
                ]
                if marks:
                    body += f"<p><em>{' '.join(marks)}</em></p>\n"
            text: dict[str, Any] | None = None
            if body.strip() or part.slot is not None:
                text = {"text/html": body, "text/plain": self._plain(part, refusal)}
            entries.append(_Entry(text, meta, part, open=part.end is None))
        return entries

    def _show_partial(self, data: dict[str, Any], metadata: dict[str, Any]) -> None:
        """A partial image (``PartialImages``): its own output, replaced in place."""
        with self._render_lock:
            if self._closed:
                return
            slot = self._partial_block.slot
            if slot is None:
                slot = self._partial_block.slot = len(self._sent)
                self._sent.append(data)
            else:
                self._sent[slot] = data
            self.sink.show(slot, data, metadata, final=False)

    def _plain(self, part: _Text, refusal: str | None) -> str:
        plain = plain_text(self._renderer.md, part.source) if part.source.strip() else ""
        if refusal:
            plain += ("\n" if plain else "") + "Refusal: " + one_line(refusal, 200)
        return plain

    def _image_data(
        self, view: _View, part: _Image, choice: Choice | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """An image at its place: its output (data, metadata with its size), or a line."""
        if choice is None:  # still streaming: fetched after the stream ends
            label = f"[image {part.number}]"
            return {"text/html": f"<p><em>{label}</em></p>\n", "text/plain": label}, {}
        found, _ = images_by_url(choice)
        image = found.get(part.url)
        if image is not None:
            return image_output(image)
        reason = choice.image_errors.get(part.url)
        if reason is None:
            alt = f": {one_line(part.alt, 200)}" if part.alt.strip() else ""
            label = f"[image {part.number}{alt}]"
            return {"text/html": f"<p><em>{escape(label)}</em></p>\n", "text/plain": label}, {}
        html_line = "<p>" + _failed_image(part.number, part.url, reason) + "</p>\n"
        plain = f"[image {part.number}: {one_line(reason)}]"
        return {"text/html": html_line, "text/plain": plain}, {}

    def _images_after(self, view: _View, choice: Choice) -> list[Any]:
        """The choice's images that have no place in its text, in order."""
        found, unnamed = images_by_url(choice)
        placed = {p.url for p in view.parts if isinstance(p, _Image)}
        out = [image for url, image in found.items() if url not in placed]
        return out + unnamed

    def _assign(
        self, entries: list[_Entry], *, final: bool
    ) -> list[tuple[int, dict[str, Any], dict[str, Any]]]:
        """Give outputs slots in order (created lazily), and list those that changed."""
        out: list[tuple[int, dict[str, Any], dict[str, Any]]] = []
        waiting: list[_Entry] = []  # open texts with nothing yet, before later outputs
        slots: list[tuple[int, _Entry]] = []
        next_slot = len(self._sent)
        for entry in entries:
            part = entry.part
            slot = part.slot if part is not None else None
            if slot is None and entry.data is None:
                if entry.open:
                    waiting.append(entry)
                continue
            if slot is None:
                for early in waiting:  # an open text must keep its place before this one
                    early.data = {"text/html": "", "text/plain": ""}
                    slots.append((next_slot, early))
                    if early.part is not None:
                        early.part.slot = next_slot
                    next_slot += 1
                waiting = []
                slot = next_slot
                next_slot += 1
                if part is not None:
                    part.slot = slot
            slots.append((slot, entry))
        for slot, entry in slots:
            data = entry.data or {"text/html": "", "text/plain": ""}
            if slot < len(self._sent):
                if self._sent[slot] == data and not final:
                    continue
                self._sent[slot] = data
            else:
                self._sent.append(data)
            out.append((slot, data, entry.metadata))
        out.sort(key=lambda t: t[0])
        return out

    # -- the end ---------------------------------------------------------------

    def finish(self, result: ChatResult) -> None:
        """The final update (whole text, images at their place, error line, stats)."""
        self.partials.close()  # no partial image after this (the final one replaces it)
        if self._printer is not None:
            with self._render_lock:
                with self._lock:
                    if self._closed:
                        return
                    self._closed = True
                if self._printer.fed == 0 and result.choices:
                    self._printer.feed(result.choices[0].text)
                self._printer.finish(result, self._footer_lines(result))
            return
        self._send(final=True, result=result)

    def _footer_lines(self, result: ChatResult) -> list[str]:
        lines = list(self.notes)
        if result.error is not None:
            lines.append("⚠ " + str(result.error))
        if self.show_stats:
            lines.append(_stats_line(result))
        return lines


# The block markers alone on the last line of a text cut before an image.


def _failed_image(n: int, url: str, reason: str) -> str:
    """An image that could not be shown: its number (a link for http(s)) and the reason."""
    reason = escape(one_line(reason, 300))
    if url.lower().startswith(("http://", "https://")):
        href = escape(url)
        return (
            f'<a href="{href}" rel="noopener noreferrer" target="_blank">image {n}</a> '
            f"<em>({reason})</em>"
        )
    return f"<em>[image {n}: {reason}]</em>"


def _place_footer(
    footer: list[str], entries: list[_Entry], after: list[_Entry], meta: dict[str, Any]
) -> None:
    """Put the footer lines under everything: on the last output that shows text (it
    moves down as outputs are added), or an output of its own after the images."""
    if not footer:
        return
    footer_html = "".join(line_html(x) for x in footer)
    footer_plain = "\n".join(one_line(x, 400) for x in footer)
    holder = next((e for e in reversed(entries) if e.data is not None), entries[-1])
    data = holder.data or {"text/html": "", "text/plain": ""}
    if after or "text/html" not in data:
        after.append(_Entry({"text/html": footer_html, "text/plain": footer_plain}, meta))
    else:
        plain = data["text/plain"]
        holder.data = {
            "text/html": data["text/html"] + footer_html,
            "text/plain": (plain + "\n" if plain else "") + footer_plain,
        }


class _PartialSlot:
    """What ``PartialImages`` writes to: the reply's partial-image output."""

    def __init__(self, live: LiveReply) -> None:
        self.image_in_place = live._show_partial


# ---------------------------------------------------------------------- terminal

# A partial line that may still become a rule, a setext underline, a table delimiter
# row, a list marker or a fence: nothing of it is printed yet.
