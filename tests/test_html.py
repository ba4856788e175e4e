"""Model text -> safe HTML in the kernel (jupyter_chatimg._html): what a front end gets.

Every check parses the HTML that would be sent (``_xss.problems``: html.parser,
an allow-list of tags and attributes, URL schemes, MathJax macros). Streaming
is checked through ``LiveReply`` with a clock under the test's control, so
that every delta becomes a display message.
"""

from __future__ import annotations

import gc
import html
import random
import re
import time
from typing import Any

import pytest
from _xss import PAYLOADS, VECTORS, assert_inert, problems

from jupyter_chatimg._dialects import Delta
from jupyter_chatimg._html import IncrementalHtml, renderer, stable_end
from jupyter_chatimg._render import LiveReply
from jupyter_chatimg._result import ChatResult, Choice

render = renderer().render


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Outputs:
    """A sink keeping every display message and the outputs as a front end shows them."""

    wants_deltas = False

    def __init__(self) -> None:
        self.messages: list[tuple[int, dict[str, Any], bool]] = []
        self.slots: dict[int, dict[str, Any]] = {}

    def show(self, slot: int, data: dict[str, Any], metadata: Any, *, final: bool) -> None:
        assert slot <= len(self.slots), "outputs are created in order"
        self.messages.append((slot, data, final))
        self.slots[slot] = data

    def delta(self, text: str) -> None:
        pass

    def html(self) -> str:
        return "".join(self.slots[k].get("text/html", "") for k in sorted(self.slots))

    def states(self) -> list[str]:
        """The whole reply as shown after each message (text outputs joined)."""
        shown: dict[int, str] = {}
        out = []
        for slot, data, _ in self.messages:
            shown[slot] = data.get("text/html", "")
            out.append("".join(shown[k] for k in sorted(shown)))
        return out


def stream(text: str, step: int = 1, result: ChatResult | None = None, **kw: Any) -> Outputs:
    """Every ``step`` characters an update (the clock moves past the window each time)."""
    sink = Outputs()
    clock = Clock()
    live = LiveReply(sink=sink, update_interval=0.05, clock=clock, **kw)
    live._start_timer = lambda: None  # type: ignore[method-assign]
    live.start()
    for i in range(0, len(text), step):
        clock.now += 10
        live.on_delta(Delta(0, text[i : i + step]))
    live.finish(result or ChatResult(choices=[Choice(text=text)]))
    return sink


# -------------------------------------------------------------------- inert


@pytest.mark.parametrize("payload", list(PAYLOADS.values()), ids=list(PAYLOADS))
def test_payload_is_inert(payload: str) -> None:
    out = render(payload)
    assert_inert(out, payload)
    markup = "".join(re.findall(r"<[^>]*>", out)).lower()  # the tags, text left out
    for needle in ("<img", "<script", "<iframe", "<svg", "<style", "javascript:", "src=", "on"):
        assert needle not in markup.replace("noopener", ""), (needle, out)


@pytest.mark.parametrize("payload", list(PAYLOADS.values()), ids=list(PAYLOADS))
def test_payload_is_inert_in_every_display_message_as_it_streams(payload: str) -> None:
    sink = stream(payload)
    assert len(sink.messages) >= 2
    for _slot, data, _final in sink.messages:
        assert_inert(data.get("text/html", ""), payload)
        assert set(data) <= {"text/html", "text/plain", "image/png", "image/jpeg"}


def test_known_vectors_mixed_and_cut_anywhere_stay_inert() -> None:
    rng = random.Random(20261123)
    texts = list(VECTORS)
    for _ in range(100):
        texts.append(rng.choice(["", "\n", "\n\n"]).join(rng.choices(VECTORS, k=rng.randint(2, 5))))
    for text in texts:
        # every cut of the text is a display message of the stream, and the final one too
        sink = stream(text)
        for _slot, data, _final in sink.messages:
            assert_inert(data.get("text/html", ""), text)
        assert_inert(render(text), text)


def test_the_checker_catches_what_it_must() -> None:
    # positive controls: each of these is found
    assert "<img>" in problems('<img src="http://x/">')
    assert problems('<a href="javascript:x">a</a>') == ["<a href='javascript:x'>"]
    assert problems('<a href="/lab">a</a>') == ["<a href='/lab'>"]
    assert problems('<p style="color:red">x</p>') == ["<p style='color:red'>"]
    assert problems('<p onclick="x">x</p>') == ["<p onclick='x'>"]
    assert problems("<p>$\\href{x}{y}$</p>") == ["MathJax macro \\href"]
    assert problems("<p>$&#92;style{x}{y}$</p>") == ["MathJax macro \\style"]
    assert problems("<p><code>\\href</code></p>") == []
    assert problems("<!-- x -->") == ["<!--"]


# ------------------------------------------------------------- what stays

CODE_KEPT = {
    "code span with tag": "`<img src=x onerror=alert(1)>`",
    "code span a<b": "use `a<b` here",
    "fenced html": "```html\n<script>alert(1)</script>\n<img src=x onerror=alert(1)>\n```",
    "tilde fence": "~~~\n<iframe src=x></iframe>\n~~~",
    "nested backtick runs": "`` a ` <b> ` c ``",
    "unclosed fence at end": "text\n\n```js\nlet a = b < c;\nel.innerHTML = '<img src=x>';",
    "fence in a list item": '1. Save this:\n   ```html\n   <div onclick="go()">hi</div>\n   ```\n2. Open it.',
    "image syntax in code": "`![x](http://e/x.png)` and\n\n```\n![y](http://e/y.png)\n```",
    "bold and amp": "```\n<b>x</b> & <img src=y> \"q\" 'a' \u00a0nbsp $x$ \\href{a}{b}\n```",
}
_CODE = re.compile(r"<code>(.*?)</code>", re.DOTALL)


def _code_texts(markup: str) -> list[str]:
    return [html.unescape(m) for m in _CODE.findall(markup)]


@pytest.mark.parametrize("text", list(CODE_KEPT.values()), ids=list(CODE_KEPT))
def test_code_keeps_its_text_byte_for_byte(text: str) -> None:
    out = render(text)
    assert_inert(out)
    codes = _code_texts(out)
    assert codes, out
    for code in codes:
        # escaped exactly once: unescaping gives text that is in the source as written
        body = code.rstrip("\n")
        lines = [line.strip() for line in body.split("\n")]
        for line in lines:
            assert line in text, (line, text)
        assert "\u200b" not in code and "\u200d" not in code


def test_code_fence_holds_tags_exactly() -> None:
    code = "<b>x</b> & <img src=y>"
    out = render(f"```\n{code}\n```")
    assert out == "<pre><code>&lt;b&gt;x&lt;/b&gt; &amp; &lt;img src=y&gt;\n</code></pre>\n"
    assert _code_texts(out) == [code + "\n"]
    assert _code_texts(render(f"say `{code}` now")) == [code]


def test_legit_markdown_renders() -> None:
    out = render(
        "# Title\n\n## Sub\n\nSome **bold**, *italic*, ~~gone~~ and `code`.\n\n"
        "- one\n- two\n  - nested\n\n1. first\n2. second\n\n"
        "| a | b |\n|---|:-:|\n| 1 | 2 |\n\n"
        "A [link](https://example.com/a?b=c#d) and [mail](mailto:a@example.com).\n\n"
        "> quoted\n\n---\n\nend"
    )
    assert_inert(out)
    for part in (
        "<h1>Title</h1>",
        "<h2>Sub</h2>",
        "<strong>bold</strong>",
        "<em>italic</em>",
        "<s>gone</s>",
        "<code>code</code>",
        "<li>nested</li>",
        "<ol>",
        '<th align="center">b</th>',
        '<a href="https://example.com/a?b=c#d" rel="noopener noreferrer">link</a>',
        '<a href="mailto:a@example.com" rel="noopener noreferrer">mail</a>',
        "<blockquote>",
        "<hr>",
    ):
        assert part in out, (part, out)


def test_math_keeps_its_text() -> None:
    for math in ("$a_b + c_d$", "$x^2 + y_1 < z$", "$$\\sum_{i=1}^n i$$", "$\\frac{a}{b}$"):
        out = render(f"Math {math} stays.")
        shown = html.unescape(re.sub(r"<[^>]+>", "", out))
        assert math in shown, out
        assert "<em>" not in out and "<sub>" not in out
    block = render("$$\na_b < c\n$$")
    assert html.unescape(block) == "<div>$$\na_b < c\n$$</div>\n"


def test_mathjax_macros_are_broken_everywhere_but_code() -> None:
    out = render(
        "$\\href{javascript:x}{y}$ \\style{x}{y} $\\\\href$ `\\href{a}{b}`\n\n"
        "```\n\\class{a}{b}\n```"
    )
    assert_inert(out)
    assert "\\\u200dhref{javascript:x}{y}" in out and "\\\u200dstyle{x}{y}" in out
    assert "$\\\\href$" in out  # "\\" is a line break, not a macro: left as written
    assert "<code>\\href{a}{b}</code>" in out and "\\class{a}{b}" in out


def test_line_breaks_inside_a_paragraph_are_kept() -> None:
    out = render("step 1: queued\nstep 2: running\nstep 3: done")
    assert out == "<p>step 1: queued<br>\nstep 2: running<br>\nstep 3: done</p>\n"


def test_links_only_http_and_mailto_keep_their_text() -> None:
    out = render("see [the **docs**](javascript:alert(1)) and [here](/lab/tree/x) now")
    assert "<a" not in out
    assert "the <strong>docs</strong>" in out and "here" in out
    assert "javascript" not in out


def test_images_never_become_img() -> None:
    out = render("a ![kite *over* dunes](http://e/k.png) b ![](http://e/x.png)")
    assert "<img" not in out and "http://e/k.png" not in out
    assert "[image: kite *over* dunes]" in out and "[image]" in out


def test_trust_html_lets_raw_html_through_but_not_images_or_dangerous_links() -> None:
    trusted = renderer(trust_html=True).render(
        "<b>bold</b> ![x](http://evil/a.png) [y](javascript:alert(1)) <i>it</i>"
    )
    assert "<b>bold</b>" in trusted and "<i>it</i>" in trusted
    assert "http://evil" not in trusted and "javascript" not in trusted


# -------------------------------------------------------------- streaming

_STRUCTURE = re.compile(r"<(h[1-6]|hr|table|thead|th)\b")


def _structures(markup: str) -> list[str]:
    return _STRUCTURE.findall(markup)


@pytest.mark.parametrize(
    "text",
    [
        "Colours seen:\n- red\n- blue\n",
        "Title\n---\nText under it.\n",
        "Total\n=====\n",
        "| a | b |\n|---|---|\n| 1 | 2 |\n",
        "a | b\n--|--\n1 | 2\n",
        "Intro\n\n***\n\nAfter the rule.\n",
        "Steps\n1. one\n2. two\n",
        "Code:\n```python\nx = 1\n```\nDone.\n",
        "# Heading\nText\n",
        "Not a heading: #5 is a number.\n",
    ],
)
def test_no_transient_structure_while_streaming(text: str) -> None:
    sink = stream(text)
    final = _structures(sink.states()[-1])
    for state in sink.states():
        shown = _structures(state)
        # what is shown is a prefix of what the final text shows: nothing to undo
        assert shown == final[: len(shown)], (state, final)


def test_a_partial_line_that_could_still_change_is_held() -> None:
    for text, end in [
        ("Colours seen:\n-", 14),
        ("Colours seen:\n- ", 14),
        ("Colours seen:\n- r", 17),
        ("Total\n==", 6),
        ("| a |\n|--", 6),
        ("x\n```py", 2),
        ("x\n#", 2),
        ("x\n# T", 5),
        ("x\n12.", 2),
        ("x\n[ref]: http://e", 2),
        ("see ![kite](data:image/png;base64,AAAA", 4),
        ("plain text", 10),
    ]:
        assert stable_end(text) == end, text


def test_plain_text_never_holds_half_a_data_uri() -> None:
    from jupyter_chatimg._html import plain_text

    text = "Look: ![x](data:image/png;base64," + "A" * 5000 + ") done"
    plain = plain_text(renderer().md, text)
    assert "AAAA" not in plain and plain.startswith("Look:")
    assert plain_text(renderer().md, "![x](data:image/png;base64,AAAA) done") == "[image] done"


def test_streamed_data_uri_tail_is_never_shown() -> None:
    b64 = "iVBORw0KGgo" + "A" * 5000
    text = f"Result:\n\n![img](data:image/png;base64,{b64}) done"
    sink = stream(text, step=7)
    for _slot, data, _final in sink.messages:
        assert "AAAAAAAA" not in data.get("text/html", "") + data.get("text/plain", "")


def _random_markdown(rng: random.Random, size: int) -> str:
    parts = [
        "# Heading\n\n",
        "Some **bold** text with `code` and a [link](https://example.com).\n",
        "\n",
        "\n\n",
        "- item one\n- item two with $x^2$ math\n",
        "  continued\n",
        "```python\nfor i in range(10):\n\n    print(i < 5)\n```\n",
        "| a | b |\n|---|---|\n| 1 | 2 |\n",
        "A paragraph with a < b and <b>html</b>.\n",
        "> quote with `a<b`\n",
        "1. step\n   ```bash\n   pip install x\n   ```\n",
        "    indented code\n",
        "Title\n---\n",
        "***\n",
        "$$\na_b\n$$\n",
        "text ~~gone~~ *em*\n",
    ]
    text = ""
    while len(text) < size:
        text += rng.choice(parts)
    return text


@pytest.mark.parametrize("seed", range(25))
def test_incremental_html_equals_a_whole_render_at_every_step(seed: int) -> None:
    rng = random.Random(seed)
    text = _random_markdown(rng, rng.randint(200, 2000))
    r = renderer()
    inc = IncrementalHtml(r)
    pos = 0
    while pos < len(text):
        pos += rng.choice([1, 2, 5, 17, 60])
        prefix = text[:pos]
        assert inc.html(prefix) == r.render(prefix), (seed, pos, prefix)
    assert inc.html(text, final=True) == r.render(text)
    assert inc.finished > 0 or "\n\n" not in text


def test_incremental_html_with_link_definitions_ends_right() -> None:
    r = renderer()
    text = "See [the docs][d].\n\nMore text.\n\nEven more.\n\n[d]: https://example.com/docs\n"
    inc = IncrementalHtml(r)
    for pos in range(1, len(text)):
        inc.html(text[:pos])
    assert inc.html(text, final=True) == r.render(text)
    assert 'href="https://example.com/docs"' in r.render(text)


def test_incremental_rendering_is_linear() -> None:
    rng = random.Random(5)
    r = renderer()
    times = []
    for size in (25_000, 100_000):
        text = _random_markdown(rng, size)
        best = []
        for _ in range(2):
            inc = IncrementalHtml(r)
            gc.collect()
            gc.disable()
            start = time.process_time()
            try:
                for pos in range(0, len(text), 500):  # an update every 500 characters
                    inc.html(text[:pos])
                inc.html(text, final=True)
            finally:
                gc.enable()
            best.append(time.process_time() - start)
        times.append(min(best))
    # 4x the text and 4x the updates: about 4x the time (a full render each time: 16x)
    assert times[1] / times[0] < 8, times


def test_code_spans_keep_their_text_byte_exact() -> None:
    # Issue 15 (11): the old markdown cleaner inserted U+200B into code spans
    # ("<b>x</b>" became "‹\u200bb>x‹\u200b/b>").
    from html import unescape

    from jupyter_chatimg._html import renderer

    for span in ("<b>x</b>", "a & b < c", "$x$ \\href{y}", "`tick`", "x\u200by"):
        fence = "``" if "`" in span else "`"
        out = renderer().render(f"use {fence} {span} {fence} here")
        (code,) = re.findall(r"<code>(.*?)</code>", out, re.S)
        assert unescape(code) == span, (span, out)
        assert "\u200b" not in code.replace("x\u200by", "")
