"""LiveReply under fast streams: coalescing bounds, the first text not held back, outputs
in order with images at their place, and terminal printing that is plain text, linear,
and the same whatever pieces the text came in."""

from __future__ import annotations

import io
import random
import re
from typing import Any

import pytest
from PIL import Image

from jupyter_chatimg import _render
from jupyter_chatimg._dialects import Delta
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
        self.updates: list[tuple[float, str, bool]] = []  # one per LiveReply update
        self.messages: list[tuple[int, dict[str, Any], dict[str, Any], bool]] = []
        self.slots: dict[int, dict[str, Any]] = {}
        self._last: tuple[float, bool] | None = None

    def show(self, slot: int, data: dict[str, Any], metadata: Any, *, final: bool) -> None:
        assert slot <= len(self.slots), "outputs are created in order"
        self.messages.append((slot, data, metadata, final))
        self.slots[slot] = data
        html = "".join(self.slots[k].get("text/html", "") for k in sorted(self.slots))
        if self._last == (self.clock.now, final) and self.updates:
            self.updates[-1] = (self.clock.now, html, final)  # several outputs, one update
        else:
            self.updates.append((self.clock.now, html, final))
        self._last = (self.clock.now, final)

    def delta(self, text: str) -> None:
        pass


def _live(clock: Clock, sink: Recorder, **kw: Any) -> LiveReply:
    live = LiveReply(sink=sink, update_interval=0.05, clock=clock, **kw)
    # No real timers: the simulated stream never pauses, so deltas send every update.
    live._start_timer = lambda: None  # type: ignore[method-assign]
    return live


def test_first_text_is_not_held_back_by_the_placeholder() -> None:
    clock = Clock()
    sink = Recorder(clock)
    live = _live(clock, sink)
    live.start()
    assert sink.updates[-1][1] == _render.PLACEHOLDER
    clock.now += 0.001  # the first token comes 1 ms after the placeholder
    live.on_delta(Delta(0, "Hello"))
    assert sink.updates[-1][1].startswith("<p>Hello")
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
        for i in range(n):
            clock.now += 1 / 500
            live.on_delta(Delta(0, " word" if i % 50 else " word\n\n"))
        live.finish(ChatResult(choices=[Choice(text="".join(" word" for _ in range(n)))]))
        sent.append(sum(len(m[1].get("text/html", "")) for m in sink.messages))
    assert sent[1] / sent[0] < 4 * 1.5  # 4x the reply: about 4x the bytes, not 16x


def test_every_update_is_a_prefix_and_only_the_last_output_changes() -> None:
    clock = Clock()
    sink = Recorder(clock)
    live = _live(clock, sink)
    live.start()
    text = "".join(f"Paragraph {i} with **bold** words.\n\n" for i in range(300))
    for i in range(0, len(text), 3):
        clock.now += 0.06
        live.on_delta(Delta(0, text[i : i + 3]))
    live.finish(ChatResult(choices=[Choice(text=text)]))
    assert {m[0] for m in sink.messages} == {0}
    finals = [m for m in sink.messages if m[3]]
    assert len(finals) == 1 and finals[0][1]["text/html"].count("<p>") == 300


def test_max_display_chars_bounds_the_display_and_says_so() -> None:
    clock = Clock()
    sink = Recorder(clock)
    live = _live(clock, sink, max_display_chars=1000)
    live.start()
    text = "word " * 1000
    for i in range(0, len(text), 50):
        clock.now += 0.06
        live.on_delta(Delta(0, text[i : i + 50]))
    live.finish(ChatResult(choices=[Choice(text=text)]))
    final = sink.updates[-1][1]
    assert final.count("word") == 200
    assert "the display holds the first 1,000 characters of text; the whole reply" in final
    assert all(u[1].count("word") <= 200 for u in sink.updates)


def test_max_display_chars_counts_text_not_the_images_cut_out_of_it() -> None:
    red = Image.new("RGB", (4, 3), "red")
    big = "data:image/png;base64," + "A" * 5000
    text = f"Before ![x]({big}) after, " + "word " * 300
    result = ChatResult(choices=[Choice(text=text, images=[red], image_urls=[big])])
    clock = Clock()
    sink = Recorder(clock)
    live = _live(clock, sink, max_display_chars=1000)
    live.start()
    for i in range(0, len(text), 500):
        clock.now += 0.06
        live.on_delta(Delta(0, text[i : i + 500]))
    live.finish(result)
    kinds = [next(iter(sorted(sink.slots[k]))) for k in sorted(sink.slots)]
    assert kinds == ["text/html", "image/png", "text/html"]  # the 5 KB image link is no text
    last = sink.slots[2]["text/html"]
    assert 190 <= last.count("word") < 200 and "the display holds the first 1,000" in last


def test_n_choices_are_labelled_with_their_images_after_the_text() -> None:
    clock = Clock()
    sink = Recorder(clock)
    live = _live(clock, sink)
    live.start()
    url = "https://cdn.example.com/a.png"
    texts = [f"Take 1 ![a]({url}) end.", "Take 2."]
    # the choices' tokens interleave; once there are two, images stay out of the text
    for i, t in [(0, "Take 1 "), (1, "Take 2."), (0, texts[0][7:])]:
        clock.now += 0.1
        live.on_delta(Delta(i, t))
    red = Image.new("RGB", (3, 2), "red")
    result = ChatResult(
        choices=[
            Choice(index=0, text=texts[0], images=[red], image_urls=[url]),
            Choice(index=1, text=texts[1], refusal="no more"),
        ]
    )
    live.finish(result)
    kinds = [sorted(sink.slots[k]) for k in sorted(sink.slots)]
    assert kinds == [
        ["text/html", "text/plain"],
        ["text/html", "text/plain"],
        ["image/png", "text/plain"],
    ]
    first, second = sink.slots[0]["text/html"], sink.slots[1]["text/html"]
    assert "<strong>Choice 1</strong>" in first and "[image 1]" in first
    assert "<strong>Choice 2</strong>" in second and "<strong>Refusal:</strong> no more" in second


# -- images at their place ------------------------------------------------------------

URL = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"


def _stream_images(text: str, result: ChatResult, step: int = 3) -> Recorder:
    clock = Clock()
    sink = Recorder(clock)
    live = _live(clock, sink, notes=["a note"])
    live.start()
    for i in range(0, len(text), step):
        clock.now += 0.06
        live.on_delta(Delta(0, text[i : i + step]))
    clock.now += 0.06
    live.finish(result)
    return sink


def test_text_image_text_in_that_order_with_the_footer_last() -> None:
    text = f"Before ![x]({URL}) After"
    red = Image.new("RGB", (4, 3), "red")
    sink = _stream_images(
        text, ChatResult(choices=[Choice(text=text, images=[red], image_urls=[URL])])
    )
    slots = [sink.slots[k] for k in sorted(sink.slots)]
    assert [sorted(s) for s in slots] == [
        ["text/html", "text/plain"],
        ["image/png", "text/plain"],
        ["text/html", "text/plain"],
    ]
    assert slots[0]["text/html"] == "<p>Before</p>\n"
    assert slots[2]["text/html"] == "<p>After</p>\n<p><em>a note</em></p>\n"
    # while it streamed: a placeholder at the image's place, never a part of the data URI
    streamed = [m for m in sink.messages if not m[3]]
    assert any(m[0] == 1 and m[1]["text/html"] == "<p><em>[image 1]</em></p>\n" for m in streamed)
    assert not any("iVBOR" in m[1].get("text/html", "") for m in sink.messages)
    # the note rode on the last output at every moment: first output 0, then output 2
    assert [m[0] for m in streamed if "a note" in m[1].get("text/html", "")][-1] == 2


def test_images_outside_the_text_come_after_it_and_failures_keep_their_place() -> None:
    bad = "https://cdn.example.com/gone.png"
    extra = "https://cdn.example.com/extra.png"
    text = f"One ![a]({bad}) two\n\n![b]({URL})\n\nthree"
    blue = Image.new("RGB", (2, 2), "blue")
    green = Image.new("RGB", (5, 5), "green")
    result = ChatResult(
        choices=[
            Choice(
                text=text,
                images=[blue, green],
                image_urls=[extra, bad, URL],
                image_errors={bad: "not fetched: cdn.example.com answered HTTP 404"},
            )
        ],
        error=RuntimeError("the connection broke"),
    )
    sink = _stream_images(text, result)
    slots = [sink.slots[k] for k in sorted(sink.slots)]
    kinds = [next(iter(sorted(s))) for s in slots]
    assert kinds == [
        "text/html",
        "text/html",
        "text/html",
        "image/png",
        "text/html",
        "image/png",
        "text/html",
    ]
    assert slots[0]["text/html"] == "<p>One</p>\n"
    assert (
        f'<a href="{bad}" rel="noopener noreferrer" target="_blank">image 1</a>'
        in slots[1]["text/html"]
    )
    assert "answered HTTP 404" in slots[1]["text/html"]
    assert slots[2]["text/html"] == "<p>two</p>\n"
    assert slots[3]["image/png"] == _render.image_bundle(green)[0]["image/png"]
    assert slots[4]["text/html"] == "<p>three</p>\n"
    assert slots[5]["image/png"] == _render.image_bundle(blue)[0]["image/png"]  # images[]: after
    assert (
        slots[6]["text/html"] == "<p><em>a note</em></p>\n<p><em>⚠ the connection broke</em></p>\n"
    )
    for _slot, _data, metadata, final in sink.messages:
        if final:
            assert "jupyter_chatimg" in metadata


def test_a_list_of_images_leaves_no_empty_bullets() -> None:
    red, blue = Image.new("RGB", (4, 3), "red"), Image.new("RGB", (2, 2), "blue")
    other = "https://cdn.example.com/b.png"
    text = f"Here:\n\n- ![a]({URL})\n- ![b]({other}) blue\n"
    result = ChatResult(choices=[Choice(text=text, images=[red, blue], image_urls=[URL, other])])
    sink = _stream_images(text, result)
    slots = [sink.slots[k] for k in sorted(sink.slots)]
    kinds = [next(iter(sorted(s))) for s in slots]
    assert kinds == ["text/html", "image/png", "image/png", "text/html"]
    assert slots[0]["text/html"] == "<p>Here:</p>\n"
    assert slots[3]["text/html"].startswith("<p>blue</p>")
    out = _printed(text, [4] * 100, result)
    assert out == "Here:\n\n- [image 4x3]\n- [image 2x2]\nblue\nthe note\n"


def test_an_image_that_cannot_be_encoded_is_one_line() -> None:
    class Broken:
        width, height, mode = 4, 3, "RGB"

    text = f"Before ![x]({URL}) After"
    result = ChatResult(choices=[Choice(text=text, images=[Broken()], image_urls=[URL])])
    sink = _stream_images(text, result)
    assert sink.slots[1]["text/plain"].startswith("[an image could not be shown: ")
    assert sink.slots[2]["text/html"].startswith("<p>After</p>")


def test_a_reply_that_is_only_an_image() -> None:
    red = Image.new("RGB", (4, 3), "red")
    text = f"![only]({URL})"
    result = ChatResult(choices=[Choice(text=text, images=[red], image_urls=[URL])])
    clock = Clock()
    sink = Recorder(clock)
    live = _live(clock, sink)
    live.start()
    live.finish(result)  # not streamed (--no-stream): everything at the end
    kinds = [sorted(sink.slots[k]) for k in sorted(sink.slots)]
    assert kinds == [["text/html", "text/plain"], ["image/png", "text/plain"]]
    assert sink.slots[0]["text/html"] == ""  # the placeholder's output, emptied


# -- the terminal ---------------------------------------------------------------------

B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk" * 300
PIECES = [
    "Hello! ",
    "Wow!! ",
    "**bold** ",
    "*em* ",
    "snake_case_name ",
    "`code` ",
    "[link](http://a) ",
    "a < b & c ",
    "\\*literal\\* ",
    "![cat](https://x.org/c.png)",
    f"![big](data:image/png;base64,{B64})",
    "\n",
    "\n\n",
    "\n\n```\n**not bold** ![fence](a.png)\n```\n",
    "\n- item **one**\n- item two\n",
    "\n# Title #\n",
    "\nTitle\n---\n",
    "\n> quoted *text*\n",
    "\n- ![cat](https://x.org/c.png) a cat\n",
    "$a_b$ ",
    "! [no]",
    "!",
    "![alt] plain ",
    "a)b]c ",
    "~~gone~~ ",
    "x_ ",
    "trailing  ",
]


def _printed(text: str, pieces: list[int] | None, result: ChatResult) -> str:
    out = io.StringIO()
    live = LiveReply(sink=PrintSink(out), notes=["the note"])
    live.start()
    pos = 0
    for n in pieces or []:
        live.on_delta(Delta(0, text[pos : pos + n]))
        pos += n
    if pos < len(text) and pieces is not None:
        live.on_delta(Delta(0, text[pos:]))
    live.finish(result)
    return out.getvalue()


def _result(text: str) -> ChatResult:
    cat = Image.new("RGB", (8, 6), "black")
    big = Image.new("RGB", (1, 1), "white")
    return ChatResult(
        choices=[
            Choice(
                text=text,
                images=[cat, big],
                image_urls=["https://x.org/c.png", f"data:image/png;base64,{B64}"],
            )
        ]
    )


@pytest.mark.parametrize("seed", range(40))
def test_terminal_printing_is_the_same_in_any_pieces(seed: int) -> None:
    rng = random.Random(seed)
    text = "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 14)))
    whole = _printed(text, None, _result(text))  # a reply that was not streamed
    sizes = [rng.choice([1, 2, 3, 7, 50, 400]) for _ in range(len(text))]
    assert _printed(text, sizes, _result(text)) == whole
    assert B64[:100] not in whole
    assert "**" not in whole.replace("**not bold**", "")
    assert whole.rstrip("\n").endswith("the note")


def test_terminal_prints_plain_text_with_one_line_per_image() -> None:
    text = (
        "The colours are **red** and *blue*.\nProgress 1\nProgress 2\n\n"
        "- first `item`\n- second\n\n## Result\n\n![cat](https://x.org/c.png)\n\nAfter it."
    )
    out = _printed(text, [5] * 200, _result(text))
    assert out == (
        "The colours are red and blue.\nProgress 1\nProgress 2\n\n"
        "- first item\n- second\n\nResult\n\n[image 8x6]\n\nAfter it.\n"
        "[image 1x1]\nthe note\n"
    )


def test_terminal_text_is_printed_as_it_arrives() -> None:
    out = io.StringIO()
    live = LiveReply(sink=PrintSink(out))
    live.on_delta(Delta(0, "Hello there, this is"))
    assert out.getvalue() == "Hello there, this is"
    live.on_delta(Delta(0, " a **bo"))
    assert out.getvalue() == "Hello there, this is a"
    live.on_delta(Delta(0, "ld** move.\nNext"))
    assert out.getvalue() == "Hello there, this is a bold move.\nNext"


def test_real_timers_lose_no_text_and_keep_the_window() -> None:
    clock = Clock()
    sink = Recorder(clock)
    live = LiveReply(sink=sink, update_interval=0.01)  # real clock and timers
    live.start()
    tokens = [f" t{i}" for i in range(30_000)]
    for tok in tokens:
        live.on_delta(Delta(0, tok))
    live.finish(ChatResult(choices=[Choice(text="".join(tokens))]))
    assert sink.updates[-1][2] and sink.updates[-1][1].endswith("t29999</p>\n")
    # every update shows a prefix of the reply: nothing kept out of order or lost
    full = "".join(tokens).strip()
    for _t, html, _final in sink.updates[1:]:
        shown = html.removeprefix("<p>").removesuffix("</p>\n")
        assert full.startswith(shown), shown[-40:]


def test_one_huge_delta_is_shown_capped_and_kept_whole(clean_env: Any, replay_server: Any) -> None:
    # Issue 15 (9): a single 50 MB delta gave two 50 MB display messages (104 MB saved
    # for one cell). The display holds max_display_chars; the result holds everything.
    import json

    import jupyter_chatimg as ci

    huge = "word " * 800_000  # 4 MB in one delta
    chunk = {"choices": [{"index": 0, "delta": {"content": huge}, "finish_reason": "stop"}]}
    body = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n"
    replay_server.add(
        "POST", "/v1/chat/completions", 200, {"Content-Type": "text/event-stream"}, body
    )

    class Recorder:
        wants_deltas = False

        def __init__(self) -> None:
            self.sizes: list[int] = []

        def show(
            self, slot: int, data: dict[str, Any], metadata: dict[str, Any], *, final: bool
        ) -> None:
            self.sizes.append(sum(len(str(v)) for v in data.values()) + len(json.dumps(metadata)))

        def delta(self, text: str) -> None:
            raise AssertionError("not a terminal")

    sink = Recorder()
    result = ci.chat("hi", base_url=replay_server.url, sink=sink, max_retries=0)
    assert result.text == huge
    assert max(sink.sizes) < 1_500_000, sink.sizes  # about 1,000,000 characters of text
    assert sum(sink.sizes) < 4_000_000


def test_stats_and_readable_text_in_terminal_ipython(
    clean_env: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Issue 16 (2, 8): --stats printed nothing in terminal IPython, and the text was raw
    # markdown ("**red**", "[image 1]" and "[image 512x512, RGB]" for one image).
    from IPython.testing.globalipapp import get_ipython

    shell = get_ipython()
    shell.run_line_magic("load_ext", "jupyter_chatimg")
    capsys.readouterr()
    shell.run_cell("%%chatimg --stats -m demo-image\na red circle on a blue background")
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip()]
    assert re.fullmatch(
        r"demo-image · \d+ tokens · first token [\d.]+ s · [\d.]+ s total", lines[-1]
    ), out
    assert "**" not in out and "](data:" not in out
    assert out.count("[image 512x512]") == 1, out
    assert "offline demo model (demo-image)" in out
