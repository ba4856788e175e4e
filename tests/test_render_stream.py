"""LiveReply under fast streams: coalescing bounds, the first text not held back,
and terminal printing that stays linear and never prints half an image."""

from __future__ import annotations

import io
import random
from typing import Any

import pytest

from jupyter_chatimg import _render
from jupyter_chatimg._dialects import Delta
from jupyter_chatimg._markdown import find_markdown_images
from jupyter_chatimg._render import LiveReply, PrintSink
from jupyter_chatimg._result import ChatResult, Choice


class Clock:
    """Simulated time: the test moves it."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    wants_deltas = False

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.updates: list[tuple[float, str, bool]] = []

    def update(self, markdown: str, plain: str, *, final: bool, metadata: Any) -> None:
        self.updates.append((self.clock.now, markdown, final))

    def image(self, image: Any, *, metadata: Any) -> None:
        pass

    def delta(self, text: str) -> None:
        pass


def _live(clock: Clock, sink: Recorder) -> LiveReply:
    live = LiveReply(sink=sink, update_interval=0.05, clock=clock)
    # No real timers: the simulated stream never pauses, so deltas send every update.
    live._start_timer = lambda: None  # type: ignore[method-assign]
    return live


def test_first_text_is_not_held_back_by_the_placeholder() -> None:
    clock = Clock()
    sink = Recorder(clock)
    live = _live(clock, sink)
    live.start()
    clock.now += 0.001  # the first token comes 1 ms after the placeholder
    live.on_delta(Delta(0, "Hello"))
    assert [u[1] for u in sink.updates][-1].startswith("Hello")
    assert len(sink.updates) == 2
    live.on_delta(Delta(0, " world"))  # the window applies from now on
    assert len(sink.updates) == 2


@pytest.mark.parametrize("rate", [50, 500, 5000])
def test_updates_are_bounded_by_the_interval_whatever_the_rate(rate: int) -> None:
    clock = Clock()
    sink = Recorder(clock)
    live = _live(clock, sink)
    live.start()
    tokens = [f" w{i}" for i in range(rate * 10)]
    for tok in tokens:
        clock.now += 1 / rate
        live.on_delta(Delta(0, tok))
    live.finish(ChatResult(choices=[Choice(text="".join(tokens))]))
    # placeholder + first text + at most one per interval over 10 s + the final one
    assert len(sink.updates) <= 10 / 0.05 + 3
    gaps = [b[0] - a[0] for a, b in zip(sink.updates[1:-1], sink.updates[2:-1], strict=False)]
    assert all(g >= 0.05 - 1e-9 for g in gaps)
    assert sink.updates[-1][2] and "".join(tokens).strip() in sink.updates[-1][1]


def test_bytes_resent_grow_linearly_with_the_reply() -> None:
    sent = []
    for n in (10_000, 40_000):
        clock = Clock()
        sink = Recorder(clock)
        live = _live(clock, sink)
        live.start()
        for _ in range(n):
            clock.now += 1 / 500
            live.on_delta(Delta(0, " word"))
        live.finish(ChatResult(choices=[Choice(text=" word" * n)]))
        sent.append(sum(len(u[1]) for u in sink.updates))
    assert sent[1] / sent[0] < 4 * 1.5  # 4x the reply: about 4x the bytes, not 16x


B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk" * 300
PIECES = [
    "Hello! ",
    "Wow!! ",
    "![cat](https://x.org/c.png)",
    " text ",
    f"![big](data:image/png;base64,{B64})",
    "\n\n```\n![fence](a.png)\n```\n",
    "! [no]",
    "[link](http://a)",
    "!",
    "![alt] plain ",
    "a)b]c ",
]


def _expected(text: str) -> str:
    out, pos = [], 0
    for n, image in enumerate(find_markdown_images(text), 1):
        out += [text[pos : image.start], f"[image {n}]"]
        pos = image.end
    return "".join(out) + text[pos:] + "\n"


@pytest.mark.parametrize("seed", range(40))
def test_terminal_printing_in_random_pieces(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    reads = []
    real = _render.find_markdown_images

    def counted(text: str) -> Any:
        reads.append(len(text))
        return real(text)

    monkeypatch.setattr(_render, "find_markdown_images", counted)
    rng = random.Random(seed)
    text = "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 14)))
    out = io.StringIO()
    live = LiveReply(sink=PrintSink(out))
    live.start()
    pos = 0
    deltas = 0
    while pos < len(text):
        n = rng.choice([1, 2, 3, 7, 50, 400])
        live.on_delta(Delta(0, text[pos : pos + n]))
        pos += n
        deltas += 1
    live.finish(ChatResult(choices=[Choice(text=text)]))
    assert out.getvalue() == _expected(text)
    assert B64[:100] not in out.getvalue()
    # the whole text is read again only around images, not once per delta
    assert len(reads) <= 3 * text.count("![") + 2, (len(reads), deltas)


def test_real_timers_lose_no_text_and_keep_the_window() -> None:
    clock = Clock()
    sink = Recorder(clock)
    live = LiveReply(sink=sink, update_interval=0.01)  # real clock and timers
    live.start()
    tokens = [f" t{i}" for i in range(30_000)]
    for tok in tokens:
        live.on_delta(Delta(0, tok))
    live.finish(ChatResult(choices=[Choice(text="".join(tokens))]))
    assert sink.updates[-1][2] and sink.updates[-1][1].endswith("t29999")
    # every update shows a prefix of the reply: nothing kept out of order or lost
    full = "".join(tokens).strip()
    assert all(full.startswith(u[1].strip()) for u in sink.updates[1:])
